//! The durable spool: CRC-framed segments on disk, sealed with zstd on rotation, recovered
//! after a crash, trimmed by size and age, and (with recipients) encrypted to operator keys
//! before anything reaches the disk (see [`crypt`]).
//!
//! Payloads are opaque here (the agent writes capnp batches); the spool only guarantees that
//! what [`Spool::sync`] returned for is on disk, and that a torn write is found and cut.

pub mod crypt;
pub mod frame;
pub mod read;
pub mod rewrite;
pub mod sealed;
pub mod shipped;

pub use crypt::{CryptError, Identities, Recipients};
pub use read::{list_segments, read_segment, Item, SegmentFile};
pub use shipped::{is_shipped, mark_shipped, shipped_marker, spool_id};

use imprint_fsutil as fsutil;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Spool sizing and retention.
#[derive(Clone, Debug)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    /// An open segment is sealed once it reaches this size.
    pub segment_max_bytes: u64,
    /// Oldest sealed segments are deleted while the spool is larger than this.
    pub retention_max_bytes: u64,
    /// Sealed segments older than this are deleted.
    pub retention_max_age: Duration,
    pub zstd_level: i32,
    /// Operator keys everything is encrypted to; `None` writes plaintext.
    pub recipients: Option<Recipients>,
    /// Shipping is on: retention keeps what the store has not acknowledged while it can.
    pub keep_unshipped: bool,
}

/// A segment retention deleted.
#[derive(Debug)]
pub struct Removed {
    pub seg: SegmentFile,
    /// Whether the store had acknowledged it.
    pub shipped: bool,
}

impl SpoolOptions {
    /// Defaults for a spool in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        SpoolOptions {
            dir,
            segment_max_bytes: 16 << 20,
            retention_max_bytes: 1 << 30,
            retention_max_age: Duration::from_secs(7 * 24 * 3600),
            zstd_level: 3,
            recipients: None,
            keep_unshipped: false,
        }
    }
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is out of space ({path})")]
    NoSpace { path: PathBuf },
    #[error(transparent)]
    Crypt(#[from] CryptError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SpoolError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        if fsutil::is_out_of_space(&source) {
            SpoolError::NoSpace {
                path: path.to_owned(),
            }
        } else {
            SpoolError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }
}

/// What start-up recovery found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Payload of the newest intact frame: where the agent left off (`None` when it is
    /// encrypted: then [`Recovery::last_tag`] says).
    pub last_payload: Option<Vec<u8>>,
    /// Clear tag of the newest intact frame, when it is encrypted.
    pub last_tag: Option<Vec<u8>>,
    /// Plaintext sealed segments (from before encryption was configured) now encrypted.
    pub encrypted_segments: usize,
    /// Bytes cut from torn tails.
    pub torn_bytes: u64,
    /// Open segments found (and sealed) from a previous run.
    pub recovered_segments: usize,
}

struct OpenSegment {
    path: PathBuf,
    file: File,
    len: u64,
    synced: bool,
    /// Sequence number and clear tag of the newest frame (for the sealed header).
    last: (u64, Vec<u8>),
    /// The plaintext container, built as frames arrive (encrypted spools only).
    plain: Option<sealed::SealBuilder>,
}

/// The spool writer.
pub struct Spool {
    opts: SpoolOptions,
    open: Option<OpenSegment>,
    next_seq: u64,
    scratch: Vec<u8>,
}

