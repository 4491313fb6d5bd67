//! Ring throughput: frames per second through the shared mmap ring, single producer and
//! single consumer. `cargo bench -p imprint-benches --bench ring`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imprint_record::codec::encode_record;
use imprint_record::{InputEvent, Record};
use imprint_ring::{cursor_path, ring_path, ReadOutcome, RingReader, RingWriter};
use std::time::{Duration, Instant};

fn event_frame() -> Vec<u8> {
    let mut buf = Vec::new();
    encode_record(
        &Record::Event(InputEvent {
            mono_ns: 123_456_789,
            device: 3,
            kind: 1,
            code: 30,
            value: 1,
            focus: 0,
        }),
        &mut buf,
    );
    buf
}

fn same_thread(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = RingWriter::create(
        &ring_path(dir.path()),
        &cursor_path(dir.path()),
        1 << 22,
        0o640,
    )
    .expect("ring");
    let mut r = RingReader::open(&ring_path(dir.path()), &cursor_path(dir.path())).expect("reader");
    let frame = event_frame();
    const BATCH: u64 = 1024;
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("push_publish_read_commit_1024_event_frames", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                w.try_push(&frame).expect("room");
            }
            w.publish();
            let mut n = 0;
            while let ReadOutcome::Frame { payload, .. } = r.next_frame() {
                n += payload.len();
            }
            r.commit();
            n
        })
    });
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let frame = event_frame();
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    g.bench_function("spsc_two_threads_per_frame", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("tempdir");
            let (rp, cp) = (ring_path(dir.path()), cursor_path(dir.path()));
            let mut w = RingWriter::create(&rp, &cp, 1 << 20, 0o640).expect("ring");
            let mut r = RingReader::open(&rp, &cp).expect("reader");
            let consumer = std::thread::spawn(move || {
                let mut got = 0u64;
                while got < iters {
                    match r.next_frame() {
                        ReadOutcome::Frame { .. } => {
                            got += 1;
                            if got.is_multiple_of(256) {
                                r.commit();
                            }
                        }
                        ReadOutcome::Empty => {
                            r.commit();
                            r.wait(Some(Duration::from_millis(10)));
                        }
                        ReadOutcome::Corrupt { .. } => panic!("corrupt"),
                    }
                }
            });
            let start = Instant::now();
            let mut sent = 0;
            while sent < iters {
                if w.try_push(&frame).is_ok() {
                    sent += 1;
                    if sent.is_multiple_of(64) {
                        w.publish();
                    }
                } else {
                    w.publish();
                    std::hint::spin_loop();
                }
            }
            w.publish();
            consumer.join().expect("consumer");
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = same_thread, two_threads
}
criterion_main!(benches);
