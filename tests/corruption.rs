//! Corruption: bytes are flipped in sealed and open spool segments and in the live ring.
//! `verify` names the file and byte offset, `dump` skips the damage with a gap record whose
//! count is exactly what was lost, and the agent keeps running through all of it.
//!
//! The recordings here hold key events only (no SYN_REPORT), one per evdev frame, so every
//! ring record after the device announcement is exactly one event that `dump` prints: a
//! gap's count can then be checked against the events missing from the dump, one for one.

mod common;

use common::daemon::{poll, Daemon};
use common::keys::{dumped_events, key_recording, Ev};
use common::Env;
use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Ring layout facts (agent/ring/src/layout.rs), restated independently.
const RING_HEADER: u64 = 4096;
const RING_FRAME_HEADER: u64 = 16;
const WRAP_MARKER: u32 = u32::MAX;
/// Sealed container: 16-byte file header, then chunks `"IMPC" | clen | crc | raw_len | zstd`.
const SEALED_FILE_HEADER: usize = 16;
const SEALED_CHUNK_HEADER: usize = 16;
/// Spool frame: `"IMPF" | len | crc | seq | payload`.
const SPOOL_FRAME_HEADER: usize = 20;

fn gap_lines(dump: &[Value]) -> Vec<&Value> {
    dump.iter().filter(|v| v["kind"] == "gap").collect()
}

