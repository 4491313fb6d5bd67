//! imprint's kernel programs: every input event the kernel's input core handles, gated in the
//! kernel, into a BPF ring buffer that the collector drains.
//!
//! # Hooks (chosen for Debian 12's 6.1 kernel, and valid from 5.15 on)
//! - `fentry/input_event`: every event a driver reports (uinput devices included).
//! - `fentry/input_inject_event`: every event a handler injects (a write to /dev/input/eventN,
//!   keyboard LEDs). It does not call `input_event`, and `input_event` does not call it, so the
//!   two see disjoint events.
//! - `fentry/input_repeat_key`: the kernel's autorepeat timer. Repeats (value 2) are made by the
//!   input core itself and handed to the handlers with `input_pass_values()`, which is static
//!   and inlined, so neither hook above sees them; `evdev_events` would, but only while some
//!   process holds the event node open, and once per handle. `input_repeat_key` is the timer
//!   callback (called through a pointer, so never inlined) and runs exactly once per repeat;
//!   it emits `EV_KEY code 2` and the `SYN_REPORT` (value 1, the core's `input_value_sync`)
//!   that follows it, under the same condition the kernel checks (the key is still down).
//! - `fentry/input_unregister_device`: forgets a device, so a new device at the same address
//!   is announced afresh.
//!
//! All three event hooks see events as they enter the input core, before its filtering: a key
//! state that does not change, a relative motion of 0 or an absolute value that does not change
//! reaches the hook but not the evdev clients. Well-formed devices do not send those.
//!
//! # Device identity
//! An event carries the address of its `struct input_dev` as the device key. The first time a
//! key is seen while capture is on, a [`BpfDevice`] record with the name, phys, input_id and
//! "has a parent" (uinput devices have none) is written before the event. The struct offsets are
//! not compiled in (Rust cannot emit CO-RE relocations yet): the collector finds them in the
//! running kernel's BTF, checks the member types, and writes them into the `LAYOUT` map before
//! attaching. Without a valid layout the programs record nothing.
//!
//! # Gating
//! `GATE` is read first: with capture off (or paused) every program returns before anything
//! else, so no event leaves the kernel; only a per-CPU counter counts it. Then the event-type
//! mask and the per-device allow list. A failed ring-buffer reserve is counted per CPU; the
//! collector turns the count into gap records.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel, generated::bpf_probe_read_kernel_str},
    macros::{fentry, map},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::FEntryContext,
    EbpfContext,
};
use imprint_common::{
    BpfDevice, BpfEvent, Gate, KernelLayout, CTR_COUNT, CTR_DEVICES, CTR_DEVICE_RESERVE_FAILED,
    CTR_GATED_OFF, CTR_GATED_TYPE, CTR_RESERVE_FAILED, CTR_SEEN, CTR_SUBMITTED,
    DEFAULT_RINGBUF_BYTES, DEVICE_STR, DEV_HAS_PARENT, GATE_CAPTURE_ON,
    HOOK_INJECT, HOOK_INPUT_EVENT, HOOK_REPEAT, REC_DEVICE, REC_EVENT, REC_REMOVED,
};

const EV_SYN: u32 = 0;
const EV_KEY: u32 = 1;
const SYN_REPORT: u32 = 0;
const BPF_NOEXIST: u64 = 1;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

#[map(name = "GATE")]
static GATE: Array<Gate> = Array::with_max_entries(1, 0);

