//! The eBPF source: fentry programs on the kernel's input core (`ebpf/imprint-ebpf`; the hooks
//! and why are explained there), gated in the kernel, read from a BPF ring buffer.
//!
//! - Loading: the running kernel's BTF gives the struct offsets the programs need
//!   ([`btf::Btf::input_layout`]); they go into the `LAYOUT` map, the gate is set from the
//!   pause file, and only then are the programs attached.
//! - Reading: the ring buffer's fd is registered with tokio's `AsyncFd`. It is edge-triggered,
//!   so every wake-up drains the buffer completely before clearing readiness. The kernel wakes
//!   the reader only for a record written while the reader had caught up, so an idle machine
//!   causes no wake-up at all; after a wake-up the reader waits [`COALESCE`] before draining,
//!   so a burst of events costs one wake-up per `COALESCE` rather than one per event.
//! - Drops: failed reserves are counted per CPU in the kernel; after each drain the collector
//!   reads the sum and writes the difference as a `bpf_reserve` gap.
//! - Pause: `imprint pause` creates `paused` beside the ring; the collector watches that
//!   directory and closes the in-kernel gate, so no event leaves the kernel while it exists.
//! - Fallback: when the programs cannot be loaded (EPERM, no BTF, lockdown, built without
//!   eBPF, `IMPRINT_EBPF=off`), one warning says why, the reason goes into the ring header for
//!   `imprint status`, and the evdev source runs instead.

pub mod btf;

use super::{monotonic_now_ns, SourceEvent, SourceTx};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::FEntry;
use imprint_common::{
    BpfDevice, BpfEvent, Gate, RawInput, CTR_COUNT, CTR_DEVICES, CTR_DEVICE_RESERVE_FAILED,
    CTR_GATED_OFF, CTR_GATED_TYPE, CTR_RESERVE_FAILED, CTR_SEEN, CTR_SUBMITTED,
    DEFAULT_RINGBUF_BYTES, DEV_HAS_PARENT, MAP_COUNTERS, MAP_EVENTS, MAP_GATE, MAP_LAYOUT,
    REC_DEVICE, REC_EVENT, REC_REMOVED,
};
use imprint_record::wire::class;
use imprint_record::{DeviceInfo, Gap, Source, Stage, NO_DEVICE};
use imprint_ring::layout::{self, RingHeader, SourceStatus};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The next scope-gate state; pending forever once the collector has dropped its end.
async fn scope_change(scope: &mut Option<watch::Receiver<u32>>) -> u32 {
    if let Some(rx) = scope {
        if rx.changed().await.is_ok() {
            return *rx.borrow_and_update();
        }
    }
    *scope = None;
    std::future::pending().await
}

/// How long the reader lets a burst accumulate after a wake-up before draining.
pub const COALESCE: Duration = Duration::from_millis(1);
/// The full counter set is re-read at most this often (the reserve-failure counter, which
/// makes gaps, is read after every drain).
const COUNTER_REFRESH: Duration = Duration::from_millis(250);
/// Name of the pause file, in the ring's directory.
pub const PAUSE_FILE: &str = "paused";

/// The embedded BPF object (built by `agent/build.rs`), or nothing.
#[cfg(imprint_ebpf)]
static OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/imprint-ebpf"
)));
#[cfg(not(imprint_ebpf))]
static OBJECT: Option<&[u8]> = None;

/// True if this binary carries the eBPF programs.
pub fn built_in() -> bool {
    OBJECT.is_some()
}

/// Why eBPF is not the live source (stored in the ring header as a code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Fallback {
    /// The binary was built without the BPF toolchain.
    NotBuilt = 1,
    /// `IMPRINT_EBPF=off`.
    Disabled = 2,
    /// The kernel refused to load or attach a tracing program (EPERM/EACCES).
    PermissionDenied = 3,
    /// No usable kernel BTF (`/sys/kernel/btf/vmlinux` missing, unreadable or without the
    /// input structs).
    NoBtf = 4,
    /// Kernel lockdown in confidentiality mode forbids reading kernel memory.
    Lockdown = 5,
    /// Any other failure to load or attach.
    LoadFailed = 6,
}