/// `got` must be `want` with exactly one contiguous run removed; returns that run's range.
fn single_hole(got: &[Ev], want: &[Ev]) -> std::ops::Range<usize> {
    assert!(
        got.len() < want.len(),
        "events are missing: got {} of {}",
        got.len(),
        want.len()
    );
    let a = got.iter().zip(want).take_while(|(g, w)| g == w).count();
    let b = a + (want.len() - got.len());
    assert_eq!(
        &got[a..],
        &want[b..],
        "after the hole at {a}..{b}, the dump must continue with exactly the recorded events"
    );
    a..b
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn status(env: &Env) -> Value {
    let out = env.run(&["status", "--json"]);
    assert!(
        out.status.success(),
        "status --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// One frame found in the ring file: its ring position, payload length and sequence number.
#[derive(Clone, Copy, Debug)]
struct RingFrame {
    pos: u64,
    len: u32,
    seq: u64,
}

fn u32_at(d: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(d[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(d: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(d[off..off + 8].try_into().expect("8 bytes"))
}

/// Walks the published frames of the ring file, reading its header independently of
/// imprint's code: `magic u64 | version u32 | header_size u32 | capacity u64 | ...`, and
/// the producer's `write_pos u64` at byte 64.
fn ring_frames(path: &Path) -> (u64, Vec<RingFrame>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        data.len() > RING_HEADER as usize,
        "ring file is only {} bytes",
        data.len()
    );
    assert_eq!(&data[..8], b"IMPRRING", "ring magic");
    let capacity = u64_at(&data, 16);
    assert_eq!(data.len() as u64, RING_HEADER + capacity, "ring file size");
    let write_pos = u64_at(&data, 64);
    let area = &data[RING_HEADER as usize..];
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < write_pos {
        let off = (pos % capacity) as usize;
        let len = u32_at(area, off);
        if len == WRAP_MARKER {
            pos += capacity - off as u64;
            continue;
        }
        frames.push(RingFrame {
            pos,
            len,
            seq: u64_at(area, off + 8),
        });
        pos += (RING_FRAME_HEADER + u64::from(len)).next_multiple_of(8);
    }
    assert_eq!(pos, write_pos, "frames end exactly at the write position");
    (capacity, frames)
}

/// The payload bytes of `frame` in the ring file.
fn ring_payload(path: &Path, capacity: u64, frame: RingFrame) -> Vec<u8> {
    let f = std::fs::File::open(path).expect("open ring");
    let mut buf = vec![0u8; frame.len as usize];
    f.read_exact_at(
        &mut buf,
        RING_HEADER + frame.pos % capacity + RING_FRAME_HEADER,
    )
    .expect("read payload");
    buf
}

/// XORs `mask` into the bytes of `path` at `at..at + mask.len()`, in place (for the ring:
/// through the same shared file the collector has mapped).
fn flip(path: &Path, at: u64, mask: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for flipping");
    let mut buf = vec![0u8; mask.len()];
    f.read_exact_at(&mut buf, at).expect("read bytes to flip");
    for (b, m) in buf.iter_mut().zip(mask) {
        *b ^= m;
    }
    f.write_all_at(&buf, at).expect("write flipped bytes");
}

/// Spool segment files with this suffix, oldest first.
fn segments(env: &Env, suffix: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(env.spool_dir()) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == suffix))
        .collect();
    v.sort();
    v
}

/// (offset, length) of every complete spool frame in an open segment's bytes.
fn open_frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + SPOOL_FRAME_HEADER <= data.len() {
        assert_eq!(&data[at..at + 4], b"IMPF", "frame magic at byte {at}");
        let len = u32_at(data, at + 4) as usize;
        if at + SPOOL_FRAME_HEADER + len > data.len() {
            break;
        }
        out.push((at, len));
        at += SPOOL_FRAME_HEADER + len;
    }
    out
}

fn verify_lines(env: &Env) -> (i32, Vec<String>) {
    let (code, text) = env.verify();
    (
        code,
        text.lines()
            .filter(|l| l.starts_with("CORRUPT "))
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn flipped_bytes_in_a_sealed_segment_are_named_by_verify_and_skipped_by_dump() {
    // A 4 KiB ring makes the lossless (`--speed max`) replay come through in many small
    // batches, and 4 KiB segments make those batches land in many sealed segments.
    let env = Env::new(
        "full",
        "[ring]\ncapacity_bytes = 4096\n[spool]\nsegment_max_bytes = 4096\nfsync_interval_ms = 5\n",
    );
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "corruption-keyboard", 3000, 1000);
    env.replay(&rec);
    let (code, text) = env.verify();
    assert_eq!(code, 0, "the undamaged spool verifies: {text}");
    assert_eq!(
        dumped_events(&env.dump()),
        want,
        "the undamaged spool holds every event"
    );
    assert!(
        segments(&env, "open").is_empty(),
        "run seals its last segment"
    );
    let sealed = segments(&env, "sealed");
    assert!(
        sealed.len() >= 5,
        "expected several sealed segments, got {}",
        sealed.len()
    );

    // Damage the middle of a middle segment, and work out which chunk that hit.
    let victim = sealed[sealed.len() / 2].clone();
    let bytes = std::fs::read(&victim).expect("read victim");
    assert_eq!(&bytes[..8], b"IMPRSEAL");
    let mut chunks = Vec::new();
    let mut at = SEALED_FILE_HEADER;
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"IMPC", "chunk magic at byte {at}");
        let end = at + SEALED_CHUNK_HEADER + u32_at(&bytes, at + 4) as usize;
        chunks.push(at..end);
        at = end;
    }
    let mid = bytes.len() / 2;
    let hit = chunks
        .iter()
        .find(|c| c.contains(&mid))
        .expect("the middle byte is inside a chunk")
        .start;
    flip(&victim, mid as u64, &[0xa5, 0x5a, 0xff, 0x01]);

    let (code, corrupt) = verify_lines(&env);
    assert_eq!(code, 1, "verify must fail on a damaged segment");
    let place = format!("CORRUPT {} chunk at byte {hit}: ", victim.display());
    assert!(
        corrupt.iter().any(|l| l.starts_with(&place)),
        "verify must name {place:?}; it said {corrupt:?}"
    );
    for l in &corrupt {
        assert!(
            l.contains(&victim.display().to_string()) || l.starts_with("CORRUPT spool frames "),
            "only the damaged segment may be reported: {l}"
        );
    }

    let out = env.run(&["dump"]);
    assert!(
        out.status.success(),
        "dump must skip damage, not fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("skipping damaged data: {}", victim.display())),
        "dump says what it skipped: {stderr}"
    );
    let dump: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let got = dumped_events(&dump);
    assert!(
        !got.is_empty() && got.len() < want.len(),
        "dump prints the undamaged events only: {} of {}",
        got.len(),
        want.len()
    );
    let hole = single_hole(&got, &want);
    assert!(
        hole.start > 0 && hole.end < want.len(),
        "the damage is in a middle segment: hole {hole:?}"
    );
    let gaps = gap_lines(&dump);
    assert_eq!(gaps.len(), 1, "one gap line for the damage: {gaps:?}");
    assert_eq!(gaps[0]["stage"], "spool_corrupt", "{}", gaps[0]);
    // Each ring record after the device announcement is one event, so the ring records
    // the damaged segment held are exactly the events missing from the dump.
    assert_eq!(
        gaps[0]["count"].as_u64(),
        Some(hole.len() as u64),
        "gap count = ring records lost: {}",
        gaps[0]
    );
    assert!(
        gaps[0]["place"]
            .as_str()
            .unwrap_or("")
            .contains(&victim.display().to_string()),
        "{}",
        gaps[0]
    );
    // The gap line sits exactly where the events are missing.
    let gap_at = dump.iter().position(|v| v["kind"] == "gap").expect("gap");
    let events_before = dump[..gap_at]
        .iter()
        .filter(|v| v["kind"] == "event")
        .count();
    assert_eq!(
        events_before, hole.start,
        "the gap line stands where the events are missing"
    );
}

#[test]
fn damaged_frame_in_an_open_segment_left_by_a_killed_agent() {
    // One large segment stays open while the agent appends a batch every few milliseconds.
    let env = Env::new(
        "full",
        "[spool]\nsegment_max_bytes = 1048576\nfsync_interval_ms = 5\n",
    );
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "corruption-keyboard", 600, 5000); // 3 s of typing
    let mut collector = Daemon::start(
        &env,
        &[
            "collector",
            "--replay",
            rec.to_str().expect("utf-8"),
            "--speed",
            "1",
        ],
    );
    let mut agent = Daemon::start(&env, &["agent"]);
    let open = poll(
        "an open segment with at least 8 frames (the agent must keep writing batches while the collector publishes)",
        Duration::from_secs(10),
        || {
            let open = segments(&env, "open").into_iter().next()?;
            let data = std::fs::read(&open).ok()?;
            (open_frames(&data).len() >= 8).then_some(open)
        },
    );
    kill(agent.pid(), Signal::SIGKILL).expect("SIGKILL the agent");
    let st = agent.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), None, "the agent died by the signal: {st:?}");
    assert!(open.exists(), "the killed agent leaves its segment open");

    let data = std::fs::read(&open).expect("read open segment");
    let frames = open_frames(&data);
    let (off, len) = frames[frames.len() / 2];
    flip(&open, (off + SPOOL_FRAME_HEADER + len / 2) as u64, &[0x40]);

    let (code, corrupt) = verify_lines(&env);
    assert_eq!(code, 1, "verify must fail on a damaged open segment");
    let place = format!("CORRUPT {} at byte {off} (", open.display());
    assert!(
        corrupt
            .iter()
            .any(|l| l.starts_with(&place) && l.contains("CRC")),
        "verify must name {place:?} and the CRC: {corrupt:?}"
    );

    let dump = env.dump();
    let got = dumped_events(&dump);
    // What the open segment held is a prefix of the recording with one batch cut out.
    let gaps = gap_lines(&dump);
    assert_eq!(gaps.len(), 1, "one gap line: {gaps:?}");
    assert_eq!(gaps[0]["stage"], "spool_corrupt");
    let lost = gaps[0]["count"].as_u64().expect("count") as usize;
    assert!(lost > 0, "the damaged batch held events: {}", gaps[0]);
    let prefix = &want[..got.len() + lost];
    let hole = single_hole(&got, prefix);
    assert_eq!(hole.len(), lost, "gap count = events missing");
    assert!(hole.start > 0, "events before the damage are kept");

    // A new agent recovers the damaged open segment (sealing it as it is) and carries on.
    let mut agent = Daemon::start(&env, &["agent", "--exit-when-closed"]);
    collector.wait_success(Duration::from_secs(30));
    agent.wait_success(Duration::from_secs(30));
    assert!(
        !open.exists() && segments(&env, "open").is_empty(),
        "the recovered segment is sealed"
    );
    let sealed = open.with_extension("sealed");
    let (code, corrupt) = verify_lines(&env);
    assert_eq!(code, 1);
    let place = format!(
        "CORRUPT {} chunk at byte {SEALED_FILE_HEADER}, frame at byte {off}: ",
        sealed.display()
    );
    assert!(
        corrupt.iter().any(|l| l.starts_with(&place)),
        "verify names {place:?}: {corrupt:?}"
    );
    let dump = env.dump();
    let got = dumped_events(&dump);
    assert_eq!(
        single_hole(&got, &want),
        hole,
        "after recovery exactly the damaged batch is missing, nothing else"
    );
    let gaps = gap_lines(&dump);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["stage"], "spool_corrupt");
    assert_eq!(gaps[0]["count"].as_u64(), Some(hole.len() as u64));
}

