//! Terminals and consoles: input to a terminal emulator (or a VT) goes to the foreground
//! process group of its pty, so that is what it is attributed to. The shell on the pty
//! knows the group: `tpgid`, field 8 of `/proc/PID/stat`; its leader's pid equals the group id.

use super::session::{self, Session};
use super::{send, FocusConfig, FocusError, Report, ReportTx, WindowReport};
use imprint_procs::connector::ProcConnector;
use imprint_procs::{read_stat, ProcEvent, ProcIdentity, Stat};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Executable (or `comm`) names of terminal emulators.
pub const KNOWN_TERMINALS: &[&str] = &[
    "xterm",
    "uxterm",
    "foot",
    "gnome-terminal-server",
    "kgx",
    "ptyxis",
    "ptyxis-agent",
    "konsole",
    "yakuake",
    "alacritty",
    "kitty",
    "wezterm",
    "wezterm-gui",
    "xfce4-terminal",
    "mate-terminal",
    "lxterminal",
    "qterminal",
    "tilix",
    "terminator",
    "terminology",
    "urxvt",
    "urxvtd",
    "rxvt",
    "st",
    "sakura",
    "guake",
    "tilda",
    "contour",
    "cool-retro-term",
    "blackbox",
    "warp",
    "rio",
    "ghostty",
];

fn base(path: &str) -> &str {
    let p = path.strip_suffix(" (deleted)").unwrap_or(path);
    p.rsplit('/').next().unwrap_or(p)
}

/// Whether `id` is a terminal emulator (built-in list plus `extra`).
pub fn is_terminal(id: &ProcIdentity, extra: &[String]) -> bool {
    let names = [base(&id.exe), id.comm.as_str()];
    names.iter().any(|n| {
        !n.is_empty() && (KNOWN_TERMINALS.contains(n) || extra.iter().any(|e| e.as_str() == *n))
    })
}

/// Children of `pid` (all threads), from `/proc/PID/task/*/children`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The pty slave for a `tty_nr` (Unix98 ptys: majors 136–143).
pub(crate) fn pts_path(tty_nr: u32) -> Option<String> {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    (136..=143)
        .contains(&major)
        .then(|| format!("/dev/pts/{}", (major - 136) * 256 + minor))
}

/// When the tty last saw input or output (the kernel updates it coarsely, every 8 s).
fn tty_activity(tty_nr: u32) -> i64 {
    pts_path(tty_nr)
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.atime().max(m.mtime()))
        .unwrap_or(0)
}

fn has_tty(s: &Stat) -> bool {
    s.tty_nr != 0 && s.tpgid != 0
}

/// The foreground program of the terminal `term`: the leader of the foreground process
/// group of the pty its child shell runs on. With several ptys (tabs) the one with the most
/// recent activity is taken. `include_self` also considers `term`'s own tty (for VT
/// session leaders; a terminal emulator's own tty is the one it was started from).
pub fn foreground_of_pid(term: u32, include_self: bool) -> Option<u32> {
    let mut candidates: Vec<Stat> = Vec::new();
    if include_self {
        if let Ok(s) = read_stat(term) {
            if has_tty(&s) {
                candidates.push(s);
            }
        }
    }
    if candidates.is_empty() {
        let own_tty = read_stat(term).map(|s| s.tty_nr).unwrap_or(0);
        let mut level = children(term);
        // The shell is a child (xterm, foot, konsole) or a grandchild (a helper between).
        for _ in 0..2 {
            candidates.extend(
                level
                    .iter()
                    .filter_map(|&c| read_stat(c).ok())
                    .filter(|s| has_tty(s) && s.tty_nr != own_tty),
            );
            if !candidates.is_empty() {
                break;
            }
            level = level.iter().flat_map(|&c| children(c)).collect();
        }
    }
    let shell = candidates
        .into_iter()
        .max_by_key(|s| (tty_activity(s.tty_nr), s.start_time))?;
    // The group leader may have exited while the group lives on: then the shell.
    match read_stat(shell.tpgid) {
        Ok(fg) if fg.tty_nr == shell.tty_nr => Some(fg.pid),
        _ => Some(shell.pid),
    }
}

/// [`foreground_of_pid`] for a terminal emulator's identity.
pub fn foreground_of(term: &ProcIdentity) -> Option<u32> {
    foreground_of_pid(term.pid, false)
}

/// The active VT number, from `/sys/class/tty/tty0/active` ("tty3").
fn active_vt(text: &str) -> Option<u32> {
    text.trim().strip_prefix("tty")?.parse().ok()
}

/// After process events and VT switches the VT's foreground is looked at again, this long after the previous
/// look: a shell takes the terminal back only once it has reaped the child whose exit was the
/// event, and a loaded machine can take a while to get there.
const VT_RECHECKS_MS: [u64; 4] = [50, 200, 750, 2000];
/// Without process events (imprint-session as the user may not open the proc connector), how
/// often the VT's foreground program and terminal mode are looked at.
const VT_POLL_MS: u64 = 200;