impl Fallback {
    pub fn from_code(code: u32) -> Option<Fallback> {
        Some(match code {
            1 => Fallback::NotBuilt,
            2 => Fallback::Disabled,
            3 => Fallback::PermissionDenied,
            4 => Fallback::NoBtf,
            5 => Fallback::Lockdown,
            6 => Fallback::LoadFailed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::NotBuilt => "not_built",
            Fallback::Disabled => "disabled",
            Fallback::PermissionDenied => "permission_denied",
            Fallback::NoBtf => "no_btf",
            Fallback::Lockdown => "lockdown",
            Fallback::LoadFailed => "load_failed",
        }
    }
}

/// The eBPF source could not start.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub fallback: Fallback,
    pub detail: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.fallback.as_str())
    }
}

/// Settings of the eBPF source.
#[derive(Clone, Debug)]
pub struct EbpfOptions {
    /// Size of the BPF ring buffer (a power of two, at least one page).
    pub ringbuf_bytes: u32,
    /// Do not try eBPF at all (`IMPRINT_EBPF=off`).
    pub disabled: bool,
}

impl Default for EbpfOptions {
    fn default() -> Self {
        EbpfOptions {
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            disabled: false,
        }
    }
}

impl EbpfOptions {
    /// `IMPRINT_EBPF=off` disables eBPF (evdev is used, and `status` says so);
    /// `IMPRINT_EBPF_RINGBUF_BYTES` sets the ring buffer's size (rounded up to a power of two).
    pub fn from_env() -> Self {
        let mut opts = EbpfOptions::default();
        if let Ok(v) = std::env::var("IMPRINT_EBPF") {
            opts.disabled = matches!(v.as_str(), "off" | "0" | "false" | "no");
        }
        if let Some(n) = std::env::var("IMPRINT_EBPF_RINGBUF_BYTES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
        {
            opts.ringbuf_bytes = n.clamp(4096, 1 << 30).next_power_of_two();
        }
        opts
    }
}

/// Loaded and attached programs with their maps.
pub struct Programs {
    // Owns the programs and their links: dropping it detaches everything.
    _ebpf: aya::Ebpf,
    events: Option<RingBuf<MapData>>,
    gate: Array<MapData, Gate>,
    counters: PerCpuArray<MapData, u64>,
    ringbuf_bytes: u32,
    paused: bool,
    /// The device classes the agent's verdict admits for the focused context
    /// ([`imprint_record::wire::class`] bits): none closes the gate like a pause; no pointer
    /// class keeps pointer motion (EV_REL, EV_ABS) in the kernel through the type mask.
    scope: u32,
}

/// The programs, their kernel functions, and whether the source can run without each.
const HOOKS: [(&str, bool); 4] = [
    ("input_event", true),
    ("input_inject_event", true),
    ("input_repeat_key", true),
    // Without it a device that goes away is not marked removed; capture is still complete.
    ("input_unregister_device", false),
];

/// Loads the programs and attaches them, with the gate closed if `paused`.
pub fn load(opts: &EbpfOptions, paused: bool) -> Result<Programs, Unavailable> {
    let fail = |fallback, detail: String| Unavailable { fallback, detail };
    if opts.disabled {
        return Err(fail(
            Fallback::Disabled,
            "eBPF is disabled by IMPRINT_EBPF=off".into(),
        ));
    }
    let Some(object) = OBJECT else {
        return Err(fail(
            Fallback::NotBuilt,
            "this imprint binary was built without eBPF (no BPF toolchain at build time)".into(),
        ));
    };
    let layout = btf::Btf::from_sys_fs()
        .map_err(|e| {
            fail(
                Fallback::NoBtf,
                format!("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"),
            )
        })?
        .input_layout()
        .map_err(|e| fail(Fallback::NoBtf, format!("kernel BTF: {e}")))?;
    let kernel_btf =
        aya::Btf::from_sys_fs().map_err(|e| fail(Fallback::NoBtf, format!("kernel BTF: {e}")))?;
    let mut ebpf = aya::EbpfLoader::new()
        .btf(Some(&kernel_btf))
        .map_max_entries(MAP_EVENTS, opts.ringbuf_bytes)
        .load(object)
        .map_err(|e| classify("loading the BPF object", &e))?;

    let map_err = |what: &str, e: &dyn std::fmt::Display| {
        fail(Fallback::LoadFailed, format!("BPF map {what}: {e}"))
    };
    let take = |ebpf: &mut aya::Ebpf, name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| fail(Fallback::LoadFailed, format!("BPF map {name} is missing")))
    };
    let mut layout_map: Array<MapData, imprint_common::KernelLayout> =
        Array::try_from(take(&mut ebpf, MAP_LAYOUT)?).map_err(|e| map_err(MAP_LAYOUT, &e))?;
    layout_map
        .set(0, layout, 0)
        .map_err(|e| map_err(MAP_LAYOUT, &e))?;
    let mut gate: Array<MapData, Gate> =
        Array::try_from(take(&mut ebpf, MAP_GATE)?).map_err(|e| map_err(MAP_GATE, &e))?;
    gate.set(0, if paused { Gate::CLOSED } else { Gate::OPEN }, 0)
        .map_err(|e| map_err(MAP_GATE, &e))?;
    let counters = PerCpuArray::try_from(take(&mut ebpf, MAP_COUNTERS)?)
        .map_err(|e| map_err(MAP_COUNTERS, &e))?;
    let events =
        RingBuf::try_from(take(&mut ebpf, MAP_EVENTS)?).map_err(|e| map_err(MAP_EVENTS, &e))?;

    for (function, required) in HOOKS {
        let attached = (|| -> Result<(), Unavailable> {
            let prog: &mut FEntry = ebpf
                .program_mut(function)
                .ok_or_else(|| {
                    fail(
                        Fallback::LoadFailed,
                        format!("program {function} missing from the object"),
                    )
                })?
                .try_into()
                .map_err(|e| classify(&format!("fentry/{function}"), &e))?;
            prog.load(function, &kernel_btf)
                .map_err(|e| classify(&format!("loading fentry/{function}"), &e))?;
            prog.attach()
                .map_err(|e| classify(&format!("attaching fentry/{function}"), &e))?;
            Ok(())
        })();
        match attached {
            Ok(()) => {}
            Err(e) if required => return Err(e),
            Err(e) => tracing::warn!(error = %e, "optional eBPF hook not attached"),
        }
    }
    Ok(Programs {
        _ebpf: ebpf,
        events: Some(events),
        gate,
        counters,
        ringbuf_bytes: opts.ringbuf_bytes,
        paused,
        scope: class::ALL,
    })
}