/// Starts a collector replaying `want` at real pace without an agent and waits until at
/// least `frames` frames are in the ring; returns it with the ring's capacity and frames.
fn collector_with_frames(env: &Env, rec: &Path, frames: usize) -> (Daemon, u64, Vec<RingFrame>) {
    let collector = Daemon::start(
        env,
        &[
            "collector",
            "--replay",
            rec.to_str().expect("utf-8"),
            "--speed",
            "1",
        ],
    );
    poll(
        "the collector's ring to have frames",
        Duration::from_secs(10),
        || status(env)["ring"]["write_pos"].as_u64().filter(|&w| w > 0),
    );
    let ring = env.run_dir().join("ring");
    let (capacity, fr) = poll("enough frames in the ring", Duration::from_secs(10), || {
        let (c, f) = ring_frames(&ring);
        (f.len() >= frames).then_some((c, f))
    });
    (collector, capacity, fr)
}

/// The ring frame the test will damage, checked to carry the event it is expected to carry
/// (frame 1 announces the device; frame k + 2 is event k).
fn pick_ring_victim(
    env: &Env,
    capacity: u64,
    frames: &[RingFrame],
    want: &[Ev],
    index: usize,
) -> (RingFrame, usize) {
    let victim = frames[index];
    assert_eq!(
        frames[0].seq, 1,
        "the first ring frame has sequence number 1"
    );
    assert!(
        frames.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "ring sequence numbers are contiguous"
    );
    let event = victim.seq as usize - 2;
    let payload = ring_payload(&env.run_dir().join("ring"), capacity, victim);
    let t = want[event].0.to_le_bytes();
    assert!(
        payload.windows(8).any(|w| w == t),
        "ring frame {} should carry event {event} (mono_ns {})",
        victim.seq,
        want[event].0
    );
    (victim, event)
}

