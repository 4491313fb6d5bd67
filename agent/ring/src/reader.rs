//! The agent's side of the ring. Everything in the ring file is untrusted input: positions
//! are range-checked, lengths bounded, and each frame is copied out before its CRC is checked,
//! so a producer writing concurrently cannot change what was validated.

use super::layout::{self, Cursor, RingHeader, RingStats};
use super::writer::cursor_of;
use super::{notify, RingError};
use imprint_fsutil as fsutil;
use memmap2::{Mmap, MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What [`RingReader::next_frame`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome<'a> {
    /// A valid frame; `payload` is a private copy.
    Frame { seq: u64, payload: &'a [u8] },
    /// Nothing new.
    Empty,
    /// The bytes at `at` failed validation; reading resumes at `resume_at`.
    Corrupt {
        at: u64,
        why: &'static str,
        resume_at: u64,
    },
}

/// The single consumer of a ring.
pub struct RingReader {
    path: PathBuf,
    map: Arc<Mmap>,
    cursor: MmapMut,
    capacity: u64,
    epoch: u64,
    pos: u64,
    /// Sequence number of the last frame read (0: none yet).
    last_seq: u64,
    buf: Vec<u8>,
}

impl RingReader {
    /// Opens the ring at `path` and the agent's cursor at `cursor_path` (created 0640 if
    /// missing), resuming from the committed position when the cursor belongs to this ring.
    pub fn open(path: &Path, cursor_path: &Path) -> Result<Self, RingError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| RingError::Io { path: p, source }
        };
        let bad = |why: String| RingError::BadHeader {
            path: path.to_owned(),
            why,
        };
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        if len < layout::HEADER_SIZE {
            return Err(bad(format!("file is {len} bytes, shorter than the header")));
        }
        // SAFETY: read-only shared map; every field is validated before use.
        let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
        let h = header_of(&map);
        if h.id.magic.load(Ordering::Acquire) != layout::MAGIC {
            return Err(bad("bad magic".into()));
        }
        let version = h.id.version.load(Ordering::Relaxed);
        if version != layout::VERSION {
            return Err(bad(format!(
                "version {version}, expected {}",
                layout::VERSION
            )));
        }
        let capacity = h.id.capacity.load(Ordering::Relaxed);
        if h.id.header_size.load(Ordering::Relaxed) as u64 != layout::HEADER_SIZE
            || !capacity.is_power_of_two()
            || len != layout::HEADER_SIZE + capacity
        {
            return Err(bad(format!(
                "capacity {capacity} does not match file size {len}"
            )));
        }
        let epoch = h.id.epoch.load(Ordering::Relaxed);

        // 0640: the collector (same group) reads the committed position to find free space.
        let cfile = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(cursor_path)
            .map_err(io(cursor_path))?;
        if cfile.metadata().map_err(io(cursor_path))?.len() < layout::CURSOR_SIZE {
            cfile
                .set_len(layout::CURSOR_SIZE)
                .map_err(io(cursor_path))?;
        }
        // SAFETY: the agent owns the cursor file; the collector only reads it.
        let cursor = unsafe {
            MmapOptions::new()
                .len(layout::CURSOR_SIZE as usize)
                .map_mut(&cfile)
        }
        .map_err(io(cursor_path))?;
        let c = cursor_of(&cursor);
        let write_pos = h.producer.write_pos.load(Ordering::Acquire);
        let (mut pos, mut last_seq) = (0, 0);
        if c.magic.load(Ordering::Acquire) == layout::CURSOR_MAGIC
            && c.epoch.load(Ordering::Acquire) == epoch
        {
            let rp = c.read_pos.load(Ordering::Acquire);
            if rp <= write_pos && write_pos - rp <= capacity && rp.is_multiple_of(layout::ALIGN) {
                pos = rp;
                last_seq = c.read_seq.load(Ordering::Acquire);
            }
        }
        // Position before epoch: the collector ignores a cursor of another epoch, so it
        // never pairs the new epoch with an old position.
        c.read_pos.store(pos, Ordering::Release);
        c.read_seq.store(last_seq, Ordering::Release);
        c.epoch.store(epoch, Ordering::Release);
        c.magic.store(layout::CURSOR_MAGIC, Ordering::Release);
        let _ = fsutil::sync_dir(cursor_path.parent().unwrap_or(Path::new(".")));
        Ok(RingReader {
            path: path.to_owned(),
            map: Arc::new(map),
            cursor,
            capacity,
            epoch,
            pos,
            last_seq,
            buf: Vec::new(),
        })
    }

    fn header(&self) -> &RingHeader {
        header_of(&self.map)
    }

    fn cursor(&self) -> &Cursor {
        cursor_of(&self.cursor)
    }

    /// The path this reader was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ring's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Position of the next frame to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The ring this one replaced, as (epoch, last published sequence), when there was one.
    pub fn replaced(&self) -> Option<(u64, u64)> {
        let id = &self.header().id;
        let epoch = id.prev_epoch.load(Ordering::Acquire);
        (epoch != 0).then(|| (epoch, id.prev_last_seq.load(Ordering::Acquire)))
    }

    /// True once the collector has replaced or shut down this ring.
    pub fn is_closed(&self) -> bool {
        self.header().producer.closed.load(Ordering::Acquire) != 0
    }

    /// True when there is nothing left to read.
    pub fn is_drained(&self) -> bool {
        self.header().producer.write_pos.load(Ordering::Acquire) == self.pos
    }

    /// Reads the next frame, if any.
    pub fn next_frame(&mut self) -> ReadOutcome<'_> {
        loop {
            let wp = self.header().producer.write_pos.load(Ordering::Acquire);
            if wp == self.pos {
                return ReadOutcome::Empty;
            }
            let at = self.pos;
            if wp < at || wp - at > self.capacity {
                self.pos = wp;
                return ReadOutcome::Corrupt {
                    at,
                    why: "write position out of range",
                    resume_at: wp,
                };
            }
            let data = &self.map[layout::HEADER_SIZE as usize..];
            let off = (at % self.capacity) as usize;
            let contiguous = self.capacity - off as u64;
            let len = read_u32(data, off);
            if len == layout::WRAP_MARKER {
                if at + contiguous > wp {
                    self.pos = wp;
                    return ReadOutcome::Corrupt {
                        at,
                        why: "wrap marker past write position",
                        resume_at: wp,
                    };
                }
                self.pos += contiguous;
                continue;
            }
            let total = layout::frame_size(len as usize);
            if contiguous < layout::FRAME_HEADER || total > contiguous || at + total > wp {
                // The length is garbage, so frame boundaries after it are unknowable.
                self.pos = wp;
                return ReadOutcome::Corrupt {
                    at,
                    why: "frame length out of bounds",
                    resume_at: wp,
                };
            }
            let end = off + layout::FRAME_HEADER as usize + len as usize;
            self.buf.clear();
            self.buf.extend_from_slice(&data[off..end]);
            self.pos = at + total;
            let crc = read_u32(&self.buf, 4);
            if crc32c::crc32c(&self.buf[8..]) != crc {
                return ReadOutcome::Corrupt {
                    at,
                    why: "frame CRC mismatch",
                    resume_at: self.pos,
                };
            }
            let seq = u64::from_le_bytes(self.buf[8..16].try_into().unwrap_or_default());
            self.last_seq = seq;
            return ReadOutcome::Frame {
                seq,
                payload: &self.buf[16..],
            };
        }
    }

    /// Commits everything read so far: it is durable and the collector may reuse the space.
    pub fn commit(&mut self) {
        self.cursor()
            .read_seq
            .store(self.last_seq, Ordering::Release);
        self.cursor().read_pos.store(self.pos, Ordering::Release);
    }

    /// Commits only up to `pos` (the end of frame `seq`, read earlier): frames after it that
    /// the agent still holds back (policy holdback) are read again after a restart.
    pub fn commit_at(&mut self, pos: u64, seq: u64) {
        let pos = pos.min(self.pos);
        self.cursor().read_seq.store(seq, Ordering::Release);
        self.cursor().read_pos.store(pos, Ordering::Release);
    }

    /// Sequence number of the last frame read, including by an earlier run up to the
    /// committed position (0: none).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sequence number of the last frame the collector published (untrusted: for loss
    /// accounting only).
    pub fn published_seq(&self) -> u64 {
        self.header()
            .producer
            .next_seq
            .load(Ordering::Acquire)
            .saturating_sub(1)
    }

    /// The committed position.
    pub fn committed(&self) -> u64 {
        self.cursor().read_pos.load(Ordering::Acquire)
    }

    /// Sleeps until the writer publishes, the ring is closed, [`RingReader::wake`] is
    /// called, or `timeout` passes.
    pub fn wait(&self, timeout: Option<Duration>) {
        self.sleep(1, timeout, |r| r.published() == r.pos);
    }

    /// Sleeps until `timeout` (a batching deadline) passes, the ring is closed,
    /// [`RingReader::wake`] is called, or the ring is [under pressure](Self::under_pressure);
    /// publishes below that do not wake it. So a reader that has data in hand wakes once per
    /// deadline rather than once per publish.
    pub fn wait_batching(&self, timeout: Duration) {
        self.sleep(self.batch_wake_bytes(), Some(timeout), |r| {
            !r.under_pressure()
        });
    }

    /// A quarter of the ring or more is published but not committed: a batching reader must
    /// make what it read durable and commit now, or the writer could run out of room.
    pub fn under_pressure(&self) -> bool {
        self.published().saturating_sub(self.committed()) >= u64::from(self.batch_wake_bytes())
    }

    fn batch_wake_bytes(&self) -> u32 {
        // At least 2: a `waiting` of 1 means any publish.
        u32::try_from(self.capacity / 4).unwrap_or(u32::MAX).max(2)
    }

    fn published(&self) -> u64 {
        self.header().producer.write_pos.load(Ordering::SeqCst)
    }

    /// Asks the writer for a wake-up at `waiting` (see [`layout::Cursor::waiting`]) and sleeps
    /// on the futex if `sleep_if` still holds once it has asked, so no publish is missed.
    fn sleep(&self, waiting: u32, timeout: Option<Duration>, sleep_if: impl Fn(&Self) -> bool) {
        let notify_word = &self.header().producer.notify;
        let seen = notify_word.load(Ordering::SeqCst);
        self.cursor().waiting.store(waiting, Ordering::SeqCst);
        if sleep_if(self) && !self.is_closed() {
            notify::wait(notify_word, seen, timeout);
        }
        self.cursor().waiting.store(0, Ordering::SeqCst);
    }

    /// A handle another thread can use to interrupt [`RingReader::wait`].
    pub fn waker(&self) -> RingWaker {
        RingWaker {
            map: Arc::clone(&self.map),
        }
    }

    /// Counters and positions, for status.
    pub fn stats(&self) -> RingStats {
        stats_of(self.header(), self.committed())
    }
}

