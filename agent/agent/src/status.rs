//! What the agent publishes about itself and its policy: read by `imprint status` and the
//! control socket.

use imprint_policy::filter::{CurrentFocus, FilterStats};
use imprint_record::PolicyStamp;
use imprint_ring::RingStats;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Policy reload outcomes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadStats {
    pub reloads: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// What `imprint status` shows about scope: written beside the agent's status snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStatus {
    pub stamp: PolicyStampView,
    pub default_level: String,
    pub unknown_focus_level: String,
    pub current: Option<CurrentFocus>,
    pub filter: FilterStats,
    pub reload: ReloadStats,
}

/// The policy stamp, as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStampView {
    pub version: u64,
    pub hash: String,
    pub rules: u32,
}

impl From<&PolicyStamp> for PolicyStampView {
    fn from(p: &PolicyStamp) -> Self {
        PolicyStampView {
            version: p.version,
            hash: p.hash.clone(),
            rules: p.rules,
        }
    }
}

/// What the collector is doing, as the agent reads it from the ring header: the part of
/// `imprint status` that every local user may know (is input on this machine captured, by
/// which source, and what was lost), answered on the control socket because only the
/// collector and the `imprint` group can read the ring itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct CaptureView {
    /// False when the agent could not tell (see `error`): capture is then unknown, not off.
    pub known: bool,
    /// Input is captured right now: a collector runs with its source on.
    pub capture_on: bool,
    pub collector_running: bool,
    /// Why there is no ring to read, or why it could not be read.
    pub error: Option<String>,
    /// The live source: `ebpf`, `evdev`, `replay` or `none`.
    pub source: String,
    pub devices: u32,
    pub collector_pid: u32,
    pub epoch: u64,
    /// Session helpers reporting focus to the collector.
    pub helpers: u32,
    /// The in-kernel gate is closed because the focused application is out of scope.
    pub scope_closed: bool,
    /// Focus reports refused: the peer did not own the seat's active session (or was not the
    /// agent, for a verdict).
    #[serde(default)]
    pub reports_refused: u64,
    /// Session-socket packets that did not decode.
    #[serde(default)]
    pub reports_malformed: u64,
    /// Helpers that went away while their session had focus.
    #[serde(default)]
    pub helpers_lost: u64,
    /// Events the collector dropped for an out-of-scope focus (evdev, or in flight).
    #[serde(default)]
    pub scope_dropped: u64,
    /// Pointer positions the session helper sent, and those a full ring made the collector drop.
    #[serde(default)]
    pub pointer_samples: u64,
    #[serde(default)]
    pub pointer_dropped: u64,
    pub capacity: u64,
    pub pending_bytes: u64,
    pub events_evdev: u64,
    pub events_ebpf: u64,
    pub events_replay: u64,
    pub frames_dropped: u64,
    pub evdev_dropped: u64,
    pub gaps_written: u64,
}

impl CaptureView {
    /// Reads the ring header at `ring` (and the agent's cursor) now.
    pub fn read(ring: &Path, cursor: &Path) -> CaptureView {
        match imprint_ring::reader::peek_stats(ring, cursor) {
            Ok(r) => CaptureView::from_stats(&r, pid_alive(r.collector_pid)),
            Err(imprint_ring::RingError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                // No ring: no collector has run since boot, so nothing is captured.
                CaptureView {
                    known: true,
                    error: Some(format!("no collector ring at {}", ring.display())),
                    ..CaptureView::default()
                }
            }
            Err(e @ imprint_ring::RingError::BadHeader { .. }) => {
                // Readable, but no collector writes there: nothing is captured.
                CaptureView {
                    known: true,
                    error: Some(e.to_string()),
                    ..CaptureView::default()
                }
            }
            Err(e) => CaptureView {
                known: false,
                error: Some(format!("the agent cannot read the collector's ring: {e}")),
                ..CaptureView::default()
            },
        }
    }

    /// The view of ring stats `r`, whose collector is (`alive`) or is not running.
    pub fn from_stats(r: &RingStats, alive: bool) -> CaptureView {
        let running = alive && !r.closed;
        CaptureView {
            known: true,
            capture_on: running && r.capture_on,
            collector_running: running,
            error: None,
            source: r.source.into(),
            devices: r.devices,
            collector_pid: r.collector_pid,
            epoch: r.epoch,
            helpers: r.helpers,
            scope_closed: r.scope_closed,
            reports_refused: r.reports_refused,
            reports_malformed: r.reports_malformed,
            helpers_lost: r.helpers_lost,
            scope_dropped: r.scope_dropped,
            pointer_samples: r.pointer_samples,
            pointer_dropped: r.pointer_dropped,
            capacity: r.capacity,
            pending_bytes: r.pending_bytes,
            events_evdev: r.events_evdev,
            events_ebpf: r.events_ebpf,
            events_replay: r.events_replay,
            frames_dropped: r.frames_dropped,
            evdev_dropped: r.evdev_dropped,
            gaps_written: r.gaps_written,
        }
    }
}

/// Whether process `pid` exists. It usually belongs to another user (the collector runs as
/// `imprint-collector`): `EPERM` from `kill(pid, 0)` means it exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if raw == 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_garbage_ring_is_off_and_an_unreadable_one_is_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = dir.path().join("ring");
        let cursor = dir.path().join("cursor");
        let v = CaptureView::read(&ring, &cursor);
        assert!(v.known && !v.capture_on, "{v:?}");
        std::fs::write(&ring, vec![0u8; 1 << 16]).expect("garbage");
        let v = CaptureView::read(&ring, &cursor);
        assert!(v.known && !v.capture_on && v.error.is_some(), "{v:?}");
        // Under a file rather than a directory: it cannot be looked at at all.
        let v = CaptureView::read(&ring.join("ring"), &cursor);
        assert!(!v.known && !v.capture_on && v.error.is_some(), "{v:?}");
    }

    #[test]
    fn capture_is_on_only_while_the_collector_runs_with_its_source_on() {
        let r = RingStats {
            capture_on: true,
            source: "evdev",
            collector_pid: std::process::id(),
            ..RingStats::default()
        };
        let v = CaptureView::from_stats(&r, pid_alive(r.collector_pid));
        assert!(v.capture_on && v.collector_running && v.source == "evdev");
        assert!(!CaptureView::from_stats(&r, false).capture_on);
        let closed = RingStats {
            closed: true,
            ..r.clone()
        };
        assert!(!CaptureView::from_stats(&closed, true).capture_on);
        // pid 1 belongs to another user for most callers: it still exists.
        assert!(pid_alive(1) && !pid_alive(0));
    }
}