/// Maps a load or attach error to a fallback reason, naming lockdown when it is on.
fn classify(what: &str, err: &(dyn std::error::Error + 'static)) -> Unavailable {
    let mut errno = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            errno = io.raw_os_error();
        }
        cur = e.source();
    }
    let lockdown = lockdown_mode();
    let mut detail = format!("{what} failed: {}", chain(err));
    tracing::debug!("{detail}");
    // The verifier log can be long; a log line and the status field need the gist.
    if let Some(cut) = detail.find(". Verifier output:") {
        detail.truncate(cut);
    }
    let fallback = match errno {
        Some(libc::EPERM) | Some(libc::EACCES)
            if lockdown.as_deref() == Some("confidentiality") =>
        {
            Fallback::Lockdown
        }
        Some(libc::EPERM) | Some(libc::EACCES) => Fallback::PermissionDenied,
        _ => Fallback::LoadFailed,
    };
    if fallback == Fallback::PermissionDenied {
        detail.push_str(
            ": tracing programs are refused here (no CAP_BPF and CAP_PERFMON, or a sandbox or \
             security policy denies fentry)",
        );
    }
    if let Some(mode) = lockdown.filter(|m| m != "none") {
        detail.push_str(&format!("; kernel lockdown is {mode}"));
    }
    Unavailable { fallback, detail }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// The active mode in `/sys/kernel/security/lockdown` ("none [integrity] confidentiality").
fn lockdown_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(text[start..end].to_owned())
}

/// Per-CPU counters of the programs, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub seen: u64,
    pub submitted: u64,
    pub gated_off: u64,
    pub gated_type: u64,
    pub reserve_failed: u64,
    pub devices: u64,
    pub device_reserve_failed: u64,
}

