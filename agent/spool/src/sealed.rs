//! The sealed segment container: independent zstd chunks, each with its own length and CRC,
//! so damage to a sealed file costs one chunk and is located to a byte offset.
//!
//! `IMPRSEAL | version u32 | reserved u32` then chunks of
//! `"IMPC" | compressed_len u32 | crc32c(compressed) u32 | raw_len u32 | zstd frame`.

use super::frame::u32_at;

/// File magic of a sealed segment.
pub const SEALED_MAGIC: &[u8; 8] = b"IMPRSEAL";
/// Container version.
pub const SEALED_VERSION: u32 = 1;
/// Chunk magic.
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"IMPC");
const FILE_HEADER: usize = 16;
const CHUNK_HEADER: usize = 16;
/// Raw bytes per chunk before compression (whole frames, so a chunk may be a little larger).
pub const CHUNK_RAW: usize = 256 << 10;
const MAX_RAW: usize = 128 << 20;

/// Compresses the frames of an open segment into the sealed container.
///
/// `frame_ends` are the offsets where frames end; chunks split only there, so each chunk
/// decompresses to whole frames.
pub fn seal(raw: &[u8], frame_ends: &[usize], level: i32) -> std::io::Result<Vec<u8>> {
    let mut b = SealBuilder::new(level);
    let mut start = 0;
    for &end in frame_ends {
        b.push(&raw[start..end])?;
        start = end;
    }
    if start < raw.len() {
        b.push(&raw[start..])?;
    }
    b.finish()
}

/// The sealed container built frame by frame while a segment is written, compressing each
/// chunk as it fills: an encrypted spool cannot read its open segment back to seal it, so it
/// keeps this (about a quarter of the segment) in memory instead.
pub struct SealBuilder {
    out: Vec<u8>,
    pending: Vec<u8>,
    level: i32,
}

impl SealBuilder {
    /// An empty container.
    pub fn new(level: i32) -> SealBuilder {
        let mut out = Vec::new();
        out.extend_from_slice(SEALED_MAGIC);
        out.extend_from_slice(&SEALED_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        SealBuilder {
            out,
            pending: Vec::new(),
            level,
        }
    }

    /// Adds whole frames (encoded); a chunk is compressed once it holds [`CHUNK_RAW`] bytes.
    pub fn push(&mut self, frames: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(frames);
        if self.pending.len() >= CHUNK_RAW {
            push_chunk(&self.pending, self.level, &mut self.out)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// The finished container (the builder stays usable, so a failed write can be retried).
    pub fn finish(&self) -> std::io::Result<Vec<u8>> {
        let mut out = self.out.clone();
        if !self.pending.is_empty() {
            push_chunk(&self.pending, self.level, &mut out)?;
        }
        Ok(out)
    }

    /// Bytes held in memory.
    pub fn held_bytes(&self) -> usize {
        self.out.len() + self.pending.len()
    }
}

fn push_chunk(chunk: &[u8], level: i32, out: &mut Vec<u8>) -> std::io::Result<()> {
    let z = zstd::bulk::compress(chunk, level)?;
    out.extend_from_slice(&CHUNK_MAGIC.to_le_bytes());
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&z).to_le_bytes());
    out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
    Ok(())
}

/// One chunk of a sealed file, decompressed, or the damage found instead.
#[derive(Debug)]
pub enum Chunk {
    Data { offset: usize, raw: Vec<u8> },
    Damaged { offset: usize, why: String },
}

/// Reads every chunk of a sealed file; a bad file header is an error for the whole file.
pub fn open(data: &[u8]) -> Result<Vec<Chunk>, String> {
    if data.len() < FILE_HEADER || &data[..8] != SEALED_MAGIC {
        return Err("not a sealed imprint segment (bad file magic)".into());
    }
    let version = u32_at(data, 8);
    if version != SEALED_VERSION {
        return Err(format!("sealed segment version {version} is not supported"));
    }
    let mut chunks = Vec::new();
    let mut pos = FILE_HEADER;
    while pos < data.len() {
        match check_chunk(data, pos) {
            Ok((z, raw_len)) => {
                let next = pos + CHUNK_HEADER + z.len();
                match zstd::bulk::decompress(z, raw_len) {
                    Ok(raw) if raw.len() == raw_len => {
                        chunks.push(Chunk::Data { offset: pos, raw })
                    }
                    Ok(_) => chunks.push(Chunk::Damaged {
                        offset: pos,
                        why: "chunk length mismatch".into(),
                    }),
                    Err(e) => chunks.push(Chunk::Damaged {
                        offset: pos,
                        why: format!("zstd: {e}"),
                    }),
                }
                pos = next;
            }
            Err(why) => {
                chunks.push(Chunk::Damaged {
                    offset: pos,
                    why: why.into(),
                });
                let magic = CHUNK_MAGIC.to_le_bytes();
                pos = (pos + 1..data.len().saturating_sub(CHUNK_HEADER - 1))
                    .filter(|&i| data[i..i + 4] == magic)
                    .find(|&i| check_chunk(data, i).is_ok())
                    .unwrap_or(data.len());
            }
        }
    }
    Ok(chunks)
}

fn check_chunk(data: &[u8], pos: usize) -> Result<(&[u8], usize), &'static str> {
    let d = &data[pos..];
    if d.len() < CHUNK_HEADER {
        return Err("truncated chunk header");
    }
    if u32_at(d, 0) != CHUNK_MAGIC {
        return Err("bad chunk magic");
    }
    let clen = u32_at(d, 4) as usize;
    let raw_len = u32_at(d, 12) as usize;
    if clen > d.len() - CHUNK_HEADER || raw_len > MAX_RAW {
        return Err("chunk length out of range");
    }
    let z = &d[CHUNK_HEADER..CHUNK_HEADER + clen];
    if crc32c::crc32c(z) != u32_at(d, 8) {
        return Err("chunk CRC mismatch");
    }
    Ok((z, raw_len))
}