#[test]
fn corrupt_ring_payload_is_skipped_with_a_gap_and_the_agent_keeps_going() {
    let env = Env::new("full", "[spool]\nfsync_interval_ms = 20\n");
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "corruption-keyboard", 300, 10_000); // 3 s at real pace
    let (mut collector, capacity, frames) = collector_with_frames(&env, &rec, 40);
    let (victim, event) = pick_ring_victim(&env, capacity, &frames, &want, 20);
    // Flip one payload byte in the middle of the frame, in the live shared ring.
    let ring = env.run_dir().join("ring");
    flip(
        &ring,
        RING_HEADER + victim.pos % capacity + RING_FRAME_HEADER + u64::from(victim.len) / 2,
        &[0x10],
    );

    let mut agent = Daemon::start(&env, &["agent", "--exit-when-closed"]);
    assert!(
        collector.alive(),
        "the collector keeps running while its ring is damaged"
    );
    collector.wait_success(Duration::from_secs(30));
    agent.wait_success(Duration::from_secs(30));
    let log = agent.log();
    assert!(
        log.lines().any(|l| l.contains("corrupt ring frame skipped")
            && l.contains(&format!("at={}", victim.pos))
            && l.contains("frame CRC mismatch")),
        "the agent's log names the corrupt frame at ring position {}:\n{log}",
        victim.pos
    );

    let dump = env.dump();
    let got = dumped_events(&dump);
    let hole = single_hole(&got, &want);
    assert_eq!(
        hole,
        event..event + 1,
        "exactly the damaged frame's event is missing"
    );
    let gaps = gap_lines(&dump);
    assert_eq!(gaps.len(), 1, "one gap line: {gaps:?}");
    assert_eq!(gaps[0]["stage"], "ring_corrupt", "{}", gaps[0]);
    assert_eq!(gaps[0]["count"].as_u64(), Some(1), "{}", gaps[0]);
    let (code, text) = env.verify();
    assert_eq!(code, 0, "the spool itself is intact: {text}");
    let st = status(&env);
    assert!(
        u64_of(&st["agent"]["ring_corrupt_frames"]) >= 1,
        "status shows the corruption: {}",
        st["agent"]
    );
    assert_eq!(
        st["agent"]["ring_corrupt_frames"].as_u64(),
        Some(1),
        "status counts the one corrupt ring frame once (it is exported as imprint_events_dropped_total{{stage=\"ring_corrupt\"}}): {}",
        st["agent"]
    );
}

