//! Counters the agent exposes: a JSON snapshot beside the ring for `imprint status`, and the
//! same numbers in Prometheus text format.

use imprint_ring::RingStats;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// The agent's counters, written after every fsync and at exit.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentStats {
    pub level: String,
    pub ring_epoch: u64,
    pub events_written: u64,
    pub records_written: u64,
    pub batches_written: u64,
    pub syncs: u64,
    pub dropped_policy: u64,
    pub dropped_disk: u64,
    /// Disk drops whose gap record is not yet on disk (the disk is still full).
    pub dropped_disk_pending: u64,
    pub ring_corrupt_frames: u64,
    pub spool_torn_bytes: u64,
    pub spool_bytes: u64,
    /// Whether the spool is encrypted to operator keys (and to how many).
    #[serde(default)]
    pub spool_encrypted: bool,
    #[serde(default)]
    pub spool_recipients: u64,
    /// Events in unshipped segments that the disk budget forced retention to delete.
    #[serde(default)]
    pub dropped_retention: u64,
    #[serde(default)]
    pub retention_unshipped_segments: u64,
    pub updated_unix_ms: u64,
}

impl AgentStats {
    /// Writes the snapshot atomically (0640: the operator's group may read it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        imprint_fsutil::write_atomic(path, &json, 0o640)
    }

    /// Reads a snapshot.
    pub fn read(path: &Path) -> std::io::Result<AgentStats> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }
}

/// Prometheus text exposition, built one metric family at a time.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    /// Adds a family (`kind` is `counter` or `gauge`) with its labelled samples.
    pub fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(self.0, "{name}{labels} {v}");
        }
    }

    /// Adds a family with one unlabelled sample.
    pub fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help, &[("", v)]);
    }

    /// The text, ready to serve.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Renders collector and agent counters in Prometheus text exposition format; `dropped_more`
/// adds loss stages counted elsewhere (the kernel's, for eBPF) to the one loss family.
pub fn prometheus(
    ring: Option<&RingStats>,
    agent: Option<&AgentStats>,
    dropped_more: &[(&str, u64)],
) -> String {
    let mut out = Exposition::default();
    if let Some(r) = ring {
        out.family(
            "imprint_events_captured_total",
            "counter",
            "Input events captured, by source.",
            &[
                ("{source=\"evdev\"}", r.events_evdev),
                ("{source=\"ebpf\"}", r.events_ebpf),
                ("{source=\"replay\"}", r.events_replay),
            ],
        );
        out.one(
            "imprint_ring_pending_bytes",
            "gauge",
            "Bytes in the ring not yet committed by the agent.",
            r.pending_bytes,
        );
        out.one(
            "imprint_ring_capacity_bytes",
            "gauge",
            "Size of the ring's frame area.",
            r.capacity,
        );
        out.one(
            "imprint_capture_on",
            "gauge",
            "1 while capture is on.",
            u64::from(r.capture_on),
        );
    }
    let mut dropped: Vec<(&str, u64)> = dropped_more.to_vec();
    if let Some(r) = ring {
        dropped.push(("{stage=\"ring_full\"}", r.frames_dropped));
        dropped.push(("{stage=\"evdev_syn_dropped\"}", r.evdev_dropped));
    }
    if let Some(a) = agent {
        dropped.push(("{stage=\"policy\"}", a.dropped_policy));
        dropped.push(("{stage=\"disk\"}", a.dropped_disk));
        dropped.push(("{stage=\"ring_corrupt\"}", a.ring_corrupt_frames));
        dropped.push(("{stage=\"retention\"}", a.dropped_retention));
    }
    out.family(
        "imprint_events_dropped_total",
        "counter",
        "Events lost, by pipeline stage.",
        &dropped,
    );
    if let Some(a) = agent {
        out.one(
            "imprint_events_written_total",
            "counter",
            "Input events written to the spool.",
            a.events_written,
        );
        out.one(
            "imprint_spool_bytes",
            "gauge",
            "Bytes in spool segments.",
            a.spool_bytes,
        );
        out.one(
            "imprint_spool_encrypted",
            "gauge",
            "1 when the spool is encrypted to operator keys (0: plaintext on disk).",
            u64::from(a.spool_encrypted),
        );
    }
    out.finish()
}
