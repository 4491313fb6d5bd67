use super::*;
use proptest::prelude::*;
use std::os::unix::fs::PermissionsExt;

fn all_frames(dir: &Path) -> (Vec<(u64, Vec<u8>)>, Vec<String>) {
    all_frames_with(dir, None)
}

fn all_frames_with(dir: &Path, ids: Option<&Identities>) -> (Vec<(u64, Vec<u8>)>, Vec<String>) {
    let mut frames = Vec::new();
    let mut damage = Vec::new();
    for seg in list_segments(dir).expect("list") {
        read_segment(&seg, ids, |i| match i {
            Item::Frame { seq, payload } => frames.push((seq, payload)),
            Item::Locked { place, .. } => damage.push(format!("{place}: locked")),
            Item::Damaged { place, why } => damage.push(format!("{place}: {why}")),
            Item::TornTail { place, .. } => damage.push(format!("{place}: torn")),
        })
        .expect("read");
    }
    (frames, damage)
}

fn opts(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        segment_max_bytes: 1000,
        ..SpoolOptions::new(dir.join("spool"))
    }
}

#[test]
fn frames_survive_rotation_and_reopen_with_private_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = opts(tmp.path());
    let (mut s, rec) = Spool::open(o.clone()).expect("open");
    assert!(rec.last_payload.is_none());
    for i in 0..50u8 {
        assert_eq!(s.append(&[i; 100]).expect("append"), u64::from(i) + 1);
    }
    s.sync().expect("sync");
    drop(s);
    let (s, rec) = Spool::open(o.clone()).expect("reopen");
    assert_eq!(rec.last_payload, Some(vec![49; 100]));
    assert_eq!(s.next_seq(), 51);
    let (frames, damage) = all_frames(&o.dir);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(frames.len(), 50);
    assert!(frames
        .iter()
        .enumerate()
        .all(|(i, (seq, p))| *seq == i as u64 + 1 && p == &vec![i as u8; 100]));
    let segs = list_segments(&o.dir).expect("list");
    assert!(segs.len() > 2 && segs.iter().all(|s| s.sealed));
    assert_eq!(
        std::fs::metadata(&o.dir)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    for seg in segs {
        assert_eq!(
            std::fs::metadata(&seg.path)
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}

#[test]
fn torn_tail_is_cut_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = SpoolOptions::new(tmp.path().join("spool"));
    let (mut s, _) = Spool::open(o.clone()).expect("open");
    s.append(b"one").expect("append");
    s.append(b"two").expect("append");
    s.sync().expect("sync");
    drop(s);
    let seg = &list_segments(&o.dir).expect("list")[0];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg.path)
        .expect("open seg");
    f.write_all(&frame::FRAME_MAGIC.to_le_bytes())
        .expect("write");
    f.write_all(&[200, 0, 0, 0, 1, 2]).expect("write");
    drop(f);
    let (s, rec) = Spool::open(o.clone()).expect("recover");
    assert_eq!(rec.torn_bytes, 10);
    assert_eq!(rec.recovered_segments, 1);
    assert_eq!(rec.last_payload.as_deref(), Some(&b"two"[..]));
    assert_eq!(s.next_seq(), 3);
    let (frames, damage) = all_frames(&o.dir);
    assert_eq!(frames, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
    assert!(damage.is_empty(), "{damage:?}");
}

#[test]
fn damaged_sealed_chunk_is_located_and_others_survive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = SpoolOptions {
        segment_max_bytes: 2 << 20,
        ..SpoolOptions::new(tmp.path().join("spool"))
    };
    let (mut s, _) = Spool::open(o.clone()).expect("open");
    // Incompressible-ish payloads so the segment spans several chunks.
    let mut x = 1u64;
    for _ in 0..400 {
        let p: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        s.append(&p).expect("append");
    }
    s.rotate().expect("rotate");
    let seg = list_segments(&o.dir).expect("list").remove(0);
    assert!(seg.sealed);
    let mut bytes = std::fs::read(&seg.path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&seg.path, &bytes).expect("write");
    let (frames, damage) = all_frames(&o.dir);
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0].contains(&seg.path.display().to_string()) && damage[0].contains("chunk at byte")
    );
    assert!(
        frames.len() > 200 && frames.len() < 400,
        "only the damaged chunk is lost: {}",
        frames.len()
    );
}

