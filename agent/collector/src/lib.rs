//! The collector: the small privileged half. It owns the capture source and the device
//! table, frames every record as Cap'n Proto into the shared ring, and never blocks on the
//! agent: when the ring is full it drops the newest records, counts them, and writes one gap
//! record as soon as there is room again.

use imprint_record::codec::encode_record;
use imprint_record::{DeviceInfo, FocusInfo, Gap, InputEvent, Record, Source, Stage, NO_DEVICE};
use imprint_ring::{RingFull, RingStart, RingWriter};
use imprint_source::{self as source, SourceEvent};
#[cfg(feature = "replay")]
use imprint_source::{libinput_yaml::Recording, replay::Speed};
mod keys;
pub mod sessions;

use imprint_record::wire::class;
use sessions::SessionEvent;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Ring space kept free for a gap record (a frame of it, plus the worst-case padding before
/// it at the end of the ring), so a loss can always be recorded, even when the collector stops
/// while the ring is full. Only the gap record itself may use it.
const GAP_RESERVE: u64 = 256;
/// Records queued for a full ring beyond which new pointer samples are dropped (about a
/// minute of motion at the helper's rate).
const MAX_QUEUED_POINTER: usize = 4096;

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
    pub pointer_dropped: u64,
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
    /// The highest focus sequence issued in this ring, by this collector or the one whose ring
    /// it continued: the next focus gets a higher one.
    last_focus_seq: u64,
    /// The session connection that reported the current focus (0: none, or in-process).
    focus_conn: u64,
    /// The device classes the agent's verdict admits for the current focus (all until it
    /// has spoken). What it does not admit is dropped here (evdev) or in the kernel (eBPF,
    /// through `scope_tx`): nothing at all for none, pointer axes for no pointer class.
    scope: u32,
    scope_tx: watch::Sender<u32>,
    /// Which keys are down, to keep the releases of presses that the closed gate kept out.
    keys: keys::KeyState,
    /// Replay only: take focus from the session socket, and wait for the first report.
    replay_session_focus: bool,
    /// Focus comes only from imprint-session helpers (no trackers in this process): until one
    /// reports, focus is explicitly unknown.
    expect_helpers: bool,
    summary: CollectorSummary,
    /// Fed from the main loop, so systemd restarts a collector whose loop hangs.
    watchdog: imprint_service::Watchdog,
}

impl Collector {
    /// Opens the ring: continues the previous collector's, so that what the agent has not yet
    /// read of it survives a restart, or creates a new one. A crash of the previous collector,
    /// and a replaced ring, each become a gap record.
    pub fn create(opts: &CollectorOptions) -> anyhow::Result<Self> {
        let (writer, start) = RingWriter::open(
            &opts.ring_path,
            &opts.cursor_path,
            opts.ring_capacity,
            opts.ring_mode,
        )?;
        if let Some(group) = &opts.ring_group {
            share_with_group(&opts.ring_path, group);
        }
        let now = source::monotonic_now_ns();
        // A crash gap waits its turn like an announcement: retried, never dropped.
        let mut unannounced = VecDeque::new();
        match &start {
            RingStart::Created { replaced, why } => {
                if let (Some((epoch, last_seq)), Some(why)) = (replaced, why) {
                    tracing::warn!(ring = %opts.ring_path.display(), old_epoch = epoch, old_last_seq = last_seq, why, "replaced the previous ring instead of continuing it; the agent counts what it had not read");
                }
                tracing::info!(ring = %opts.ring_path.display(), capacity = opts.ring_capacity, epoch = writer.epoch(), "ring created");
            }
            RingStart::Continued {
                crashed,
                last_mono_ns,
            } => {
                tracing::info!(ring = %opts.ring_path.display(), epoch = writer.epoch(), crashed, "continuing the previous collector's ring");
                if *crashed {
                    // What the dead collector had read but not published, and input while
                    // none ran, is gone; how much, nobody can know.
                    unannounced.push_back(Record::Gap(Gap {
                        from_ns: (*last_mono_ns).min(now),
                        to_ns: now,
                        stage: Stage::CollectorCrash,
                        count: 0,
                        device: NO_DEVICE,
                    }));
                }
            }
        }
        let last_focus_seq = writer.focus_seq();
        Ok(Collector {
            writer,
            ring_path: opts.ring_path.clone(),
            devices: BTreeMap::new(),
            unannounced,
            pending_gap: None,
            scratch: Vec::with_capacity(256),
            source: Source::Unknown,
            lossless: false,
            focus_seq: 0,
            last_focus_seq,
            focus_conn: 0,
            scope: class::ALL,
            scope_tx: watch::channel(class::ALL).0,
            keys: keys::KeyState::default(),
            replay_session_focus: false,
            expect_helpers: false,
            summary: CollectorSummary::default(),
            watchdog: imprint_service::Watchdog::disabled(),
        })
    }

