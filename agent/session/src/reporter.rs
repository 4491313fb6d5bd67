//! The helper's side of the session socket: merges what the trackers, the lock watcher and
//! AT-SPI say into one focus report, and sends it to the collector whenever it changes. A
//! collector that is not there (yet, or restarting) is retried with backoff, and the current
//! report is sent again on every new connection.
//!
//! Fail closed: a watcher that was started but has not answered yet is *undecided*, and an
//! undecided lock watcher reports the session locked, an undecided AT-SPI watcher a password
//! field, so nothing typed before they have looked is taken for ordinary input. A watcher
//! that cannot run at all (no logind, no accessibility bus) has decided: it sees nothing.

use imprint_record::wire::{self, SessionMessage};
use imprint_record::{DisplayInfo, FocusInfo, PointerSample, WindowGeometry};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// A change one of the helper's watchers saw.
#[derive(Debug)]
pub enum Update {
    Focus(Box<FocusInfo>),
    /// Lock watcher `source` (`x11`, `logind`) says the session is (un)locked.
    Lock {
        source: &'static str,
        locked: bool,
        by: String,
    },
    /// Lock watcher `source` cannot run here: it sees no lock.
    LockUnavailable {
        source: &'static str,
    },
    Accessible {
        password: bool,
        role: String,
    },
    /// The AT-SPI watcher cannot run here: it sees no password field.
    AccessibleUnavailable,
    /// Where the display server put the pointer.
    Pointer(PointerSample),
    /// The screen layout (or why positions are not available), kept and re-sent on reconnect.
    Display(Box<DisplayInfo>),
    /// The focused window moved or was resized.
    Window(WindowGeometry),
}

/// Which watchers the helper started (and so must hear from before it trusts their silence).
#[derive(Clone, Debug, Default)]
pub struct Watchers {
    pub locks: Vec<&'static str>,
    pub accessible: bool,
}

/// What the helper currently reports.
struct Merged {
    focus: Option<FocusInfo>,
    /// Per lock source: `None` while undecided, then (locked, by).
    locks: BTreeMap<&'static str, Option<(bool, String)>>,
    /// `None` while undecided (when the watcher runs), then (password field, role).
    accessible: Option<(bool, String)>,
}

impl Merged {
    fn new(w: &Watchers) -> Merged {
        Merged {
            focus: None,
            locks: w.locks.iter().map(|s| (*s, None)).collect(),
            accessible: (!w.accessible).then(|| (false, String::new())),
        }
    }

    fn report(&self) -> Option<FocusInfo> {
        let mut f = self.focus.clone()?;
        for (source, state) in &self.locks {
            match state {
                None => {
                    f.locked = true;
                    f.locked_by = format!("{source}:undecided");
                }
                Some((true, by)) => {
                    f.locked = true;
                    f.locked_by = by.clone();
                }
                Some((false, _)) => {}
            }
            if f.locked {
                break;
            }
        }
        match &self.accessible {
            None => {
                f.secure_field = true;
                f.role = "undecided".into();
            }
            Some((password, role)) => {
                f.secure_field = *password;
                f.role = role.clone();
            }
        }
        Some(f)
    }
}

