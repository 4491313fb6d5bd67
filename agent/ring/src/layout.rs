//! Byte layout of the ring and cursor files. Fields written by different parties (or hot
//! on different paths) sit on separate cache lines.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8};

/// "IMPRRING" in little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IMPRRING");
/// Bumped when the layout changes incompatibly.
pub const VERSION: u32 = 2;
/// The frame area starts one page in.
pub const HEADER_SIZE: u64 = 4096;
/// `len | crc | seq` before each payload.
pub const FRAME_HEADER: u64 = 16;
/// A `len` value that means "the rest of the area is padding, continue at offset 0".
pub const WRAP_MARKER: u32 = u32::MAX;
/// Frames start on 8-byte boundaries.
pub const ALIGN: u64 = 8;

/// Bytes a frame with `payload_len` bytes of payload occupies.
pub fn frame_size(payload_len: usize) -> u64 {
    (FRAME_HEADER + payload_len as u64).next_multiple_of(ALIGN)
}

/// Fixed fields, written once by the collector when it creates the ring.
#[repr(C)]
pub struct Identity {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_size: AtomicU32,
    pub capacity: AtomicU64,
    /// Distinguishes one ring incarnation from the next, so the agent never confuses
    /// sequence numbers of a restarted collector with old ones.
    pub epoch: AtomicU64,
    pub collector_pid: AtomicU32,
    pub _pad0: u32,
    /// The ring this one replaced (0: none): its epoch and last published sequence, so an
    /// agent that had not read all of it can count what it lost.
    pub prev_epoch: AtomicU64,
    pub prev_last_seq: AtomicU64,
    pub _pad: [u8; 8],
}

/// The producer's cache line.
#[repr(C)]
pub struct Producer {
    pub write_pos: AtomicU64,
    pub next_seq: AtomicU64,
    /// Futex word, bumped after every publish so a sleeping reader wakes.
    pub notify: AtomicU32,
    /// Set when a newer collector replaced this ring: drain it, then reopen the path.
    pub closed: AtomicU32,
    /// Time of the newest record published: where a crashed collector's loss begins.
    pub last_mono_ns: AtomicU64,
    /// The highest focus sequence issued in this ring, so a collector that continues it never
    /// reuses one (a verdict about an old focus must not apply to a new one).
    pub focus_seq: AtomicU64,
    /// Times a restarted collector continued this ring.
    pub continued: AtomicU32,
    pub _pad: [u8; 20],
}

/// Collector-side counters for `imprint status` and metrics.
#[repr(C)]
pub struct CollectorCounters {
    pub frames_written: AtomicU64,
    /// Frames refused because the ring was full.
    pub frames_dropped: AtomicU64,
    pub events_evdev: AtomicU64,
    pub events_ebpf: AtomicU64,
    pub events_replay: AtomicU64,
    /// Events lost in the kernel's evdev buffer (SYN_DROPPED), as counted by the source.
    pub evdev_dropped: AtomicU64,
    pub gaps_written: AtomicU64,
    /// 1 while capture is on.
    pub capture_on: AtomicU32,
    /// Which source is live: 0 none, 1 evdev, 2 ebpf, 3 replay.
    pub source: AtomicU32,
    pub devices: AtomicU32,
    pub _pad: [u8; 4],
    /// The eBPF source's state: live or why not, pause, and the kernel programs' counters.
    pub ebpf: SourceStatus,
}

/// Length of [`SourceStatus::reason`].
pub const REASON_LEN: usize = 240;

/// The eBPF source's state, written by the collector, read by `imprint status`.
#[repr(C)]
pub struct SourceStatus {
    /// 1 while capture is paused (`imprint pause`).
    pub paused: AtomicU32,
    /// Why eBPF is not the live source: 0 eBPF is live (or was not tried, as for a replay),
    /// otherwise a `source::ebpf::Fallback` code.
    pub fallback: AtomicU32,
    /// Counters of the kernel programs (summed over CPUs), refreshed when the collector wakes.
    pub bpf_seen: AtomicU64,
    pub bpf_submitted: AtomicU64,
    pub bpf_gated_off: AtomicU64,
    pub bpf_gated_type: AtomicU64,
    /// Failed ring-buffer reserves: events lost in the kernel, written as `bpf_reserve` gaps.
    pub bpf_reserve_failed: AtomicU64,
    pub bpf_devices: AtomicU64,
    pub bpf_device_reserve_failed: AtomicU64,
    /// Size of the BPF ring buffer.
    pub bpf_ringbuf_bytes: AtomicU64,
    /// Times the collector woke to drain the BPF ring buffer.
    pub bpf_wakeups: AtomicU64,
    /// Counter snapshots published (so a reader asking for one can tell it has arrived).
    pub bpf_refreshes: AtomicU64,
    /// Bytes used in `reason`.
    pub reason_len: AtomicU32,
    pub _pad: [u8; 4],
    /// The fallback reason as UTF-8 text (one log line's worth).
    pub reason: [AtomicU8; REASON_LEN],
}

