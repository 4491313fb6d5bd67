//! The agent: the unprivileged half. It reads the ring, applies policy, appends batches to
//! the spool, fsyncs on an interval, and only then commits its ring position, so a crash at
//! any point loses nothing that reached the ring and duplicates nothing that reached disk.
//!
//! Exactly-once across crashes: every batch records the ring epoch and the last ring sequence
//! number it contains. On start the newest intact batch says where the spool ends; ring frames
//! at or below that sequence (fsynced, but killed before the commit) are skipped.

use crate::metrics::AgentStats;
use crate::policy::Policy;
use crate::record::codec::{decode_batch, decode_record, encode_batch, BatchMeta};
use crate::record::{DeviceInfo, Gap, Record, Stage, NO_DEVICE};
use crate::ring::reader::RingWaker;
use crate::ring::{ReadOutcome, RingReader};
use crate::spool::{Spool, SpoolError, SpoolOptions};
use std::collections::BTreeMap;
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
    /// Exit once the collector has closed the ring and it is drained (replays, tests).
    pub exit_when_closed: bool,
}

/// Asks a running agent to stop, from another thread or a signal handler task.
#[derive(Clone, Default)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
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

struct Agent {
    opts: AgentOptions,
    spool: Spool,
    resume: Resume,
    devices: BTreeMap<u32, DeviceInfo>,
    pending_gaps: Vec<Gap>,
    stats: AgentStats,
    disk_full: bool,
}

/// Runs the agent until stopped (or, with `exit_when_closed`, until the ring is done).
pub fn run(opts: AgentOptions, stop: StopHandle) -> anyhow::Result<AgentStats> {
    let (spool, recovery) = Spool::open(opts.spool.clone())?;
    let mut resume = Resume::default();
    if let Some(payload) = &recovery.last_payload {
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
    let mut agent = Agent {
        opts,
        spool,
        resume,
        devices: BTreeMap::new(),
        pending_gaps: Vec::new(),
        stats,
        disk_full: false,
    };
    agent.spool.enforce_retention(SystemTime::now());
    tracing::info!(spool = %agent.opts.spool.dir.display(), resume_epoch = resume.epoch, resume_seq = resume.seq, "agent started");
    let mut waiting_logged = false;
    let mut finished_epoch = None;
    while !stop.requested() {
        let opened = RingReader::open(&agent.opts.ring_path, &agent.opts.cursor_path);
        let reader = match opened {
            Ok(r) if Some(r.epoch()) != finished_epoch => r,
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
    agent.stats.spool_bytes = agent.spool.total_bytes();
    agent.write_status();
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
        // Frames up to here were consumed by this or an earlier run: a jump after it is loss.
        let resumed = skip_upto.max(reader.last_seq());
        let mut last_seq: Option<u64> = (resumed > 0).then_some(resumed);
        let mut records: Vec<Record> = Vec::new();
        let mut unsynced = false;
        let mut last_sync = Instant::now();
        self.stats.ring_epoch = epoch;
        loop {
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
                            Ok(rec) => self.admit(rec, &mut records),
                            Err(e) => {
                                tracing::warn!(seq, error = %e, "ring frame does not decode");
                                self.lost_in_ring(1);
                            }
                        }
                    }
                    ReadOutcome::Corrupt { at, why, resume_at } => {
                        // Counted once, from the sequence numbers it cost (see lost_in_ring).
                        read += 1;
                        tracing::warn!(at, why, resume_at, "corrupt ring frame skipped");
                    }
                    ReadOutcome::Empty => break,
                }
            }
            let closed = reader.is_closed() && reader.is_drained();
            if closed {
                // Damage at the very end of a ring has no later frame to reveal it.
                let published = reader.published_seq();
                let seen = last_seq.unwrap_or(0);
                if published > seen {
                    self.lost_in_ring(published - seen);
                    last_seq = Some(published);
                }
            }
            if !records.is_empty() || !self.pending_gaps.is_empty() {
                let meta = BatchMeta {
                    format_version: imprint_schema::FORMAT_VERSION,
                    ring_epoch: epoch,
                    ring_seq_first: first,
                    ring_seq_last: last.max(last_seq.unwrap_or(0)),
                    policy: self.opts.policy.stamp().clone(),
                };
                if self.write_batch(&meta, &mut records) {
                    unsynced = true;
                }
            }
            let stopping = stop.requested();
            let due = last_sync.elapsed() >= self.opts.fsync_interval;
            if (unsynced && (due || closed || stopping))
                || (!unsynced && reader.committed() != reader.position())
            {
                match self.spool.sync() {
                    Ok(()) => {
                        // Only now is everything read so far durable (or deliberately dropped).
                        reader.commit();
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
            let timeout =
                unsynced.then(|| self.opts.fsync_interval.saturating_sub(last_sync.elapsed()));
            reader.wait(timeout);
        }
    }

    /// Applies policy to one record and adds it to the batch.
    fn admit(&mut self, rec: Record, records: &mut Vec<Record>) {
        if let Record::Device(d) = &rec {
            if d.removed {
                self.devices.remove(&d.index);
            } else {
                self.devices.insert(d.index, d.clone());
            }
        }
        if self.opts.policy.admit(&rec) {
            records.push(rec);
        } else if matches!(rec, Record::Event(_)) {
            self.stats.dropped_policy += 1;
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
        if !self.spool.has_open_segment()
            && self.opts.policy.admit(&Record::Policy(meta.policy.clone()))
        {
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
        match self.spool.append(&encode_batch(meta, &all)) {
            Ok(_) => {
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
                    self.spool.enforce_retention(SystemTime::now());
                }
                false
            }
        }
    }

    fn after_sync(&mut self) {
        self.spool.enforce_retention(SystemTime::now());
        self.stats.spool_bytes = self.spool.total_bytes();
        self.write_status();
    }

    fn seal_on_exit(&mut self) {
        if let Err(e) = self.spool.rotate() {
            tracing::warn!(error = %e, "could not seal the open segment at exit; it is recovered at next start");
        }
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
    }
}

fn time_span(records: &[Record]) -> (u64, u64) {
    let times = records.iter().filter_map(|r| match r {
        Record::Event(e) => Some(e.mono_ns),
        _ => None,
    });
    let (mut lo, mut hi) = (u64::MAX, 0);
    for t in times {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if lo == u64::MAX {
        (0, 0)
    } else {
        (lo, hi)
    }
}
