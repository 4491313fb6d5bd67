//! Hyprland: the event socket (`.socket2.sock`, lines `EVENT>>DATA`) announces
//! `activewindowv2>>ADDRESS`; the window's pid, class and title then come from one
//! `j/activewindow` request on the command socket (`.socket.sock`), which is opened for
//! that request only and closed again: Hyprland serves that socket synchronously, and a
//! client holding it open would stall the compositor.

use super::{send, FocusConfig, FocusError, Report, ReportTx, WindowReport};
use imprint_procs::logind::Session;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const TRACKER: &str = "hyprland";

/// One event line, split: (`activewindowv2`, `55d0c1a2b3c0`).
pub fn parse_event(line: &str) -> Option<(&str, &str)> {
    line.trim_end_matches(['\n', '\r']).split_once(">>")
}

/// What an event means: `Some(None)` focus moved to no window, `Some(Some(addr))` to the
/// window at `addr` (hex, no `0x`), `None` not a focus event.
pub fn focus_change(line: &str) -> Option<Option<String>> {
    let (ev, data) = parse_event(line)?;
    if ev != "activewindowv2" {
        return None;
    }
    let addr = data.trim().trim_start_matches("0x");
    // Older versions send "," for "no window".
    Some((!addr.is_empty() && addr != ",").then(|| addr.to_ascii_lowercase()))
}

/// A `j/activewindow` reply, for the window at `addr` (None: it is not that window, or
/// no window is active: `{}`).
pub fn parse_activewindow(json: &[u8], addr: Option<&str>, titles: bool) -> Option<WindowReport> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let got = v["address"]
        .as_str()?
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if addr.is_some_and(|a| a != got) {
        return None;
    }
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let pid = v["pid"]
        .as_i64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0);
    Some(WindowReport {
        tracker: TRACKER,
        pid,
        // Hyprland takes the pid from the client's socket credentials.
        pid_verified: pid != 0,
        app_id: s("class"),
        wm_class: s("initialClass"),
        title: if titles { s("title") } else { String::new() },
        // `at` and `size` are in the global layout's logical pixels.
        rect: imprint_record::WindowRect {
            x: coord(&v["at"][0]),
            y: coord(&v["at"][1]),
            width: u32::try_from(coord(&v["size"][0])).unwrap_or(0),
            height: u32::try_from(coord(&v["size"][1])).unwrap_or(0),
        },
    })
}

fn coord(v: &Value) -> i32 {
    v.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0)
}

/// The instance directory: `$XDG_RUNTIME_DIR/hypr/SIG` (Hyprland ≥ 0.40) or `/tmp/hypr/SIG`;
/// the newest one with an event socket when no signature is given.
pub fn discover(runtime_dir: &Path, signature: Option<&str>) -> Option<PathBuf> {
    let roots = [runtime_dir.join("hypr"), PathBuf::from("/tmp/hypr")];
    if let Some(sig) = signature {
        return roots
            .iter()
            .map(|r| r.join(sig))
            .find(|d| d.join(".socket2.sock").exists());
    }
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = roots
        .iter()
        .filter_map(|r| std::fs::read_dir(r).ok())
        .flat_map(|d| d.flatten())
        .map(|e| e.path())
        .filter(|p| p.join(".socket2.sock").exists())
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

async fn query_activewindow(dir: &Path) -> Result<Vec<u8>, FocusError> {
    let path = dir.join(".socket.sock");
    let what = || format!("hyprland {}", path.display());
    let mut s = UnixStream::connect(&path)
        .await
        .map_err(|e| FocusError::io(what(), e))?;
    s.write_all(b"j/activewindow")
        .await
        .map_err(|e| FocusError::io(what(), e))?;
    let mut out = Vec::new();
    // Hyprland answers and closes; bound the read in time and size.
    let mut limited = (&mut s).take(4 << 20);
    let read = limited.read_to_end(&mut out);
    tokio::time::timeout(std::time::Duration::from_secs(2), read)
        .await
        .map_err(|_| FocusError::Protocol("hyprland: j/activewindow timed out".into()))?
        .map_err(|e| FocusError::io(what(), e))?;
    Ok(out)
}

/// Tracks focus over the event socket until it closes.
pub async fn run(
    cfg: &FocusConfig,
    session: Option<&Session>,
    tx: &ReportTx,
) -> Result<(), FocusError> {
    let runtime = cfg
        .runtime_dir
        .clone()
        .or_else(|| session.map(|s| s.runtime_dir.clone()))
        .ok_or(FocusError::NotFound("hyprland (no runtime dir)"))?;
    let dir = discover(&runtime, cfg.hyprland_signature.as_deref())
        .ok_or(FocusError::NotFound("hyprland"))?;
    let ev = dir.join(".socket2.sock");
    let s = UnixStream::connect(&ev)
        .await
        .map_err(|e| FocusError::io(format!("hyprland {}", ev.display()), e))?;
    tracing::info!(instance = %dir.display(), "hyprland focus tracker connected");
    let mut lines = BufReader::new(s).lines();
    // The state before the first event.
    let first = query_activewindow(&dir).await?;
    let r = parse_activewindow(&first, None, cfg.titles)
        .map(Report::Window)
        .unwrap_or(Report::NoWindow { tracker: TRACKER });
    send(tx, r).await?;
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l.map_err(|e| FocusError::io("hyprland events", e))?,
            () = tx.closed() => return Err(FocusError::Closed),
        };
        let Some(line) = line else {
            return Err(FocusError::Protocol(
                "hyprland closed its event socket".into(),
            ));
        };
        match focus_change(&line) {
            None => {}
            Some(None) => send(tx, Report::NoWindow { tracker: TRACKER }).await?,
            Some(Some(addr)) => {
                let reply = query_activewindow(&dir).await?;
                // Focus may have moved again already; the next event will say so.
                if let Some(w) = parse_activewindow(&reply, Some(&addr), cfg.titles) {
                    send(tx, Report::Window(w)).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written from Hyprland's documented IPC format, not recorded from a live Hyprland.
    const ACTIVE: &str = r#"{"address": "0x55d0c1a2b3c0", "mapped": true, "hidden": false, "at": [0, 0], "size": [800, 600], "workspace": {"id": 1, "name": "1"}, "floating": false, "pid": 4242, "xwayland": false, "class": "kitty", "title": "~", "initialClass": "kitty", "initialTitle": "kitty"}"#;

    #[test]
    fn events_and_replies() {
        assert_eq!(
            focus_change("activewindowv2>>55d0c1a2b3c0\n"),
            Some(Some("55d0c1a2b3c0".into()))
        );
        assert_eq!(focus_change("activewindowv2>>\n"), Some(None));
        assert_eq!(focus_change("activewindowv2>>,\n"), Some(None));
        assert_eq!(focus_change("activewindow>>kitty,~\n"), None);
        assert_eq!(focus_change("workspace>>2"), None);
        let w = parse_activewindow(ACTIVE.as_bytes(), Some("55d0c1a2b3c0"), false).expect("w");
        assert_eq!(
            (w.pid, w.app_id.as_str(), w.title.as_str()),
            (4242, "kitty", "")
        );
        assert!(w.pid_verified);
        assert!(parse_activewindow(ACTIVE.as_bytes(), Some("deadbeef"), false).is_none());
        assert!(parse_activewindow(b"{}", None, false).is_none());
    }
}
