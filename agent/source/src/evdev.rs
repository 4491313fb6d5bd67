//! The evdev source: passive, non-grabbing reads of `/dev/input/event*`.
//!
//! Devices are opened read-only and never grabbed, so every other reader (the compositor,
//! libinput) sees exactly what it would without imprint. Timestamps are switched to
//! CLOCK_MONOTONIC with EVIOCSCLOCKID. Hotplug is followed with inotify on the directory.
//! A SYN_DROPPED (the kernel's per-client buffer overflowed) becomes a gap record; events up
//! to the next SYN_REPORT are discarded, as the kernel documents, and key state is
//! resynchronised from EVIOCGKEY so no key is left "held".

use super::{monotonic_now_ns, SourceError, SourceEvent, SourceTx};
use evdev::raw_stream::RawDevice;
use evdev::{EventType, KeyCode};
use imprint_common::{RawInput, EV_SYN, SYN_DROPPED, SYN_REPORT};
use imprint_record::{DeviceInfo, Gap, Source, Stage};
use inotify::{Inotify, WatchMask};
use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

nix::ioctl_write_ptr!(eviocsclockid, b'E', 0xa0, libc::c_int);

/// The directory device nodes appear in.
pub const INPUT_DIR: &str = "/dev/input";

/// Runs the evdev source until the channel closes: enumerates `dir`, then follows hotplug.
pub async fn run(dir: PathBuf, tx: SourceTx) -> Result<(), SourceError> {
    if !dir.exists() && !wait_for_dir(&dir, &tx).await? {
        return Ok(());
    }
    let io = |source| SourceError::Io {
        path: dir.clone(),
        source,
    };
    let inotify = Inotify::init().map_err(io)?;
    // Watch before enumerating so a device created in between is not missed.
    inotify
        .watches()
        .add(
            &dir,
            WatchMask::CREATE | WatchMask::ATTRIB | WatchMask::DELETE,
        )
        .map_err(io)?;
    let mut readers = Readers {
        next_index: 1,
        open: HashMap::new(),
        tx: tx.clone(),
    };
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_event_node(p))
        .collect();
    nodes.sort();
    for node in nodes {
        readers.open(&node).await;
    }
    // SAFETY: the Inotify value owns its fd and keeps it open, unchanged, until dropped.
    let mut inotify = unsafe { AsyncFd::register(inotify) }.map_err(|e| io(e.into()))?;
    let mut buf = [0u8; 4096];
    loop {
        let mut guard = tokio::select! {
            g = inotify.readable_mut() => g.map_err(io)?,
            () = tx.closed() => return Ok(()),
        };
        let names: Vec<(PathBuf, bool)> =
            match guard.try_io(|fd| fd.get_mut().read_events(&mut buf)) {
                Ok(Ok(events)) => events
                    .filter_map(|e| {
                        let name = e.name?;
                        Some((dir.join(name), e.mask.contains(inotify::EventMask::DELETE)))
                    })
                    .collect(),
                Ok(Err(e)) => return Err(io(e)),
                Err(_would_block) => continue,
            };
        drop(guard);
        readers.reap();
        for (node, deleted) in names {
            if is_event_node(&node) && !deleted {
                readers.open(&node).await;
            }
        }
    }
}

/// Waits (in inotify, without polling) for `dir` to appear: a machine can boot with no input
/// device at all. Returns false when the collector stops first.
async fn wait_for_dir(dir: &Path, tx: &SourceTx) -> Result<bool, SourceError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let io = |source| SourceError::Io {
        path: parent.to_owned(),
        source,
    };
    let inotify = Inotify::init().map_err(io)?;
    inotify
        .watches()
        .add(parent, WatchMask::CREATE)
        .map_err(io)?;
    tracing::info!(dir = %dir.display(), "no input device directory yet; waiting for it");
    // SAFETY: the Inotify value owns its fd and keeps it open, unchanged, until dropped.
    let mut inotify = unsafe { AsyncFd::register(inotify) }.map_err(|e| io(e.into()))?;
    let mut buf = [0u8; 1024];
    while !dir.exists() {
        let mut guard = tokio::select! {
            g = inotify.readable_mut() => g.map_err(io)?,
            () = tx.closed() => return Ok(false),
        };
        // The events themselves do not matter: the loop re-checks the directory.
        let _ = guard.try_io(|fd| fd.get_mut().read_events(&mut buf).map(|_| ()));
    }
    Ok(true)
}

fn is_event_node(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.strip_prefix("event")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

struct Readers {
    next_index: u32,
    open: HashMap<PathBuf, JoinHandle<()>>,
    tx: SourceTx,
}

impl Readers {
    /// Forgets readers whose device went away, so a new node with the same name is opened.
    fn reap(&mut self) {
        self.open.retain(|_, h| !h.is_finished());
    }

    async fn open(&mut self, node: &Path) {
        self.reap();
        if self.open.contains_key(node) {
            return;
        }
        let dev = match open_passive(node) {
            Ok(d) => d,
            Err(e) => {
                // A node can appear before its permissions are final; ATTRIB retries it.
                tracing::debug!(node = %node.display(), error = %e, "cannot open input device yet");
                return;
            }
        };
        let clock = libc::CLOCK_MONOTONIC;
        // SAFETY: EVIOCSCLOCKID reads one c_int from the pointer; the fd is open.
        if let Err(e) = unsafe { eviocsclockid(dev.as_raw_fd(), &clock) } {
            tracing::warn!(node = %node.display(), error = %e, "EVIOCSCLOCKID failed; timestamps stay realtime");
        }
        let index = self.next_index;
        self.next_index += 1;
        let info = describe(&dev, node, index);
        tracing::info!(device = index, name = %info.name, node = %node.display(), is_virtual = info.is_virtual, "input device added");
        if self
            .tx
            .send(SourceEvent::Device(info.clone()))
            .await
            .is_err()
        {
            return;
        }
        let tx = self.tx.clone();
        let handle = tokio::spawn(read_device(dev, info, tx));
        self.open.insert(node.to_owned(), handle);
    }
}

/// Opens read-only: imprint never writes to (or grabs) an input device.
fn open_passive(node: &Path) -> std::io::Result<RawDevice> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(node)?;
    RawDevice::from_fd(file.into())
}

