//! Returns the agent's scope decision for the current focus to the collector, over the
//! session socket, so that out-of-scope input stops in the kernel instead of crossing the
//! ring only to be dropped here. A collector that is not listening costs nothing: the agent
//! retries at the next focus change (there is no timer), and its own filter drops what the
//! policy does not admit either way.

use imprint_record::wire::{encode_message, SessionMessage, Verdict};
use nix::sys::socket::{
    connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Sends verdicts when they change.
pub struct VerdictSender {
    path: PathBuf,
    conn: Option<OwnedFd>,
    last: Option<Verdict>,
    /// Verdicts the collector received (as far as the socket said).
    pub sent: u64,
    pub failed: u64,
}

impl VerdictSender {
    pub fn new(path: PathBuf) -> VerdictSender {
        VerdictSender {
            path,
            conn: None,
            last: None,
            sent: 0,
            failed: 0,
        }
    }

    /// Sends `v` unless it is what was last sent.
    pub fn offer(&mut self, v: Verdict) {
        if self.last == Some(v) {
            return;
        }
        if self.conn.is_none() {
            match connect_to(&self.path) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.failed += 1;
                    tracing::debug!(socket = %self.path.display(), error = %e, "collector session socket not reachable; verdict not sent");
                    return;
                }
            }
        }
        let packet = encode_message(&SessionMessage::Verdict(v));
        let sent = self.conn.as_ref().map(|c| {
            send(
                c.as_raw_fd(),
                &packet,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            )
        });
        match sent {
            Some(Ok(_)) => {
                self.sent += 1;
                self.last = Some(v);
            }
            _ => {
                // A restarted collector: the next offer reconnects.
                self.failed += 1;
                self.conn = None;
            }
        }
    }
}

fn connect_to(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}
