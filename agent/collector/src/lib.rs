//! The collector: the small privileged half. It owns the capture source and the device
//! table, frames every record as Cap'n Proto into the shared ring, and never blocks on the
//! agent: when the ring is full it drops the newest records, counts them, and writes one gap
//! record as soon as there is room again.

use imprint_record::codec::encode_record;
use imprint_record::{DeviceInfo, FocusInfo, Gap, InputEvent, Record, Source, Stage, NO_DEVICE};
use imprint_ring::{RingFull, RingWriter};
use imprint_source::{self as source, SourceEvent};
#[cfg(feature = "replay")]
use imprint_source::{libinput_yaml::Recording, replay::Speed};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

/// Ring space kept free for a gap record (a frame of it, plus the worst-case padding before
/// it at the end of the ring), so a loss can always be recorded, even when the collector stops
/// while the ring is full. Only the gap record itself may use it.
const GAP_RESERVE: u64 = 256;

/// Where input comes from.
pub enum Input {
    /// Passive reads of the event nodes in this directory.
    Evdev(PathBuf),
    /// A recording, replayed; with `Speed::Max` the collector waits for ring space instead of
    /// dropping, because a replay has no real time to keep up with.
    #[cfg(feature = "replay")]
    Replay(Recording, Speed),
    /// Capture is off: no source is opened at all.
    Off,
    /// The eBPF source; when it cannot run, the evdev source on this directory instead.
    Ebpf(source::ebpf::EbpfOptions, PathBuf),
}

/// Collector settings.
pub struct CollectorOptions {
    pub ring_path: PathBuf,
    pub cursor_path: PathBuf,
    pub ring_capacity: u64,
    /// Mode of the ring file (0640: readable by the agent's group only).
    pub ring_mode: u32,
    /// Group that may read the ring, when it exists on this machine.
    pub ring_group: Option<String>,
}

/// What a collector run did.
#[derive(Debug, Default, Clone)]
pub struct CollectorSummary {
    pub events: u64,
    pub frames_written: u64,
    pub frames_dropped: u64,
}

/// The collector's state: ring writer, device table and pending drop accounting.
pub struct Collector {
    writer: RingWriter,
    ring_path: PathBuf,
    devices: BTreeMap<u32, DeviceInfo>,
    /// Device and focus records not yet in the ring: they are retried, never dropped.
    unannounced: VecDeque<Record>,
    pending_gap: Option<Gap>,
    scratch: Vec<u8>,
    source: Source,
    lossless: bool,
    /// The focus sequence stamped on every input event (0 until focus is known).
    focus_seq: u64,
    summary: CollectorSummary,
}

impl Collector {
    /// Creates the ring (replacing an old one).
    pub fn create(opts: &CollectorOptions) -> anyhow::Result<Self> {
        let writer = RingWriter::create(
            &opts.ring_path,
            &opts.cursor_path,
            opts.ring_capacity,
            opts.ring_mode,
        )?;
        if let Some(group) = &opts.ring_group {
            share_with_group(&opts.ring_path, group);
        }
        tracing::info!(ring = %opts.ring_path.display(), capacity = opts.ring_capacity, epoch = writer.epoch(), "ring created");
        Ok(Collector {
            writer,
            ring_path: opts.ring_path.clone(),
            devices: BTreeMap::new(),
            unannounced: VecDeque::new(),
            pending_gap: None,
            scratch: Vec::with_capacity(256),
            source: Source::Unknown,
            lossless: false,
            focus_seq: 0,
            summary: CollectorSummary::default(),
        })
    }

    /// The ring's epoch.
    pub fn epoch(&self) -> u64 {
        self.writer.epoch()
    }

