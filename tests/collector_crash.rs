//! No silent loss when the collector crashes: the collector and the agent are killed with
//! SIGKILL at random, 200 times, while replays stream through them. A restarted collector
//! continues the ring the agent is reading, so every frame ever published reaches the spool
//! exactly once, and each collector crash is one `collector_crash` gap record.

mod common;

use common::{synthetic_recording_named, Env};
use imprint_record::codec::decode_batch;
use imprint_spool::{list_segments, read_segment, Item};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const ITERATIONS: usize = 200;
/// Key presses per collector run: 1 ms apart, so most runs are killed while replaying.
const PRESSES: usize = 60;

struct Torture {
    env: Env,
    log: PathBuf,
    chunks: usize,
}

impl Torture {
    /// Starts a collector replaying a recording of its own, from a keyboard named after it,
    /// so that the spool shows which run published what.
    fn collector(&mut self) -> Child {
        let rec = self
            .env
            .dir
            .path()
            .join(format!("chunk-{}.yml", self.chunks));
        synthetic_recording_named(&rec, &format!("chunk-{}", self.chunks), PRESSES, 1000);
        self.chunks += 1;
        let rec = rec.to_str().expect("utf-8").to_owned();
        self.spawn(&["collector", "--replay", &rec, "--speed", "1"])
    }

    fn agent(&self) -> Child {
        self.spawn(&["agent"])
    }

    fn spawn(&self, args: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        self.env
            .cmd(args)
            .env("IMPRINT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn imprint")
    }

    fn ring_stats(&self) -> imprint_ring::RingStats {
        let run = self.env.run_dir();
        imprint_ring::reader::peek_stats(&imprint_ring::ring_path(&run), &run.join("ring.cursor"))
            .expect("ring")
    }
}

/// SIGKILLs `child`; true when the signal is what ended it (not an exit of its own first).
fn sigkill(child: &mut Child) -> bool {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let status = child.wait().expect("wait");
    status.code().is_none()
}

