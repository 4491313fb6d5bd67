//! Reading a spool back (for `dump`, `verify`, recovery and export): every segment, open or
//! sealed, frame by frame, with damage reported by file and offset instead of stopping.

use super::crypt::{self, CryptError, Identities};
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
    /// Encrypted data read without an identity: only where it is, and the frame's clear tag.
    Locked {
        /// The frame's sequence number (of a whole sealed file: its newest frame's).
        seq: Option<u64>,
        tag: Vec<u8>,
        place: String,
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

/// Reads every frame of `seg`, calling `f` for each item in order; encrypted data is
/// decrypted with `ids`, or reported [`Item::Locked`] without them. Fails only when the file
/// cannot be read at all.
///
/// The content says what a file holds, not its name: a sealed file is a compressed
/// container, that container as one age file, or (an encrypted segment recovered after a
/// crash, which the agent could not read back to compress) its frames as they were written.
pub fn read_segment(
    seg: &SegmentFile,
    ids: Option<&Identities>,
    mut f: impl FnMut(Item),
) -> std::io::Result<()> {
    let data = std::fs::read(&seg.path)?;
    let name = seg.path.display().to_string();
    if let Some((last_seq, tag, age_file)) = crypt::open_seal_envelope(&data) {
        let Some(ids) = ids else {
            f(Item::Locked {
                seq: Some(last_seq),
                tag: tag.to_vec(),
                place: name,
            });
            return Ok(());
        };
        let (plain, err) = ids.decrypt(age_file);
        if matches!(err, Some(CryptError::NoIdentity)) {
            f(Item::Locked {
                seq: Some(last_seq),
                tag: tag.to_vec(),
                place: name,
            });
            return Ok(());
        }
        read_container(&name, &plain, Some(ids), &mut f);
        if let Some(e) = err {
            f(Item::Damaged {
                place: format!("{name} (encrypted)"),
                why: e.to_string(),
            });
        }
        return Ok(());
    }
    if data.starts_with(sealed::SEALED_MAGIC) || (seg.sealed && !starts_with_frame(&data)) {
        read_container(&name, &data, ids, &mut f);
        return Ok(());
    }
    for s in frame::scan(&data) {
        match s {
            Scanned::Frame { seq, payload, .. } => {
                frame_item(&name, seq, payload, ids, &mut f);
            }
            Scanned::Damaged { offset, len, why } => f(Item::Damaged {
                place: format!("{name} at byte {offset} ({len} bytes)"),
                why: why.into(),
            }),
            Scanned::Truncated { offset } => f(Item::TornTail {
                place: format!("{name} at byte {offset}"),
                bytes: (data.len() - offset) as u64,
            }),
        }
    }
    Ok(())
}

fn starts_with_frame(data: &[u8]) -> bool {
    data.len() >= 4 && frame::u32_at(data, 0) == frame::FRAME_MAGIC
}

fn frame_item(
    name: &str,
    seq: u64,
    payload: &[u8],
    ids: Option<&Identities>,
    f: &mut impl FnMut(Item),
) {
    let Some((tag, age_file)) = crypt::open_envelope(payload) else {
        return f(Item::Frame {
            seq,
            payload: payload.to_vec(),
        });
    };
    let Some(ids) = ids else {
        return f(Item::Locked {
            seq: Some(seq),
            tag: tag.to_vec(),
            place: format!("{name} frame seq {seq}"),
        });
    };
    match ids.decrypt(age_file) {
        (plain, None) => f(Item::Frame {
            seq,
            payload: plain,
        }),
        (_, Some(CryptError::NoIdentity)) => f(Item::Locked {
            seq: Some(seq),
            tag: tag.to_vec(),
            place: format!("{name} frame seq {seq}"),
        }),
        (_, Some(e)) => f(Item::Damaged {
            place: format!("{name} frame seq {seq}"),
            why: e.to_string(),
        }),
    }
}

fn read_container(name: &str, data: &[u8], ids: Option<&Identities>, f: &mut impl FnMut(Item)) {
    let chunks = match sealed::open(data) {
        Ok(c) => c,
        Err(why) => {
            return f(Item::Damaged {
                place: format!("{name} at byte 0"),
                why,
            })
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
                    match s {
                        Scanned::Frame { seq, payload, .. } => {
                            frame_item(name, seq, payload, ids, f)
                        }
                        Scanned::Damaged { offset: o, why, .. } => f(Item::Damaged {
                            place: format!("{name} chunk at byte {offset}, frame at byte {o}"),
                            why: why.into(),
                        }),
                        Scanned::Truncated { offset: o } => f(Item::Damaged {
                            place: format!("{name} chunk at byte {offset}, frame at byte {o}"),
                            why: "frame truncated inside a sealed chunk".into(),
                        }),
                    }
                }
            }
        }
    }
}
