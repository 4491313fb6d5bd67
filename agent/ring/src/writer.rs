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
    /// Newest record time pushed, published with the frames (see `Producer::last_mono_ns`).
    last_mono_ns: u64,
    cursor_path: PathBuf,
    cursor: Option<(Mmap, u64)>,
    /// Held for the writer's lifetime with an exclusive lock: a collector that finds the ring
    /// locked knows its writer is still alive and must not write into it too.
    _file: File,
}

/// How [`RingWriter::open`] came by its ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingStart {
    /// A new ring. `replaced` is the (epoch, last published sequence) of the ring it took the
    /// place of, when there was a readable one; `why` says why that one was not continued.
    Created {
        replaced: Option<(u64, u64)>,
        why: Option<String>,
    },
    /// The previous collector's ring, continued where it left off: what the agent had not yet
    /// read of it is still there. `crashed` when that collector never closed it, in which case
    /// what it held in memory from `last_mono_ns` on is lost.
    Continued { crashed: bool, last_mono_ns: u64 },
}

impl RingWriter {
    /// Continues the ring at `path` when it is a sound ring of this capacity that no live
    /// writer holds, so that nothing published into it is lost across a collector restart;
    /// otherwise creates a fresh one in its place (see [`RingWriter::create`]).
    pub fn open(
        path: &Path,
        cursor_path: &Path,
        capacity: u64,
        mode: u32,
    ) -> Result<(Self, RingStart), RingError> {
        match Self::continue_existing(path, cursor_path, capacity) {
            Ok(Some(continued)) => Ok(continued),
            Ok(None) => Ok((
                Self::create(path, cursor_path, capacity, mode)?,
                RingStart::Created {
                    replaced: None,
                    why: None,
                },
            )),
            Err(why) => {
                let w = Self::create(path, cursor_path, capacity, mode)?;
                let replaced = w.replaced();
                Ok((
                    w,
                    RingStart::Created {
                        replaced,
                        why: Some(why),
                    },
                ))
            }
        }
    }

