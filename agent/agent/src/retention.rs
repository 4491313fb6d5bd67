//! What retention costs when shipping is on: every segment the disk budget forces out before
//! the store acknowledged it becomes a gap record (stage `retention`), with its events and
//! times read from the segment itself, or from the clear tag of an encrypted one.

use imprint_record::codec::{decode_batch, BatchMeta};
use imprint_record::{Gap, Record, Stage, NO_DEVICE};
use imprint_spool::{read_segment, Item, SegmentFile};

/// A running summary of the open segment, stored in the clear beside every encrypted batch:
/// where to resume in the ring, and how many events over which times the segment holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentSummary {
    pub ring_epoch: u64,
    pub ring_seq_last: u64,
    pub from_ns: u64,
    pub to_ns: u64,
    pub events: u64,
}

const TAG_LEN: usize = 40;

impl SegmentSummary {
    /// Adds one batch (its events' time span and count) to the summary.
    pub fn add(&mut self, epoch: u64, seq_last: u64, (from, to): (u64, u64), events: u64) {
        self.ring_epoch = epoch;
        self.ring_seq_last = seq_last;
        if events > 0 {
            if self.events == 0 || from < self.from_ns {
                self.from_ns = from;
            }
            self.to_ns = self.to_ns.max(to);
        }
        self.events += events;
    }

    /// Adds one batch as written.
    pub fn add_batch(&mut self, meta: &BatchMeta, records: &[Record]) {
        let events = records
            .iter()
            .filter(|r| matches!(r, Record::Event(_)))
            .count() as u64;
        self.add(
            meta.ring_epoch,
            meta.ring_seq_last,
            time_span(records),
            events,
        );
    }

    /// The clear tag.
    pub fn to_tag(self) -> [u8; TAG_LEN] {
        let mut t = [0u8; TAG_LEN];
        for (i, v) in [
            self.ring_epoch,
            self.ring_seq_last,
            self.from_ns,
            self.to_ns,
            self.events,
        ]
        .into_iter()
        .enumerate()
        {
            t[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        t
    }

    /// Reads a clear tag back.
    pub fn from_tag(tag: &[u8]) -> Option<SegmentSummary> {
        if tag.len() != TAG_LEN {
            return None;
        }
        let v = |i: usize| u64::from_le_bytes(tag[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Some(SegmentSummary {
            ring_epoch: v(0),
            ring_seq_last: v(1),
            from_ns: v(2),
            to_ns: v(3),
            events: v(4),
        })
    }
}

/// The gap records for a segment about to be deleted unshipped: first one for its events
/// (stage `retention`), then the gap records it held, so no earlier loss leaves the accounting.
/// (An encrypted segment's own gap records cannot be read here; their counts stay in the
/// metrics.)
pub fn lost_segment_gaps(seg: &SegmentFile) -> Vec<Gap> {
    let mut held = Vec::new();
    let mut plain = SegmentSummary::default();
    let mut locked: Option<SegmentSummary> = None;
    let read = read_segment(seg, None, |item| match item {
        Item::Frame { payload, .. } => {
            if let Ok((meta, records)) = decode_batch(&payload) {
                plain.add_batch(&meta, &records);
                held.extend(records.iter().filter_map(|r| match r {
                    Record::Gap(g) => Some(*g),
                    _ => None,
                }));
            }
        }
        // Each tag summarises its segment so far: the newest one holds the whole.
        Item::Locked { tag, .. } => locked = SegmentSummary::from_tag(&tag).or(locked),
        Item::Damaged { .. } | Item::TornTail { .. } => {}
    });
    if let Err(e) = read {
        tracing::warn!(segment = %seg.path.display(), error = %e, "cannot read a segment retention deletes; its gap record has no count");
    }
    let s = locked.unwrap_or(plain);
    let mut gaps = vec![Gap {
        from_ns: s.from_ns,
        to_ns: s.to_ns,
        stage: Stage::Retention,
        count: s.events,
        device: NO_DEVICE,
    }];
    gaps.extend(held);
    gaps
}

/// The first and last event times among `records` ((0, 0) without events).
pub fn time_span(records: &[Record]) -> (u64, u64) {
    let times = records.iter().filter_map(|r| match r {
        Record::Event(e) => Some(e.mono_ns),
        _ => None,
    });
    let (mut lo, mut hi) = (u64::MAX, 0);
    for t in times {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if lo == u64::MAX {
        (0, 0)
    } else {
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_round_trips_and_spans_its_batches() {
        let mut s = SegmentSummary::default();
        s.add(3, 10, (0, 0), 0);
        s.add(3, 20, (500, 900), 4);
        s.add(3, 30, (1000, 1500), 2);
        assert_eq!(
            (s.from_ns, s.to_ns, s.events, s.ring_seq_last),
            (500, 1500, 6, 30)
        );
        assert_eq!(SegmentSummary::from_tag(&s.to_tag()), Some(s));
        assert_eq!(SegmentSummary::from_tag(b"short"), None);
    }
}
