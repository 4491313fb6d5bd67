//! Rewriting a sealed segment in place (for erasure): read every frame, or refuse; write the
//! replacement atomically, encrypted to today's recipients; forget that it was shipped.

use crate::crypt::{self, Identities, Recipients};
use crate::read::{read_segment, Item, SegmentFile};
use crate::{frame, sealed, shipped};
use imprint_fsutil as fsutil;

/// Why a segment cannot be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("{place}: encrypted to none of the given identities (pass --identity)")]
    Locked { place: String },
    #[error("{place}: {why}; refusing to rewrite a segment that cannot be read whole")]
    Damaged { place: String, why: String },
    #[error("{0} is still open: stop the agent (it seals it on exit) and try again")]
    Open(String),
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Every frame of a sealed segment, decrypted; any frame that cannot be read is an error.
pub fn read_all(
    seg: &SegmentFile,
    ids: Option<&Identities>,
) -> Result<Vec<(u64, Vec<u8>)>, RewriteError> {
    if !seg.sealed {
        return Err(RewriteError::Open(seg.path.display().to_string()));
    }
    let mut frames = Vec::new();
    let mut bad = None;
    read_segment(seg, ids, |item| match item {
        Item::Frame { seq, payload } => frames.push((seq, payload)),
        Item::Locked { place, .. } => {
            bad.get_or_insert(RewriteError::Locked { place });
        }
        Item::Damaged { place, why } => {
            bad.get_or_insert(RewriteError::Damaged { place, why });
        }
        Item::TornTail { place, .. } => {
            bad.get_or_insert(RewriteError::Damaged {
                place,
                why: "torn tail".into(),
            });
        }
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(frames),
    }
}

/// Replaces `seg` with `frames` (sealed, encrypted to `recipients` with the clear `tag` when
/// given) and removes its shipped marker; returns the object key the marker named, which now
/// holds content this machine no longer has.
pub fn replace_sealed(
    seg: &SegmentFile,
    frames: &[(u64, Vec<u8>)],
    recipients: Option<&Recipients>,
    zstd_level: i32,
    tag: &[u8],
) -> Result<Option<String>, RewriteError> {
    let mut b = sealed::SealBuilder::new(zstd_level);
    let mut scratch = Vec::new();
    for (seq, payload) in frames {
        scratch.clear();
        frame::encode(*seq, payload, &mut scratch);
        b.push(&scratch)?;
    }
    let container = b.finish()?;
    let bytes = match recipients {
        Some(r) => {
            let last = frames.last().map_or(seg.first_seq, |f| f.0);
            crypt::seal_envelope(r, last, tag, &container)?
        }
        None => container,
    };
    fsutil::write_atomic(&seg.path, &bytes, 0o600)?;
    let marker = shipped::shipped_marker(seg);
    let key = std::fs::read_to_string(&marker).ok();
    if key.is_some() {
        std::fs::remove_file(&marker)?;
    }
    if let Some(dir) = seg.path.parent() {
        fsutil::sync_dir(dir)?;
    }
    Ok(key)
}
