//! Export speed: a synthetic spool of 120k input events (typing, clicks and drags with the
//! display server's pointer samples, motion, scrolling) → the action layer → Parquet or JSONL
//! files. Reported as actions/s and as MB/s of spool batches (capnp, before zstd) read.
//! `cargo bench -p imprint-benches --bench export`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imprint_export::pseudonym::Key;
use imprint_export::{Exporter, Filters, Format, Options};
use imprint_record::codec::{encode_batch, BatchMeta};
use imprint_record::{
    DisplayInfo, FocusInfo, InputEvent, Monitor, PointerSample, PointerTrigger, PolicyStamp,
    Record, WindowRect,
};
use std::time::Duration;

const EVENTS: usize = 120_000;
const BATCH: usize = 1024;
const MS: u64 = 1_000_000;

fn ev(t: u64, device: u32, kind: u16, code: u16, value: i32) -> Record {
    Record::Event(InputEvent {
        mono_ns: t,
        device,
        kind,
        code,
        value,
        focus: 1,
    })
}

fn sample(t: u64, x: f64, y: f64, trigger: PointerTrigger, button: u32) -> Record {
    Record::Pointer(PointerSample {
        mono_ns: t + MS,
        x,
        y,
        trigger,
        button,
        server_time_ms: (t / MS) as u32,
        focus: 1,
        event_mono_ns: t,
    })
}

/// Records as a session would write them: a display, a focus, then rounds of a typed word,
/// a move, a click, a drag and a scroll.
fn records() -> Vec<Record> {
    let mut r = vec![
        Record::Display(Box::new(DisplayInfo {
            mono_ns: 1,
            server: "x11".into(),
            width: 1920,
            height: 1080,
            monitors: vec![Monitor {
                name: "DP-1".into(),
                width: 1920,
                height: 1080,
                scale: 1.0,
                primary: true,
                ..Default::default()
            }],
            pointer: true,
            double_click_ms: 400,
            double_click_distance: 4,
            uid: 1000,
            session: "2".into(),
            ..Default::default()
        })),
        Record::Focus(Box::new(FocusInfo {
            seq: 1,
            mono_ns: 2,
            exe: "/usr/bin/gedit".into(),
            app_id: "org.gnome.gedit".into(),
            window: WindowRect {
                x: 10,
                y: 10,
                width: 800,
                height: 600,
            },
            ..Default::default()
        })),
    ];
    let mut t = 1_000 * MS;
    let mut events = 0;
    let mut round = 0u64;
    while events < EVENTS {
        round += 1;
        for k in 0..8u16 {
            for v in [1, 0] {
                r.push(ev(t, 1, 1, 16 + (k + round as u16) % 10, v));
                r.push(ev(t, 1, 0, 0, 0));
                t += 40 * MS;
                events += 1;
            }
        }
        t += 1_500 * MS;
        let (x, y) = ((round * 37 % 1900) as f64, (round * 17 % 1000) as f64);
        for i in 0..10 {
            r.push(ev(t, 2, 2, 0, 3));
            r.push(ev(t, 2, 2, 1, 1));
            r.push(ev(t, 2, 0, 0, 0));
            r.push(sample(
                t,
                x + i as f64 * 3.0,
                y + i as f64,
                PointerTrigger::Motion,
                0,
            ));
            t += 10 * MS;
            events += 2;
        }
        for (v, trig) in [(1, PointerTrigger::Press), (0, PointerTrigger::Release)] {
            r.push(ev(t, 2, 1, 0x110, v));
            r.push(ev(t, 2, 0, 0, 0));
            r.push(sample(t, x + 30.0, y + 10.0, trig, 1));
            t += 80 * MS;
            events += 1;
        }
        t += 600 * MS;
        r.push(ev(t, 2, 1, 0x110, 1));
        r.push(sample(t, x, y, PointerTrigger::Press, 1));
        for i in 1..6 {
            t += 20 * MS;
            r.push(ev(t, 2, 2, 0, 10));
            r.push(sample(t, x + i as f64 * 10.0, y, PointerTrigger::Motion, 0));
            events += 1;
        }
        r.push(ev(t, 2, 1, 0x110, 0));
        r.push(sample(t, x + 50.0, y, PointerTrigger::Release, 1));
        events += 2;
        t += 600 * MS;
        for _ in 0..3 {
            r.push(ev(t, 2, 2, 8, -1));
            r.push(ev(t, 2, 2, 11, -120));
            r.push(ev(t, 2, 0, 0, 0));
            r.push(sample(t, x, y, PointerTrigger::Scroll, 5));
            t += 30 * MS;
            events += 2;
        }
        t += 1_200 * MS;
    }
    r
}

fn batches() -> (Vec<(BatchMeta, Vec<Record>)>, u64) {
    let recs = records();
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut seq = 1;
    for chunk in recs.chunks(BATCH) {
        let meta = BatchMeta {
            format_version: 1,
            ring_epoch: 1,
            ring_seq_first: seq,
            ring_seq_last: seq + chunk.len() as u64 - 1,
            policy: PolicyStamp {
                version: 1,
                hash: "bench".into(),
                default_level: "full".into(),
                rules: 0,
            },
            boot_id: "bench-boot".into(),
            realtime_offset_ns: 1_700_000_000_000_000_000,
        };
        seq += chunk.len() as u64;
        bytes += encode_batch(&meta, chunk).len() as u64;
        out.push((meta, chunk.to_vec()));
    }
    (out, bytes)
}

fn export(batches: &[(BatchMeta, Vec<Record>)], format: Format, dir: &std::path::Path) -> u64 {
    let key = Key::from_bytes(&[7; 32]);
    let mut x = Exporter::new(Options {
        since_unix_ms: None,
        until_unix_ms: None,
        app: None,
        key: key.clone(),
        policy: None,
        machine: "bench".into(),
        subject_of: imprint_export::subject_by_uid,
    });
    for (meta, recs) in batches {
        x.push_batch(meta, recs.clone());
    }
    let tables = x.finish();
    imprint_export::prepare_dir(dir, true).expect("dir");
    imprint_export::write(&tables, dir, format, dir, Filters::default(), &key).expect("write");
    tables.actions.len() as u64
}

fn bench(c: &mut Criterion) {
    let (batches, spool_bytes) = batches();
    let dir =
        tempfile::tempdir_in(std::env::var_os("IMPRINT_BENCH_DIR").unwrap_or_else(|| ".".into()))
            .expect("tempdir");
    let events: usize = batches
        .iter()
        .flat_map(|(_, r)| r)
        .filter(|r| matches!(r, Record::Event(e) if e.kind != 0))
        .count();
    let actions = export(&batches, Format::Parquet, &dir.path().join("probe"));
    eprintln!(
        "export bench: {events} events, {actions} actions, {spool_bytes} bytes of spool batches"
    );
    let mut g = c.benchmark_group("export");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for format in [Format::Parquet, Format::Jsonl] {
        let out = dir.path().join(format.as_str());
        g.throughput(Throughput::Elements(actions));
        g.bench_function(BenchmarkId::new("actions", format.as_str()), |b| {
            b.iter(|| export(&batches, format, &out))
        });
        g.throughput(Throughput::Bytes(spool_bytes));
        g.bench_function(BenchmarkId::new("spool_bytes", format.as_str()), |b| {
            b.iter(|| export(&batches, format, &out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