#[test]
fn corrupt_ring_frame_length_skips_to_the_write_position_with_an_exact_gap() {
    let env = Env::new("full", "[spool]\nfsync_interval_ms = 20\n");
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "corruption-keyboard", 400, 10_000); // 4 s at real pace
    let (mut collector, capacity, frames) = collector_with_frames(&env, &rec, 40);
    let (victim, event) = pick_ring_victim(&env, capacity, &frames, &want, 20);
    // A length no frame can have: frame boundaries after it are unknowable.
    let ring = env.run_dir().join("ring");
    let bad = victim.len ^ 0x7fff_0000;
    flip(
        &ring,
        RING_HEADER + victim.pos % capacity,
        &(victim.len ^ bad).to_le_bytes(),
    );

    let mut agent = Daemon::start(&env, &["agent", "--exit-when-closed"]);
    collector.wait_success(Duration::from_secs(30));
    agent.wait_success(Duration::from_secs(30));
    let log = agent.log();
    assert!(
        log.lines().any(|l| l.contains("corrupt ring frame skipped")
            && l.contains(&format!("at={}", victim.pos))
            && l.contains("frame length out of bounds")),
        "the agent's log names the bad length at ring position {}:\n{log}",
        victim.pos
    );

    let dump = env.dump();
    let got = dumped_events(&dump);
    let hole = single_hole(&got, &want);
    assert_eq!(hole.start, event, "events up to the damaged frame are kept");
    assert!(
        hole.end < want.len(),
        "frames written after the agent skipped ahead are kept (hole {hole:?})"
    );
    let gaps = gap_lines(&dump);
    assert_eq!(gaps.len(), 1, "one gap line: {gaps:?}");
    assert_eq!(gaps[0]["stage"], "ring_corrupt", "{}", gaps[0]);
    assert_eq!(
        gaps[0]["count"].as_u64(),
        Some(hole.len() as u64),
        "gap count = frames skipped: {}",
        gaps[0]
    );
    let st = status(&env);
    assert!(
        u64_of(&st["agent"]["ring_corrupt_frames"]) >= 1,
        "status shows the corruption: {}",
        st["agent"]
    );
    assert_eq!(
        st["agent"]["ring_corrupt_frames"].as_u64(),
        Some(hole.len() as u64),
        "status counts each lost frame once: {}",
        st["agent"]
    );
}

#[test]
fn corrupt_last_ring_frame_still_leaves_a_gap_record() {
    // No later frame arrives to reveal the loss by its sequence number: the ring's own
    // `next_seq` (in its header) must, or the loss is silent on disk.
    let env = Env::new("full", "[spool]\nfsync_interval_ms = 20\n");
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "corruption-keyboard", 50, 1000);
    env.replay_with("collector", &rec, "max");
    let ring = env.run_dir().join("ring");
    let (capacity, frames) = ring_frames(&ring);
    assert_eq!(
        frames.len(),
        want.len() + 1,
        "device frame plus one frame per event"
    );
    let (victim, event) = pick_ring_victim(&env, capacity, &frames, &want, frames.len() - 1);
    assert_eq!(event, want.len() - 1);
    flip(
        &ring,
        RING_HEADER + victim.pos % capacity + RING_FRAME_HEADER + u64::from(victim.len) / 2,
        &[0x08],
    );

    let out = env.run(&["agent", "--exit-when-closed"]);
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = env.dump();
    assert_eq!(single_hole(&dumped_events(&dump), &want), event..event + 1);
    let gaps = gap_lines(&dump);
    assert!(
        gaps.len() == 1 && gaps[0]["stage"] == "ring_corrupt" && gaps[0]["count"] == 1,
        "the lost last frame must appear as a ring_corrupt gap of 1; gaps: {gaps:?}"
    );
}

#[test]
fn garbage_ring_file_is_reported_and_the_agent_waits_for_a_real_collector() {
    let env = Env::new("full", "");
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "corruption-keyboard", 200, 1000);
    std::fs::create_dir_all(env.run_dir()).expect("run dir");
    let ring = env.run_dir().join("ring");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&ring, &garbage).expect("write garbage ring");

    let mut agent = Daemon::start(&env, &["agent", "--exit-when-closed"]);
    let line = poll(
        "the agent to report the garbage ring",
        Duration::from_secs(10),
        || {
            agent
                .log()
                .lines()
                .find(|l| {
                    l.contains(&ring.display().to_string()) && l.contains("not an imprint ring")
                })
                .map(str::to_owned)
        },
    );
    assert!(line.contains("bad magic"), "the message says why: {line}");
    // It keeps waiting: still alive well after it reported the bad ring.
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        assert!(
            agent.alive(),
            "the agent must not exit on a garbage ring; log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // status copes with the garbage ring too.
    let st = status(&env);
    assert_eq!(st["collector_running"], false, "{st}");
    assert_eq!(st["ring"], Value::Null, "{st}");

    // A real collector replaces the file; the agent picks up its ring and drains it.
    let mut collector = Daemon::start(
        &env,
        &[
            "collector",
            "--replay",
            rec.to_str().expect("utf-8"),
            "--speed",
            "max",
        ],
    );
    collector.wait_success(Duration::from_secs(30));
    agent.wait_success(Duration::from_secs(30));
    assert!(agent.log().contains("reading ring"), "{}", agent.log());
    let dump = env.dump();
    assert_eq!(
        dumped_events(&dump),
        want,
        "every event of the real collector is written"
    );
    assert!(gap_lines(&dump).is_empty(), "{:?}", gap_lines(&dump));
    let (code, text) = env.verify();
    assert_eq!(code, 0, "{text}");
}