impl SourceStatus {
    /// Stores `text` (truncated at a character boundary) as the fallback reason.
    pub fn set_reason(&self, text: &str) {
        let mut end = text.len().min(REASON_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        for (slot, b) in self.reason.iter().zip(&text.as_bytes()[..end]) {
            slot.store(*b, std::sync::atomic::Ordering::Relaxed);
        }
        self.reason_len
            .store(end as u32, std::sync::atomic::Ordering::Release);
    }

    /// The fallback reason ("" when none).
    pub fn reason(&self) -> String {
        let len =
            (self.reason_len.load(std::sync::atomic::Ordering::Acquire) as usize).min(REASON_LEN);
        let bytes: Vec<u8> = self.reason[..len]
            .iter()
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The session socket's counters: helpers, reports and the scope gate.
#[repr(C)]
#[derive(Default)]
pub struct SessionCounters {
    /// imprint-session helpers connected now.
    pub helpers: AtomicU32,
    /// 1 while the agent's verdict for the current focus admits nothing (the gate is closed).
    pub scope_closed: AtomicU32,
    pub reports_accepted: AtomicU64,
    /// Reports from a peer that does not own the seat's active session.
    pub reports_refused: AtomicU64,
    /// Packets that failed to decode, or were too long.
    pub reports_malformed: AtomicU64,
    pub verdicts: AtomicU64,
    /// Verdicts from a peer that is not the agent.
    pub verdicts_refused: AtomicU64,
    /// Events dropped in the collector (evdev) because the focus was out of scope.
    pub scope_dropped: AtomicU64,
    /// Helpers that went away while their session was active.
    pub helpers_lost: AtomicU64,
    /// Pointer samples from the session helper written to the ring.
    pub pointer_samples: AtomicU64,
    /// Pointer samples dropped because the ring stayed full.
    pub pointer_dropped: AtomicU64,
}

/// The whole ring header.
#[repr(C)]
pub struct RingHeader {
    pub id: Identity,
    pub producer: Producer,
    pub counters: CollectorCounters,
    /// Appended in place of padding: older readers never look here.
    pub sessions: SessionCounters,
}

/// The agent-owned cursor file.
#[repr(C)]
pub struct Cursor {
    pub magic: AtomicU64,
    /// The ring epoch this position belongs to.
    pub epoch: AtomicU64,
    /// Everything before this position has been made durable by the agent.
    pub read_pos: AtomicU64,
    /// Sequence number of the last frame before `read_pos` (0: none), so a restarted agent
    /// can tell lost frames from frames an earlier run consumed.
    pub read_seq: AtomicU64,
    /// Non-zero while the reader sleeps on the futex: the unconsumed bytes (published minus
    /// `read_pos`) at which it wants a wake-up; 1 is any publish.
    pub waiting: AtomicU32,
    pub _pad: [u8; 28],
}

/// "IMPRCURS" in little-endian.
pub const CURSOR_MAGIC: u64 = u64::from_le_bytes(*b"IMPRCURS");
/// Size of the cursor file.
pub const CURSOR_SIZE: u64 = 64;

const _: () = assert!(std::mem::size_of::<Identity>() == 64);
const _: () = assert!(std::mem::size_of::<Producer>() == 64);
const _: () = assert!(std::mem::size_of::<RingHeader>() <= HEADER_SIZE as usize);
const _: () = assert!(std::mem::size_of::<Cursor>() == CURSOR_SIZE as usize);

/// A snapshot of the ring's state, for status and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RingStats {
    pub capacity: u64,
    pub epoch: u64,
    pub write_pos: u64,
    /// Sequence number of the last frame published (untrusted: for accounting).
    pub published_seq: u64,
    pub read_pos: u64,
    pub pending_bytes: u64,
    pub frames_written: u64,
    pub frames_dropped: u64,
    pub events_evdev: u64,
    pub events_ebpf: u64,
    pub events_replay: u64,
    pub evdev_dropped: u64,
    pub gaps_written: u64,
    pub capture_on: bool,
    /// The collector closed this ring (it stopped or was replaced).
    pub closed: bool,
    /// Times a restarted collector continued this ring instead of replacing it.
    pub continued: u32,
    pub source: &'static str,
    pub devices: u32,
    pub collector_pid: u32,
    pub helpers: u32,
    pub scope_closed: bool,
    pub reports_accepted: u64,
    pub reports_refused: u64,
    pub reports_malformed: u64,
    pub verdicts: u64,
    pub scope_dropped: u64,
    pub helpers_lost: u64,
    pub pointer_samples: u64,
    pub pointer_dropped: u64,
}

/// Name of a source code stored in `CollectorCounters::source`.
pub fn source_name(code: u32) -> &'static str {
    match code {
        1 => "evdev",
        2 => "ebpf",
        3 => "replay",
        _ => "none",
    }
}
