//! Walks a whole spool in order, decoding batches and reporting every kind of damage, for
//! `dump` and `verify` alike.

use imprint_record::codec::{decode_batch, BatchMeta};
use imprint_record::Record;
use imprint_spool::{list_segments, read_segment, Identities, Item};
use std::path::Path;

/// What the walk found, in spool order.
pub enum Found {
    /// A segment starts.
    Segment { sealed: bool },
    /// A good batch.
    Batch {
        meta: BatchMeta,
        records: Vec<Record>,
    },
    /// Bytes that are not a valid frame, or a frame whose batch does not decode.
    Damaged { place: String, why: String },
    /// An open segment ends mid-frame (a crash; the agent cuts it at its next start).
    TornTail { place: String, bytes: u64 },
    /// Frame sequence numbers are missing between two good frames.
    Missing { after: u64, before: u64 },
    /// Encrypted data, and no identity that opens it.
    Locked { place: String },
}

/// Calls `f` for everything in the spool at `dir`, oldest first, decrypting with `ids`.
pub fn walk(dir: &Path, ids: Option<&Identities>, mut f: impl FnMut(Found)) -> anyhow::Result<()> {
    let segments = list_segments(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let mut last_seq: Option<u64> = None;
    for seg in segments {
        f(Found::Segment { sealed: seg.sealed });
        let name = seg.path.display().to_string();
        read_segment(&seg, ids, |item| match item {
            Item::Frame { seq, payload } => {
                if let Some(prev) = last_seq {
                    if seq > prev + 1 {
                        f(Found::Missing {
                            after: prev,
                            before: seq,
                        });
                    }
                }
                last_seq = Some(seq);
                match decode_batch(&payload) {
                    Ok((meta, records)) => f(Found::Batch { meta, records }),
                    Err(e) => f(Found::Damaged {
                        place: format!("{name} frame seq {seq}"),
                        why: format!("batch does not decode: {e}"),
                    }),
                }
            }
            Item::Locked { place, .. } => {
                // Continuity cannot be checked across what cannot be read.
                last_seq = None;
                f(Found::Locked { place })
            }
            Item::Damaged { place, why } => f(Found::Damaged { place, why }),
            Item::TornTail { place, bytes } => f(Found::TornTail { place, bytes }),
        })
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    Ok(())
}