impl Spool {
    /// Opens (creating 0700) the spool, recovering open segments left by a crash.
    pub fn open(opts: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        fsutil::ensure_private_dir(&opts.dir).map_err(|e| SpoolError::io(&opts.dir, e))?;
        let mut rec = Recovery::default();
        let mut spool = Spool {
            opts,
            open: None,
            next_seq: 1,
            scratch: Vec::new(),
        };
        spool.remove_temporaries();
        let segments =
            list_segments(&spool.opts.dir).map_err(|e| SpoolError::io(&spool.opts.dir, e))?;
        for seg in &segments {
            let sealed_twin = seg.path.with_extension(read::SEALED_SUFFIX);
            if !seg.sealed && sealed_twin.exists() {
                // Sealing finished (the rename is atomic) but the crash came before the open
                // file was removed: the sealed copy is complete, the open one a duplicate.
                std::fs::remove_file(&seg.path).map_err(|e| SpoolError::io(&seg.path, e))?;
                continue;
            }
            let mut last: Option<(u64, Vec<u8>)> = None;
            let mut torn_at = None;
            let mut last_tag: Option<(u64, Vec<u8>)> = None;
            read_segment(seg, None, |item| match item {
                Item::Frame { seq, payload } => last = Some((seq, payload)),
                Item::Locked { seq, tag, .. } => last_tag = seq.map(|s| (s, tag)),
                Item::TornTail { bytes, .. } => torn_at = Some(bytes),
                Item::Damaged { .. } => {}
            })
            .map_err(|e| SpoolError::io(&seg.path, e))?;
            // Plaintext frames read back: the segment is unencrypted.
            let plain_last_seq = last.as_ref().map(|(seq, _)| *seq);
            let plain_newer = match (&last, &last_tag) {
                (Some((p, _)), Some((t, _))) => p > t,
                (p, _) => p.is_some(),
            };
            if plain_newer {
                if let Some((seq, payload)) = last {
                    spool.next_seq = spool.next_seq.max(seq + 1);
                    rec.last_payload = Some(payload);
                    rec.last_tag = None;
                }
            } else if let Some((seq, tag)) = last_tag {
                spool.next_seq = spool.next_seq.max(seq + 1);
                rec.last_tag = Some(tag);
                rec.last_payload = None;
            }
            if !seg.sealed {
                rec.recovered_segments += 1;
                if let Some(bytes) = torn_at {
                    rec.torn_bytes += bytes;
                    truncate(&seg.path, seg.bytes - bytes)?;
                }
                spool.seal_file(&seg.path)?;
            } else if let Some(last_seq) = plain_last_seq {
                rec.encrypted_segments += spool.encrypt_sealed(seg, last_seq)? as usize;
            }
        }
        Ok((spool, rec))
    }

