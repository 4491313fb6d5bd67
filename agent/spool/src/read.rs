//! Reading a spool back (for `dump`, `verify`, recovery and export): every segment, open or
//! sealed, frame by frame, with damage reported by file and offset instead of stopping.

use super::frame::{self, Scanned};
use super::sealed::{self, Chunk};
use std::path::{Path, PathBuf};

/// Suffix of the segment being written.
pub const OPEN_SUFFIX: &str = "open";
/// Suffix of a sealed (compressed) segment.
pub const SEALED_SUFFIX: &str = "sealed";

/// A segment file in the spool directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub path: PathBuf,
    pub sealed: bool,
    /// Sequence number of its first frame (from the file name).
    pub first_seq: u64,
    pub bytes: u64,
}

/// The segment files in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let sealed = match ext {
            OPEN_SUFFIX => false,
            SEALED_SUFFIX => true,
            _ => continue,
        };
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(SegmentFile {
            path,
            sealed,
            first_seq,
            bytes,
        });
    }
    out.sort_by_key(|s| (s.first_seq, s.sealed));
    Ok(out)
}

/// File name of a segment starting at `first_seq`.
pub fn segment_name(first_seq: u64, sealed: bool) -> String {
    format!(
        "{first_seq:020}.{}",
        if sealed { SEALED_SUFFIX } else { OPEN_SUFFIX }
    )
}

/// One thing found while reading a segment.
#[derive(Debug)]
pub enum Item {
    Frame {
        seq: u64,
        payload: Vec<u8>,
    },
    /// Damage, located as precisely as the format allows.
    Damaged {
        place: String,
        why: String,
    },
    /// An open segment ends in a partial frame (a write torn by a crash).
    TornTail {
        place: String,
        bytes: u64,
    },
}

/// Reads every frame of `seg`, calling `f` for each item in order. Fails only when the file
/// cannot be read at all.
pub fn read_segment(seg: &SegmentFile, mut f: impl FnMut(Item)) -> std::io::Result<()> {
    let data = std::fs::read(&seg.path)?;
    let name = seg.path.display();
    if !seg.sealed {
        for s in frame::scan(&data) {
            f(match s {
                Scanned::Frame { seq, payload, .. } => Item::Frame {
                    seq,
                    payload: payload.to_vec(),
                },
                Scanned::Damaged { offset, len, why } => Item::Damaged {
                    place: format!("{name} at byte {offset} ({len} bytes)"),
                    why: why.into(),
                },
                Scanned::Truncated { offset } => Item::TornTail {
                    place: format!("{name} at byte {offset}"),
                    bytes: (data.len() - offset) as u64,
                },
            });
        }
        return Ok(());
    }
    let chunks = match sealed::open(&data) {
        Ok(c) => c,
        Err(why) => {
            f(Item::Damaged {
                place: format!("{name} at byte 0"),
                why,
            });
            return Ok(());
        }
    };
    for chunk in chunks {
        match chunk {
            Chunk::Damaged { offset, why } => f(Item::Damaged {
                place: format!("{name} chunk at byte {offset}"),
                why,
            }),
            Chunk::Data { offset, raw } => {
                for s in frame::scan(&raw) {
                    f(match s {
                        Scanned::Frame { seq, payload, .. } => Item::Frame {
                            seq,
                            payload: payload.to_vec(),
                        },
                        Scanned::Damaged { offset: o, why, .. } => Item::Damaged {
                            place: format!("{name} chunk at byte {offset}, frame at byte {o}"),
                            why: why.into(),
                        },
                        Scanned::Truncated { offset: o } => Item::Damaged {
                            place: format!("{name} chunk at byte {offset}, frame at byte {o}"),
                            why: "frame truncated inside a sealed chunk".into(),
                        },
                    });
                }
            }
        }
    }
    Ok(())
}
