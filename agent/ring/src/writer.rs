//! The collector's side of the ring: writes frames, never blocks, never overwrites what the
//! agent has not committed.

use super::layout::{self, Cursor, RingHeader};
use super::{notify, RingError};
use imprint_fsutil as fsutil;
use memmap2::{Mmap, MmapMut, MmapOptions};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The frame did not fit: the ring is full (or the frame is larger than half the ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFull;

/// The single producer of a ring.
pub struct RingWriter {
    map: MmapMut,
    capacity: u64,
    write_pos: u64,
    next_seq: u64,
    cursor_path: PathBuf,
    cursor: Option<(Mmap, u64)>,
}

impl RingWriter {
    /// Creates a fresh ring at `path` (replacing any old one) with `capacity` bytes of frames.
    ///
    /// An old ring at the same path is marked closed first, so an agent still reading it
    /// drains it and moves to the new one. The new file gets `mode` (0640 in production).
    pub fn create(
        path: &Path,
        cursor_path: &Path,
        capacity: u64,
        mode: u32,
    ) -> Result<Self, RingError> {
        if !capacity.is_power_of_two() || !(4096..=1 << 30).contains(&capacity) {
            return Err(RingError::BadCapacity(capacity));
        }
        let io = |source| RingError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("new");
        let file = fsutil::create_with_mode(&tmp, mode).map_err(io)?;
        file.set_len(layout::HEADER_SIZE + capacity).map_err(io)?;
        // SAFETY: the file was just created by us and sized; other processes only ever map it.
        let map = unsafe { MmapOptions::new().map_mut(&file) }.map_err(io)?;
        let w = RingWriter {
            map,
            capacity,
            write_pos: 0,
            next_seq: 1,
            cursor_path: cursor_path.to_owned(),
            cursor: None,
        };
        let h = w.header();
        h.id.version.store(layout::VERSION, Ordering::Relaxed);
        h.id.header_size
            .store(layout::HEADER_SIZE as u32, Ordering::Relaxed);
        h.id.capacity.store(capacity, Ordering::Relaxed);
        h.id.epoch.store(new_epoch(), Ordering::Relaxed);
        h.id.collector_pid
            .store(std::process::id(), Ordering::Relaxed);
        h.producer.next_seq.store(1, Ordering::Relaxed);
        // The magic goes last so a reader never sees a half-initialised header as valid.
        h.id.magic.store(layout::MAGIC, Ordering::Release);
        mark_closed(path);
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(w)
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page aligned, and RingHeader is
        // made only of atomics, which are valid for any bit pattern and shared access.
        unsafe { &*(self.map.as_ptr() as *const RingHeader) }
    }

    /// The ring's epoch (identity of this incarnation).
    pub fn epoch(&self) -> u64 {
        self.header().id.epoch.load(Ordering::Relaxed)
    }

    /// Counters shared with readers of the ring header.
    pub fn counters(&self) -> &layout::CollectorCounters {
        &self.header().counters
    }

    /// The session socket's counters.
    pub fn session_counters(&self) -> &layout::SessionCounters {
        &self.header().sessions
    }

    /// Free bytes, as far as the writer can tell.
    pub fn free_bytes(&mut self) -> u64 {
        self.refresh_cursor();
        self.free_with_cached_cursor()
    }

    fn free_with_cached_cursor(&self) -> u64 {
        match self.committed_read_pos() {
            Some(rp) => self.capacity - (self.write_pos - rp),
            None => 0,
        }
    }

    /// Writes one frame without publishing it; returns its sequence number.
    pub fn try_push(&mut self, payload: &[u8]) -> Result<u64, RingFull> {
        self.try_push_leaving(payload, 0)
    }

    /// Like [`RingWriter::try_push`], but refuses unless `reserve` bytes stay free after the
    /// frame, so a later gap record always has room.
    pub fn try_push_leaving(&mut self, payload: &[u8], reserve: u64) -> Result<u64, RingFull> {
        let need = layout::frame_size(payload.len());
        if need > self.capacity / 2 {
            return Err(RingFull);
        }
        let off = self.write_pos % self.capacity;
        let contiguous = self.capacity - off;
        let pad = if need > contiguous { contiguous } else { 0 };
        let want = pad + need + reserve;
        // The cursor file is only re-checked (a stat) when the cached view says "full".
        if want > self.free_with_cached_cursor() && want > self.free_bytes() {
            return Err(RingFull);
        }
        let data = &mut self.map[layout::HEADER_SIZE as usize..];
        if pad > 0 {
            let o = off as usize;
            data[o..o + 4].copy_from_slice(&layout::WRAP_MARKER.to_le_bytes());
        }
        let start = ((self.write_pos + pad) % self.capacity) as usize;
        let seq = self.next_seq;
        let seq_bytes = seq.to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&seq_bytes), payload);
        data[start..start + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        data[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        data[start + 8..start + 16].copy_from_slice(&seq_bytes);
        data[start + 16..start + 16 + payload.len()].copy_from_slice(payload);
        self.write_pos += pad + need;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Makes every pushed frame visible to the reader and wakes it if it sleeps.
    pub fn publish(&mut self) {
        let h = self.header();
        if h.producer.write_pos.load(Ordering::Relaxed) == self.write_pos {
            return;
        }
        h.producer.next_seq.store(self.next_seq, Ordering::Relaxed);
        h.producer.write_pos.store(self.write_pos, Ordering::SeqCst);
        h.producer.notify.fetch_add(1, Ordering::SeqCst);
        if self.cursor.is_none() {
            self.refresh_cursor();
        }
        // Without a cursor to look at, wake anyway: a lost wake-up stalls the agent.
        let asleep = self
            .cursor
            .as_ref()
            .map(|(m, _)| cursor_of(m).waiting.load(Ordering::SeqCst) != 0)
            .unwrap_or(true);
        if asleep {
            notify::wake_all(&self.header().producer.notify);
        }
    }

    /// Marks this ring closed (collector shutting down) and wakes the reader.
    pub fn close(&mut self) {
        self.publish();
        let h = self.header();
        h.producer.closed.store(1, Ordering::SeqCst);
        h.producer.notify.fetch_add(1, Ordering::SeqCst);
        notify::wake_all(&h.producer.notify);
    }

    /// The agent's committed read position for this epoch, validated as untrusted input;
    /// `None` when it is out of range (the ring is then treated as full).
    fn committed_read_pos(&self) -> Option<u64> {
        let epoch = self.epoch();
        let rp = match &self.cursor {
            Some((m, _)) => {
                let c = cursor_of(m);
                if c.magic.load(Ordering::Acquire) == layout::CURSOR_MAGIC
                    && c.epoch.load(Ordering::Acquire) == epoch
                {
                    c.read_pos.load(Ordering::Acquire)
                } else {
                    0
                }
            }
            None => 0,
        };
        (rp <= self.write_pos && self.write_pos - rp <= self.capacity).then_some(rp)
    }

    /// (Re)maps the agent's cursor file when it appears or is replaced.
    fn refresh_cursor(&mut self) {
        let Ok(meta) = std::fs::metadata(&self.cursor_path) else {
            self.cursor = None;
            return;
        };
        if self.cursor.as_ref().map(|(_, ino)| *ino) == Some(meta.ino()) {
            return;
        }
        if meta.len() < layout::CURSOR_SIZE {
            self.cursor = None;
            return;
        }
        self.cursor = File::open(&self.cursor_path).ok().and_then(|f| {
            // SAFETY: read-only map of a file we never write; contents are validated on use.
            unsafe { MmapOptions::new().len(layout::CURSOR_SIZE as usize).map(&f) }
                .ok()
                .map(|m| (m, meta.ino()))
        });
    }
}

pub(super) fn cursor_of(m: &[u8]) -> &Cursor {
    // SAFETY: callers map at least CURSOR_SIZE bytes, page aligned; Cursor is all atomics.
    unsafe { &*(m.as_ptr() as *const Cursor) }
}

/// Marks an existing ring at `path` as closed so its reader moves on.
fn mark_closed(path: &Path) {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return;
    };
    if f.metadata()
        .map(|m| m.len() < layout::HEADER_SIZE)
        .unwrap_or(true)
    {
        return;
    }
    // SAFETY: we only touch atomics in the header of a file at least HEADER_SIZE long.
    if let Ok(m) = unsafe {
        MmapOptions::new()
            .len(layout::HEADER_SIZE as usize)
            .map_mut(&f)
    } {
        let h = unsafe { &*(m.as_ptr() as *const RingHeader) };
        if h.id.magic.load(Ordering::Acquire) == layout::MAGIC {
            h.producer.closed.store(1, Ordering::SeqCst);
            h.producer.notify.fetch_add(1, Ordering::SeqCst);
            notify::wake_all(&h.producer.notify);
        }
    }
}

/// A value that differs between ring incarnations, even across reboots.
fn new_epoch() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ (u64::from(std::process::id()) << 48)
}
