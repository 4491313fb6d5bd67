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
