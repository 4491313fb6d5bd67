//! Returns the agent's scope decision for the current focus to the collector, over the
//! session socket, so that out-of-scope input stops in the kernel instead of crossing the
//! ring only to be dropped here. A collector that is not listening costs nothing: the agent
//! retries at the next focus change (there is no timer), and its own filter drops what the
//! policy does not admit either way.

use imprint_record::wire::{self, SessionMessage, Verdict};
use std::os::fd::OwnedFd;
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
            match wire::connect(&self.path) {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.failed += 1;
                    tracing::debug!(socket = %self.path.display(), error = %e, "collector session socket not reachable; verdict not sent");
                    return;
                }
            }
        }
        let sent = self
            .conn
            .as_ref()
            .map(|c| wire::send(c, &SessionMessage::Verdict(v)));
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
