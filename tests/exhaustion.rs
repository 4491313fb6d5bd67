//! Resource exhaustion: a full ring and a full disk. The collector and the agent keep
//! running, every drop shows in `imprint status` and as gap records with exact counts, and
//! writing resumes once there is room again.
//!
//! The recordings here hold key events only (no SYN_REPORT), one per evdev frame, so each
//! ring record after the device announcement is one event that `dump` prints, and the
//! accounting "events dumped + events dropped == events recorded" can be exact.

mod common;

use common::daemon::{poll, Daemon};
use common::keys::{dumped_events, key_recording, Ev};
use common::{imprint_bin, Env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn parse_dump(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("dump line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The gap lines of `stage` in a dump.
fn gaps_of<'a>(dump: &'a [Value], stage: &str) -> Vec<&'a Value> {
    dump.iter()
        .filter(|v| v["kind"] == "gap" && v["stage"] == stage)
        .collect()
}

fn gap_sum(gaps: &[&Value]) -> u64 {
    gaps.iter()
        .map(|g| g["count"].as_u64().expect("gap count"))
        .sum()
}

/// Checks that `got` is `want` with some events removed (nothing added, nothing reordered);
/// returns the removed ones.
fn missing_events(got: &[Ev], want: &[Ev]) -> Vec<Ev> {
    let mut missing = Vec::new();
    let mut w = want.iter();
    for g in got {
        loop {
            match w.next() {
                Some(x) if x == g => break,
                Some(x) => missing.push(x.clone()),
                None => panic!("dumped event {g:?} is not a recorded event in recorded order"),
            }
        }
    }
    missing.extend(w.cloned());
    missing
}

fn status_of(out: Output) -> Value {
    assert!(
        out.status.success(),
        "status --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

#[test]
fn full_ring_drops_are_counted_and_recorded_as_gaps_while_the_collector_runs_on() {
    // The smallest ring, and no agent at first: it fills within milliseconds.
    let env = Env::new(
        "full",
        "[ring]\ncapacity_bytes = 4096\n[spool]\nfsync_interval_ms = 10\n",
    );
    let rec = env.dir.path().join("keys.yml");
    // 60 s of typing at 20 ms per event, replayed 20x faster: 3 s, one event per ms. A
    // numeric speed, because `--speed max` waits for ring space instead of dropping.
    let want = key_recording(&rec, "exhaustion-keyboard", 3000, 20_000);
    let mut collector = Daemon::start(
        &env,
        &[
            "collector",
            "--replay",
            rec.to_str().expect("utf-8"),
            "--speed",
            "20",
        ],
    );
    let status = || status_of(env.run(&["status", "--json"]));
    let first = poll(
        "ring.frames_dropped > 0 with no agent reading",
        Duration::from_secs(10),
        || {
            let s = status();
            s["ring"]["frames_dropped"]
                .as_u64()
                .filter(|&d| d > 0)
                .map(|_| s)
        },
    );
    collector.assert_alive("after the ring filled");
    assert_eq!(
        first["collector_running"], true,
        "status shows the collector still running: {first}"
    );
    assert_eq!(
        first["capture_on"], true,
        "capture stays on while the ring is full: {first}"
    );
    assert!(
        // Full: all but the room the collector keeps for one gap record (and a last frame).
        u(&first["ring"]["pending_bytes"]) > 4096 - 512,
        "the ring is (nearly) full: {}",
        first["ring"]
    );
    // It keeps capturing and counting drops.
    let d0 = u(&first["ring"]["frames_dropped"]);
    poll(
        "ring.frames_dropped to keep growing",
        Duration::from_secs(10),
        || (u(&status()["ring"]["frames_dropped"]) > d0).then_some(()),
    );
    collector.assert_alive("while dropping");

    let mut agent = Daemon::start(&env, &["agent", "--exit-when-closed"]);
    collector.wait_success(Duration::from_secs(60));
    agent.wait_success(Duration::from_secs(30));
    assert!(
        collector.log().contains("ring had been full; gap recorded"),
        "the collector logs the gap it wrote:\n{}",
        collector.log()
    );

    let dump = parse_dump(&env.run(&["dump"]));
    let got = dumped_events(&dump);
    let missing = missing_events(&got, &want);
    let ring_full = gaps_of(&dump, "ring_full");
    assert!(!ring_full.is_empty(), "a ring_full gap line is in the dump");
    let dropped = gap_sum(&ring_full);
    assert_eq!(
        got.len() as u64 + dropped,
        want.len() as u64,
        "events dumped ({}) + ring_full gap counts ({dropped}) = events recorded",
        got.len()
    );
    assert_eq!(missing.len() as u64, dropped);
    let others: Vec<_> = dump
        .iter()
        .filter(|v| v["kind"] == "gap" && v["stage"] != "ring_full")
        .collect();
    assert!(others.is_empty(), "no other losses: {others:?}");
    // Every missing event lies inside the time span of a ring_full gap.
    for m in &missing {
        assert!(
            ring_full
                .iter()
                .any(|g| u(&g["from_ns"]) <= m.0 && m.0 <= u(&g["to_ns"])),
            "missing event {m:?} is covered by no gap: {ring_full:?}"
        );
    }
    // Writing resumed: events after the first gap made it to disk.
    let first_gap = dump.iter().position(|v| v["kind"] == "gap").expect("gap");
    assert!(
        dump[first_gap..].iter().any(|v| v["kind"] == "event"),
        "events after the first drop are written"
    );

    let s = status();
    assert_eq!(
        u(&s["ring"]["frames_dropped"]),
        dropped,
        "status ring.frames_dropped equals the gap counts: {}",
        s["ring"]
    );
    assert_eq!(
        u(&s["ring"]["gaps_written"]),
        ring_full.len() as u64,
        "one gap frame per ring_full gap line: {}",
        s["ring"]
    );
    assert_eq!(
        u(&s["ring"]["events_replay"]),
        want.len() as u64,
        "every recorded event was captured: {}",
        s["ring"]
    );
    assert_eq!(
        u(&s["agent"]["events_written"]),
        got.len() as u64,
        "{}",
        s["agent"]
    );
    let (code, text) = env.verify();
    assert_eq!(code, 0, "{text}");
}

#[test]
fn ring_still_full_when_the_collector_exits_leaves_a_gap_record() {
    // The replay ends while the ring is full and no agent has read anything: the drops
    // must still reach the spool as a gap record once an agent drains the closed ring.
    let env = Env::new("full", "[ring]\ncapacity_bytes = 4096\n");
    let rec = env.dir.path().join("keys.yml");
    let want = key_recording(&rec, "exhaustion-keyboard", 400, 1000);
    env.replay_with("collector", &rec, "1");
    let s = status_of(env.run(&["status", "--json"]));
    let dropped = u(&s["ring"]["frames_dropped"]);
    assert!(
        dropped > 0,
        "a 4 KiB ring cannot hold 400 events: {}",
        s["ring"]
    );
    let out = env.run(&["agent", "--exit-when-closed"]);
    assert!(
        out.status.success(),
        "agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = parse_dump(&env.run(&["dump"]));
    let got = dumped_events(&dump);
    missing_events(&got, &want);
    let ring_full = gaps_of(&dump, "ring_full");
    assert_eq!(
        gap_sum(&ring_full),
        dropped,
        "the {dropped} drops counted in status must be in the spool as ring_full gaps: {ring_full:?}"
    );
    assert_eq!(got.len() as u64 + dropped, want.len() as u64);
}

/// A tmpfs mounted for the length of a test; unmounted on drop, even after a failure.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs the `mount` command to make a small tmpfs: {e}")
            });
        assert!(
            out.status.success(),
            "this test needs to mount a small tmpfs (it must run as root with mount permission): `mount -t tmpfs -o {options} tmpfs {}` failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn free_bytes(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.path).expect("statvfs");
        st.blocks_available() * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

#[test]
fn full_disk_drops_are_counted_and_writing_resumes_when_space_returns() {
    // Production layout: the spool's data directory is its own (here: tiny) filesystem;
    // the ring and the agent's status live elsewhere (/run), so only the spool fills up.
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let data = dir.path().join("data");
    let config = dir.path().join("imprint.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\ndefault_level = \"full\"\n[paths]\nrun_dir = \"{r}\"\nagent_run_dir = \"{r}\"\ndata_dir = \"{d}\"\n[spool]\nsegment_max_bytes = 4096\nfsync_interval_ms = 10\nretention_max_bytes = 1073741824\n",
            r = run.display(),
            d = data.display()
        ),
    )
    .expect("write config");
    let imprint = |args: &[&str]| {
        let mut c = Command::new(imprint_bin());
        c.args(args).arg("--config").arg(&config);
        c
    };
    let status = || status_of(imprint(&["status", "--json"]).output().expect("status"));

    let fs = Tmpfs::mount(&data, "size=256k,mode=0700");
    // Leave the spool about a dozen pages, so it fills within a second.
    let filler = data.join("filler");
    let keep = 48 * 1024;
    let free = fs.free_bytes();
    assert!(free > keep, "tmpfs has {free} bytes free");
    std::fs::write(&filler, vec![0x5au8; (free - keep) as usize]).expect("write filler");

    let rec = dir.path().join("keys.yml");
    let want = key_recording(&rec, "exhaustion-keyboard", 8000, 1000); // 8 s of typing at real pace
    let rec_arg = rec.to_str().expect("utf-8");
    let mut collector = Daemon::spawn(
        imprint(&["collector", "--replay", rec_arg, "--speed", "1"]),
        "imprint collector".into(),
    );
    let mut agent = Daemon::spawn(
        imprint(&["agent", "--exit-when-closed"]),
        "imprint agent".into(),
    );

    let full = poll(
        "agent.dropped_disk > 0 once the tmpfs is full (the agent must be writing the spool while the collector runs)",
        Duration::from_secs(6),
        || {
            let s = status();
            s["agent"]["dropped_disk"]
                .as_u64()
                .filter(|&d| d > 0)
                .map(|_| s)
        },
    );
    let written_before = u(&full["agent"]["events_written"]);
    assert!(
        written_before > 0,
        "events were written before the disk filled: {}",
        full["agent"]
    );
    // Stay full for a while (about 200 ms of typing) and watch the drops pile up.
    let d0 = u(&full["agent"]["dropped_disk"]);
    let grown = poll(
        "agent.dropped_disk to keep growing while the disk is full",
        Duration::from_secs(5),
        || {
            let s = status();
            (u(&s["agent"]["dropped_disk"]) >= d0 + 200).then_some(s)
        },
    );
    collector.assert_alive("while the disk is full");
    agent.assert_alive("while the disk is full");
    assert_eq!(
        grown["collector_running"], true,
        "status: collector running: {grown}"
    );
    // Drops not yet recorded await their gap record. (A small batch can still fit now and
    // then, writing the gap for earlier drops, so "pending" may be less than the total.)
    let pending = u(&grown["agent"]["dropped_disk_pending"]);
    assert!(
        pending > 0 && pending <= u(&grown["agent"]["dropped_disk"]),
        "disk drops await their gap record: {}",
        grown["agent"]
    );
    assert!(
        agent.log().contains("cannot write the spool"),
        "the agent logs the full disk:\n{}",
        agent.log()
    );

    // Space returns.
    let written_full = u(&status()["agent"]["events_written"]);
    std::fs::remove_file(&filler).expect("remove filler");
    fs.remount("size=8m");
    let resumed = poll(
        "writing to resume (events_written grows, the disk gap is written)",
        Duration::from_secs(5),
        || {
            let s = status();
            (u(&s["agent"]["events_written"]) > written_full
                && u(&s["agent"]["dropped_disk_pending"]) == 0)
                .then_some(s)
        },
    );
    collector.assert_alive("after space returned");
    assert!(
        resumed["collector_running"] == true,
        "the replay must still be running when writing resumes: {resumed}"
    );

    collector.wait_success(Duration::from_secs(30));
    agent.wait_success(Duration::from_secs(30));
    assert!(
        agent.log().contains("spool writable again"),
        "the agent logs the recovery:\n{}",
        agent.log()
    );

    let s = status();
    let dump = parse_dump(&imprint(&["dump"]).output().expect("dump"));
    let got = dumped_events(&dump);
    let missing = missing_events(&got, &want);
    let disk = gaps_of(&dump, "disk");
    assert!(!disk.is_empty(), "a disk gap line is in the dump");
    let disk_drops = gap_sum(&disk);
    assert_eq!(
        disk_drops,
        u(&s["agent"]["dropped_disk"]),
        "disk gap counts = status agent.dropped_disk: {}",
        s["agent"]
    );
    assert_eq!(u(&s["agent"]["dropped_disk_pending"]), 0);
    let ring_drops = gap_sum(&gaps_of(&dump, "ring_full"));
    assert_eq!(ring_drops, u(&s["ring"]["frames_dropped"]), "{}", s["ring"]);
    let others: Vec<_> = dump
        .iter()
        .filter(|v| v["kind"] == "gap" && v["stage"] != "disk" && v["stage"] != "ring_full")
        .collect();
    assert!(others.is_empty(), "no other losses: {others:?}");
    assert_eq!(
        got.len() as u64 + disk_drops + ring_drops,
        want.len() as u64,
        "events dumped ({}) + disk drops ({disk_drops}) + ring drops ({ring_drops}) = events recorded",
        got.len()
    );
    assert_eq!(missing.len() as u64, disk_drops + ring_drops);
    for m in &missing {
        assert!(
            disk.iter()
                .chain(gaps_of(&dump, "ring_full").iter())
                .any(|g| u(&g["from_ns"]) <= m.0 && m.0 <= u(&g["to_ns"])),
            "missing event {m:?} lies in no gap's time span: {disk:?}"
        );
    }
    assert_eq!(
        got.last(),
        want.last(),
        "the end of the recording, after the disk recovered, is written"
    );
    let out = imprint(&["verify"]).output().expect("verify");
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(agent);
    drop(collector);
    drop(fs);
}

#[test]
fn full_disk_with_shipping_blocked_drops_unshipped_segments_only_with_gap_records() {
    // Shipping is on but the store is unreachable, so nothing is ever acknowledged: a full
    // disk must delete the oldest unshipped segments to keep writing, and each deletion is a
    // retention gap (plus the gap records that segment held), so the accounting stays exact.
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    let data = dir.path().join("data");
    let config = dir.path().join("imprint.toml");
    let creds = dir.path().join("ship.credentials");
    std::fs::write(&creds, "access_key_id = x\nsecret_access_key = y\n").expect("creds");
    std::fs::set_permissions(
        &creds,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod");
    // A port nothing listens on: every upload fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    std::fs::write(
        &config,
        format!(
            "[capture]\ndefault_level = \"full\"\n[paths]\nrun_dir = \"{r}\"\nagent_run_dir = \"{r}\"\ndata_dir = \"{d}\"\n[spool]\nsegment_max_bytes = 4096\nfsync_interval_ms = 10\nretention_max_bytes = 1073741824\n[ship]\nenabled = true\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"b\"\ncredentials_file = \"{c}\"\ninterval_secs = 1\ntimeout_secs = 1\n",
            r = run.display(),
            d = data.display(),
            c = creds.display(),
        ),
    )
    .expect("write config");
    let imprint = |args: &[&str]| {
        let mut c = Command::new(imprint_bin());
        c.args(args).arg("--config").arg(&config);
        c
    };
    let status = || status_of(imprint(&["status", "--json"]).output().expect("status"));
    let fs = Tmpfs::mount(&data, "size=256k,mode=0700");
    let filler = data.join("filler");
    let free = fs.free_bytes();
    let keep = 64 * 1024;
    assert!(free > keep, "tmpfs has {free} bytes free");
    std::fs::write(&filler, vec![0x5au8; (free - keep) as usize]).expect("write filler");

    let rec = dir.path().join("keys.yml");
    let want = key_recording(&rec, "exhaustion-keyboard", 8000, 1000);
    let rec_arg = rec.to_str().expect("utf-8");
    let mut collector = Daemon::spawn(
        imprint(&["collector", "--replay", rec_arg, "--speed", "1"]),
        "imprint collector".into(),
    );
    let mut agent = Daemon::spawn(
        imprint(&["agent", "--exit-when-closed"]),
        "imprint agent".into(),
    );
    poll(
        "retention to delete an unshipped segment for room",
        Duration::from_secs(20),
        || {
            let s = status();
            (s["agent"]["retention_unshipped_segments"]
                .as_u64()
                .unwrap_or(0)
                > 0)
            .then_some(s)
        },
    );
    agent.assert_alive("while the disk is full and the store unreachable");
    collector.wait_success(Duration::from_secs(30));
    agent.wait_success(Duration::from_secs(30));
    let s = status();
    // Free room for the dump's own needs is not required: it only reads.
    let dump = parse_dump(&imprint(&["dump"]).output().expect("dump"));
    let got = dumped_events(&dump);
    missing_events(&got, &want);
    let retention = gaps_of(&dump, "retention");
    assert!(!retention.is_empty(), "retention gap lines are in the dump");
    assert_eq!(
        gap_sum(&retention),
        u(&s["agent"]["dropped_retention"]),
        "retention gap counts = status agent.dropped_retention: {}",
        s["agent"]
    );
    let disk = gap_sum(&gaps_of(&dump, "disk"));
    let ring = gap_sum(&gaps_of(&dump, "ring_full"));
    // The filler keeps the disk full to the end, so the newest disk drops are still waiting
    // for room to write their gap record: counted in status, not yet in the spool.
    let pending = u(&s["agent"]["dropped_disk_pending"]);
    assert_eq!(
        disk + pending,
        u(&s["agent"]["dropped_disk"]),
        "disk gaps + pending = dropped_disk: {}",
        s["agent"]
    );
    assert_eq!(
        got.len() as u64 + gap_sum(&retention) + disk + pending + ring,
        want.len() as u64,
        "events dumped ({}) + retention ({}) + disk ({disk}, {pending} pending) + ring ({ring}) = events recorded: {}",
        got.len(),
        gap_sum(&retention),
        s["agent"]
    );
    assert!(
        u(&s["agent"]["events_written"]) > 0,
        "the agent kept writing: {}",
        s["agent"]
    );
}
