//! Erasure with the shipped binary on a real (encrypted) spool: `imprint erase` removes one
//! person's foci and everything attributed to them, leaves everyone else's intact, refuses to
//! touch a spool it cannot read whole, honours `--since`, unmarks rewritten segments as
//! shipped (naming the stale objects), and writes the audit trail.

mod common;

use common::{events, Env};
use imprint_record::codec::{encode_batch, BatchMeta};
use imprint_record::{FocusInfo, InputEvent, Record};
use imprint_spool::{list_segments, mark_shipped, Recipients, Spool, SpoolOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ALICE: u32 = 1000;
const BOB: u32 = 1001;
/// Realtime offset of the synthetic batches: mono 0 is 2026-01-01T00:00:00Z.
const OFFSET_NS: i64 = 1_767_225_600_000_000_000;
const BATCHES: u64 = 40;
const KEYS_PER_BATCH: u64 = 20;

/// A spool where focus alternates between Alice's and Bob's applications every batch, one
/// second apart, encrypted to `recipient`.
fn two_person_spool(dir: &Path, recipient: &str) {
    let (mut spool, _) = Spool::open(SpoolOptions {
        segment_max_bytes: 4096,
        recipients: Some(Recipients::parse(&[recipient]).expect("recipient")),
        ..SpoolOptions::new(dir.to_owned())
    })
    .expect("spool");
    for b in 0..BATCHES {
        let t0 = b * 1_000_000_000;
        let uid = if b % 2 == 0 { ALICE } else { BOB };
        let mut recs = vec![Record::Focus(Box::new(FocusInfo {
            seq: b + 1,
            mono_ns: t0,
            uid,
            exe: format!("/usr/bin/app-{uid}"),
            ..Default::default()
        }))];
        for k in 0..KEYS_PER_BATCH {
            recs.push(Record::Event(InputEvent {
                mono_ns: t0 + 1000 + k * 1000,
                device: 1,
                kind: 1,
                code: 30,
                value: (k % 2) as i32,
                focus: b + 1,
            }));
        }
        let meta = BatchMeta {
            format_version: 1,
            ring_epoch: 7,
            ring_seq_first: b * 100 + 1,
            ring_seq_last: b * 100 + 100,
            realtime_offset_ns: OFFSET_NS,
            ..Default::default()
        };
        spool.append(&encode_batch(&meta, &recs)).expect("append");
    }
    spool.rotate().expect("seal");
}

fn setup() -> (Env, std::path::PathBuf, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("tempdir");
    let (id_path, recipient) = common::operator_key(keys.path(), "operator.key");
    let env = Env::new(
        "full",
        &format!("[spool]\nrecipients = [\"{recipient}\"]\n"),
    );
    two_person_spool(&env.spool_dir(), &recipient);
    (env, id_path, keys)
}

/// (events in Alice's foci, in Bob's) by the focus records of the dump.
fn per_person(env: &Env, id: &Path) -> (usize, usize, Vec<u64>) {
    let out = env.run(&["dump", "--identity", id.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let foci: Vec<u64> = lines
        .iter()
        .filter(|v| v["kind"] == "focus")
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    let evs = events(&lines);
    // Odd focus seqs are Alice's (batch 0, 2, …), even ones Bob's.
    let alice = evs
        .iter()
        .filter(|e| e["focus"].as_u64().unwrap_or(0) % 2 == 1)
        .count();
    let bob = evs.len() - alice;
    (alice, bob, foci)
}

#[test]
fn erasing_one_person_leaves_the_other_intact() {
    let (env, id, _keys) = setup();
    let per = (BATCHES / 2 * KEYS_PER_BATCH) as usize;
    assert_eq!(per_person(&env, &id).0, per);
    assert_eq!(per_person(&env, &id).1, per);
    // Without the identity nothing is touched.
    let before: Vec<Vec<u8>> = list_segments(&env.spool_dir())
        .expect("list")
        .iter()
        .map(|s| std::fs::read(&s.path).expect("read"))
        .collect();
    let out = env.run(&["erase", "--subject", &BOB.to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--identity"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<Vec<u8>> = list_segments(&env.spool_dir())
        .expect("list")
        .iter()
        .map(|s| std::fs::read(&s.path).expect("read"))
        .collect();
    assert_eq!(before, after, "a refused erasure changes nothing");
    // One segment was shipped: rewriting it must unmark it and name the stale object.
    let segs = list_segments(&env.spool_dir()).expect("list");
    assert!(segs.len() > 2, "{} segments", segs.len());
    mark_shipped(&segs[0], "imprint/m/s/00000000000000000001-abc.sealed").expect("mark");
    let out = env.run(&[
        "erase",
        "--subject",
        &BOB.to_string(),
        "--identity",
        id.to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("erased {per} events")), "{text}");
    assert!(
        text.contains("1 shipped objects held the old content"),
        "{text}"
    );
    let (alice, bob, foci) = per_person(&env, &id);
    assert_eq!((alice, bob), (per, 0));
    assert!(
        foci.iter().all(|s| s % 2 == 1),
        "Bob's focus records are gone: {foci:?}"
    );
    assert!(!imprint_spool::is_shipped(
        &list_segments(&env.spool_dir()).expect("list")[0]
    ));
    let (code, out) = env.verify();
    assert_eq!(code, 0, "{out}");
    // Still encrypted: the rewritten segments hold no clear exe name.
    for s in list_segments(&env.spool_dir()).expect("list") {
        let b = std::fs::read(&s.path).expect("read");
        assert!(
            !b.windows(7).any(|w| w == b"app-100"),
            "{}",
            s.path.display()
        );
    }
    let audit = env.data.join("audit.jsonl");
    let mode = std::fs::metadata(&audit)
        .expect("audit")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&audit)
            .expect("read")
            .lines()
            .last()
            .expect("a line"),
    )
    .expect("json");
    assert_eq!(line["action"], "erase");
    assert_eq!(line["subject"], BOB.to_string());
    assert_eq!(line["result"]["events_removed"], per as u64);
}

#[test]
fn since_erases_only_what_came_after() {
    let (env, id, _keys) = setup();
    // Halfway: batches 20.. (mono 20 s on) are after.
    let half = (OFFSET_NS / 1_000_000_000) + 20;
    let out = env.run(&[
        "erase",
        "--subject",
        &ALICE.to_string(),
        "--since",
        &half.to_string(),
        "--identity",
        id.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (alice, bob, _) = per_person(&env, &id);
    let per = (BATCHES / 2 * KEYS_PER_BATCH) as usize;
    assert_eq!(alice, per / 2, "Alice's first half is kept");
    assert_eq!(bob, per);
}