/// Wakes a reader sleeping in [`RingReader::wait`] (for shutdown).
#[derive(Clone)]
pub struct RingWaker {
    map: Arc<Mmap>,
}

impl RingWaker {
    /// Interrupts the reader's wait.
    pub fn wake(&self) {
        notify::wake_all(&header_of(&self.map).producer.notify);
    }
}

/// Reads counters from a ring file without becoming its reader (for `imprint status`).
pub fn peek_stats(path: &Path, cursor_path: &Path) -> Result<RingStats, RingError> {
    let io = |source| RingError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() < layout::HEADER_SIZE {
        return Err(RingError::BadHeader {
            path: path.to_owned(),
            why: "too short".into(),
        });
    }
    // SAFETY: read-only map of the header page, validated below.
    let map = unsafe {
        MmapOptions::new()
            .len(layout::HEADER_SIZE as usize)
            .map(&file)
    }
    .map_err(io)?;
    let h = header_of(&map);
    if h.id.magic.load(Ordering::Acquire) != layout::MAGIC {
        return Err(RingError::BadHeader {
            path: path.to_owned(),
            why: "bad magic".into(),
        });
    }
    let epoch = h.id.epoch.load(Ordering::Relaxed);
    let committed = File::open(cursor_path)
        .ok()
        .and_then(|f| unsafe { MmapOptions::new().len(layout::CURSOR_SIZE as usize).map(&f) }.ok())
        .map(|m| {
            let c = cursor_of(&m);
            if c.epoch.load(Ordering::Acquire) == epoch {
                c.read_pos.load(Ordering::Acquire)
            } else {
                0
            }
        })
        .unwrap_or(0);
    Ok(stats_of(h, committed))
}

