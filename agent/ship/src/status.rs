//! The shipper's counters, in `ship.status.json` beside the agent's status file, for
//! `imprint status --prometheus`. Counters carry over from the file a shipper finds at start,
//! so one-off `imprint ship` runs and the agent's shipper add to the same totals.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ShipStatus {
    /// Bytes the store acknowledged (a segment found already present adds nothing).
    pub upload_bytes_total: u64,
    /// Segment uploads that failed (each failed attempt counts once).
    pub upload_failures_total: u64,
    /// Segments acknowledged and marked shipped.
    pub segments_shipped_total: u64,
    /// Sealed bytes not yet shipped, at the end of the last pass.
    pub backlog_bytes: u64,
    pub backlog_segments: u64,
    /// The last pass's first error, if it had one (no credentials, no contents).
    pub last_error: Option<String>,
    /// When this was written, Unix seconds.
    pub updated_unix: u64,
}

/// The ship status file beside the agent's status file.
pub fn status_path(agent_status: &Path) -> PathBuf {
    agent_status.with_file_name("ship.status.json")
}

impl ShipStatus {
    pub fn read(path: &Path) -> Option<ShipStatus> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        imprint_fsutil::write_atomic(path, &bytes, 0o644)
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        one(
            "imprint_upload_bytes_total",
            "counter",
            "Segment bytes acknowledged by the object store.",
            self.upload_bytes_total,
        );
        one(
            "imprint_upload_failures_total",
            "counter",
            "Segment uploads that failed.",
            self.upload_failures_total,
        );
        one(
            "imprint_ship_backlog_bytes",
            "gauge",
            "Sealed spool bytes not yet shipped.",
            self.backlog_bytes,
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_renders() {
        let dir = tempfile::tempdir().unwrap();
        let p = status_path(&dir.path().join("agent.status.json"));
        let st = ShipStatus {
            upload_bytes_total: 10,
            upload_failures_total: 2,
            backlog_bytes: 5,
            ..Default::default()
        };
        st.write(&p).unwrap();
        assert_eq!(ShipStatus::read(&p), Some(st.clone()));
        let text = st.prometheus();
        assert!(text.contains("imprint_upload_bytes_total 10\n"));
        assert!(text.contains("imprint_upload_failures_total 2\n"));
        assert!(text.contains("imprint_ship_backlog_bytes 5\n"));
    }
}
