//! Spool frame encoding: `magic | len | crc32c | seq | payload`, with a reader that checks
//! every frame and resynchronises past damage instead of giving up on the rest of a file.

/// "IMPF": the start of every spool frame.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"IMPF");
/// `magic | len | crc | seq`.
pub const FRAME_HEADER: usize = 20;
/// No single batch may be larger than this; a bigger length is damage.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Appends one frame to `out`.
pub fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let seq_bytes = seq.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&seq_bytes), payload);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq_bytes);
    out.extend_from_slice(payload);
}

/// One item found while scanning frames.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned<'a> {
    Frame {
        offset: usize,
        seq: u64,
        payload: &'a [u8],
    },
    /// Bytes `offset..offset + len` are not a valid frame.
    Damaged {
        offset: usize,
        len: usize,
        why: &'static str,
    },
    /// A frame starting at `offset` runs past the end of the data (a torn write).
    Truncated { offset: usize },
}

/// Scans `data` frame by frame.
pub fn scan(data: &[u8]) -> Scanner<'_> {
    Scanner { data, pos: 0 }
}

/// Iterator over the frames in a buffer; see [`scan`].
pub struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn check_at(&self, at: usize) -> Result<(u64, usize), (&'static str, bool)> {
        let d = &self.data[at..];
        if d.len() < FRAME_HEADER {
            return Err(("short header", true));
        }
        if u32_at(d, 0) != FRAME_MAGIC {
            return Err(("bad frame magic", false));
        }
        let len = u32_at(d, 4) as usize;
        if len > MAX_PAYLOAD {
            return Err(("frame length out of range", false));
        }
        if d.len() < FRAME_HEADER + len {
            return Err(("frame runs past end of data", true));
        }
        let crc = u32_at(d, 8);
        if crc32c::crc32c(&d[12..FRAME_HEADER + len]) != crc {
            return Err(("frame CRC mismatch", false));
        }
        let seq = u64::from_le_bytes(d[12..20].try_into().unwrap_or_default());
        Ok((seq, len))
    }

    /// The next offset after `from` where a valid frame starts, if any.
    fn resync(&self, from: usize) -> Option<usize> {
        let magic = FRAME_MAGIC.to_le_bytes();
        (from..self.data.len().saturating_sub(FRAME_HEADER - 1))
            .filter(|&i| self.data[i..i + 4] == magic)
            .find(|&i| self.check_at(i).is_ok())
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Scanned<'a>;

    fn next(&mut self) -> Option<Scanned<'a>> {
        if self.pos >= self.data.len() {
            return None;
        }
        let at = self.pos;
        match self.check_at(at) {
            Ok((seq, len)) => {
                self.pos = at + FRAME_HEADER + len;
                Some(Scanned::Frame {
                    offset: at,
                    seq,
                    payload: &self.data[at + FRAME_HEADER..self.pos],
                })
            }
            Err((why, runs_out)) => match self.resync(at + 1) {
                Some(next) => {
                    self.pos = next;
                    Some(Scanned::Damaged {
                        offset: at,
                        len: next - at,
                        why,
                    })
                }
                None => {
                    self.pos = self.data.len();
                    Some(if runs_out {
                        Scanned::Truncated { offset: at }
                    } else {
                        Scanned::Damaged {
                            offset: at,
                            len: self.data.len() - at,
                            why,
                        }
                    })
                }
            },
        }
    }
}

pub(crate) fn u32_at(d: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[off..off + 4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode(i as u64 + 1, p, &mut out);
        }
        out
    }

    proptest! {
        /// Any prefix of a valid stream (a crash mid-write) yields exactly the complete frames
        /// before the cut, then at most one Truncated marker, never a false frame.
        #[test]
        fn torn_tail_yields_complete_frames_only(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
            cut_frac in 0.0f64..=1.0,
        ) {
            let data = frames(&payloads);
            let cut = (data.len() as f64 * cut_frac) as usize;
            let got: Vec<_> = scan(&data[..cut]).collect();
            let mut ends = 0;
            let mut complete = 0;
            for p in &payloads {
                let e = ends + FRAME_HEADER + p.len();
                if e <= cut { complete += 1; ends = e; } else { break; }
            }
            let frames: Vec<_> = got.iter().filter_map(|s| match s {
                Scanned::Frame { seq, payload, .. } => Some((*seq, payload.to_vec())),
                _ => None,
            }).collect();
            let want: Vec<_> = payloads.iter().take(complete).enumerate().map(|(i, p)| (i as u64 + 1, p.clone())).collect();
            prop_assert_eq!(frames, want);
            prop_assert!(got.len() <= complete + 1);
            if cut > ends {
                prop_assert_eq!(got.last(), Some(&Scanned::Truncated { offset: ends }));
            }
        }

        /// A flipped byte damages at most the frame it is in: every other frame is still read.
        #[test]
        fn flipped_byte_damages_one_frame(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 2..12),
            pick in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut data = frames(&payloads);
            let at = pick.index(data.len());
            data[at] ^= 1 << bit;
            let seqs: Vec<u64> = scan(&data).filter_map(|s| match s {
                Scanned::Frame { seq, .. } => Some(seq),
                _ => None,
            }).collect();
            prop_assert!(seqs.len() + 1 >= payloads.len(), "lost more than one frame: {:?}", seqs);
            prop_assert!(scan(&data).any(|s| !matches!(s, Scanned::Frame { .. })), "damage went unnoticed");
        }
    }
}
