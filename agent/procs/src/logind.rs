//! Sessions and seats, from logind's state files: which session is active on a seat, whose it
//! is, and how to reach its display server. Plain file reads: no D-Bus, no privilege.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// logind's state directories.
pub const SESSIONS_DIR: &str = "/run/systemd/sessions";
pub const SEATS_DIR: &str = "/run/systemd/seats";

/// A login session, as logind describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub uid: u32,
    pub user: String,
    pub seat: String,
    /// x11, wayland, tty, mir, unspecified.
    pub kind: String,
    /// `XDG_SESSION_DESKTOP` (gnome, KDE, sway, Hyprland, …).
    pub desktop: String,
    pub display: Option<String>,
    pub tty: String,
    pub vtnr: Option<u32>,
    pub leader: Option<u32>,
    pub active: bool,
    pub runtime_dir: PathBuf,
    pub home: Option<PathBuf>,
}

fn parse_env_file(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect()
}

/// Parses `/run/systemd/sessions/<id>`.
pub fn parse_session(id: &str, text: &str) -> Option<Session> {
    let kv = parse_env_file(text);
    let uid: u32 = kv.get("UID")?.parse().ok()?;
    let get = |k: &str| kv.get(k).map(|v| v.to_string()).unwrap_or_default();
    Some(Session {
        id: id.to_owned(),
        uid,
        user: get("USER"),
        seat: get("SEAT"),
        kind: get("TYPE"),
        desktop: get("DESKTOP"),
        display: kv
            .get("DISPLAY")
            .filter(|d| !d.is_empty())
            .map(|d| d.to_string()),
        tty: get("TTY"),
        vtnr: kv.get("VTNR").and_then(|v| v.parse().ok()),
        leader: kv.get("LEADER").and_then(|v| v.parse().ok()),
        active: kv.get("ACTIVE").is_some_and(|v| *v == "1"),
        runtime_dir: PathBuf::from(format!("/run/user/{uid}")),
        home: None,
    })
}

/// Loads one session from `dir` (normally [`SESSIONS_DIR`]).
pub fn load_session(dir: &Path, id: &str) -> Option<Session> {
    let text = std::fs::read_to_string(dir.join(id)).ok()?;
    let mut s = parse_session(id, &text)?;
    if let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(s.uid)) {
        s.home = Some(u.dir);
    }
    Some(s)
}

/// The active session of `seat` (`ACTIVE=` in `/run/systemd/seats/<seat>`).
pub fn active_session_id(seats_dir: &Path, seat: &str) -> Option<String> {
    let text = std::fs::read_to_string(seats_dir.join(seat)).ok()?;
    parse_env_file(&text)
        .get("ACTIVE")
        .filter(|v| !v.is_empty())
        .map(|v| v.to_string())
}
