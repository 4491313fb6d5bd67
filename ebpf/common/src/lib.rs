//! The record that crosses the kernel/userspace boundary, shared by the eBPF programs and
//! the collector. Every capture source (eBPF, evdev, replay) produces this same shape.
#![no_std]

/// One input event at the capture boundary, before the collector tags it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RawInput {
    /// CLOCK_MONOTONIC nanoseconds.
    pub mono_ns: u64,
    /// The collector's device index.
    pub device: u32,
    /// EV_* type.
    pub kind: u16,
    /// Type-specific code (KEY_*, REL_*, ...).
    pub code: u16,
    /// Event value (1 press, 0 release, 2 repeat for keys; deltas or positions for axes).
    pub value: i32,
    /// Explicit padding so the layout is identical in BPF and userspace.
    pub _pad: u32,
}

/// `EV_SYN`, the event type that frames a group of events.
pub const EV_SYN: u16 = 0x00;
/// `SYN_REPORT`, the end of one atomic group of events.
pub const SYN_REPORT: u16 = 0;
/// `SYN_DROPPED`, the kernel's buffer overflowed and events were lost.
pub const SYN_DROPPED: u16 = 3;

// ---------------------------------------------------------------------------------------------
// The eBPF source's maps and records. Both sides compile these definitions, so a layout change
// cannot leave the kernel program and the collector disagreeing.

/// Name of the BPF ring buffer map that carries [`BpfEvent`] and [`BpfDevice`] records.
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the [`Gate`] array map (one entry, index 0).
pub const MAP_GATE: &str = "GATE";
/// Name of the [`KernelLayout`] array map (one entry, index 0).
pub const MAP_LAYOUT: &str = "LAYOUT";
/// Name of the per-CPU `u64` counter array, indexed by the `CTR_*` constants.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the hash map of devices already announced (`u64` device key → `u8`).
pub const MAP_KNOWN: &str = "KNOWN";

/// The default size of the BPF ring buffer, in bytes (a power of two, a multiple of the page).
pub const DEFAULT_RINGBUF_BYTES: u32 = 256 * 1024;

/// [`Gate::flags`]: capture is on. Clear, the programs return before touching anything else.
pub const GATE_CAPTURE_ON: u32 = 1;

/// The in-kernel gate, written by the collector, read by every program invocation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// `GATE_*` bits.
    pub flags: u32,
    /// Bit `n` set: events of type `n` (EV_KEY = 1, EV_REL = 2, ...; EV_MAX is 0x1f) pass.
    /// The collector narrows it from the agent's verdict (no pointer class: no axes).
    pub type_mask: u32,
}

impl Gate {
    /// Everything passes.
    pub const OPEN: Gate = Gate {
        flags: GATE_CAPTURE_ON,
        type_mask: u32::MAX,
    };
    /// Nothing passes: the programs return before reading the event.
    pub const CLOSED: Gate = Gate {
        flags: 0,
        type_mask: 0,
    };
}

/// Byte offsets into kernel structs, found by the collector in the running kernel's BTF
/// (`/sys/kernel/btf/vmlinux`) and checked against the member types there before use.
/// A zero `valid` means "not filled in": the programs then record nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub valid: u32,
    /// `struct input_dev`: `const char *name`.
    pub dev_name: u32,
    /// `struct input_dev`: `const char *phys`.
    pub dev_phys: u32,
    /// `struct input_dev`: `struct input_id id` (bustype, vendor, product, version: u16 each).
    pub dev_id: u32,
    /// `struct input_dev`: `struct device dev`, plus `struct device`: `struct device *parent`.
    pub dev_parent: u32,
    /// `struct input_dev`: `struct timer_list timer` (the autorepeat timer).
    pub dev_timer: u32,
    /// `struct input_dev`: `unsigned int repeat_key`.
    pub dev_repeat_key: u32,
    /// `struct input_dev`: `unsigned long key[]` (the key state bitmap).
    pub dev_key: u32,
    /// `struct input_dev`: `unsigned long evbit[]`.
    pub dev_evbit: u32,
    /// `struct input_handle`: `struct input_dev *dev`.
    pub handle_dev: u32,
}

/// Indices of the per-CPU counters in [`MAP_COUNTERS`].
pub const CTR_SEEN: u32 = 0;
/// Returned early because capture was off or paused.
pub const CTR_GATED_OFF: u32 = 1;
/// Dropped by the event-type mask.
pub const CTR_GATED_TYPE: u32 = 2;
/// `bpf_ringbuf_reserve` failed (the ring buffer was full): events lost, to become gaps.
pub const CTR_RESERVE_FAILED: u32 = 3;
/// Event records submitted to the ring buffer.
pub const CTR_SUBMITTED: u32 = 4;
/// Device records submitted.
pub const CTR_DEVICES: u32 = 5;
/// Device records that did not fit (the device is announced again with its next event).
pub const CTR_DEVICE_RESERVE_FAILED: u32 = 6;
/// How many counters there are.
pub const CTR_COUNT: u32 = 7;

/// [`BpfEvent::tag`] / [`BpfDevice::tag`]: which record this is.
pub const REC_EVENT: u32 = 1;
/// A device seen for the first time (or again after it was forgotten).
pub const REC_DEVICE: u32 = 2;
/// A device was unregistered.
pub const REC_REMOVED: u32 = 3;

/// [`BpfEvent::hook`]: which kernel function the event was seen in.
pub const HOOK_INPUT_EVENT: u32 = 0;
/// `input_inject_event`: written by a handler (for example to /dev/input/eventN).
pub const HOOK_INJECT: u32 = 1;
/// The kernel's own autorepeat timer (`input_repeat_key`).
pub const HOOK_REPEAT: u32 = 2;

/// One input event, as the eBPF programs write it into the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfEvent {
    /// [`REC_EVENT`].
    pub tag: u32,
    /// `HOOK_*`.
    pub hook: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub mono_ns: u64,
    /// The device key: the address of the kernel's `struct input_dev`. It never leaves the
    /// collector; the collector maps it to its own device index.
    pub dev: u64,
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

/// Length of the name and phys buffers in [`BpfDevice`].
pub const DEVICE_STR: usize = 80;

/// [`BpfDevice::flags`]: the device has a parent device (it is not under /sys/devices/virtual).
pub const DEV_HAS_PARENT: u32 = 1;

/// A device's identity, read from `struct input_dev` the first time it reports an event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfDevice {
    /// [`REC_DEVICE`] or [`REC_REMOVED`] (then only `dev` and `mono_ns` are meaningful).
    pub tag: u32,
    /// `DEV_*` bits.
    pub flags: u32,
    pub mono_ns: u64,
    pub dev: u64,
    pub bustype: u16,
    pub vendor: u16,
    pub product: u16,
    pub version: u16,
    /// NUL-terminated.
    pub name: [u8; DEVICE_STR],
    /// NUL-terminated.
    pub phys: [u8; DEVICE_STR],
}

const _: () = assert!(core::mem::size_of::<BpfEvent>() == 32);
const _: () = assert!(core::mem::size_of::<BpfDevice>() == 32 + 2 * DEVICE_STR);
const _: () = assert!(core::mem::size_of::<KernelLayout>() == 40);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers and byte arrays, with no padding and no invalid bit
    // patterns.
    unsafe impl aya::Pod for super::Gate {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelLayout {}
}
