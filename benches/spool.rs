//! Spool throughput: input events per second appended to a segment and fsynced, in batches
//! as the agent writes them. `cargo bench -p imprint-benches --bench spool`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imprint_record::codec::{encode_batch, BatchMeta};
use imprint_record::{InputEvent, Record};
use imprint_spool::{Spool, SpoolOptions};
use std::time::Duration;

fn batch(n: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::Event(InputEvent {
                mono_ns: i as u64 * 1000,
                device: 1,
                kind: 1,
                code: 30 + (i % 20) as u16,
                value: (i % 2) as i32,
                focus: 0,
            })
        })
        .collect();
    encode_batch(
        &BatchMeta {
            format_version: 1,
            ring_epoch: 1,
            ring_seq_first: 1,
            ring_seq_last: n as u64,
            ..Default::default()
        },
        &records,
    )
}

fn append_and_fsync(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool");
    for n in [64usize, 1024] {
        let payload = batch(n);
        let dir = tempfile::tempdir_in(
            std::env::var_os("IMPRINT_BENCH_DIR").unwrap_or_else(|| ".".into()),
        )
        .expect("tempdir");
        let (mut spool, _) = Spool::open(SpoolOptions {
            segment_max_bytes: 64 << 20,
            ..SpoolOptions::new(dir.path().join("spool"))
        })
        .expect("spool");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("events_append_fsync_per_batch", n),
            &payload,
            |b, p| {
                b.iter(|| {
                    spool.append(p).expect("append");
                    spool.sync().expect("fsync");
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("events_encode_batch", n), &n, |b, &n| {
            b.iter(|| batch(n))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = append_and_fsync
}
criterion_main!(benches);
