//! Spool throughput: input events per second appended to a segment and fsynced, in batches
//! as the agent writes them; the same encrypted to an operator key (per batch, no fsync, to
//! isolate the cost); and age encryption of a sealed container in bytes per second.
//! `cargo bench -p imprint-benches --bench spool`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imprint_record::codec::{encode_batch, BatchMeta};
use imprint_record::{InputEvent, Record};
use imprint_spool::{Recipients, Spool, SpoolOptions};
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

fn encryption(c: &mut Criterion) {
    let recipients =
        Recipients::parse(&[age::x25519::Identity::generate().to_public().to_string()])
            .expect("recipient");
    let mut g = c.benchmark_group("spool_encrypted");
    for n in [64usize, 1024] {
        let payload = batch(n);
        let dir = tempfile::tempdir_in(
            std::env::var_os("IMPRINT_BENCH_DIR").unwrap_or_else(|| ".".into()),
        )
        .expect("tempdir");
        let (mut spool, _) = Spool::open(SpoolOptions {
            segment_max_bytes: 64 << 20,
            recipients: Some(recipients.clone()),
            ..SpoolOptions::new(dir.path().join("spool"))
        })
        .expect("spool");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("events_append_encrypted_per_batch", n),
            &payload,
            |b, p| b.iter(|| spool.append_tagged(&[0; 40], p).expect("append")),
        );
    }
    let container: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    g.throughput(Throughput::Bytes(container.len() as u64));
    g.bench_function("seal_encrypt_bytes", |b| {
        b.iter(|| recipients.encrypt(&container).expect("encrypt"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = append_and_fsync, encryption
}
criterion_main!(benches);