/// Sends merged reports to the collector at `socket` until `rx` closes.
pub async fn run(socket: PathBuf, watchers: Watchers, mut rx: mpsc::Receiver<Update>) {
    let mut merged = Merged::new(&watchers);
    let mut display: Option<Box<DisplayInfo>> = None;
    let mut conn: Option<OwnedFd> = None;
    // A focus report has gone out on `conn`: the collector takes positions only after one.
    let mut reported = false;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let wake =
            retry_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
        tokio::select! {
            u = rx.recv() => {
                let Some(u) = u else { return };
                match u {
                    Update::Focus(f) => merged.focus = Some(*f),
                    Update::Lock { source, locked, by } => {
                        merged.locks.insert(source, Some((locked, by)));
                    }
                    Update::LockUnavailable { source } => {
                        merged.locks.insert(source, Some((false, String::new())));
                    }
                    Update::Accessible { password, role } => {
                        merged.accessible = Some((password, role));
                    }
                    Update::AccessibleUnavailable => {
                        merged.accessible = Some((false, String::new()));
                    }
                    Update::Display(d) => {
                        let msg = SessionMessage::Display(d.clone());
                        display = Some(d);
                        if reported && !send_or_drop(&mut conn, &msg) {
                            retry_at.get_or_insert_with(|| tokio::time::Instant::now() + backoff);
                        }
                        continue;
                    }
                    // Positions and geometry are only worth anything now: they are not kept
                    // for a later connection.
                    Update::Pointer(p) => {
                        if reported && !send_or_drop(&mut conn, &SessionMessage::Pointer(p)) {
                            retry_at.get_or_insert_with(|| tokio::time::Instant::now() + backoff);
                        }
                        continue;
                    }
                    Update::Window(w) => {
                        if reported && !send_or_drop(&mut conn, &SessionMessage::Window(w)) {
                            retry_at.get_or_insert_with(|| tokio::time::Instant::now() + backoff);
                        }
                        continue;
                    }
                }
            }
            () = tokio::time::sleep_until(wake), if retry_at.is_some() => {
                retry_at = None;
            }
        }
        if conn.is_none() {
            reported = false;
        }
        let Some(report) = merged.report() else {
            continue;
        };
        if conn.is_none() && retry_at.is_none() {
            match wire::connect(&socket) {
                Ok(c) => {
                    tracing::info!(socket = %socket.display(), "connected to the collector");
                    backoff = Duration::from_millis(100);
                    conn = Some(c);
                }
                Err(e) => {
                    tracing::warn!(socket = %socket.display(), error = %e, retry_ms = backoff.as_millis() as u64, "collector not reachable");
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        if send_or_drop(&mut conn, &SessionMessage::Focus(Box::new(report))) {
            if !reported {
                // A new connection: the collector learns the layout after the focus it
                // trusts this connection for.
                if let Some(d) = &display {
                    send_or_drop(&mut conn, &SessionMessage::Display(d.clone()));
                }
            }
            reported = conn.is_some();
        } else if conn.is_none() {
            reported = false;
            retry_at = Some(tokio::time::Instant::now() + backoff);
        }
    }
}

/// Sends `msg` on `conn`; on failure the connection is dropped (to be re-made). True if sent.
fn send_or_drop(conn: &mut Option<OwnedFd>, msg: &SessionMessage) -> bool {
    let Some(c) = conn else {
        return false;
    };
    match wire::send(c, msg) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "collector connection lost; reconnecting");
            *conn = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn focus() -> Update {
        Update::Focus(Box::new(FocusInfo {
            pid: 7,
            ..FocusInfo::default()
        }))
    }

    fn apply(m: &mut Merged, u: Update) {
        match u {
            Update::Focus(f) => m.focus = Some(*f),
            Update::Lock { source, locked, by } => {
                m.locks.insert(source, Some((locked, by)));
            }
            Update::LockUnavailable { source } => {
                m.locks.insert(source, Some((false, String::new())));
            }
            Update::Accessible { password, role } => m.accessible = Some((password, role)),
            Update::AccessibleUnavailable => m.accessible = Some((false, String::new())),
            Update::Pointer(_) | Update::Display(_) | Update::Window(_) => {}
        }
    }

    #[test]
    fn undecided_watchers_fail_closed_and_any_lock_source_locks() {
        let w = Watchers {
            locks: vec!["x11", "logind"],
            accessible: true,
        };
        let mut m = Merged::new(&w);
        assert!(m.report().is_none(), "nothing to say before a focus");
        apply(&mut m, focus());
        let r = m.report().expect("report");
        assert!(r.locked && r.secure_field, "undecided: capped {r:?}");
        apply(
            &mut m,
            Update::Lock {
                source: "x11",
                locked: false,
                by: "x11".into(),
            },
        );
        apply(&mut m, Update::LockUnavailable { source: "logind" });
        apply(
            &mut m,
            Update::Accessible {
                password: false,
                role: "text".into(),
            },
        );
        let r = m.report().expect("report");
        assert!(
            !r.locked && !r.secure_field,
            "all decided, nothing secure: {r:?}"
        );
        // One source saying locked is enough, whatever the other says.
        apply(
            &mut m,
            Update::Lock {
                source: "logind",
                locked: true,
                by: "logind".into(),
            },
        );
        let r = m.report().expect("report");
        assert_eq!((r.locked, r.locked_by.as_str()), (true, "logind"));
        // Without watchers there is nothing to wait for.
        let mut none = Merged::new(&Watchers::default());
        apply(&mut none, focus());
        let r = none.report().expect("report");
        assert!(!r.locked && !r.secure_field);
    }
}
