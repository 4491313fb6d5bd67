//! What has left the machine: a spool's stable id (part of every object key, so two spools
//! that both start at sequence 1 never collide) and one marker file per acknowledged segment.
//!
//! A marker is written only after the store acknowledged the whole object, and fsynced with
//! its directory, so it is as durable as the segment it names.

use crate::read::SegmentFile;
use imprint_fsutil as fsutil;
use std::path::{Path, PathBuf};

/// Suffix of the marker beside a shipped segment (`N.sealed.shipped`).
pub const SHIPPED_SUFFIX: &str = "shipped";
const ID_FILE: &str = "spool.id";

/// The marker file that says `seg` was acknowledged by the store.
pub fn shipped_marker(seg: &SegmentFile) -> PathBuf {
    let mut name = seg.path.as_os_str().to_owned();
    name.push(".");
    name.push(SHIPPED_SUFFIX);
    PathBuf::from(name)
}

/// Whether `seg` was acknowledged by the store.
pub fn is_shipped(seg: &SegmentFile) -> bool {
    shipped_marker(seg).exists()
}

/// Records durably that `seg` was acknowledged (under `key`, kept in the marker for audit).
pub fn mark_shipped(seg: &SegmentFile, key: &str) -> std::io::Result<()> {
    let marker = shipped_marker(seg);
    fsutil::write_atomic(&marker, key.as_bytes(), 0o600)?;
    if let Some(dir) = marker.parent() {
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the markers whose segment is gone (after retention or erasure).
pub fn remove_orphan_markers(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == SHIPPED_SUFFIX)
            && !path.with_extension("").exists()
        {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The spool's id: 128 random bits in hex, created (0600) the first time it is asked for.
pub fn spool_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if is_id(s.trim()) => return Ok(s.trim().to_owned()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a spool id", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    fsutil::write_atomic(&path, id.as_bytes(), 0o600)?;
    fsutil::sync_dir(dir)?;
    Ok(id)
}

fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::list_segments;

    #[test]
    fn markers_and_id_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let id = spool_id(dir.path()).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(spool_id(dir.path()).unwrap(), id, "the id is stable");
        std::fs::write(dir.path().join("00000000000000000001.sealed"), b"x").unwrap();
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(!is_shipped(&segs[0]));
        mark_shipped(&segs[0], "k").unwrap();
        assert!(is_shipped(&segs[0]));
        assert_eq!(
            list_segments(dir.path()).unwrap().len(),
            1,
            "a marker is no segment"
        );
        std::fs::remove_file(&segs[0].path).unwrap();
        assert_eq!(remove_orphan_markers(dir.path()).unwrap(), 1);
    }
}