    /// Runs `input` until it ends or `shutdown` resolves; then closes the ring. Focus changes
    /// arrive on `focus` (live capture only: a replay has no windows).
    pub async fn run(
        mut self,
        input: Input,
        focus: Option<mpsc::Receiver<Box<FocusInfo>>>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<CollectorSummary> {
        let (tx, mut rx) = mpsc::channel(source::CHANNEL_DEPTH);
        let focus_tx = tx.clone();
        let counters = self.writer.counters();
        let task = match input {
            Input::Off => {
                tracing::info!("capture is off by policy: no input device is opened");
                counters.capture_on.store(0, Ordering::Relaxed);
                drop(tx);
                None
            }
            Input::Evdev(dir) => {
                self.source = Source::Evdev;
                tracing::info!(dir = %dir.display(), "capturing with the evdev source (passive, never grabbed)");
                Some(tokio::spawn(async move {
                    source::evdev::run(dir, tx).await.map_err(|e| {
                        tracing::error!(error = %e, "evdev source stopped");
                        anyhow::Error::from(e)
                    })
                }))
            }
            Input::Ebpf(opts, dir) => {
                let (live, task) = source::ebpf::start(&opts, dir, &self.ring_path, tx);
                self.source = live;
                Some(task)
            }
            #[cfg(feature = "replay")]
            Input::Replay(rec, speed) => {
                self.source = Source::Replay;
                self.lossless = speed == Speed::Max;
                tracing::info!(
                    devices = rec.devices.len(),
                    events = rec.events.len(),
                    ?speed,
                    "replaying recording"
                );
                Some(tokio::spawn(async move {
                    source::replay::run(rec, speed, tx).await;
                    Ok(())
                }))
            }
        };
        let counters = self.writer.counters();
        counters
            .source
            .store(source::source_code(self.source), Ordering::Relaxed);
        counters
            .capture_on
            .store(u32::from(task.is_some()), Ordering::Relaxed);
        // Focus only means something for live input; a replay has no windows.
        match focus {
            Some(mut focus) if matches!(self.source, Source::Evdev | Source::Ebpf) => {
                tokio::spawn(async move {
                    while let Some(f) = focus.recv().await {
                        if focus_tx.send(SourceEvent::Focus(f)).await.is_err() {
                            break;
                        }
                    }
                });
            }
            _ => drop(focus_tx),
        }
        tokio::pin!(shutdown);
        let mut buf = Vec::with_capacity(256);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut buf, 256) => n,
                () = &mut shutdown => break,
            };
            if n == 0 {
                break; // the source ended (a replay finished)
            }
            for ev in buf.drain(..) {
                self.handle(ev).await;
            }
            self.writer.publish();
        }
        // A source that failed (rather than finished, or was stopped) fails the collector,
        // so the service manager restarts it.
        let failed = match task {
            Some(task) if task.is_finished() => task.await.ok().and_then(|r| r.err()),
            Some(task) => {
                task.abort();
                // Wait until it is dropped: the eBPF reader drains the kernel's buffer then.
                let _ = task.await;
                None
            }
            None => None,
        };
        // Whatever the source already handed over is still written.
        rx.close();
        while let Some(ev) = rx.recv().await {
            self.handle(ev).await;
        }
        self.flush_pending();
        // The reserve exists for this: the last loss is recorded even in a full ring.
        self.flush_gap(0);
        self.writer
            .counters()
            .capture_on
            .store(0, Ordering::Relaxed);
        self.writer.close();
        tracing::info!(
            events = self.summary.events,
            dropped = self.summary.frames_dropped,
            "collector stopped"
        );
        match failed {
            Some(e) => Err(e.context("capture source failed")),
            None => Ok(self.summary),
        }
    }

    /// Frames one source event into the ring.
    pub async fn handle(&mut self, ev: SourceEvent) {
        let counters = self.writer.counters();
        match ev {
            SourceEvent::Device(d) => {
                if d.removed {
                    self.devices.remove(&d.index);
                } else {
                    self.devices.insert(d.index, d.clone());
                }
                counters
                    .devices
                    .store(self.devices.len() as u32, Ordering::Relaxed);
                // A device record must not be lost, or later events cannot be attributed.
                self.unannounced.push_back(Record::Device(d));
                self.flush_pending();
            }
            SourceEvent::Gap(g) => {
                // BPF reserve failures are counted in the kernel (counters.ebpf).
                if g.stage != Stage::BpfReserve {
                    counters.evdev_dropped.fetch_add(g.count, Ordering::Relaxed);
                }
                self.push(&Record::Gap(g), g.from_ns).await;
            }
            SourceEvent::Focus(mut f) => {
                self.focus_seq += 1;
                f.seq = self.focus_seq;
                // Like a device, a focus change must not be lost: later events refer to it.
                self.unannounced.push_back(Record::Focus(f));
                self.flush_pending();
            }
            SourceEvent::Input(raw) => {
                // Paused: the eBPF source is gated in the kernel; the evdev fallback here.
                if self.source == Source::Evdev && counters.ebpf.paused.load(Ordering::Relaxed) != 0
                {
                    return;
                }
                self.summary.events += 1;
                let c = match self.source {
                    Source::Ebpf => &counters.events_ebpf,
                    Source::Replay => &counters.events_replay,
                    _ => &counters.events_evdev,
                };
                c.fetch_add(1, Ordering::Relaxed);
                let event = InputEvent {
                    focus: self.focus_seq,
                    ..InputEvent::from(raw)
                };
                self.push(&Record::Event(event), raw.mono_ns).await;
            }
        }
    }

    /// Writes pending device and focus announcements and the pending gap, oldest first.
    fn flush_pending(&mut self) {
        while let Some(rec) = self.unannounced.front() {
            self.scratch.clear();
            encode_record(rec, &mut self.scratch);
            if self
                .writer
                .try_push_leaving(&self.scratch, GAP_RESERVE)
                .is_err()
            {
                return;
            }
            self.unannounced.pop_front();
            self.writer
                .counters()
                .frames_written
                .fetch_add(1, Ordering::Relaxed);
        }
        self.flush_gap(GAP_RESERVE);
    }

    /// Writes the pending gap if it fits leaving `reserve` bytes. While running, the reserve
    /// stays intact (gaps written into it could exhaust it); the final flush may use it all.
    fn flush_gap(&mut self, reserve: u64) {
        if let Some(gap) = self.pending_gap {
            self.scratch.clear();
            encode_record(&Record::Gap(gap), &mut self.scratch);
            if self.writer.try_push_leaving(&self.scratch, reserve).is_ok() {
                let c = self.writer.counters();
                c.gaps_written.fetch_add(1, Ordering::Relaxed);
                c.frames_written.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(count = gap.count, "ring had been full; gap recorded");
                self.pending_gap = None;
            }
        }
    }

    async fn push(&mut self, rec: &Record, mono_ns: u64) {
        self.flush_pending();
        self.scratch.clear();
        encode_record(rec, &mut self.scratch);
        loop {
            let blocked = !self.unannounced.is_empty() || self.pending_gap.is_some();
            let result = if blocked {
                Err(RingFull)
            } else {
                self.writer.try_push_leaving(&self.scratch, GAP_RESERVE)
            };
            match result {
                Ok(_) => {
                    self.summary.frames_written += 1;
                    self.writer
                        .counters()
                        .frames_written
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(RingFull) if self.lossless => {
                    // Replay only: let the agent catch up rather than lose recorded events.
                    self.writer.publish();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    self.flush_pending();
                }
                Err(RingFull) => {
                    self.summary.frames_dropped += 1;
                    self.writer
                        .counters()
                        .frames_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    let g = self.pending_gap.get_or_insert(Gap {
                        from_ns: mono_ns,
                        to_ns: mono_ns,
                        stage: Stage::RingFull,
                        count: 0,
                        device: NO_DEVICE,
                    });
                    g.count += 1;
                    g.to_ns = mono_ns;
                    return;
                }
            }
        }
    }
}

/// Lets `group` read the ring; a missing group (a development machine) is not an error.
fn share_with_group(path: &std::path::Path, group: &str) {
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => {
            if let Err(e) = nix::unistd::chown(path, None, Some(g.gid)) {
                tracing::warn!(path = %path.display(), group, error = %e, "cannot give the ring to its group");
            }
        }
        _ => tracing::debug!(
            group,
            "ring group does not exist; ring stays owner-only readable"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imprint_ring::layout::frame_size;

    #[test]
    fn gap_reserve_fits_the_largest_gap_frame_with_padding() {
        let mut buf = Vec::new();
        let gap = Gap {
            from_ns: u64::MAX,
            to_ns: u64::MAX,
            stage: Stage::SpoolTorn,
            count: u64::MAX,
            device: u32::MAX,
        };
        encode_record(&Record::Gap(gap), &mut buf);
        // Padding before a frame at the end of the ring is less than the frame itself.
        assert!(
            2 * frame_size(buf.len()) <= GAP_RESERVE,
            "gap frame is {} bytes",
            buf.len()
        );
    }
}