    /// `Ok(None)`: there is no ring at `path`. `Err(why)`: there is one that cannot be
    /// continued.
    fn continue_existing(
        path: &Path,
        cursor_path: &Path,
        capacity: u64,
    ) -> Result<Option<(Self, RingStart)>, String> {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let meta = file.metadata().map_err(|e| e.to_string())?;
        // Only a ring this user wrote, that nobody else may write, is trusted to continue.
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
            return Err("it is not owned and writable by this user alone".into());
        }
        if meta.len() != layout::HEADER_SIZE + capacity {
            return Err(format!(
                "its size {} does not match the capacity {capacity}",
                meta.len()
            ));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err("another collector is still writing it".into())
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("cannot lock it: {e}")),
        }
        // SAFETY: a file this user owns and has locked; other processes only map it read-only.
        let map = unsafe { MmapOptions::new().map_mut(&file) }.map_err(|e| e.to_string())?;
        let h = header_of(&map);
        if h.id.magic.load(Ordering::Acquire) != layout::MAGIC
            || h.id.version.load(Ordering::Relaxed) != layout::VERSION
            || u64::from(h.id.header_size.load(Ordering::Relaxed)) != layout::HEADER_SIZE
            || h.id.capacity.load(Ordering::Relaxed) != capacity
        {
            return Err("its header is not a ring of this version and capacity".into());
        }
        let write_pos = h.producer.write_pos.load(Ordering::Acquire);
        let next_seq = h.producer.next_seq.load(Ordering::Acquire);
        if !write_pos.is_multiple_of(layout::ALIGN) || next_seq == 0 {
            return Err("its write position is damaged".into());
        }
        let crashed = h.producer.closed.load(Ordering::Acquire) == 0;
        let last_mono_ns = h.producer.last_mono_ns.load(Ordering::Relaxed);
        h.id.collector_pid
            .store(std::process::id(), Ordering::Relaxed);
        h.producer.continued.fetch_add(1, Ordering::Relaxed);
        // Reopened for writing: a reader that finished it reads on.
        h.producer.closed.store(0, Ordering::SeqCst);
        let w = RingWriter {
            map,
            capacity,
            write_pos,
            next_seq,
            last_mono_ns,
            cursor_path: cursor_path.to_owned(),
            cursor: None,
            _file: file,
        };
        Ok(Some((
            w,
            RingStart::Continued {
                crashed,
                last_mono_ns,
            },
        )))
    }

    /// Creates a fresh ring at `path` (replacing any old one) with `capacity` bytes of frames.
    ///
    /// An old ring at the same path is marked closed first, so an agent still reading it
    /// drains it and moves to the new one; the new header names it, so an agent that was not
    /// reading can count what it never read. The new file gets `mode` (0640 in production).
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
        // Nobody else has this file yet, so the lock cannot be refused; it keeps a later
        // collector from continuing this ring while this one lives.
        file.lock().map_err(io)?;
        // SAFETY: the file was just created by us and sized; other processes only ever map it.
        let map = unsafe { MmapOptions::new().map_mut(&file) }.map_err(io)?;
        let w = RingWriter {
            map,
            capacity,
            write_pos: 0,
            next_seq: 1,
            last_mono_ns: 0,
            cursor_path: cursor_path.to_owned(),
            cursor: None,
            _file: file,
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
        if let Some((epoch, last_seq)) = mark_closed(path) {
            h.id.prev_epoch.store(epoch, Ordering::Relaxed);
            h.id.prev_last_seq.store(last_seq, Ordering::Relaxed);
        }
        // The magic goes last so a reader never sees a half-initialised header as valid.
        h.id.magic.store(layout::MAGIC, Ordering::Release);
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(w)
    }

    /// The ring this one replaced, as (epoch, last published sequence).
    fn replaced(&self) -> Option<(u64, u64)> {
        let id = &self.header().id;
        let epoch = id.prev_epoch.load(Ordering::Relaxed);
        (epoch != 0).then(|| (epoch, id.prev_last_seq.load(Ordering::Relaxed)))
    }

    /// The highest focus sequence issued in this ring (by this or an earlier collector).
    pub fn focus_seq(&self) -> u64 {
        self.header().producer.focus_seq.load(Ordering::Relaxed)
    }

    /// Records that focus sequence `seq` has been issued.
    pub fn set_focus_seq(&self, seq: u64) {
        self.header()
            .producer
            .focus_seq
            .fetch_max(seq, Ordering::Relaxed);
    }

    /// Notes the time of a record being pushed, published with it.
    pub fn note_time(&mut self, mono_ns: u64) {
        self.last_mono_ns = self.last_mono_ns.max(mono_ns);
    }

    fn header(&self) -> &RingHeader {
        header_of(&self.map)
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
        h.producer
            .last_mono_ns
            .store(self.last_mono_ns, Ordering::Relaxed);
        h.producer.next_seq.store(self.next_seq, Ordering::Relaxed);
        h.producer.write_pos.store(self.write_pos, Ordering::SeqCst);
        h.producer.notify.fetch_add(1, Ordering::SeqCst);
        if self.cursor.is_none() {
            self.refresh_cursor();
        }
        // Without a cursor to look at, wake anyway: a lost wake-up stalls the agent. A reader
        // that batches asks for a wake-up only once enough is unconsumed.
        let wanted = match self.cursor.as_ref() {
            None => true,
            Some((m, _)) => wants_wake(
                cursor_of(m).waiting.load(Ordering::SeqCst),
                self.committed_read_pos()
                    .map(|rp| self.write_pos.saturating_sub(rp)),
            ),
        };
        if wanted {
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

fn header_of(m: &[u8]) -> &RingHeader {
    // SAFETY: callers map at least HEADER_SIZE bytes, page aligned, and RingHeader is made
    // only of atomics, which are valid for any bit pattern and shared access.
    unsafe { &*(m.as_ptr() as *const RingHeader) }
}

/// Marks an existing ring at `path` as closed so its reader moves on; returns its epoch and
/// last published sequence.
fn mark_closed(path: &Path) -> Option<(u64, u64)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ok()?;
    if f.metadata()
        .map(|m| m.len() < layout::HEADER_SIZE)
        .unwrap_or(true)
    {
        return None;
    }
    // SAFETY: we only touch atomics in the header of a file at least HEADER_SIZE long.
    if let Ok(m) = unsafe {
        MmapOptions::new()
            .len(layout::HEADER_SIZE as usize)
            .map_mut(&f)
    } {
        let h = header_of(&m);
        if h.id.magic.load(Ordering::Acquire) == layout::MAGIC {
            h.producer.closed.store(1, Ordering::SeqCst);
            h.producer.notify.fetch_add(1, Ordering::SeqCst);
            notify::wake_all(&h.producer.notify);
            let last = h
                .producer
                .next_seq
                .load(Ordering::Acquire)
                .saturating_sub(1);
            return Some((h.id.epoch.load(Ordering::Relaxed), last));
        }
    }
    None
}

/// A value that differs between ring incarnations, even across reboots.
fn new_epoch() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now ^ (u64::from(std::process::id()) << 48)
}

/// Whether a publish wakes the reader: `waiting` is what it asked for (0 awake, 1 any
/// publish, more: that many unconsumed bytes), `unconsumed` what is published beyond its
/// committed position (`None`: its cursor cannot be trusted, so wake).
pub(crate) fn wants_wake(waiting: u32, unconsumed: Option<u64>) -> bool {
    match waiting {
        0 => false,
        1 => true,
        bytes => unconsumed.is_none_or(|n| n >= u64::from(bytes)),
    }
}