fn stats_of(h: &RingHeader, read_pos: u64) -> RingStats {
    let c = &h.counters;
    let write_pos = h.producer.write_pos.load(Ordering::Acquire);
    RingStats {
        capacity: h.id.capacity.load(Ordering::Relaxed),
        epoch: h.id.epoch.load(Ordering::Relaxed),
        write_pos,
        published_seq: h
            .producer
            .next_seq
            .load(Ordering::Acquire)
            .saturating_sub(1),
        read_pos,
        pending_bytes: write_pos.saturating_sub(read_pos),
        frames_written: c.frames_written.load(Ordering::Relaxed),
        frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
        events_evdev: c.events_evdev.load(Ordering::Relaxed),
        events_ebpf: c.events_ebpf.load(Ordering::Relaxed),
        events_replay: c.events_replay.load(Ordering::Relaxed),
        evdev_dropped: c.evdev_dropped.load(Ordering::Relaxed),
        gaps_written: c.gaps_written.load(Ordering::Relaxed),
        capture_on: c.capture_on.load(Ordering::Relaxed) != 0,
        closed: h.producer.closed.load(Ordering::Relaxed) != 0,
        continued: h.producer.continued.load(Ordering::Relaxed),
        source: layout::source_name(c.source.load(Ordering::Relaxed)),
        devices: c.devices.load(Ordering::Relaxed),
        collector_pid: h.id.collector_pid.load(Ordering::Relaxed),
        helpers: h.sessions.helpers.load(Ordering::Relaxed),
        scope_closed: h.sessions.scope_closed.load(Ordering::Relaxed) != 0,
        reports_accepted: h.sessions.reports_accepted.load(Ordering::Relaxed),
        reports_refused: h.sessions.reports_refused.load(Ordering::Relaxed),
        reports_malformed: h.sessions.reports_malformed.load(Ordering::Relaxed),
        verdicts: h.sessions.verdicts.load(Ordering::Relaxed),
        scope_dropped: h.sessions.scope_dropped.load(Ordering::Relaxed),
        helpers_lost: h.sessions.helpers_lost.load(Ordering::Relaxed),
        pointer_samples: h.sessions.pointer_samples.load(Ordering::Relaxed),
        pointer_dropped: h.sessions.pointer_dropped.load(Ordering::Relaxed),
    }
}

fn header_of(m: &[u8]) -> &RingHeader {
    // SAFETY: callers map at least HEADER_SIZE page-aligned bytes; RingHeader is all atomics.
    unsafe { &*(m.as_ptr() as *const RingHeader) }
}

fn read_u32(data: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[off..off + 4]);
    u32::from_le_bytes(b)
}
