//! The helper's side of the session socket: merges what the trackers, the lock watcher and
//! AT-SPI say into one focus report, and sends it to the collector whenever it changes. A
//! collector that is not there (yet, or restarting) is retried with backoff, and the current
//! report is sent again on every new connection.

use imprint_record::wire::{encode_message, SessionMessage};
use imprint_record::FocusInfo;
use nix::sys::socket::{
    connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// A change one of the helper's watchers saw.
#[derive(Debug)]
pub enum Update {
    Focus(Box<FocusInfo>),
    Lock { locked: bool, by: String },
    Accessible { password: bool, role: String },
}

/// What the helper currently reports.
#[derive(Default)]
struct Merged {
    focus: Option<FocusInfo>,
    locked: bool,
    locked_by: String,
    password: bool,
    role: String,
}

impl Merged {
    fn report(&self) -> Option<FocusInfo> {
        let mut f = self.focus.clone()?;
        f.locked = self.locked;
        f.locked_by = self.locked_by.clone();
        f.secure_field = self.password;
        f.role = self.role.clone();
        Some(f)
    }
}

/// Sends merged reports to the collector at `socket` until `rx` closes.
pub async fn run(socket: PathBuf, mut rx: mpsc::Receiver<Update>) {
    let mut merged = Merged::default();
    let mut conn: Option<OwnedFd> = None;
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
                    Update::Lock { locked, by } => {
                        merged.locked = locked;
                        merged.locked_by = by;
                    }
                    Update::Accessible { password, role } => {
                        merged.password = password;
                        merged.role = role;
                    }
                }
            }
            () = tokio::time::sleep_until(wake), if retry_at.is_some() => {
                retry_at = None;
            }
        }
        let Some(report) = merged.report() else {
            continue;
        };
        if conn.is_none() && retry_at.is_none() {
            match connect_to(&socket) {
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
        if let Some(c) = &conn {
            let packet = encode_message(&SessionMessage::Focus(Box::new(report)));
            if let Err(e) = send(c.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL) {
                tracing::warn!(error = %e, "collector connection lost; reconnecting");
                conn = None;
                retry_at = Some(tokio::time::Instant::now() + backoff);
            }
        }
    }
}

fn connect_to(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}