impl Programs {
    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Reads every counter.
    pub fn counters(&self) -> KernelCounters {
        debug_assert_eq!(CTR_COUNT, 7);
        KernelCounters {
            seen: self.counter(CTR_SEEN),
            submitted: self.counter(CTR_SUBMITTED),
            gated_off: self.counter(CTR_GATED_OFF),
            gated_type: self.counter(CTR_GATED_TYPE),
            reserve_failed: self.counter(CTR_RESERVE_FAILED),
            devices: self.counter(CTR_DEVICES),
            device_reserve_failed: self.counter(CTR_DEVICE_RESERVE_FAILED),
        }
    }

    fn write_gate(&mut self) -> Result<(), aya::maps::MapError> {
        let closed = self.paused || self.scope == 0;
        let mut gate = if closed { Gate::CLOSED } else { Gate::OPEN };
        if !closed {
            gate.type_mask = class::type_mask(self.scope);
        }
        self.gate.set(0, gate, 0)
    }

    /// Applies the agent's verdict for the focused context (device-class bits).
    pub fn set_scope(&mut self, classes: u32) -> Result<(), aya::maps::MapError> {
        self.scope = classes;
        self.write_gate()
    }

    /// Opens or closes the in-kernel gate.
    pub fn set_paused(&mut self, paused: bool) -> Result<(), aya::maps::MapError> {
        self.paused = paused;
        self.write_gate()
    }
}

// ---------------------------------------------------------------------------------------------
// The ring header's source-status block, mapped a second time for the source task.

/// A writable view of the ring header, for the [`SourceStatus`] block.
pub struct StatusView {
    map: memmap2::MmapMut,
}

impl StatusView {
    /// Maps the header of the ring at `ring_path` (which the collector just created).
    pub fn open(ring_path: &Path) -> std::io::Result<StatusView> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(ring_path)?;
        // SAFETY: a shared map of the header page; every field in it is an atomic.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(layout::HEADER_SIZE as usize)
                .map_mut(&file)
        }?;
        let view = StatusView { map };
        if view.header().id.magic.load(Ordering::Acquire) != layout::MAGIC {
            return Err(std::io::Error::other("not an imprint ring"));
        }
        Ok(view)
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: HEADER_SIZE page-aligned bytes; RingHeader is all atomics and fits.
        unsafe { &*(self.map.as_ptr() as *const RingHeader) }
    }

    pub fn status(&self) -> &SourceStatus {
        &self.header().counters.ebpf
    }

    fn store_counters(&self, c: &KernelCounters) {
        let s = self.status();
        s.bpf_seen.store(c.seen, Ordering::Relaxed);
        s.bpf_submitted.store(c.submitted, Ordering::Relaxed);
        s.bpf_gated_off.store(c.gated_off, Ordering::Relaxed);
        s.bpf_gated_type.store(c.gated_type, Ordering::Relaxed);
        s.bpf_reserve_failed
            .store(c.reserve_failed, Ordering::Relaxed);
        s.bpf_devices.store(c.devices, Ordering::Relaxed);
        s.bpf_device_reserve_failed
            .store(c.device_reserve_failed, Ordering::Relaxed);
    }
}

/// What `imprint status` shows about the eBPF source.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EbpfStatus {
    /// eBPF is the live source.
    pub live: bool,
    /// Counter snapshots published so far.
    pub refreshes: u64,
    /// The binary carries the eBPF programs.
    pub built_in: bool,
    pub paused: bool,
    /// Why evdev is used instead (absent when eBPF is live or was not tried).
    pub fallback: Option<&'static str>,
    pub reason: Option<String>,
    pub ringbuf_bytes: u64,
    pub wakeups: u64,
    pub kernel: KernelCounters,
}

