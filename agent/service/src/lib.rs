//! The systemd service protocol for imprint's daemons (`Type=notify`, `WatchdogSec=`).
//!
//! Readiness is sent once the daemon can do its job (the ring is open, the spool recovered).
//! The watchdog is fed from each daemon's own main loop, never from a helper thread: a loop
//! that hangs, or a process stopped with SIGSTOP, stops feeding it, and systemd restarts the
//! service. Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
//!
//! Feeding the watchdog is the one periodic wake-up an idle daemon has, and only when the unit
//! asks for it: at half of `WatchdogSec=`, so one every 15 s with the shipped 30 s.

use sd_notify::NotifyState;
use std::time::{Duration, Instant};

/// Tells the service manager the daemon is ready, with a one-line status.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Feeds the systemd watchdog, when the unit enables one, from the loop that calls it.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    /// The watchdog the service manager asked for (`WATCHDOG_USEC` for this pid), fed at half
    /// its timeout; none outside systemd.
    pub fn from_env() -> Self {
        let every = sd_notify::watchdog_enabled().map(|t| t / 2);
        if let Some(every) = every {
            tracing::info!(
                every_ms = every.as_millis() as u64,
                "feeding the systemd watchdog"
            );
        }
        Watchdog {
            every,
            last: Instant::now(),
        }
    }

    /// A watchdog that never feeds (tests, and processes that are not the service).
    pub fn disabled() -> Self {
        Watchdog {
            every: None,
            last: Instant::now(),
        }
    }

    /// Feeds the watchdog if it is due.
    pub fn tick(&mut self) {
        if let Some(every) = self.every {
            if self.last.elapsed() >= every {
                send(&[NotifyState::Watchdog]);
                self.last = Instant::now();
            }
        }
    }

    /// How long the loop may sleep before it must call [`Watchdog::tick`] (None: forever).
    pub fn due_in(&self) -> Option<Duration> {
        self.every.map(|e| e.saturating_sub(self.last.elapsed()))
    }
}

/// The shorter of two optional sleeps (None: unbounded).
pub fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_watchdog_never_bounds_a_sleep() {
        let mut w = Watchdog::disabled();
        w.tick();
        assert_eq!(w.due_in(), None);
        assert_eq!(
            min_timeout(w.due_in(), Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn enabled_watchdog_is_due_at_half_its_timeout() {
        let w = Watchdog {
            every: Some(Duration::from_secs(15)),
            last: Instant::now(),
        };
        let due = w.due_in().expect("enabled");
        assert!(due <= Duration::from_secs(15) && due > Duration::from_secs(14));
    }
}