    /// Attributes a replay to the focus that imprint-session reports, as live input is
    /// (tests of the shipped process split), and waits for the first report before replaying.
    pub fn replay_with_session_focus(&mut self, on: bool) {
        self.replay_session_focus = on;
    }

    /// Says that focus comes only from imprint-session helpers: until one reports, every
    /// event carries a focus record whose `unknown_reason` is `no_session_helper`.
    pub fn expect_session_helpers(&mut self, on: bool) {
        self.expect_helpers = on;
    }

    /// Feeds `watchdog` (the service manager's) from the main loop.
    pub fn set_watchdog(&mut self, watchdog: imprint_service::Watchdog) {
        self.watchdog = watchdog;
    }

    /// The ring's epoch.
    pub fn epoch(&self) -> u64 {
        self.writer.epoch()
    }

    /// Runs `input` until it ends or `shutdown` resolves; then closes the ring. Focus reports
    /// and the agent's verdicts arrive on `sessions` (focus only for live capture: a replay has
    /// no windows).
    pub async fn run(
        mut self,
        input: Input,
        sessions: Option<mpsc::Receiver<SessionEvent>>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<CollectorSummary> {
        let (tx, mut rx) = mpsc::channel(source::CHANNEL_DEPTH);
        let mut sessions = sessions;
        #[cfg(feature = "replay")]
        if self.replay_session_focus && matches!(input, Input::Replay(..)) {
            if let Some(s) = sessions.as_mut() {
                tracing::info!("waiting for a session focus report before replaying");
                while let Some(ev) = s.recv().await {
                    let focus = matches!(ev, SessionEvent::Focus(..));
                    self.session_event(ev, true);
                    self.writer.publish();
                    if focus {
                        break;
                    }
                }
            }
        }
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
                let scope = self.scope_tx.subscribe();
                let (live, task) = source::ebpf::start(&opts, dir, &self.ring_path, scope, tx);
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
        let live = matches!(self.source, Source::Evdev | Source::Ebpf) || self.replay_session_focus;
        if live && self.expect_helpers && sessions.is_some() && self.focus_seq == 0 {
            // Until a helper reports, nothing is known about focus: say so explicitly.
            self.set_focus(0, unknown_focus("no_session_helper"));
        }
        imprint_service::ready(if task.is_some() {
            "capturing"
        } else {
            "capture is off by policy"
        });
        tokio::pin!(shutdown);
        let mut buf = Vec::with_capacity(256);
        loop {
            self.watchdog.tick();
            let due = self.watchdog.due_in();
            let n = tokio::select! {
                () = watchdog_due(due) => continue,
                n = rx.recv_many(&mut buf, 256) => n,
                ev = recv_session(&mut sessions) => {
                    match ev {
                        Some(ev) => self.session_event(ev, live),
                        None => sessions = None,
                    }
                    self.writer.publish();
                    continue;
                }
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
        imprint_service::stopping();
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
            SourceEvent::Focus(f) => self.set_focus(0, f),
            SourceEvent::Input(raw) => {
                // Paused: the eBPF source is gated in the kernel; the evdev fallback here.
                if self.source == Source::Evdev && counters.ebpf.paused.load(Ordering::Relaxed) != 0
                {
                    return;
                }
                // Out of scope never leaves the collector (with eBPF, not even the kernel once
                // the gate has closed; this catches what was already in flight).
                if !class::admits(self.scope, raw.kind) || self.keys.gated_release(&raw) {
                    self.writer
                        .session_counters()
                        .scope_dropped
                        .fetch_add(1, Ordering::Relaxed);
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

    /// Starts a new focus context: a new sequence number, and the gate open until the agent's
    /// verdict for it arrives (the agent drops what policy does not admit either way).
    fn set_focus(&mut self, conn: u64, mut f: Box<FocusInfo>) {
        self.last_focus_seq += 1;
        self.focus_seq = self.last_focus_seq;
        self.writer.set_focus_seq(self.focus_seq);
        f.seq = self.focus_seq;
        if f.mono_ns == 0 {
            f.mono_ns = source::monotonic_now_ns();
        }
        self.focus_conn = conn;
        self.set_scope(class::ALL);
        // Like a device, a focus change must not be lost: later events refer to it.
        self.unannounced.push_back(Record::Focus(f));
        self.flush_pending();
    }

    fn set_scope(&mut self, classes: u32) {
        if self.scope != classes {
            if classes == 0 {
                self.keys.gate_closed();
            }
            self.scope = classes;
            self.scope_tx.send_replace(classes);
            self.writer
                .session_counters()
                .scope_closed
                .store(u32::from(classes == 0), Ordering::Relaxed);
            tracing::debug!(classes, focus = self.focus_seq, "scope gate");
        }
    }

    /// Applies one message from the session socket.
    pub fn session_event(&mut self, ev: SessionEvent, live: bool) {
        let c = self.writer.session_counters();
        match ev {
            SessionEvent::Focus(conn, f) => {
                c.reports_accepted.fetch_add(1, Ordering::Relaxed);
                if live {
                    self.set_focus(conn, f);
                }
            }
            SessionEvent::Verdict(v) => {
                c.verdicts.fetch_add(1, Ordering::Relaxed);
                // A verdict about an older focus (or an older ring) says nothing about now.
                if v.ring_epoch == self.epoch() && v.focus_seq == self.focus_seq {
                    self.set_scope(v.classes & class::ALL);
                }
            }
            SessionEvent::Screen(conn, rec) => {
                if live {
                    self.screen(conn, rec);
                }
            }
            SessionEvent::HelperUp { uid, .. } => {
                c.helpers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(uid, "session helper connected");
            }
            SessionEvent::HelperDown { conn, uid } => {
                let _ = c
                    .helpers
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if conn == self.focus_conn && live {
                    c.helpers_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        uid,
                        "session helper went away: focus is unknown until it is back"
                    );
                    self.set_focus(0, unknown_focus("helper_exited"));
                }
            }
            SessionEvent::Refused { conn, uid } => {
                let n = c.reports_refused.fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::warn!(
                        uid,
                        "focus report refused: the peer does not own the seat's active session"
                    );
                }
                // The helper whose focus is current has lost the seat (a VT switch to another
                // session, a fast user switch): what is typed now is not in its focus, and
                // nobody who may say what it is has spoken. Fail closed.
                if conn != 0 && conn == self.focus_conn && live {
                    self.set_focus(0, unknown_focus("not_active_session"));
                }
            }
            SessionEvent::VerdictRefused { uid } => {
                c.reports_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(uid, "verdict refused: the peer is not the agent");
            }
            SessionEvent::Malformed => {
                c.reports_malformed.fetch_add(1, Ordering::Relaxed);
            }
            SessionEvent::Refresh => {
                // The eBPF task publishes its counters whenever the scope is (re)sent.
                self.scope_tx.send_replace(self.scope);
            }
        }
    }

    /// Queues a pointer sample, window geometry or display layout for the ring, stamped with the
    /// focus it belongs to. Samples from a helper whose focus is not current are refused: with
    /// two sessions, only the one that has the seat says where the pointer is.
    fn screen(&mut self, conn: u64, mut rec: Record) {
        let c = self.writer.session_counters();
        match &mut rec {
            Record::Pointer(p) if conn == self.focus_conn && self.focus_seq > 0 => {
                p.focus = self.focus_seq;
            }
            Record::Window(w) if conn == self.focus_conn && self.focus_seq > 0 => {
                w.focus = self.focus_seq;
            }
            Record::Display(_) => {}
            _ => {
                c.reports_refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // Positions are many and each is soon superseded: under sustained ring pressure the
        // newest are dropped (and counted) rather than queued without bound. Layout and window
        // records are few and later records depend on them: they always wait their turn.
        if matches!(rec, Record::Pointer(_)) && self.unannounced.len() >= MAX_QUEUED_POINTER {
            self.summary.pointer_dropped += 1;
            c.pointer_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.unannounced.push_back(rec);
        self.flush_pending();
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
            if let Some(Record::Pointer(_)) = self.unannounced.pop_front() {
                self.writer
                    .session_counters()
                    .pointer_samples
                    .fetch_add(1, Ordering::Relaxed);
            }
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
                    self.writer.note_time(mono_ns);
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

/// A focus record saying that nothing is known about focus, and why.
fn unknown_focus(reason: &str) -> Box<FocusInfo> {
    Box::new(FocusInfo {
        unknown: true,
        unknown_reason: reason.into(),
        mono_ns: source::monotonic_now_ns(),
        ..FocusInfo::default()
    })
}

/// Resolves when the watchdog is due (never, without one).
async fn watchdog_due(due: Option<Duration>) {
    match due {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn recv_session(rx: &mut Option<mpsc::Receiver<SessionEvent>>) -> Option<SessionEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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
    use imprint_record::codec::decode_record;
    use imprint_record::wire::Verdict;
    use imprint_ring::layout::frame_size;
    use imprint_ring::{ReadOutcome, RingReader};

    fn key(code: u16, value: i32) -> SourceEvent {
        SourceEvent::Input(imprint_common::RawInput {
            mono_ns: 1,
            device: 1,
            kind: 1,
            code,
            value,
            ..Default::default()
        })
    }

    /// The scope gate and a helper that goes away, on a real ring file.
    #[test]
    fn verdicts_close_the_gate_and_a_lost_helper_makes_focus_unknown() {
        let dir = tempfile::tempdir().expect("tmp");
        let ring = dir.path().join("ring");
        let cursor = dir.path().join("cursor");
        let mut c = Collector::create(&CollectorOptions {
            ring_path: ring.clone(),
            cursor_path: cursor.clone(),
            ring_capacity: 1 << 16,
            ring_mode: 0o600,
            ring_group: None,
        })
        .expect("ring");
        let epoch = c.epoch();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let focus = Box::new(FocusInfo {
            pid: 10,
            exe: "/usr/bin/shell".into(),
            ..FocusInfo::default()
        });
        c.session_event(SessionEvent::HelperUp { conn: 5, uid: 1000 }, true);
        c.session_event(SessionEvent::Focus(5, focus), true);
        rt.block_on(c.handle(key(30, 1)));
        // The agent says focus 1 is out of scope for every class: nothing more is framed.
        c.session_event(
            SessionEvent::Verdict(Verdict {
                focus_seq: 1,
                ring_epoch: epoch,
                classes: 0,
            }),
            true,
        );
        rt.block_on(c.handle(key(31, 1)));
        // A verdict about another ring, or an older focus, changes nothing.
        c.session_event(
            SessionEvent::Verdict(Verdict {
                focus_seq: 1,
                ring_epoch: epoch + 1,
                classes: class::ALL,
            }),
            true,
        );
        rt.block_on(c.handle(key(32, 1)));
        assert_eq!(
            c.writer
                .session_counters()
                .scope_dropped
                .load(Ordering::Relaxed),
            2
        );
        // The helper dies: focus becomes unknown, and the gate opens for the agent to decide.
        c.session_event(SessionEvent::HelperDown { conn: 5, uid: 1000 }, true);
        rt.block_on(c.handle(key(33, 1)));
        c.writer.publish();
        assert_eq!(
            c.writer
                .session_counters()
                .helpers_lost
                .load(Ordering::Relaxed),
            1
        );

        let mut r = RingReader::open(&ring, &cursor).expect("reader");
        let mut seen = Vec::new();
        while let ReadOutcome::Frame { payload, .. } = r.next_frame() {
            seen.push(decode_record(payload).expect("record"));
        }
        let summary: Vec<String> = seen
            .iter()
            .map(|rec| match rec {
                Record::Focus(f) => format!("focus {} {}", f.seq, f.unknown_reason),
                Record::Event(e) => format!("key {} @{}", e.code, e.focus),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "focus 1 ",
                "key 30 @1",
                "focus 2 helper_exited",
                "key 33 @2"
            ],
            "{seen:?}"
        );
    }

    /// The helper whose focus is current loses the seat: focus becomes unknown at once, while
    /// another peer's refused report changes nothing.
    #[test]
    fn a_refused_report_from_the_focus_owner_makes_focus_unknown() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = Collector::create(&CollectorOptions {
            ring_path: dir.path().join("ring"),
            cursor_path: dir.path().join("cursor"),
            ring_capacity: 1 << 16,
            ring_mode: 0o600,
            ring_group: None,
        })
        .expect("ring");
        let focus = Box::new(FocusInfo {
            pid: 10,
            exe: "/usr/bin/bash".into(),
            ..FocusInfo::default()
        });
        c.session_event(SessionEvent::Focus(5, focus), true);
        c.session_event(SessionEvent::Refused { conn: 9, uid: 1001 }, true);
        assert_eq!(c.focus_seq, 1, "another session's peer decides nothing");
        c.session_event(SessionEvent::Refused { conn: 5, uid: 1000 }, true);
        assert_eq!((c.focus_seq, c.focus_conn), (2, 0));
        c.writer.publish();
        let mut r =
            RingReader::open(&dir.path().join("ring"), &dir.path().join("cursor")).expect("reader");
        let mut last = None;
        while let ReadOutcome::Frame { payload, .. } = r.next_frame() {
            last = Some(decode_record(payload).expect("record"));
        }
        assert!(
            matches!(&last, Some(Record::Focus(f)) if f.unknown && f.unknown_reason == "not_active_session"),
            "{last:?}"
        );
    }

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