/// Text consoles: follows VT switches (sysfs notifies `tty0/active` with POLLPRI) and reports
/// the foreground program of the session on the active VT (from logind's `LEADER`).
///
/// The foreground program also changes without any VT switch: the shell starts `sudo`, `vim`
/// exits. The kernel's exec, exit and setsid events (the proc connector) are the cue to look
/// again, since nothing notifies a change of a terminal's foreground process group. A burst of
/// events (a build) costs one look per recheck interval, not one per event. Every look is
/// reported, even with the same pid: a program that exec'd another keeps its pid, and the
/// resolver drops reports that resolve to the focus it already has. Without the connector
/// (no CAP_NET_ADMIN, as for imprint-session as the user) the VT is polled instead, which is
/// logged.
pub async fn run_vt(
    _cfg: &FocusConfig,
    own: Option<&Session>,
    tx: &ReportTx,
) -> Result<(), FocusError> {
    use tokio::time::Instant;
    const ACTIVE: &str = "/sys/class/tty/tty0/active";
    let file = std::fs::File::open(ACTIVE).map_err(|e| FocusError::io(ACTIVE, e))?;
    // SAFETY: the File owns its fd and keeps it open, unchanged, until dropped.
    let afd = unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) }
        .map_err(|e| FocusError::io(ACTIVE, e.into()))?;
    let mut procs = match ProcConnector::open() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, poll_ms = VT_POLL_MS, "tty focus: no process events, so the foreground program and its terminal's mode are polled");
            None
        }
    };
    // Without process events nothing says when the shell starts `sudo`, whose password
    // prompt must be seen: look at the terminal every VT_POLL_MS instead. That costs
    // wake-ups on a text console only, and only where the proc connector is refused.
    let mut poll = tokio::time::interval(Duration::from_millis(VT_POLL_MS));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(64);
    // The next look after process events, and which of VT_RECHECKS_MS follows it.
    let mut recheck: Option<(Instant, usize)> = None;
    let mut look = true;
    loop {
        if look {
            let text = std::fs::read_to_string(ACTIVE).map_err(|e| FocusError::io(ACTIVE, e))?;
            send(tx, vt_report(active_vt(&text), own)).await?;
        }
        let polling = procs.is_none();
        let next_events = async {
            match procs.as_mut() {
                Some(c) => c.recv(&mut batch).await,
                None => std::future::pending().await,
            }
        };
        let wake = recheck.map(|(at, _)| at);
        tokio::select! {
            g = afd.ready(Interest::PRIORITY) => {
                g.map_err(|e| FocusError::io(ACTIVE, e))?.clear_ready();
                look = true;
                // logind moves the seat's active session a little after the VT moves, and the
                // collector refuses reports until it has: look again a few times.
                recheck = Some((Instant::now() + Duration::from_millis(VT_RECHECKS_MS[0]), 1));
            }
            r = next_events => {
                let moved = match r {
                    // Forks and uid changes alone do not move the foreground.
                    Ok(()) => batch
                        .drain(..)
                        .any(|ev| !matches!(ev, ProcEvent::Fork { .. } | ProcEvent::Uid { .. })),
                    Err(e) => {
                        tracing::warn!(error = %e, poll_ms = VT_POLL_MS, "tty focus: process events stopped; the foreground program is polled");
                        procs = None;
                        false
                    }
                };
                // Look now if no look is due soon; either way, again a little later.
                let soon = Instant::now() + Duration::from_millis(VT_RECHECKS_MS[0]);
                look = moved && recheck.is_none();
                if moved && recheck.is_none_or(|(at, _)| at > soon) {
                    recheck = Some((soon, 1));
                }
            }
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                let next = recheck.map_or(VT_RECHECKS_MS.len(), |(_, i)| i);
                recheck = VT_RECHECKS_MS
                    .get(next)
                    .map(|ms| (Instant::now() + Duration::from_millis(*ms), next + 1));
                look = true;
            }
            _ = poll.tick(), if polling => look = true,
            () = tx.closed() => return Err(FocusError::Closed),
        }
    }
}

/// The report for the active VT `vt`: its tty session's foreground program, or no window.
fn vt_report(vt: Option<u32>, own: Option<&Session>) -> Report {
    vt.and_then(|vt| session_on_vt(Path::new(session::SESSIONS_DIR), vt))
        .filter(|s| own.is_none_or(|o| o.id == s.id))
        .and_then(|s| s.leader)
        .and_then(|leader| foreground_of_pid(leader, true))
        .map(|pid| {
            Report::Window(WindowReport {
                tracker: "tty",
                pid,
                pid_verified: true,
                ..WindowReport::default()
            })
        })
        .unwrap_or(Report::NoWindow { tracker: "tty" })
}

fn session_on_vt(dir: &Path, vt: u32) -> Option<Session> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.ends_with(".ref")).then(|| session::load_session(dir, &name))?
        })
        .find(|s| s.vtnr == Some(vt) && s.kind == "tty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = ProcIdentity {
            exe: "/usr/bin/xterm".into(),
            comm: "xterm".into(),
            ..ProcIdentity::default()
        };
        assert!(is_terminal(&id, &[]));
        let id = ProcIdentity {
            exe: "/usr/libexec/gnome-terminal-server".into(),
            comm: "gnome-terminal-".into(),
            ..ProcIdentity::default()
        };
        assert!(is_terminal(&id, &[]));
        let id = ProcIdentity {
            exe: "/usr/bin/script".into(),
            comm: "script".into(),
            ..ProcIdentity::default()
        };
        assert!(!is_terminal(&id, &[]));
        assert!(is_terminal(&id, &["script".into()]));
    }

    #[test]
    fn pts_numbers() {
        // /dev/pts/1: major 136, minor 1 → tty_nr 34817.
        assert_eq!(pts_path(34817).as_deref(), Some("/dev/pts/1"));
        // /dev/pts/300: major 137, minor 44.
        assert_eq!(pts_path((137 << 8) | 44).as_deref(), Some("/dev/pts/300"));
        assert_eq!(pts_path(1025), None); // tty1
        assert_eq!(active_vt("tty3\n"), Some(3));
    }
}
