//! Following the seat's active session (from logind's state files, [`imprint_procs::logind`])
//! and picking the tracker that serves it. Focus is per seat: the supervisor restarts the
//! tracker when the active session changes.

use super::{run_tracker, send, FocusConfig, Report, ReportTx, TrackerKind};
pub use imprint_procs::logind::{
    active_session_id, load_session, parse_session, Session, SEATS_DIR, SESSIONS_DIR,
};
use inotify::{Inotify, WatchMask};
use std::path::Path;
use tokio::io::unix::AsyncFd;

/// Which tracker serves a session.
pub fn tracker_for(s: &Session) -> TrackerKind {
    let desktop = s.desktop.to_ascii_lowercase();
    match s.kind.as_str() {
        "x11" => TrackerKind::X11,
        "tty" => TrackerKind::Tty,
        "wayland" if desktop.contains("sway") => TrackerKind::Sway,
        "wayland" if desktop.contains("hyprland") => TrackerKind::Hyprland,
        "wayland" if desktop.contains("gnome") || desktop.contains("ubuntu") => TrackerKind::Gnome,
        "wayland" if desktop.contains("kde") || desktop.contains("plasma") => TrackerKind::Kde,
        "wayland" => {
            // Unknown desktop: look for an IPC socket we speak.
            if super::sway::discover(&s.runtime_dir, Some(s.uid)).is_some() {
                TrackerKind::Sway
            } else if super::hyprland::discover(&s.runtime_dir, None).is_some() {
                TrackerKind::Hyprland
            } else {
                TrackerKind::None
            }
        }
        _ => TrackerKind::None,
    }
}

/// Runs the trackers: the configured one directly, or (auto) the one for the seat's active
/// session, restarted whenever the active session changes.
pub async fn supervise(cfg: FocusConfig, tx: ReportTx) {
    if cfg.tracker != TrackerKind::Auto {
        let _ = send(&tx, Report::Session(None)).await;
        run_tracker(cfg.tracker, cfg, None, tx).await;
        return;
    }
    let inotify = match watch_seats() {
        Ok(i) => Some(i),
        Err(e) => {
            tracing::warn!(error = %e, dir = SEATS_DIR, "cannot watch logind seats: the session is read once");
            None
        }
    };
    let mut buf = [0u8; 4096];
    let mut inotify = inotify;
    loop {
        let session = active_session_id(Path::new(SEATS_DIR), &cfg.seat)
            .and_then(|id| load_session(Path::new(SESSIONS_DIR), &id));
        let kind = session
            .as_ref()
            .map(tracker_for)
            .unwrap_or(TrackerKind::None);
        tracing::info!(seat = %cfg.seat, session = ?session.as_ref().map(|s| &s.id), tracker = kind.as_str(), "focus follows the seat's active session");
        if send(&tx, Report::Session(session.clone())).await.is_err() {
            return;
        }
        let task = if kind == TrackerKind::None {
            let _ = send(
                &tx,
                Report::Lost {
                    tracker: "auto",
                    reason: "no graphical or tty session we can track".into(),
                },
            )
            .await;
            None
        } else {
            let mut c = cfg.clone();
            if let Some(s) = &session {
                c.runtime_dir = c.runtime_dir.or_else(|| Some(s.runtime_dir.clone()));
            }
            Some(tokio::spawn(run_tracker(
                kind,
                c,
                session.clone(),
                tx.clone(),
            )))
        };
        // Wait until the seat's active session changes.
        let current = session.as_ref().map(|s| s.id.clone());
        loop {
            let Some(afd) = inotify.as_mut() else {
                tx.closed().await;
                if let Some(t) = task {
                    t.abort();
                }
                return;
            };
            let mut guard = tokio::select! {
                g = afd.readable_mut() => match g {
                    Ok(g) => g,
                    Err(_) => { inotify = None; continue; }
                },
                () = tx.closed() => {
                    if let Some(t) = task { t.abort(); }
                    return;
                }
            };
            let failed = matches!(
                guard.try_io(|fd| fd.get_mut().read_events(&mut buf).map(|_| ())),
                Ok(Err(_))
            );
            drop(guard);
            if failed {
                inotify = None;
            }
            let now = active_session_id(Path::new(SEATS_DIR), &cfg.seat);
            if now != current {
                break;
            }
        }
        if let Some(t) = task {
            t.abort();
        }
        let _ = send(
            &tx,
            Report::Lost {
                tracker: "auto",
                reason: "the seat's active session changed".into(),
            },
        )
        .await;
    }
}

fn watch_seats() -> std::io::Result<AsyncFd<Inotify>> {
    let inotify = Inotify::init()?;
    inotify.watches().add(
        SEATS_DIR,
        WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
    )?;
    // SAFETY: the Inotify value owns its fd and keeps it open, unchanged, until dropped.
    unsafe { AsyncFd::register(inotify) }.map_err(|e| e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GNOME: &str = "# This is private data. Do not parse.\nUID=1000\nUSER=alice\nACTIVE=1\nIS_DISPLAY=1\nSTATE=active\nREMOTE=0\nTYPE=wayland\nORIGINAL_TYPE=wayland\nCLASS=user\nSCOPE=session-2.scope\nFIFO=/run/systemd/sessions/2.ref\nSEAT=seat0\nTTY=tty2\nVTNR=2\nSERVICE=gdm-password\nDESKTOP=GNOME\nLEADER=1523\nAUDIT=2\nREALTIME=1700000000000000\nMONOTONIC=12345678\n";

    #[test]
    fn session_file() {
        let s = parse_session("2", GNOME).expect("parse");
        assert_eq!(s.uid, 1000);
        assert_eq!(s.user, "alice");
        assert_eq!(s.seat, "seat0");
        assert_eq!(s.kind, "wayland");
        assert_eq!(s.vtnr, Some(2));
        assert_eq!(s.leader, Some(1523));
        assert!(s.active);
        assert_eq!(s.runtime_dir, std::path::PathBuf::from("/run/user/1000"));
        assert_eq!(tracker_for(&s), TrackerKind::Gnome);

        let x = parse_session("c3", "UID=1001\nTYPE=x11\nDISPLAY=:1\nDESKTOP=xfce\n").expect("x");
        assert_eq!(x.display.as_deref(), Some(":1"));
        assert_eq!(tracker_for(&x), TrackerKind::X11);
        assert_eq!(parse_session("9", "USER=x\n"), None);
    }

    #[test]
    fn seat_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("seat0"),
            "IS_SEAT0=1\nCAN_MULTI_SESSION=1\nACTIVE=c2\nACTIVE_UID=1001\nSESSIONS=2 c2\nUIDS=1000 1001\n",
        )
        .expect("write");
        assert_eq!(
            active_session_id(dir.path(), "seat0").as_deref(),
            Some("c2")
        );
        assert_eq!(active_session_id(dir.path(), "seat1"), None);
    }
}