#[map(name = "LAYOUT")]
static LAYOUT: Array<KernelLayout> = Array::with_max_entries(1, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

#[map(name = "KNOWN")]
static KNOWN: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; programs do not nest on one CPU for these hooks.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn read_u64(addr: u64) -> u64 {
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[fentry(function = "input_event")]
// Inlined into the entry point the macro generates: an out-of-line function taking
// FEntryContext by value is a BPF subprogram the verifier rejects ("reg type unsupported").
#[inline(always)]
pub fn input_event(ctx: FEntryContext) -> u32 {
    let dev: u64 = ctx.arg(0);
    let kind: u32 = ctx.arg(1);
    let code: u32 = ctx.arg(2);
    let value: i32 = ctx.arg(3);
    capture(dev, kind, code, value, HOOK_INPUT_EVENT);
    0
}

#[fentry(function = "input_inject_event")]
// Inlined into the entry point the macro generates: an out-of-line function taking
// FEntryContext by value is a BPF subprogram the verifier rejects ("reg type unsupported").
#[inline(always)]
pub fn input_inject_event(ctx: FEntryContext) -> u32 {
    let Some(layout) = layout() else { return 0 };
    let handle: u64 = ctx.arg(0);
    let kind: u32 = ctx.arg(1);
    let code: u32 = ctx.arg(2);
    let value: i32 = ctx.arg(3);
    let dev = read_u64(handle + layout.handle_dev as u64);
    if dev != 0 {
        capture(dev, kind, code, value, HOOK_INJECT);
    }
    0
}

#[fentry(function = "input_repeat_key")]
// Inlined into the entry point the macro generates: an out-of-line function taking
// FEntryContext by value is a BPF subprogram the verifier rejects ("reg type unsupported").
#[inline(always)]
pub fn input_repeat_key(ctx: FEntryContext) -> u32 {
    let Some(layout) = layout() else { return 0 };
    // The argument is read as a plain number: the verifier types `ctx.arg(0)` as a pointer to
    // struct timer_list and does not let the program step back from it to the input_dev.
    let timer = read_u64(ctx.as_ptr() as u64);
    let dev = timer.wrapping_sub(layout.dev_timer as u64);
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    let code = unsafe { bpf_probe_read_kernel((dev + layout.dev_repeat_key as u64) as *const u32) }
        .unwrap_or(u32::MAX);
    if code > 0x2ff {
        return 0; // KEY_MAX
    }
    // The kernel repeats only while the key is still down: test_bit(repeat_key, dev->key).
    let word = read_u64(dev + layout.dev_key as u64 + (code as u64 / 64) * 8);
    if word & (1u64 << (code % 64)) == 0 {
        return 0;
    }
    capture(dev, EV_KEY, code, 2, HOOK_REPEAT);
    capture(dev, EV_SYN, SYN_REPORT, 1, HOOK_REPEAT);
    0
}

#[fentry(function = "input_unregister_device")]
// Inlined into the entry point the macro generates: an out-of-line function taking
// FEntryContext by value is a BPF subprogram the verifier rejects ("reg type unsupported").
#[inline(always)]
pub fn input_unregister_device(ctx: FEntryContext) -> u32 {
    let dev: u64 = ctx.arg(0);
    // SAFETY: a plain lookup; the value is not kept.
    if unsafe { KNOWN.get(&dev) }.is_none() {
        return 0;
    }
    let _ = KNOWN.remove(&dev);
    if !capture_on() {
        return 0;
    }
    if let Some(mut entry) = EVENTS.reserve::<BpfDevice>(0) {
        let p = entry.as_mut_ptr();
        // SAFETY: `p` points at a reserved, exclusively owned record of the right size.
        unsafe {
            (*p).tag = REC_REMOVED;
            (*p).flags = 0;
            (*p).mono_ns = bpf_ktime_get_ns();
            (*p).dev = dev;
        }
        entry.submit(0);
    } else {
        bump(CTR_DEVICE_RESERVE_FAILED);
    }
    0
}

#[inline(always)]
fn layout() -> Option<&'static KernelLayout> {
    LAYOUT.get(0).filter(|l| l.valid != 0)
}

#[inline(always)]
fn capture_on() -> bool {
    GATE.get(0).is_some_and(|g| g.flags & GATE_CAPTURE_ON != 0)
}

#[inline(always)]
fn capture(dev: u64, kind: u32, code: u32, value: i32, hook: u32) {
    bump(CTR_SEEN);
    let Some(gate) = GATE.get(0) else { return };
    if gate.flags & GATE_CAPTURE_ON == 0 {
        // Paused or off: nothing about the event is read or written.
        bump(CTR_GATED_OFF);
        return;
    }
    let Some(layout) = layout() else { return };
    announce(dev, layout);
    if kind >= 32 || gate.type_mask & (1u32 << kind) == 0 {
        bump(CTR_GATED_TYPE);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<BpfEvent>(0) else {
        bump(CTR_RESERVE_FAILED);
        return;
    };
    entry.write(BpfEvent {
        tag: REC_EVENT,
        hook,
        // SAFETY: a helper without preconditions.
        mono_ns: unsafe { bpf_ktime_get_ns() },
        dev,
        kind: kind as u16,
        code: code as u16,
        value,
    });
    entry.submit(0);
    bump(CTR_SUBMITTED);
}

/// Writes a device record the first time `dev` is seen.
#[inline(always)]
fn announce(dev: u64, layout: &KernelLayout) {
    // SAFETY: a plain lookup; the value is not kept.
    if unsafe { KNOWN.get(&dev) }.is_some() {
        return;
    }
    if KNOWN.insert(&dev, &1u8, BPF_NOEXIST).is_err() {
        return; // another CPU announces it
    }
    let Some(mut entry) = EVENTS.reserve::<BpfDevice>(0) else {
        // Forget it again so that the next event retries the announcement.
        let _ = KNOWN.remove(&dev);
        bump(CTR_DEVICE_RESERVE_FAILED);
        return;
    };
    let p = entry.as_mut_ptr();
    let name = read_u64(dev + layout.dev_name as u64);
    let phys = read_u64(dev + layout.dev_phys as u64);
    let parent = read_u64(dev + layout.dev_parent as u64);
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    let id = unsafe { bpf_probe_read_kernel((dev + layout.dev_id as u64) as *const [u16; 4]) }
        .unwrap_or([0; 4]);
    // SAFETY: `p` points at a reserved, exclusively owned record of the right size; the string
    // helpers write at most DEVICE_STR bytes, NUL included.
    unsafe {
        (*p).tag = REC_DEVICE;
        (*p).flags = if parent != 0 { DEV_HAS_PARENT } else { 0 };
        (*p).mono_ns = bpf_ktime_get_ns();
        (*p).dev = dev;
        (*p).bustype = id[0];
        (*p).vendor = id[1];
        (*p).product = id[2];
        (*p).version = id[3];
        (*p).name[0] = 0;
        (*p).phys[0] = 0;
        if name != 0 {
            bpf_probe_read_kernel_str(
                (*p).name.as_mut_ptr().cast(),
                DEVICE_STR as u32,
                name as *const _,
            );
        }
        if phys != 0 {
            bpf_probe_read_kernel_str(
                (*p).phys.as_mut_ptr().cast(),
                DEVICE_STR as u32,
                phys as *const _,
            );
        }
    }
    entry.submit(0);
    bump(CTR_DEVICES);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The programs read kernel memory with bpf_probe_read_kernel and bpf_probe_read_kernel_str,
/// which are GPL-only helpers.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