#[test]
fn retention_removes_oldest_sealed_segments_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = SpoolOptions {
        segment_max_bytes: 1000,
        retention_max_bytes: 3000,
        ..SpoolOptions::new(tmp.path().join("spool"))
    };
    let (mut s, _) = Spool::open(o.clone()).expect("open");
    let mut x = 7u64;
    for _ in 0..40 {
        let p: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        s.append(&p).expect("append");
    }
    let deleted = s.enforce_retention(SystemTime::now(), false, |_| panic!("not shipping"));
    assert!(!deleted.is_empty());
    assert!(s.total_bytes() <= 3000, "{}", s.total_bytes());
    let (frames, _) = all_frames(&o.dir);
    assert_eq!(
        frames.last().map(|f| f.0),
        Some(40),
        "the newest data is kept"
    );
    let first = frames.first().map(|f| f.0).unwrap_or(0);
    assert!(
        frames.iter().map(|f| f.0).eq(first..=40),
        "what is left is contiguous"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random appends, syncs, rotations and crashes that cut the open segment anywhere after
    /// its last sync: recovery keeps every synced frame, invents nothing, and numbering resumes.
    #[test]
    fn recovery_matches_model(ops in proptest::collection::vec((0usize..300, 0u8..10), 1..120), cut in any::<proptest::sample::Index>()) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let o = opts(tmp.path());
        let (mut s, _) = Spool::open(o.clone()).expect("open");
        let mut written: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut synced = 0usize;
        for (i, (len, action)) in ops.iter().enumerate() {
            let payload = vec![i as u8; *len];
            let seq = s.append(&payload).expect("append");
            written.push((seq, payload));
            match action {
                0 => { s.sync().expect("sync"); synced = written.len(); }
                1 => { s.rotate().expect("rotate"); synced = written.len(); }
                _ => {}
            }
            if s.open.is_none() { synced = written.len(); }
        }
        // Crash: anything after the last sync may be lost, at an arbitrary byte.
        let open_seg = list_segments(&o.dir).expect("list").into_iter().find(|g| !g.sealed);
        drop(s);
        if let Some(seg) = open_seg {
            let unsynced: u64 = written[synced..].iter().map(|(_, p)| (frame::FRAME_HEADER + p.len()) as u64).sum();
            let keep = seg.bytes - unsynced + cut.index(unsynced as usize + 1) as u64;
            truncate(&seg.path, keep).expect("cut");
        }
        let (s, _) = Spool::open(o.clone()).expect("recover");
        let (frames, damage) = all_frames(&o.dir);
        prop_assert!(damage.is_empty(), "{:?}", damage);
        prop_assert!(frames.len() >= synced && frames.len() <= written.len());
        prop_assert_eq!(&frames[..], &written[..frames.len()]);
        prop_assert_eq!(s.next_seq(), frames.len() as u64 + 1);
    }
}

fn encrypted_opts(dir: &Path) -> (SpoolOptions, age::x25519::Identity) {
    let id = age::x25519::Identity::generate();
    let r = Recipients::parse(&[id.to_public().to_string()]).expect("recipient");
    let o = SpoolOptions {
        segment_max_bytes: 4000,
        recipients: Some(r),
        ..SpoolOptions::new(dir.join("spool"))
    };
    (o, id)
}

fn payload(i: u32) -> Vec<u8> {
    format!("typed-secret-{i:04}-").repeat(8).into_bytes()
}

/// Every file in the spool, as bytes.
fn spool_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .map(|p| (p.clone(), std::fs::read(&p).expect("read")))
        .collect()
}

#[test]
fn encrypted_spool_never_writes_plaintext_and_reads_back_with_the_identity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (o, id) = encrypted_opts(tmp.path());
    let (mut s, _) = Spool::open(o.clone()).expect("open");
    assert!(s.is_encrypted());
    for i in 0..60u32 {
        s.append_tagged(&i.to_le_bytes(), &payload(i))
            .expect("append");
        if i % 7 == 0 {
            s.sync().expect("sync");
            // Between fsyncs too: nothing typed is ever on disk in the clear.
            for (p, b) in spool_bytes(&o.dir) {
                assert!(
                    !b.windows(12).any(|w| w == b"typed-secret"),
                    "{}",
                    p.display()
                );
            }
        }
    }
    s.sync().expect("sync");
    drop(s); // a crash: the open segment stays encrypted frames
    let (s, rec) = Spool::open(o.clone()).expect("reopen");
    assert_eq!(
        rec.last_tag,
        Some(59u32.to_le_bytes().to_vec()),
        "resume without a key"
    );
    assert!(rec.last_payload.is_none());
    assert_eq!(s.next_seq(), 61);
    drop(s);
    let segs = list_segments(&o.dir).expect("list");
    assert!(segs.len() > 3 && segs.iter().all(|s| s.sealed), "{segs:?}");
    for (p, b) in spool_bytes(&o.dir) {
        assert!(
            !b.windows(12).any(|w| w == b"typed-secret"),
            "{}",
            p.display()
        );
    }
    let (frames, locked) = all_frames(&o.dir);
    assert!(
        frames.is_empty() && !locked.is_empty(),
        "without the identity: locked"
    );
    let ids = Identities::from_keys(vec![id]);
    let (frames, damage) = all_frames_with(&o.dir, Some(&ids));
    assert!(damage.is_empty(), "{damage:?}");
    let want: Vec<(u64, Vec<u8>)> = (0..60).map(|i| (u64::from(i) + 1, payload(i))).collect();
    assert_eq!(frames, want);
}