/// Reads the source-status block of the ring at `ring_path`.
pub fn peek_status(ring_path: &Path) -> std::io::Result<EbpfStatus> {
    let file = std::fs::File::open(ring_path)?;
    if file.metadata()?.len() < layout::HEADER_SIZE {
        return Err(std::io::Error::other("ring too short"));
    }
    // SAFETY: a read-only map of the header page, checked for the magic below.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .len(layout::HEADER_SIZE as usize)
            .map(&file)
    }?;
    // SAFETY: as above; RingHeader is all atomics and fits in the page.
    let h = unsafe { &*(map.as_ptr() as *const RingHeader) };
    if h.id.magic.load(Ordering::Acquire) != layout::MAGIC {
        return Err(std::io::Error::other("not an imprint ring"));
    }
    let s = &h.counters.ebpf;
    let fallback = Fallback::from_code(s.fallback.load(Ordering::Relaxed));
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(EbpfStatus {
        live: layout::source_name(h.counters.source.load(Ordering::Relaxed)) == "ebpf",
        refreshes: s.bpf_refreshes.load(Ordering::Acquire),
        built_in: built_in(),
        paused: s.paused.load(Ordering::Relaxed) != 0,
        fallback: fallback.map(Fallback::as_str),
        reason: fallback.map(|_| s.reason()),
        ringbuf_bytes: ld(&s.bpf_ringbuf_bytes),
        wakeups: ld(&s.bpf_wakeups),
        kernel: KernelCounters {
            seen: ld(&s.bpf_seen),
            submitted: ld(&s.bpf_submitted),
            gated_off: ld(&s.bpf_gated_off),
            gated_type: ld(&s.bpf_gated_type),
            reserve_failed: ld(&s.bpf_reserve_failed),
            devices: ld(&s.bpf_devices),
            device_reserve_failed: ld(&s.bpf_device_reserve_failed),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Starting: eBPF first, evdev as the fallback.

/// Starts the eBPF source, or the evdev source on `fallback_dir` when eBPF cannot run; both
/// follow the pause file beside `ring_path`. Returns the live source and its task.
pub fn start(
    opts: &EbpfOptions,
    fallback_dir: PathBuf,
    ring_path: &Path,
    scope: watch::Receiver<u32>,
    tx: SourceTx,
) -> (Source, JoinHandle<anyhow::Result<()>>) {
    let pause_file = ring_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(PAUSE_FILE);
    let view = match StatusView::open(ring_path) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(ring = %ring_path.display(), error = %e, "cannot map the ring header for source status");
            None
        }
    };
    let paused = pause_file.exists();
    if let Some(v) = &view {
        v.status()
            .paused
            .store(u32::from(paused), Ordering::Relaxed);
    }
    match load(opts, paused) {
        Ok(progs) => {
            tracing::info!(
                ringbuf_bytes = progs.ringbuf_bytes,
                paused,
                "capturing with the eBPF source (fentry on input_event, input_inject_event and \
                 input_repeat_key; gated in the kernel)"
            );
            if let Some(v) = &view {
                v.status().fallback.store(0, Ordering::Relaxed);
                v.status()
                    .bpf_ringbuf_bytes
                    .store(progs.ringbuf_bytes.into(), Ordering::Relaxed);
            }
            let task = tokio::spawn(async move {
                run(progs, view, pause_file, scope, tx).await.map_err(|e| {
                    tracing::error!(error = %e, "eBPF source stopped");
                    anyhow::Error::from(e)
                })
            });
            (Source::Ebpf, task)
        }
        Err(why) => {
            tracing::warn!(
                reason = why.fallback.as_str(),
                "eBPF unavailable, capturing with evdev instead: {}",
                why.detail
            );
            if let Some(v) = &view {
                v.status().set_reason(&why.detail);
                v.status()
                    .fallback
                    .store(why.fallback as u32, Ordering::Relaxed);
            }
            let task = tokio::spawn(async move {
                let evdev = super::evdev::run(fallback_dir, tx);
                let pause = follow_pause(view, pause_file);
                tokio::pin!(evdev);
                let ended = tokio::select! {
                    r = &mut evdev => r,
                    r = pause => {
                        if let Err(e) = r {
                            tracing::error!(error = %e, "cannot follow the pause file; pausing will not work");
                        }
                        evdev.await
                    }
                };
                ended.map_err(|e| {
                    tracing::error!(error = %e, "evdev source stopped");
                    anyhow::Error::from(e)
                })
            });
            (Source::Evdev, task)
        }
    }
}

/// Watches the pause file's directory; returns the inotify handle and the file name.
fn watch_pause(pause_file: &Path) -> std::io::Result<AsyncFd<inotify::Inotify>> {
    let dir = pause_file.parent().unwrap_or(Path::new("."));
    let inotify = inotify::Inotify::init()?;
    inotify.watches().add(
        dir,
        inotify::WatchMask::CREATE
            | inotify::WatchMask::DELETE
            | inotify::WatchMask::MOVED_TO
            | inotify::WatchMask::MOVED_FROM,
    )?;
    // SAFETY: the Inotify value owns its fd and keeps it open, unchanged, until dropped.
    unsafe { AsyncFd::register(inotify) }.map_err(|e| e.into())
}

/// Waits for the pause state to differ from `current`; returns the new state.
async fn pause_changed(
    fd: &mut AsyncFd<inotify::Inotify>,
    pause_file: &Path,
    current: bool,
) -> std::io::Result<bool> {
    let mut buf = [0u8; 1024];
    loop {
        let mut guard = fd.readable_mut().await?;
        match guard.try_io(|fd| fd.get_mut().read_events(&mut buf).map(|e| e.count())) {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => return Err(e),
        }
        let now = pause_file.exists();
        if now != current {
            return Ok(now);
        }
    }
}

/// For the evdev fallback: mirrors the pause file into the ring header (the collector drops
/// evdev events while it is set). Never returns unless the watch fails.
async fn follow_pause(view: Option<StatusView>, pause_file: PathBuf) -> std::io::Result<()> {
    let mut fd = watch_pause(&pause_file)?;
    let mut paused = pause_file.exists();
    loop {
        paused = pause_changed(&mut fd, &pause_file, paused).await?;
        tracing::info!(
            paused,
            "capture {}",
            if paused { "paused" } else { "resumed" }
        );
        if let Some(v) = &view {
            v.status()
                .paused
                .store(u32::from(paused), Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reader.

/// Maps kernel device keys to the collector's device indices.
#[derive(Default)]
struct Devices {
    by_key: HashMap<u64, (u32, bool)>,
    next_index: u32,
}

impl Devices {
    fn new_index(&mut self) -> u32 {
        self.next_index += 1;
        self.next_index
    }

    /// The index of `key`; an unknown key (its device record was lost, or it lost a race
    /// with another CPU) gets a placeholder that the device record fills in later.
    fn index(&mut self, key: u64, mono_ns: u64, out: &mut Vec<SourceEvent>) -> u32 {
        if let Some((index, _)) = self.by_key.get(&key) {
            return *index;
        }
        let index = self.new_index();
        self.by_key.insert(key, (index, true));
        out.push(SourceEvent::Device(DeviceInfo {
            index,
            name: String::new(),
            bus: 0,
            vendor: 0,
            product: 0,
            version: 0,
            phys: String::new(),
            is_virtual: false,
            node: String::new(),
            removed: false,
            mono_ns,
            source: Source::Ebpf,
        }));
        index
    }

    fn device(&mut self, d: &BpfDevice, out: &mut Vec<SourceEvent>) {
        let index = match self.by_key.get(&d.dev) {
            Some(&(index, true)) => index, // fill in a placeholder
            Some(&(old, false)) => {
                // A new device at the address of one whose removal was not seen.
                out.push(removed(old, d.mono_ns));
                self.new_index()
            }
            None => self.new_index(),
        };
        self.by_key.insert(d.dev, (index, false));
        let name = c_string(&d.name);
        let phys = c_string(&d.phys);
        const BUS_VIRTUAL: u16 = 0x06;
        let info = DeviceInfo {
            index,
            node: event_node(&name, &phys, d).unwrap_or_default(),
            name,
            bus: d.bustype,
            vendor: d.vendor,
            product: d.product,
            version: d.version,
            phys,
            // uinput devices have no parent (they live under /sys/devices/virtual).
            is_virtual: d.flags & DEV_HAS_PARENT == 0 || d.bustype == BUS_VIRTUAL,
            removed: false,
            mono_ns: d.mono_ns,
            source: Source::Ebpf,
        };
        tracing::info!(device = index, name = %info.name, node = %info.node, is_virtual = info.is_virtual, "input device seen by eBPF");
        out.push(SourceEvent::Device(info));
    }

    fn removed(&mut self, key: u64, mono_ns: u64, out: &mut Vec<SourceEvent>) {
        if let Some((index, _)) = self.by_key.remove(&key) {
            tracing::info!(device = index, "input device removed");
            out.push(removed(index, mono_ns));
        }
    }
}

fn removed(index: u32, mono_ns: u64) -> SourceEvent {
    SourceEvent::Device(DeviceInfo {
        index,
        name: String::new(),
        bus: 0,
        vendor: 0,
        product: 0,
        version: 0,
        phys: String::new(),
        is_virtual: false,
        node: String::new(),
        removed: true,
        mono_ns,
        source: Source::Ebpf,
    })
}

fn c_string(bytes: &[u8]) -> String {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

/// The /dev/input/eventN of the device with this identity, from sysfs (for display only).
fn event_node(name: &str, phys: &str, d: &BpfDevice) -> Option<String> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim_end().to_owned())
    };
    let hex = |p: PathBuf| read(p).and_then(|s| u16::from_str_radix(&s, 16).ok());
    for entry in std::fs::read_dir("/sys/class/input").ok()?.flatten() {
        let dir = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("input") {
            continue;
        }
        if read(dir.join("name")).as_deref() != Some(name)
            || read(dir.join("phys")).unwrap_or_default() != phys
            || hex(dir.join("id/bustype")) != Some(d.bustype)
            || hex(dir.join("id/vendor")) != Some(d.vendor)
            || hex(dir.join("id/product")) != Some(d.product)
        {
            continue;
        }
        for child in std::fs::read_dir(&dir).ok()?.flatten() {
            let n = child.file_name().to_string_lossy().into_owned();
            if n.starts_with("event") {
                return Some(format!("/dev/input/{n}"));
            }
        }
    }
    None
}

/// The reader's state. Dropping it (the collector aborts the task at shutdown) drains what is
/// left in the ring buffer and writes the last counters, so nothing is lost uncounted.
struct Reader {
    progs: Programs,
    fd: AsyncFd<RingBuf<MapData>>,
    view: Option<StatusView>,
    devices: Devices,
    tx: SourceTx,
    /// `reserve_failed` already turned into gaps.
    reserve_failed_seen: u64,
    last_ns: u64,
    wakeups: u64,
    refreshed: Instant,
}

impl Reader {
    /// Takes every record out of the ring buffer.
    fn drain(
        ring: &mut RingBuf<MapData>,
        devices: &mut Devices,
        last_ns: &mut u64,
    ) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            parse(&item, devices, last_ns, &mut out);
        }
        out
    }

    /// A gap for the reserves that failed since the last call.
    fn reserve_gap(&mut self) -> Option<SourceEvent> {
        let failed = self.progs.counter(CTR_RESERVE_FAILED);
        let count = failed.saturating_sub(self.reserve_failed_seen);
        self.reserve_failed_seen = failed;
        (count > 0).then(|| {
            tracing::warn!(count, "BPF ring buffer was full; events lost in the kernel");
            SourceEvent::Gap(Gap {
                from_ns: self.last_ns,
                to_ns: monotonic_now_ns(),
                stage: Stage::BpfReserve,
                count,
                device: NO_DEVICE,
            })
        })
    }

    fn refresh(&mut self) {
        self.refreshed = Instant::now();
        if let Some(v) = &self.view {
            v.store_counters(&self.progs.counters());
            v.status()
                .bpf_wakeups
                .store(self.wakeups, Ordering::Relaxed);
            v.status().bpf_refreshes.fetch_add(1, Ordering::Release);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut out = Self::drain(self.fd.get_mut(), &mut self.devices, &mut self.last_ns);
        let mut lost = 0;
        for ev in out.drain(..) {
            if self.tx.try_send(ev).is_err() {
                lost += 1;
            }
        }
        let mut gap = self.reserve_gap();
        if lost > 0 {
            match &mut gap {
                Some(SourceEvent::Gap(g)) => g.count += lost,
                _ => {
                    gap = Some(SourceEvent::Gap(Gap {
                        from_ns: self.last_ns,
                        to_ns: monotonic_now_ns(),
                        stage: Stage::BpfReserve,
                        count: lost,
                        device: NO_DEVICE,
                    }))
                }
            }
        }
        if let Some(gap) = gap {
            let _ = self.tx.try_send(gap);
        }
        self.refresh();
    }
}

fn parse(data: &[u8], devices: &mut Devices, last_ns: &mut u64, out: &mut Vec<SourceEvent>) {
    let Some(tag) = data
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return;
    };
    match tag {
        REC_EVENT if data.len() >= std::mem::size_of::<BpfEvent>() => {
            // SAFETY: long enough, and BpfEvent is plain integers.
            let e: BpfEvent = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            let device = devices.index(e.dev, e.mono_ns, out);
            *last_ns = e.mono_ns;
            out.push(SourceEvent::Input(RawInput {
                mono_ns: e.mono_ns,
                device,
                kind: e.kind,
                code: e.code,
                value: e.value,
                _pad: 0,
            }));
        }
        REC_DEVICE | REC_REMOVED if data.len() >= std::mem::size_of::<BpfDevice>() => {
            // SAFETY: long enough, and BpfDevice is plain integers and byte arrays.
            let d: BpfDevice = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            if tag == REC_DEVICE {
                devices.device(&d, out);
            } else {
                devices.removed(d.dev, d.mono_ns, out);
            }
        }
        _ => tracing::debug!(tag, len = data.len(), "unknown BPF record"),
    }
}

/// Reads the ring buffer until the collector goes away.
async fn run(
    mut progs: Programs,
    view: Option<StatusView>,
    pause_file: PathBuf,
    scope: watch::Receiver<u32>,
    tx: SourceTx,
) -> std::io::Result<()> {
    let mut scope = Some(scope);
    let Some(ring) = progs.events.take() else {
        return Err(std::io::Error::other(
            "the BPF ring buffer was already taken",
        ));
    };
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, until dropped.
    let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
    let mut pause_fd = match watch_pause(&pause_file) {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::error!(error = %e, "cannot follow the pause file; pausing will not work");
            None
        }
    };
    let mut paused = progs.paused;
    let mut r = Reader {
        progs,
        fd,
        view,
        devices: Devices::default(),
        tx: tx.clone(),
        reserve_failed_seen: 0,
        last_ns: 0,
        wakeups: 0,
        refreshed: Instant::now(),
    };
    r.refresh();
    loop {
        let pause = async {
            match pause_fd.as_mut() {
                Some(fd) => pause_changed(fd, &pause_file, paused).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            guard = r.fd.readable_mut() => {
                let mut guard = guard?;
                r.wakeups += 1;
                // Let the burst that woke us accumulate; the kernel sends no further wake-up
                // until we have caught up, so this costs no extra wake-ups.
                tokio::time::sleep(COALESCE).await;
                let out = Reader::drain(guard.get_inner_mut(), &mut r.devices, &mut r.last_ns);
                guard.clear_ready();
                drop(guard);
                let gap = r.reserve_gap();
                for ev in out.into_iter().chain(gap) {
                    if r.tx.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
                if r.refreshed.elapsed() >= COUNTER_REFRESH {
                    r.refresh();
                }
            }
            now = pause => {
                paused = now?;
                // Counters first: a snapshot at each transition shows what happened during
                // the pause (or before it) without any wake-up while paused.
                r.refresh();
                if let Err(e) = r.progs.set_paused(paused) {
                    tracing::error!(error = %e, "cannot update the in-kernel gate");
                }
                if let Some(v) = &r.view {
                    v.status().paused.store(u32::from(paused), Ordering::Relaxed);
                }
                tracing::info!(paused, "capture {} (in-kernel gate {})",
                    if paused { "paused" } else { "resumed" },
                    if paused { "closed" } else { "open" });
            }
            classes = scope_change(&mut scope) => {
                // Counters first, as for a pause: a closed gate drains nothing, so this is
                // when what it kept out becomes visible (and what `Refresh` asks for).
                r.refresh();
                if let Err(e) = r.progs.set_scope(classes) {
                    tracing::error!(error = %e, "cannot update the in-kernel gate");
                }
            }
            () = tx.closed() => return Ok(()),
        }
    }
}
