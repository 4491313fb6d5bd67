//! The agent: the unprivileged half. It reads the ring, applies policy, appends batches to
//! the spool, fsyncs on an interval, and only then commits its ring position, so a crash at
//! any point loses nothing that reached the ring and duplicates nothing that reached disk.
//!
//! Exactly-once across crashes: every batch records the ring epoch and the last ring sequence
//! number it contains. On start the newest intact batch says where the spool ends; ring frames
//! at or below that sequence (fsynced, but killed before the commit) are skipped.
//!
//! Policy is applied per record by [`Filter`]: the Focus records seen on the ring map each
//! event's focus seq to an identity, and so to a level. SIGHUP reloads the policy; a policy
//! that does not validate is refused, logged and counted, and the old one stays in force.

pub mod control;
pub mod daemon;
pub mod retention;
pub mod ship;
pub mod status;
pub mod verdict;

use crate::control::Control;
pub use crate::status::{PolicyStampView, PolicyStatus, ReloadStats};
use imprint_metrics::AgentStats;
use imprint_policy::filter::Filter;
use imprint_policy::Policy;
use imprint_record::codec::{decode_batch, decode_record, encode_batch, BatchMeta};
use imprint_record::{DeviceInfo, Gap, Record, Stage, NO_DEVICE};
use imprint_ring::reader::RingWaker;
use imprint_ring::{ReadOutcome, RingReader};
use imprint_spool::{Spool, SpoolError, SpoolOptions};
use retention::{time_span, SegmentSummary};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Most records put in one batch.
const MAX_BATCH: usize = 4096;

/// Agent settings.
pub struct AgentOptions {
    pub ring_path: PathBuf,
    pub cursor_path: PathBuf,
    /// Where the status snapshot for `imprint status` is written.
    pub status_path: PathBuf,
    pub spool: SpoolOptions,
    pub fsync_interval: Duration,
    pub policy: Policy,
    /// Where to reload the policy from on SIGHUP (config file, and whether it must exist).
    pub policy_source: Option<(PathBuf, bool)>,
    /// Exit once the collector has closed the ring and it is drained (replays, tests).
    pub exit_when_closed: bool,
    /// Where to serve the control socket (`imprint status` for every local user).
    pub control_path: Option<PathBuf>,
    /// The collector's session socket, where scope verdicts go.
    pub session_socket: Option<PathBuf>,
    /// Shipping sealed segments (`[ship]`), in its own thread when enabled.
    pub ship: imprint_config::ship::ShipConfig,
}

/// Asks a running agent to stop, from another thread or a signal handler task.
#[derive(Clone, Default)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<RingWaker>>>,
}

impl StopHandle {
    /// Requests a stop and interrupts the agent's wait.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w.wake();
            }
        }
    }

    fn requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Asks the agent to reload its policy (SIGHUP).
    pub fn reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
        if let Ok(w) = self.waker.lock() {
            if let Some(w) = w.as_ref() {
                w.wake();
            }
        }
    }

    fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    fn set_waker(&self, w: RingWaker) {
        if let Ok(mut slot) = self.waker.lock() {
            *slot = Some(w);
        }
    }
}

/// Where the spool ends, in ring terms.
#[derive(Clone, Copy, Debug, Default)]
struct Resume {
    epoch: u64,
    seq: u64,
}

impl Resume {
    /// From the clear tag beside an encrypted batch.
    fn from_tag(tag: &[u8]) -> Option<Resume> {
        SegmentSummary::from_tag(tag).map(|s| Resume {
            epoch: s.ring_epoch,
            seq: s.ring_seq_last,
        })
    }
}

struct Agent {
    opts: AgentOptions,
    spool: Spool,
    resume: Resume,
    devices: BTreeMap<u32, DeviceInfo>,
    pending_gaps: Vec<Gap>,
    stats: AgentStats,
    disk_full: bool,
    filter: Filter,
    reloads: ReloadStats,
    control: Option<Control>,
    verdicts: Option<verdict::VerdictSender>,
    /// Stamped on every batch, so exports can tell one boot's monotonic clock from another's.
    boot_id: String,
    /// What the open segment holds so far (its clear tag when encrypted).
    segment: SegmentSummary,
    /// Fed from the reading loop, so systemd restarts an agent whose loop hangs.
    watchdog: imprint_service::Watchdog,
}