#[test]
fn turning_encryption_on_encrypts_what_is_already_there_and_rotation_keeps_old_keys_working() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plain = opts(tmp.path());
    let (mut s, _) = Spool::open(plain.clone()).expect("open");
    for i in 0..20 {
        s.append(&payload(i)).expect("append");
    }
    s.sync().expect("sync");
    drop(s);
    let (o1, id1) = encrypted_opts(tmp.path());
    let (mut s, rec) = Spool::open(o1.clone()).expect("reopen encrypted");
    assert!(rec.encrypted_segments > 0);
    assert_eq!(
        rec.last_payload,
        Some(payload(19)),
        "read in the clear before encrypting"
    );
    for i in 20..30 {
        s.append_tagged(b"t", &payload(i)).expect("append");
    }
    s.rotate().expect("rotate");
    drop(s);
    // Key rotation: the new key for new segments; the old identity still reads the old ones.
    let (o2, id2) = encrypted_opts(tmp.path());
    let (mut s, rec) = Spool::open(o2).expect("reopen with a new key");
    assert_eq!(rec.last_tag, Some(b"t".to_vec()));
    for i in 30..40 {
        s.append_tagged(b"u", &payload(i)).expect("append");
    }
    s.rotate().expect("rotate");
    for (p, b) in spool_bytes(&o1.dir) {
        assert!(
            !b.windows(12).any(|w| w == b"typed-secret"),
            "{}",
            p.display()
        );
    }
    let (only_new, _) = all_frames_with(&o1.dir, Some(&Identities::from_keys(vec![id2.clone()])));
    assert_eq!(only_new.len(), 10);
    let both = Identities::from_keys(vec![id1, id2]);
    let (frames, damage) = all_frames_with(&o1.dir, Some(&both));
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(
        frames.iter().map(|f| f.1.clone()).collect::<Vec<_>>(),
        (0..40).map(payload).collect::<Vec<_>>()
    );
}

#[test]
fn with_shipping_retention_deletes_shipped_first_and_reports_every_unshipped_loss() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let o = SpoolOptions {
        segment_max_bytes: 1000,
        retention_max_bytes: 1_000_000,
        retention_max_age: std::time::Duration::from_secs(3600),
        keep_unshipped: true,
        zstd_level: 1,
        ..SpoolOptions::new(tmp.path().join("spool"))
    };
    let (mut s, _) = Spool::open(o.clone()).expect("open");
    let mut x = 7u64;
    for _ in 0..40 {
        let p: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        s.append(&p).expect("append");
    }
    let segs: Vec<SegmentFile> = list_segments(&o.dir)
        .expect("list")
        .into_iter()
        .filter(|s| s.sealed)
        .collect();
    assert!(segs.len() >= 8, "{}", segs.len());
    // The newer half is shipped.
    for seg in &segs[segs.len() / 2..] {
        mark_shipped(seg, "key").expect("mark");
    }
    // Old age alone removes only shipped segments.
    let later = SystemTime::now() + std::time::Duration::from_secs(7200);
    let gone = s.enforce_retention(later, false, |seg| {
        panic!("unshipped {seg:?} deleted by age")
    });
    assert_eq!(gone.len(), segs.len() - segs.len() / 2);
    assert!(gone.iter().all(|r| r.shipped));
    // No room: one unshipped segment goes, the oldest, and is reported first.
    let mut lost = Vec::new();
    let gone = s.enforce_retention(SystemTime::now(), true, |seg| lost.push(seg.first_seq));
    assert_eq!(gone.len(), 1);
    assert_eq!(lost, vec![segs[0].first_seq]);
    assert!(!gone[0].shipped);
    assert!(
        std::fs::read_dir(&o.dir).expect("dir").all(|e| !e
            .expect("e")
            .path()
            .to_string_lossy()
            .ends_with(".shipped")),
        "markers go with their segments"
    );
}