#[test]
fn random_sigkills_of_collector_and_agent_lose_nothing_published() {
    let env = Env::new(
        "full",
        "[spool]\nfsync_interval_ms = 20\nsegment_max_bytes = 65536\n[policy]\nredact = false\n",
    );
    let log = env.dir.path().join("daemons.log");
    let mut t = Torture {
        env,
        log,
        chunks: 0,
    };
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let mut collector = t.collector();
    let mut agent = t.agent();
    let (mut collector_kills, mut crashes, mut agent_kills) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for _ in 0..ITERATIONS {
        std::thread::sleep(Duration::from_millis(rand(10, 100)));
        let (kill_collector, kill_agent) = match rand(0, 10) {
            0..=5 => (true, false),
            6..=8 => (false, true),
            _ => (true, true),
        };
        if kill_collector {
            collector_kills += 1;
            crashes += u64::from(sigkill(&mut collector));
        }
        if kill_agent {
            agent_kills += 1;
            sigkill(&mut agent);
        }
        if kill_collector {
            collector = t.collector();
        }
        if kill_agent {
            agent = t.agent();
        }
    }
    // The last collector replays to the end and closes the ring; the agent reads it all.
    assert!(collector.wait().expect("collector").success(), "collector");
    let published = t.ring_stats().published_seq;
    common::wait_until(
        "the agent to read the ring to the end",
        Duration::from_secs(60),
        || {
            let s = t.ring_stats();
            (s.read_pos == s.write_pos).then_some(())
        },
    );
    sigkill(&mut agent);
    let out = t.env.run(&["agent", "--exit-when-closed"]);
    assert!(
        out.status.success(),
        "final agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elapsed = started.elapsed();

    let ring = t.ring_stats();
    // Made once, then only ever continued (a collector killed before it opened the ring
    // continued nothing).
    let log = std::fs::read_to_string(&t.log).expect("daemon log");
    let created = log.matches("ring created").count();
    assert_eq!(created, 1, "the ring was made once, never replaced:\n{log}");
    assert!(
        !log.contains("replaced the previous ring") && !log.contains("panicked"),
        "{log}"
    );
    let continued = log
        .matches("continuing the previous collector's ring")
        .count() as u64;
    // The header counts a continuation before the log line is written, and a kill can fall
    // between the two.
    assert!(u64::from(ring.continued) >= continued);
    assert!(
        continued > ITERATIONS as u64 / 4,
        "collectors continued the ring {continued} times"
    );
    let batches = spool_batches(&t.env.spool_dir());
    // One ring epoch throughout, and its sequence numbers covered once each, in order.
    let mut next = 1u64;
    for b in &batches {
        assert_eq!(b.epoch, ring.epoch, "a batch from another ring");
        if b.seq_first == 0 {
            continue; // only gap records of the agent's own
        }
        assert_eq!(
            (b.seq_first, b.seq_last >= b.seq_first),
            (next, true),
            "ring frames must be in the spool once each, in order: batch {}..={} after {}",
            b.seq_first,
            b.seq_last,
            next - 1
        );
        next = b.seq_last + 1;
    }
    assert_eq!(next - 1, published, "every published frame is in the spool");

    let dump = t.env.dump();
    let mut gaps: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for g in common::gaps(&dump) {
        let e = gaps
            .entry(g["stage"].as_str().unwrap_or("?").to_owned())
            .or_default();
        e.0 += 1;
        e.1 += g["count"].as_u64().unwrap_or(0);
    }
    // One gap per crash that a later collector found (a collector killed before it opened
    // the ring, or before it wrote the gap, leaves the crash to the next one).
    let crash_gaps = gaps.remove("collector_crash").map(|(n, _)| n).unwrap_or(0);
    let found = log.matches("crashed=true").count() as u64;
    assert!(
        crash_gaps >= 1 && crash_gaps <= found && found <= crashes,
        "collector_crash gaps {crash_gaps}, crashes found {found}, killed while running {crashes}"
    );
    assert!(gaps.is_empty(), "no other loss: {gaps:?}");

    // Each collector run's keys: exactly a prefix of what it replayed, none twice.
    let mut runs: BTreeMap<usize, Vec<(u64, String, i64)>> = BTreeMap::new();
    let mut name = String::new();
    for v in &dump {
        match v["kind"].as_str() {
            Some("device") => name = v["name"].as_str().unwrap_or("").to_owned(),
            Some("event") => {
                let run: usize = name
                    .strip_prefix("chunk-")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("event without its device: {v}"));
                runs.entry(run).or_default().push((
                    v["mono_ns"].as_u64().expect("t"),
                    v["code"].as_str().expect("code").to_owned(),
                    v["value"].as_i64().expect("value"),
                ));
            }
            _ => {}
        }
    }
    let want: Vec<(u64, String, i64)> = (0..PRESSES * 2)
        .map(|i| {
            let key = ["KEY_Q", "KEY_W", "KEY_E", "KEY_R", "KEY_T", "KEY_SPACE"][(i / 2) % 6];
            (
                (i as u64 + 1) * 1_000_000,
                key.to_owned(),
                1 - (i % 2) as i64,
            )
        })
        .collect();
    let mut events = 0;
    for (run, got) in &runs {
        assert!(
            got.len() <= want.len() && got[..] == want[..got.len()],
            "run {run}: its keys are not a prefix of what it replayed: {got:?}"
        );
        events += got.len();
    }
    let last = t.chunks - 1;
    assert_eq!(
        runs.get(&last).map(Vec::len),
        Some(want.len()),
        "the last run replayed to the end"
    );
    println!(
        "collector crash torture: {ITERATIONS} iterations in {elapsed:.1?}: {collector_kills} collector kills \
         ({crashes} while running), {agent_kills} agent kills, {} of {} runs published keys, \
         {events} key events, {published} ring frames, all in the spool once; ring continued \
         {continued} times, {crash_gaps} collector_crash gaps",
        runs.len(),
        t.chunks
    );
}

struct BatchRange {
    epoch: u64,
    seq_first: u64,
    seq_last: u64,
}

/// The ring range of every batch in the spool, oldest first.
fn spool_batches(dir: &Path) -> Vec<BatchRange> {
    let mut out = Vec::new();
    for seg in list_segments(dir).expect("segments") {
        read_segment(&seg, None, |item| match item {
            Item::Frame { payload, .. } => {
                let (meta, _) = decode_batch(&payload).expect("batch");
                out.push(BatchRange {
                    epoch: meta.ring_epoch,
                    seq_first: meta.ring_seq_first,
                    seq_last: meta.ring_seq_last,
                });
            }
            other => panic!("{}: {other:?}", seg.path.display()),
        })
        .expect("read segment");
    }
    out
}