    /// Whether new data is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.opts.recipients.is_some()
    }

    /// True while a segment is open for appending (false: the next append starts one).
    pub fn has_open_segment(&self) -> bool {
        self.open.is_some()
    }

    /// The sequence number the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends one frame (not yet durable: see [`Spool::sync`]); returns its sequence number.
    /// On failure nothing partial is left behind.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        self.append_tagged(&[], payload)
    }

    /// Appends one frame with a clear `tag` that recovery returns even when the payload is
    /// encrypted (where to resume: never anything captured).
    pub fn append_tagged(&mut self, tag: &[u8], payload: &[u8]) -> Result<u64, SpoolError> {
        if self.open.is_none() {
            self.open = Some(self.create_segment()?);
        }
        let seq = self.next_seq;
        self.scratch.clear();
        match &self.opts.recipients {
            Some(r) => frame::encode(seq, &r.envelope(tag, payload)?, &mut self.scratch),
            None => frame::encode(seq, payload, &mut self.scratch),
        }
        let Some(seg) = self.open.as_mut() else {
            unreachable!("created above")
        };
        if let Err(e) = seg.file.write_all(&self.scratch) {
            // Cut whatever part of the frame reached the file, so the segment stays valid.
            let _ = seg.file.set_len(seg.len);
            return Err(SpoolError::io(&seg.path, e));
        }
        seg.len += self.scratch.len() as u64;
        seg.synced = false;
        seg.last = (seq, tag.to_vec());
        if let Some(plain) = seg.plain.as_mut() {
            self.scratch.clear();
            frame::encode(seq, payload, &mut self.scratch);
            if let Err(e) = plain.push(&self.scratch) {
                // The frame is on disk (encrypted); the segment is sealed from its frames.
                tracing::warn!(error = %e, "cannot compress the open segment; it will be sealed uncompressed");
                seg.plain = None;
            }
        }
        self.next_seq += 1;
        if seg.len >= self.opts.segment_max_bytes {
            // The frame is written; a failed seal (say, no room for the compressed copy)
            // leaves the segment open to be sealed later and must not undo that.
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "cannot seal the full segment yet; it stays open");
            }
        }
        Ok(seq)
    }

    /// Makes every appended frame durable.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some(seg) = self.open.as_mut() {
            if !seg.synced {
                seg.file
                    .sync_data()
                    .map_err(|e| SpoolError::io(&seg.path, e))?;
                seg.synced = true;
            }
        }
        Ok(())
    }

    /// Seals the open segment (fsyncing it first), so the next append starts a new one.
    pub fn rotate(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        if let Some(seg) = self.open.take() {
            let path = seg.path.clone();
            let sealed = match &seg.plain {
                Some(plain) => self.seal_from_memory(&path, plain, &seg.last),
                None => self.seal_file(&path),
            };
            if let Err(e) = sealed {
                // The open segment is intact and synced; keep appending to it and try later.
                self.open = Some(seg);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Total bytes of all segments.
    pub fn total_bytes(&self) -> u64 {
        list_segments(&self.opts.dir)
            .map(|s| s.iter().map(|s| s.bytes).sum())
            .unwrap_or(0)
    }

    /// Deletes the oldest sealed segments beyond the size and age limits (with shipping on and
    /// `make_room`: at least one, because a write failed for lack of space), and returns them.
    ///
    /// With `keep_unshipped`, age never deletes a segment the store has not acknowledged and
    /// size deletes shipped ones first; `on_unshipped` sees each unshipped segment just
    /// before it goes, so that the loss can be recorded.
    pub fn enforce_retention(
        &mut self,
        now: SystemTime,
        make_room: bool,
        mut on_unshipped: impl FnMut(&SegmentFile),
    ) -> Vec<Removed> {
        let Ok(segments) = list_segments(&self.opts.dir) else {
            return Vec::new();
        };
        let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
        let keep = self.opts.keep_unshipped;
        let mut sealed: Vec<(SegmentFile, bool)> = segments
            .into_iter()
            .filter(|s| s.sealed)
            .map(|s| {
                let shipped = shipped::is_shipped(&s);
                (s, shipped)
            })
            .collect();
        if keep {
            // Shipped ones first (each group oldest first): they are safe elsewhere.
            sealed.sort_by_key(|(s, shipped)| (!shipped, s.first_seq));
        }
        let mut removed = Vec::new();
        for (seg, shipped) in sealed {
            let too_old = std::fs::metadata(&seg.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.opts.retention_max_age)
                && (shipped || !keep);
            // Without shipping a full disk drops new input (counted) rather than old data.
            let room = make_room && keep && removed.is_empty();
            if total <= self.opts.retention_max_bytes && !too_old && !room {
                continue;
            }
            if keep && !shipped {
                on_unshipped(&seg);
            }
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(shipped::shipped_marker(&seg));
                    tracing::info!(segment = %seg.path.display(), bytes = seg.bytes, too_old, shipped, "retention removed segment");
                    total -= seg.bytes;
                    removed.push(Removed { seg, shipped });
                }
                Err(e) => {
                    tracing::warn!(segment = %seg.path.display(), error = %e, "retention could not remove segment")
                }
            }
        }
        removed
    }

    fn create_segment(&mut self) -> Result<OpenSegment, SpoolError> {
        let path = self.opts.dir.join(read::segment_name(self.next_seq, false));
        let file = fsutil::open_private_append(&path).map_err(|e| SpoolError::io(&path, e))?;
        fsutil::sync_dir(&self.opts.dir).map_err(|e| SpoolError::io(&self.opts.dir, e))?;
        Ok(OpenSegment {
            path,
            file,
            len: 0,
            synced: true,
            last: (0, Vec::new()),
            plain: self
                .opts
                .recipients
                .as_ref()
                .map(|_| sealed::SealBuilder::new(self.opts.zstd_level)),
        })
    }

    /// Seals an encrypted open segment from the plaintext container kept in memory.
    fn seal_from_memory(
        &mut self,
        open_path: &Path,
        plain: &sealed::SealBuilder,
        (last_seq, tag): &(u64, Vec<u8>),
    ) -> Result<(), SpoolError> {
        let container = plain.finish().map_err(|e| SpoolError::io(open_path, e))?;
        let bytes = match &self.opts.recipients {
            Some(r) => crypt::seal_envelope(r, *last_seq, tag, &container)?,
            None => container,
        };
        self.replace_open(open_path, &bytes)
    }

    /// Writes the sealed form of `open_path` and removes the open file.
    fn replace_open(&mut self, open_path: &Path, sealed_bytes: &[u8]) -> Result<(), SpoolError> {
        let sealed_path = open_path.with_extension(read::SEALED_SUFFIX);
        fsutil::write_atomic(&sealed_path, sealed_bytes, 0o600).map_err(|e| {
            let _ = std::fs::remove_file(sealed_path.with_extension("tmp"));
            SpoolError::io(&sealed_path, e)
        })?;
        std::fs::remove_file(open_path).map_err(|e| SpoolError::io(open_path, e))?;
        fsutil::sync_dir(&self.opts.dir).map_err(|e| SpoolError::io(&self.opts.dir, e))?;
        Ok(())
    }

    /// Encrypts a plaintext sealed segment (whose newest frame recovery read as `last_seq`)
    /// in place; false if there are no recipients or it is not a plaintext container.
    fn encrypt_sealed(&mut self, seg: &SegmentFile, last_seq: u64) -> Result<bool, SpoolError> {
        let Some(r) = &self.opts.recipients else {
            return Ok(false);
        };
        let data = std::fs::read(&seg.path).map_err(|e| SpoolError::io(&seg.path, e))?;
        if !data.starts_with(sealed::SEALED_MAGIC) {
            return Ok(false);
        }
        // The agent's tag was never stored for plaintext frames; recovery has already read
        // this segment's last payload in the clear, so only a later restart misses it.
        let bytes = crypt::seal_envelope(r, last_seq, &[], &data)?;
        fsutil::write_atomic(&seg.path, &bytes, 0o600).map_err(|e| SpoolError::io(&seg.path, e))?;
        fsutil::sync_dir(&self.opts.dir).map_err(|e| SpoolError::io(&self.opts.dir, e))?;
        Ok(true)
    }

    /// Compresses an open segment into its sealed form and removes the open file.
    fn seal_file(&mut self, open_path: &Path) -> Result<(), SpoolError> {
        let raw = std::fs::read(open_path).map_err(|e| SpoolError::io(open_path, e))?;
        if raw.is_empty() {
            std::fs::remove_file(open_path).map_err(|e| SpoolError::io(open_path, e))?;
            return Ok(());
        }
        let mut encrypted = false;
        let ends: Vec<usize> = frame::scan(&raw)
            .filter_map(|s| match s {
                frame::Scanned::Frame {
                    offset, payload, ..
                } => {
                    encrypted |= crypt::open_envelope(payload).is_some();
                    Some(offset + frame::FRAME_HEADER + payload.len())
                }
                _ => None,
            })
            .collect();
        if encrypted {
            // Left by a crash: this process cannot read it back to compress it, so its
            // encrypted frames become the sealed segment as they are.
            let sealed_path = open_path.with_extension(read::SEALED_SUFFIX);
            std::fs::rename(open_path, &sealed_path).map_err(|e| SpoolError::io(open_path, e))?;
            return fsutil::sync_dir(&self.opts.dir).map_err(|e| SpoolError::io(&self.opts.dir, e));
        }
        let container = sealed::seal(&raw, &ends, self.opts.zstd_level)
            .map_err(|e| SpoolError::io(open_path, e))?;
        let bytes = match &self.opts.recipients {
            Some(r) => crypt::seal_envelope(r, self.next_seq.saturating_sub(1), &[], &container)?,
            None => container,
        };
        self.replace_open(open_path, &bytes)
    }

    fn remove_temporaries(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.opts.dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), SpoolError> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| SpoolError::io(path, e))?;
    f.set_len(len).map_err(|e| SpoolError::io(path, e))?;
    f.sync_all().map_err(|e| SpoolError::io(path, e))
}

#[cfg(test)]
mod tests;