fn describe(dev: &RawDevice, node: &Path, index: u32) -> DeviceInfo {
    let id = dev.input_id();
    DeviceInfo {
        index,
        name: dev.name().unwrap_or("").to_owned(),
        bus: id.bus_type().0,
        vendor: id.vendor(),
        product: id.product(),
        version: id.version(),
        phys: dev.physical_path().unwrap_or("").to_owned(),
        is_virtual: is_virtual(node, id.bus_type().0),
        node: node.display().to_string(),
        removed: false,
        mono_ns: monotonic_now_ns(),
        source: Source::Evdev,
    }
}

/// uinput and other software devices live under /sys/devices/virtual.
fn is_virtual(node: &Path, bus: u16) -> bool {
    const BUS_VIRTUAL: u16 = 0x06;
    let sys = node
        .file_name()
        .map(|n| Path::new("/sys/class/input").join(n))
        .and_then(|p| std::fs::canonicalize(p).ok());
    bus == BUS_VIRTUAL || sys.is_some_and(|p| p.starts_with("/sys/devices/virtual"))
}

async fn read_device(dev: RawDevice, info: DeviceInfo, tx: SourceTx) {
    let mut held: BTreeSet<u16> = BTreeSet::new();
    let mut stream = match dev.into_event_stream() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(device = info.index, error = %e, "cannot read input device");
            return;
        }
    };
    let mut dropping: Option<Gap> = None;
    loop {
        let ev = tokio::select! {
            r = stream.next_event() => r,
            () = tx.closed() => return,
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                // ENODEV: unplugged. Either way this device is done; it is not an error.
                tracing::info!(device = info.index, name = %info.name, error = %e, "input device removed");
                let gone = DeviceInfo {
                    removed: true,
                    mono_ns: monotonic_now_ns(),
                    ..info
                };
                let _ = tx.send(SourceEvent::Device(gone)).await;
                return;
            }
        };
        let mono_ns = ev
            .timestamp()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let raw = RawInput {
            mono_ns,
            device: info.index,
            kind: ev.event_type().0,
            code: ev.code(),
            value: ev.value(),
            _pad: 0,
        };
        if raw.kind == EV_SYN && raw.code == SYN_DROPPED {
            dropping.get_or_insert(Gap {
                from_ns: mono_ns,
                to_ns: mono_ns,
                stage: Stage::EvdevSynDropped,
                count: 0,
                device: info.index,
            });
            continue;
        }
        if let Some(gap) = dropping.as_mut() {
            // The kernel's contract: everything up to the next SYN_REPORT is incomplete.
            gap.count += 1;
            gap.to_ns = mono_ns;
            if raw.kind == EV_SYN && raw.code == SYN_REPORT {
                let gap = *gap;
                dropping = None;
                tracing::warn!(
                    device = info.index,
                    discarded = gap.count,
                    "SYN_DROPPED: kernel buffer overflowed; resynchronising"
                );
                if tx.send(SourceEvent::Gap(gap)).await.is_err() {
                    return;
                }
                for fix in resync_keys(stream.device(), &mut held, info.index, mono_ns) {
                    if tx.send(SourceEvent::Input(fix)).await.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        if raw.kind == EventType::KEY.0 {
            match raw.value {
                0 => {
                    held.remove(&raw.code);
                }
                1 => {
                    held.insert(raw.code);
                }
                _ => {}
            }
        }
        if tx.send(SourceEvent::Input(raw)).await.is_err() {
            return;
        }
    }
}

/// Events that bring `held` in line with the kernel's key state after a drop.
fn resync_keys(
    dev: &RawDevice,
    held: &mut BTreeSet<u16>,
    device: u32,
    mono_ns: u64,
) -> Vec<RawInput> {
    let Ok(state) = dev.get_key_state() else {
        return Vec::new();
    };
    let now: BTreeSet<u16> = state.iter().map(|k: KeyCode| k.code()).collect();
    let key = |code, value| RawInput {
        mono_ns,
        device,
        kind: EventType::KEY.0,
        code,
        value,
        _pad: 0,
    };
    let mut out: Vec<RawInput> = held.difference(&now).map(|&c| key(c, 0)).collect();
    out.extend(now.difference(held).map(|&c| key(c, 1)));
    if !out.is_empty() {
        out.push(RawInput {
            mono_ns,
            device,
            kind: EV_SYN,
            code: SYN_REPORT,
            value: 0,
            _pad: 0,
        });
    }
    *held = now;
    out
}