/// The policy status file beside `status_path`.
pub fn policy_status_path(status_path: &std::path::Path) -> PathBuf {
    status_path.with_file_name("policy.status.json")
}

/// Runs the agent until stopped (or, with `exit_when_closed`, until the ring is done).
pub fn run(opts: AgentOptions, stop: StopHandle) -> anyhow::Result<AgentStats> {
    let (spool, recovery) = Spool::open(opts.spool.clone())?;
    let mut resume = Resume::default();
    if let Some(tag) = &recovery.last_tag {
        match Resume::from_tag(tag) {
            Some(r) => resume = r,
            None => {
                tracing::warn!(
                    "newest spool batch has no ring position; ring frames may be written twice"
                )
            }
        }
    } else if let Some(payload) = &recovery.last_payload {
        match decode_batch(payload) {
            Ok((meta, _)) => {
                resume = Resume {
                    epoch: meta.ring_epoch,
                    seq: meta.ring_seq_last,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "newest spool batch does not decode; ring frames may be written twice")
            }
        }
    }
    if recovery.torn_bytes > 0 {
        // Those bytes were never fsynced, so their ring frames were never committed: they
        // are read again from the ring below. Nothing is lost.
        tracing::warn!(
            bytes = recovery.torn_bytes,
            "cut a torn tail from the spool"
        );
    }
    let mut stats = AgentStats {
        level: opts.policy.default_level().as_str().into(),
        ..Default::default()
    };
    stats.spool_torn_bytes = recovery.torn_bytes;
    stats.spool_encrypted = opts.spool.recipients.is_some();
    stats.spool_recipients = opts.spool.recipients.as_ref().map_or(0, |r| r.len() as u64);
    if recovery.encrypted_segments > 0 {
        tracing::info!(
            segments = recovery.encrypted_segments,
            "encrypted the plaintext segments written before recipients were configured"
        );
    }
    let filter = Filter::new(opts.policy.clone());
    let control = opts.control_path.as_deref().and_then(|path| {
        let sources = control::Sources {
            ring: Some((opts.ring_path.clone(), opts.cursor_path.clone())),
            config: opts.policy_source.clone(),
        };
        Control::start_with(path, sources)
            .map_err(|e| {
                tracing::error!(socket = %path.display(), error = %e, "no control socket: people cannot see or pause what is captured about them")
            })
            .ok()
    });
    if opts.policy_source.is_some() {
        listen_for_sighup(stop.clone());
    }
    let mut agent = Agent {
        opts,
        spool,
        resume,
        devices: BTreeMap::new(),
        pending_gaps: Vec::new(),
        stats,
        disk_full: false,
        filter,
        reloads: ReloadStats::default(),
        control,
        verdicts: None,
        boot_id: imprint_record::boot_id(),
        segment: SegmentSummary::default(),
        watchdog: imprint_service::Watchdog::from_env(),
    };
    agent.verdicts = agent
        .opts
        .session_socket
        .clone()
        .map(verdict::VerdictSender::new);
    agent.enforce_retention(false);
    let shipper = ship::start(
        &agent.opts.ship,
        &agent.opts.spool.dir,
        &agent.opts.status_path,
    );
    // The control socket answers from what is published: publish before the first ring.
    agent.write_status();
    tracing::info!(spool = %agent.opts.spool.dir.display(), resume_epoch = resume.epoch, resume_seq = resume.seq, "agent started");
    imprint_service::ready("spool recovered; reading the collector's ring");
    let mut waiting_logged = false;
    let mut finished_epoch = None;
    while !stop.requested() {
        agent.watchdog.tick();
        if stop.take_reload() {
            let mut records = Vec::new();
            agent.reload_policy(&mut records);
        }
        agent.apply_pauses(&mut Vec::new());
        let opened = RingReader::open(&agent.opts.ring_path, &agent.opts.cursor_path);
        let reader = match opened {
            // A finished ring is read again when a restarted collector continues it.
            Ok(r) if Some(r.epoch()) != finished_epoch || !r.is_closed() => r,
            other => {
                if !waiting_logged {
                    match other {
                        Err(e) => tracing::info!(error = %e, "waiting for the collector's ring"),
                        Ok(_) => tracing::info!("collector stopped; waiting for its next ring"),
                    }
                    waiting_logged = true;
                }
                // Only while no collector runs: a short poll until its (next) ring appears.
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        waiting_logged = false;
        finished_epoch = Some(reader.epoch());
        stop.set_waker(reader.waker());
        let done = agent.consume(reader, &stop)?;
        if done {
            break;
        }
    }
    imprint_service::stopping();
    agent.stats.spool_bytes = agent.spool.total_bytes();
    agent.write_status();
    drop(shipper);
    Ok(agent.stats)
}

impl Agent {
    /// Reads one ring until it is closed and drained (returns false: look for the next ring)
    /// or a stop is requested (returns true).
    fn consume(&mut self, mut reader: RingReader, stop: &StopHandle) -> anyhow::Result<bool> {
        let epoch = reader.epoch();
        let skip_upto = if self.resume.epoch == epoch {
            self.resume.seq
        } else {
            0
        };
        tracing::info!(ring = %reader.path().display(), epoch, from = reader.position(), skip_upto, "reading ring");
        if let Some((old_epoch, old_last)) = reader.replaced() {
            // The collector could not continue the ring this agent was reading: whatever of it
            // never reached the spool is gone with it.
            if old_epoch == self.resume.epoch && old_last > self.resume.seq {
                let lost = old_last - self.resume.seq;
                tracing::warn!(
                    old_epoch,
                    lost,
                    "the ring was replaced before it was read to the end"
                );
                self.pending_gaps.push(Gap {
                    from_ns: 0,
                    to_ns: 0,
                    stage: Stage::RingReplaced,
                    count: lost,
                    device: NO_DEVICE,
                });
                self.resume.seq = old_last;
            }
        }
        // Frames up to here were consumed by this or an earlier run: a jump after it is loss.
        let resumed = skip_upto.max(reader.last_seq());
        let mut last_seq: Option<u64> = (resumed > 0).then_some(resumed);
        // (seq, ring position after it) of frames read but possibly still held back by the
        // policy's holdback window: the ring is committed only up to what is on disk.
        let mut frame_ends: VecDeque<(u64, u64)> = VecDeque::new();
        // The first ring seq the next batch covers, when the previous one left records held.
        let mut carry_from: Option<u64> = None;
        let mut records: Vec<Record> = Vec::new();
        let mut unsynced = false;
        let mut last_sync = Instant::now();
        self.stats.ring_epoch = epoch;
        loop {
            self.watchdog.tick();
            if stop.take_reload() {
                self.reload_policy(&mut records);
                // A verdict that closed the gate may not hold under the new policy.
                self.send_verdict(epoch);
            }
            self.apply_pauses(&mut records);
            let mut read = 0;
            let (mut first, mut last) = (0u64, 0u64);
            while read < MAX_BATCH {
                match reader.next_frame() {
                    ReadOutcome::Frame { seq, payload } => {
                        read += 1;
                        if seq <= skip_upto {
                            continue; // already durable before a crash
                        }
                        if let Some(prev) = last_seq {
                            if seq > prev + 1 {
                                self.lost_in_ring(seq - prev - 1);
                            }
                        }
                        last_seq = Some(seq);
                        if first == 0 {
                            first = seq;
                        }
                        last = seq;
                        match decode_record(payload) {
                            Ok(rec) => self.admit(rec, seq, &mut records),
                            Err(e) => {
                                tracing::warn!(seq, error = %e, "ring frame does not decode");
                                self.lost_in_ring(1);
                            }
                        }
                        frame_ends.push_back((seq, reader.position()));
                    }
                    ReadOutcome::Corrupt { at, why, resume_at } => {
                        // Counted once, from the sequence numbers it cost (see lost_in_ring).
                        read += 1;
                        tracing::warn!(at, why, resume_at, "corrupt ring frame skipped");
                    }
                    ReadOutcome::Empty => break,
                }
            }
            if read > 0 {
                self.send_verdict(epoch);
            }
            let closed = reader.is_closed() && reader.is_drained();
            if closed || stop.requested() {
                // Nothing more arrives: the holdback window is released now.
                self.filter.flush(&mut records);
            } else if read == 0 {
                self.filter.flush_idle(&mut records);
            }
            if closed {
                // Damage at the very end of a ring has no later frame to reveal it.
                let published = reader.published_seq();
                let seen = last_seq.unwrap_or(0);
                if published > seen {
                    self.lost_in_ring(published - seen);
                    last_seq = Some(published);
                }
            }
            let held = self.filter.oldest_held_seq();
            let all_read = last.max(last_seq.unwrap_or(0));
            let seq_first = carry_from.unwrap_or(first);
            let seq_last = match held {
                Some(h) => h.saturating_sub(1).max(seq_first.saturating_sub(1)),
                None => all_read,
            };
            if !records.is_empty() || !self.pending_gaps.is_empty() {
                let meta = BatchMeta {
                    format_version: imprint_schema::FORMAT_VERSION,
                    ring_epoch: epoch,
                    ring_seq_first: seq_first,
                    ring_seq_last: seq_last,
                    policy: self.filter.policy().stamp().clone(),
                    boot_id: self.boot_id.clone(),
                    // Read per batch: the offset moves when the wall clock is stepped.
                    realtime_offset_ns: imprint_record::realtime_offset_ns(),
                };
                if self.write_batch(&meta, &mut records) {
                    unsynced = true;
                }
            }
            carry_from = held;
            // Where the ring may be committed to: everything read, or up to the last frame
            // before the oldest record still held back.
            // Under ring pressure durability yields: held frames are committed rather than
            // left to fill the ring (an agent crash then loses at most the holdback window).
            let commit_to = match held {
                None => Some((reader.position(), None)),
                Some(h) => {
                    let at = frame_ends
                        .iter()
                        .rev()
                        .find(|(s, _)| *s < h)
                        .map(|(s, p)| (*p, Some(*s)));
                    let held_bytes = reader
                        .position()
                        .saturating_sub(at.map_or(reader.committed(), |a| a.0));
                    if held_bytes > reader.stats().capacity / 4 {
                        Some((reader.position(), None))
                    } else {
                        at
                    }
                }
            };
            let stopping = stop.requested();
            // Under pressure the fsync is due early: a batching agent that did not commit
            // would otherwise be woken again at once, and the collector run out of room.
            let due = last_sync.elapsed() >= self.opts.fsync_interval || reader.under_pressure();
            if (unsynced && (due || closed || stopping))
                || (!unsynced && commit_to.is_some_and(|(p, _)| reader.committed() != p))
            {
                match self.spool.sync() {
                    Ok(()) => {
                        // Only now is everything read so far durable (or deliberately dropped),
                        // except what the holdback still holds.
                        match commit_to {
                            Some((_, None)) => {
                                reader.commit();
                                frame_ends.clear();
                            }
                            Some((pos, Some(seq))) => {
                                reader.commit_at(pos, seq);
                                frame_ends.retain(|(s, _)| *s > seq);
                            }
                            None => {}
                        }
                        unsynced = false;
                        last_sync = Instant::now();
                        self.stats.syncs += 1;
                        self.after_sync();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "spool fsync failed; ring position not committed")
                    }
                }
            }
            if read == MAX_BATCH {
                continue;
            }
            if stopping {
                self.seal_on_exit();
                return Ok(true);
            }
            if closed && !unsynced {
                tracing::info!(epoch, "ring closed by the collector and drained");
                self.resume = Resume {
                    epoch,
                    seq: last_seq.unwrap_or(0),
                };
                if self.opts.exit_when_closed {
                    self.seal_on_exit();
                    return Ok(true);
                }
                return Ok(false);
            }
            let sync_timeout =
                unsynced.then(|| self.opts.fsync_interval.saturating_sub(last_sync.elapsed()));
            let timeout = imprint_service::min_timeout(sync_timeout, self.filter.idle_timeout());
            let timeout = imprint_service::min_timeout(timeout, self.watchdog.due_in());
            match (unsynced, timeout) {
                // Something is written but not yet durable: what arrives until the fsync is
                // due is read then, in one batch, unless the ring comes under pressure first.
                (true, Some(t)) => reader.wait_batching(t),
                _ => reader.wait(timeout),
            }
        }
    }

    /// Applies policy to one record; what may be written goes into the batch (possibly
    /// later, after the holdback window).
    fn admit(&mut self, rec: Record, seq: u64, records: &mut Vec<Record>) {
        if let Record::Device(d) = &rec {
            if d.removed {
                self.devices.remove(&d.index);
            } else {
                self.devices.insert(d.index, d.clone());
            }
        }
        self.filter.push_record_seq(rec, seq, records);
        self.stats.dropped_policy = self.filter.stats.dropped_policy;
    }

    /// SIGHUP: validate the policy again and switch to it; a bad one keeps the old one.
    fn reload_policy(&mut self, records: &mut Vec<Record>) {
        let Some((path, must_exist)) = self.opts.policy_source.clone() else {
            return;
        };
        let loaded = imprint_config::Config::load(&path, must_exist)
            .and_then(|cfg| cfg.compile_policy(&path));
        match loaded {
            Ok(p) => {
                let old = self.filter.policy().stamp().hash.clone();
                tracing::info!(old = %old, new = %p.stamp().hash, rules = p.stamp().rules, "policy reloaded");
                self.filter.set_policy(p.clone(), records);
                records.push(Record::Policy(p.stamp().clone()));
                self.stats.level = p.default_level().as_str().into();
                self.opts.policy = p;
                self.reloads.reloads += 1;
                self.reloads.last_error = None;
            }
            Err(e) => {
                tracing::error!(error = %e, hash = %self.filter.policy().stamp().hash, "policy reload refused: the new policy does not validate; the old one stays in force");
                self.reloads.failures += 1;
                self.reloads.last_error = Some(e.to_string());
            }
        }
        self.write_status();
    }

    /// Tells the collector what the policy admits for the current focus.
    fn send_verdict(&mut self, epoch: u64) {
        let Some(seq) = self.filter.current().map(|c| c.seq) else {
            return;
        };
        let classes = self.filter.admitted_classes(seq);
        if let Some(v) = &mut self.verdicts {
            v.offer(imprint_record::wire::Verdict {
                focus_seq: seq,
                ring_epoch: epoch,
                classes,
            });
        }
    }

    fn lost_in_ring(&mut self, count: u64) {
        self.stats.ring_corrupt_frames += count;
        self.pending_gaps.push(Gap {
            from_ns: 0,
            to_ns: 0,
            stage: Stage::RingCorrupt,
            count,
            device: NO_DEVICE,
        });
    }

    /// Appends one batch; returns true when it reached the spool. On failure the batch is
    /// dropped and counted, and a gap record goes into the next batch that can be written.
    fn write_batch(&mut self, meta: &BatchMeta, records: &mut Vec<Record>) -> bool {
        let mut all: Vec<Record> = Vec::with_capacity(records.len() + self.devices.len() + 2);
        if !self.spool.has_open_segment() && !self.filter.policy().captures_nothing() {
            // Each segment is self-describing, so retention never orphans events from their
            // devices and the policy that admitted them.
            all.push(Record::Policy(meta.policy.clone()));
            for d in self.devices.values() {
                if !records
                    .iter()
                    .any(|r| matches!(r, Record::Device(x) if x.index == d.index))
                {
                    all.push(Record::Device(d.clone()));
                }
            }
        }
        all.extend(self.pending_gaps.iter().copied().map(Record::Gap));
        all.append(records);
        let events = all.iter().filter(|r| matches!(r, Record::Event(_))).count() as u64;
        let mut summary = if self.spool.has_open_segment() {
            self.segment
        } else {
            SegmentSummary::default()
        };
        summary.add(meta.ring_epoch, meta.ring_seq_last, time_span(&all), events);
        match self
            .spool
            .append_tagged(&summary.to_tag(), &encode_batch(meta, &all))
        {
            Ok(_) => {
                self.segment = summary;
                if self.disk_full {
                    tracing::info!("spool writable again");
                    self.disk_full = false;
                }
                self.pending_gaps.clear();
                self.stats.events_written += events;
                self.stats.records_written += all.len() as u64;
                self.stats.batches_written += 1;
                true
            }
            Err(e) => {
                if !self.disk_full {
                    tracing::error!(error = %e, "cannot write the spool; dropping and counting until it recovers");
                }
                self.disk_full = true;
                self.stats.dropped_disk += events;
                let (from, to) = time_span(&all);
                match self
                    .pending_gaps
                    .iter_mut()
                    .find(|g| g.stage == Stage::Disk)
                {
                    Some(g) => {
                        g.count += events;
                        g.to_ns = to;
                    }
                    None => self.pending_gaps.push(Gap {
                        from_ns: from,
                        to_ns: to,
                        stage: Stage::Disk,
                        count: events,
                        device: NO_DEVICE,
                    }),
                }
                if matches!(e, SpoolError::NoSpace { .. }) {
                    self.enforce_retention(true);
                }
                false
            }
        }
    }

    /// Applies retention; unshipped segments it must delete become gap records.
    fn enforce_retention(&mut self, make_room: bool) {
        let mut lost = Vec::new();
        self.spool
            .enforce_retention(SystemTime::now(), make_room, |seg| {
                lost.push(retention::lost_segment_gaps(seg))
            });
        for gaps in lost {
            // The first gap is the segment's own loss; the rest are losses it recorded
            // earlier (possibly retention's own), counted when they happened.
            if let Some(own) = gaps.first() {
                tracing::warn!(
                    events = own.count,
                    "the disk budget forced deleting an unshipped segment"
                );
                self.stats.dropped_retention += own.count;
                self.stats.retention_unshipped_segments += 1;
            }
            self.pending_gaps.extend(gaps);
        }
    }

    fn after_sync(&mut self) {
        self.enforce_retention(false);
        self.stats.spool_bytes = self.spool.total_bytes();
        self.write_status();
    }

    fn seal_on_exit(&mut self) {
        if let Err(e) = self.spool.rotate() {
            tracing::warn!(error = %e, "could not seal the open segment at exit; it is recovered at next start");
        }
    }

    /// Brings the filter's pauses in line with what people asked on the control socket.
    fn apply_pauses(&mut self, records: &mut Vec<Record>) {
        let Some(pauses) = self.control.as_ref().and_then(Control::take_pauses) else {
            return;
        };
        let ended: Vec<u32> = self
            .filter
            .pauses()
            .map(|(uid, _, _)| uid)
            .filter(|uid| !pauses.contains_key(uid))
            .collect();
        for uid in ended {
            self.filter.resume(uid, records);
        }
        for (uid, (from, until)) in pauses {
            self.filter.pause(uid, from, until);
        }
        // The reply has told the person already: the status file follows at once.
        self.write_status();
    }

    fn write_status(&mut self) {
        self.stats.dropped_disk_pending = self
            .pending_gaps
            .iter()
            .filter(|g| g.stage == Stage::Disk)
            .map(|g| g.count)
            .sum();
        self.stats.updated_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Err(e) = self.stats.write(&self.opts.status_path) {
            tracing::debug!(error = %e, "cannot write status snapshot");
        }
        let p = self.filter.policy();
        let ps = PolicyStatus {
            stamp: p.stamp().into(),
            default_level: p.default_level().as_str().into(),
            unknown_focus_level: p.unknown_focus_level().as_str().into(),
            current: self.filter.current().cloned(),
            filter: self.filter.stats.clone(),
            reload: self.reloads.clone(),
        };
        if let Some(c) = &self.control {
            c.publish(ps.clone(), p.settings().user_pause_max_minutes);
        }
        // Private: it names the focused application of whoever is at the seat. Other users
        // ask the control socket, which answers each about themselves only.
        let written = serde_json::to_vec_pretty(&ps)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                imprint_fsutil::write_atomic(
                    &policy_status_path(&self.opts.status_path),
                    &json,
                    0o600,
                )
            });
        if let Err(e) = written {
            tracing::debug!(error = %e, "cannot write policy status snapshot");
        }
    }
}

/// Turns SIGHUP into a policy reload request, on a thread of its own.
fn listen_for_sighup(stop: StopHandle) {
    let spawned = std::thread::Builder::new()
        .name("imprint-sighup".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handling: policy reload needs a restart");
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                match signal(SignalKind::hangup()) {
                    Ok(mut hup) => {
                        while hup.recv().await.is_some() {
                            tracing::info!("SIGHUP: reloading the policy");
                            stop.reload();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no SIGHUP handling: policy reload needs a restart")
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no SIGHUP handling: policy reload needs a restart");
    }
}
