use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

struct Fixture {
    _dir: tempfile::TempDir,
    ring: std::path::PathBuf,
    cursor: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    Fixture {
        ring: ring_path(dir.path()),
        cursor: cursor_path(dir.path()),
        _dir: dir,
    }
}

fn read_frame(r: &mut RingReader) -> Option<(u64, Vec<u8>)> {
    match r.next_frame() {
        ReadOutcome::Frame { seq, payload } => Some((seq, payload.to_vec())),
        ReadOutcome::Empty => None,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn frames_round_trip_and_full_ring_refuses_without_overwriting() {
    let f = fixture();
    let mut w = RingWriter::create(&f.ring, &f.cursor, 4096, 0o640).expect("create");
    let mut r = RingReader::open(&f.ring, &f.cursor).expect("open");
    let payload = [7u8; 100]; // 120 bytes per frame
    let mut pushed = 0;
    while w.try_push(&payload).is_ok() {
        pushed += 1;
    }
    assert_eq!(pushed, 4096 / 120);
    w.publish();
    for i in 1..=pushed {
        assert_eq!(read_frame(&mut r), Some((i, payload.to_vec())));
    }
    assert_eq!(read_frame(&mut r), None);
    // Nothing committed yet: still full.
    assert_eq!(w.try_push(&payload), Err(RingFull));
    r.commit();
    assert!(w.try_push(&payload).is_ok(), "space returns after commit");
}

#[test]
fn flipped_byte_is_reported_and_reading_continues() {
    let f = fixture();
    let mut w = RingWriter::create(&f.ring, &f.cursor, 4096, 0o640).expect("create");
    let mut r = RingReader::open(&f.ring, &f.cursor).expect("open");
    for i in 0..3u8 {
        w.try_push(&[i; 40]).expect("push");
    }
    w.publish();
    // Flip a payload byte of the second frame (frames are 56 bytes).
    let off = layout::HEADER_SIZE as usize + 56 + 16 + 3;
    let mut bytes = std::fs::read(&f.ring).expect("read");
    bytes[off] ^= 0xff;
    std::fs::write(&f.ring, &bytes).expect("write");
    assert_eq!(read_frame(&mut r), Some((1, vec![0; 40])));
    assert!(matches!(
        r.next_frame(),
        ReadOutcome::Corrupt {
            at: 56,
            why: "frame CRC mismatch",
            ..
        }
    ));
    assert_eq!(read_frame(&mut r), Some((3, vec![2; 40])));
}

#[test]
fn garbage_length_skips_to_write_position() {
    let f = fixture();
    let mut w = RingWriter::create(&f.ring, &f.cursor, 4096, 0o640).expect("create");
    let mut r = RingReader::open(&f.ring, &f.cursor).expect("open");
    w.try_push(&[1; 40]).expect("push");
    w.try_push(&[2; 40]).expect("push");
    w.publish();
    let mut bytes = std::fs::read(&f.ring).expect("read");
    bytes[layout::HEADER_SIZE as usize..][..4].copy_from_slice(&9999u32.to_le_bytes());
    std::fs::write(&f.ring, &bytes).expect("write");
    assert!(matches!(
        r.next_frame(),
        ReadOutcome::Corrupt {
            at: 0,
            resume_at: 112,
            ..
        }
    ));
    w.try_push(&[3; 40]).expect("push");
    w.publish();
    assert_eq!(read_frame(&mut r), Some((3, vec![3; 40])));
}

#[test]
fn a_new_ring_closes_the_old_one() {
    let f = fixture();
    let _w = RingWriter::create(&f.ring, &f.cursor, 4096, 0o640).expect("create");
    let r = RingReader::open(&f.ring, &f.cursor).expect("open");
    assert!(!r.is_closed());
    let w2 = RingWriter::create(&f.ring, &f.cursor, 4096, 0o640).expect("create again");
    assert!(r.is_closed());
    assert_ne!(r.epoch(), w2.epoch());
    let r2 = RingReader::open(&f.ring, &f.cursor).expect("reopen");
    assert_eq!(r2.position(), 0, "a new epoch starts at zero");
}

#[test]
fn a_restarted_writer_continues_the_ring_with_what_was_unread() {
    let f = fixture();
    let (mut w, start) = RingWriter::open(&f.ring, &f.cursor, 4096, 0o600).expect("open");
    assert_eq!(
        start,
        RingStart::Created {
            replaced: None,
            why: None
        }
    );
    let epoch = w.epoch();
    for i in 0..3u8 {
        w.note_time(100 + u64::from(i));
        w.try_push(&[i; 40]).expect("push");
    }
    // Pushed but never published: a crash loses it, and nobody ever saw it.
    w.publish();
    w.try_push(&[9; 40]).expect("push");
    w.set_focus_seq(7);
    drop(w); // SIGKILL: never closed
    let (mut w2, start) = RingWriter::open(&f.ring, &f.cursor, 4096, 0o600).expect("reopen");
    assert_eq!(
        start,
        RingStart::Continued {
            crashed: true,
            last_mono_ns: 102
        }
    );
    assert_eq!(w2.epoch(), epoch);
    assert_eq!(w2.focus_seq(), 7, "focus sequences are never reused");
    w2.try_push(&[4; 40]).expect("push");
    w2.publish();
    // An agent that starts only now still finds every published frame, in sequence.
    let mut r = RingReader::open(&f.ring, &f.cursor).expect("reader");
    let got: Vec<(u64, u8)> = std::iter::from_fn(|| read_frame(&mut r))
        .map(|(seq, p)| (seq, p[0]))
        .collect();
    assert_eq!(got, [(1, 0), (2, 1), (3, 2), (4, 4)]);
    assert_eq!(r.stats().continued, 1);

    // A clean stop, then a restart: not a crash, and a reader that saw it closed reads on.
    w2.close();
    assert!(r.is_closed());
    drop(w2);
    let (mut w3, start) = RingWriter::open(&f.ring, &f.cursor, 4096, 0o600).expect("again");
    assert!(matches!(start, RingStart::Continued { crashed: false, .. }));
    assert!(!r.is_closed());
    w3.try_push(&[5; 40]).expect("push");
    w3.publish();
    assert_eq!(read_frame(&mut r), Some((5, vec![5; 40])));
}

#[test]
fn a_ring_that_cannot_be_continued_is_replaced_and_named() {
    let f = fixture();
    let (mut w, _) = RingWriter::open(&f.ring, &f.cursor, 4096, 0o600).expect("open");
    for i in 0..3u8 {
        w.try_push(&[i; 40]).expect("push");
    }
    w.publish();
    let old = w.epoch();
    let r = RingReader::open(&f.ring, &f.cursor).expect("reader");
    // Its writer is alive: two writers must never share a ring.
    let (w2, start) = RingWriter::open(&f.ring, &f.cursor, 4096, 0o600).expect("second");
    assert_eq!(
        start,
        RingStart::Created {
            replaced: Some((old, 3)),
            why: Some("another collector is still writing it".into())
        }
    );
    assert!(r.is_closed(), "the old ring's reader is told to move on");
    let r2 = RingReader::open(&f.ring, &f.cursor).expect("new reader");
    assert_eq!(r2.replaced(), Some((old, 3)));
    assert_ne!(r2.epoch(), old);
    drop((w, w2));
    // Another capacity: replaced too.
    let (w3, start) = RingWriter::open(&f.ring, &f.cursor, 8192, 0o600).expect("bigger");
    assert!(
        matches!(&start, RingStart::Created { replaced: Some(_), why: Some(why) } if why.contains("capacity")),
        "{start:?}"
    );
    drop(w3);
    // A ring others may write is not trusted.
    std::fs::set_permissions(&f.ring, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod");
    let (_w4, start) = RingWriter::open(&f.ring, &f.cursor, 8192, 0o600).expect("untrusted");
    assert!(
        matches!(start, RingStart::Created { why: Some(_), .. }),
        "{start:?}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Read(usize),
    Commit,
    /// The agent dies and restarts: it resumes from the committed position.
    CrashReader,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..600).prop_map(Op::Push),
        3 => (1usize..20).prop_map(Op::Read),
        2 => Just(Op::Commit),
        1 => Just(Op::CrashReader),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Against a model: frames are read in order, each exactly once between commits, a crash
    /// re-delivers exactly the uncommitted frames, and the writer only refuses when the
    /// uncommitted bytes leave no room.
    #[test]
    fn ring_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
        let f = fixture();
        let cap = 4096u64;
        let mut w = RingWriter::create(&f.ring, &f.cursor, cap, 0o640).expect("create");
        let mut r = RingReader::open(&f.ring, &f.cursor).expect("open");
        // Model: frames not yet committed, and how many of them the reader has consumed.
        let mut uncommitted: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut ends: VecDeque<u64> = VecDeque::new();
        let mut consumed = 0usize;
        let (mut model_wp, mut model_rp) = (0u64, 0u64);
        let mut next_seq = 1u64;
        let mut tag = 0u8;
        for op in ops {
            match op {
                Op::Push(len) => {
                    tag = tag.wrapping_add(1);
                    let payload = vec![tag; len];
                    // The spec: a frame never straddles the end of the area (the rest is
                    // padding), and it fits only within the space not yet committed.
                    let need = layout::frame_size(len);
                    let contiguous = cap - model_wp % cap;
                    let pad = if need > contiguous { contiguous } else { 0 };
                    let fits = need <= cap / 2 && pad + need <= cap - (model_wp - model_rp);
                    match w.try_push(&payload) {
                        Ok(seq) => {
                            prop_assert!(fits, "accepted a frame that overwrites uncommitted data");
                            prop_assert_eq!(seq, next_seq);
                            next_seq += 1;
                            model_wp += pad + need;
                            uncommitted.push_back((seq, payload));
                            ends.push_back(model_wp);
                        }
                        Err(RingFull) => prop_assert!(!fits, "refused a frame that fits"),
                    }
                    w.publish();
                }
                Op::Read(n) => {
                    for _ in 0..n {
                        match read_frame(&mut r) {
                            Some(got) => {
                                prop_assert_eq!(Some(&got), uncommitted.get(consumed));
                                consumed += 1;
                            }
                            None => {
                                prop_assert_eq!(consumed, uncommitted.len());
                                break;
                            }
                        }
                    }
                }
                Op::Commit => {
                    r.commit();
                    if consumed > 0 {
                        model_rp = ends[consumed - 1];
                    }
                    prop_assert_eq!(model_rp, r.position());
                    uncommitted.drain(..consumed);
                    ends.drain(..consumed);
                    consumed = 0;
                }
                Op::CrashReader => {
                    drop(r);
                    r = RingReader::open(&f.ring, &f.cursor).expect("reopen");
                    consumed = 0;
                }
            }
        }
        // Drain: everything uncommitted is still readable, in order.
        let rest: Vec<_> = std::iter::from_fn(|| read_frame(&mut r)).collect();
        prop_assert_eq!(rest, uncommitted.into_iter().skip(consumed).collect::<Vec<_>>());
    }
}

#[test]
fn a_batching_reader_is_woken_only_past_its_threshold() {
    use crate::writer::wants_wake;
    assert!(
        !wants_wake(0, Some(1 << 20)),
        "an awake reader needs no wake-up"
    );
    assert!(wants_wake(1, Some(0)), "1 is any publish");
    assert!(!wants_wake(1024, Some(1023)));
    assert!(wants_wake(1024, Some(1024)));
    assert!(
        wants_wake(1024, None),
        "an untrusted cursor wakes the reader"
    );
}

#[test]
fn a_batching_reader_wakes_when_the_ring_fills_to_its_threshold() {
    let f = fixture();
    let mut w = RingWriter::create(&f.ring, &f.cursor, 4096, 0o640).expect("create");
    let r = RingReader::open(&f.ring, &f.cursor).expect("open");
    // The 60 s deadline is never the reason it returns: the frames past a quarter of the
    // ring (1 KiB) are.
    let reader = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        r.wait_batching(std::time::Duration::from_secs(60));
        started.elapsed()
    });
    for _ in 0..16 {
        w.try_push(&[1u8; 100]).expect("push");
        w.publish();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let slept = reader.join().expect("reader thread");
    assert!(
        slept < std::time::Duration::from_secs(30),
        "the reader slept {slept:?}: 16 frames of 120 bytes did not wake it"
    );
}
