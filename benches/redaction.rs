//! Redaction throughput (key presses per second through the policy filter) and the added
//! latency of the holdback window. `cargo bench -p imprint-benches --bench redaction`
//!
//! Throughput is criterion's wall time over a typed stream: scan code, key and SYN events for
//! prose with a canary (AWS key, GitHub token, email, card number) every few sentences, at
//! `full` with redaction, `full` without, and `timing`.
//!
//! Holdback latency is not a wall-clock measurement: the filter releases a held key by the
//! event time of later input (or, once typing stops, after `holdback_ms` of wall time without
//! input). So it is simulated in event time, for a typist at a steady rate, and printed as
//! percentiles of how long each key event waits between entering the filter and reaching
//! `out`. For live input event time is wall time, so these are the delays a reader of the
//! spool sees, on top of the filter's own CPU time (the throughput figures).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imprint_policy::filter::Filter;
use imprint_policy::keys::{self, Modifiers, EV_KEY, EV_MSC, EV_SYN, MSC_SCAN};
use imprint_policy::rules::{Origin, RuleConfig};
use imprint_policy::{Level, Policy, PolicyConfig, PolicySpec};
use imprint_record::{FocusInfo, InputEvent, Record};
use std::time::Duration;

/// Prose with canaries; about one secret per 200 characters.
const TEXT: &str = "The quarterly report is attached, please send comments before Friday. \
    My old access key was AKIAIOSFODNN7EXAMPLE and it has been rotated since. \
    We moved the meeting to Thursday at ten; the agenda is in the shared folder. \
    Reach me at bob.smith@example.com if anything is unclear about the numbers. \
    For the build use the token ghp_0123456789abcdefghijklmnopqrstuvwxyzAB only in CI. \
    Lunch was fine, although the soup was cold and the bread was stale again today. \
    Charge the conference fee to 4111 1111 1111 1111 and keep the receipt please.\n";

const FOCUS: u64 = 1;
const DEVICE: u32 = 1;

fn policy(level: Level, settings: PolicyConfig) -> Policy {
    let p = Policy::compile(PolicySpec {
        policy: settings,
        rules: vec![RuleConfig {
            exe: Some("/usr/bin/editor".into()),
            level,
            origin: Origin::default(),
            ..Default::default()
        }],
        ..Default::default()
    })
    .expect("policy");
    // Detectors compile on first use; keep that out of the measurement.
    p.detectors();
    p
}

fn focus() -> Record {
    Record::Focus(Box::new(FocusInfo {
        seq: FOCUS,
        exe: "/usr/bin/editor".into(),
        uid: 1000,
        ..Default::default()
    }))
}

fn key_for(c: char) -> (u16, bool) {
    if c == '\n' {
        return (keys::KEY_ENTER, false);
    }
    let mut m = Modifiers::default();
    for shift in [false, true] {
        m.shift = u8::from(shift);
        if let Some(code) = (1..128u16).find(|code| keys::us_char(*code, &m) == Some(c)) {
            return (code, shift);
        }
    }
    panic!("no US key for {c:?}")
}

/// `text` typed as a keyboard reports it: one key every `period_ns`, each held for half of
/// it, with scan codes and SYN frames, Shift around capitals and symbols. Returns the
/// records and the number of key presses (Shift included).
fn typing(text: &str, period_ns: u64) -> (Vec<Record>, u64) {
    let mut out = Vec::new();
    let mut presses = 0;
    let mut t = 1_000_000_000u64;
    let mut ev = |t: u64, kind: u16, code: u16, value: i32| {
        out.push(Record::Event(InputEvent {
            mono_ns: t,
            device: DEVICE,
            kind,
            code,
            value,
            focus: FOCUS,
        }));
    };
    for c in text.chars() {
        let (code, shift) = key_for(c);
        if shift {
            ev(t, EV_KEY, keys::KEY_LEFTSHIFT, 1);
            ev(t, EV_SYN, 0, 0);
            presses += 1;
            t += period_ns / 8;
        }
        ev(t, EV_MSC, MSC_SCAN, 0x70000 + i32::from(code));
        ev(t, EV_KEY, code, 1);
        ev(t, EV_SYN, 0, 0);
        presses += 1;
        t += period_ns / 2;
        ev(t, EV_MSC, MSC_SCAN, 0x70000 + i32::from(code));
        ev(t, EV_KEY, code, 0);
        ev(t, EV_SYN, 0, 0);
        if shift {
            t += period_ns / 8;
            ev(t, EV_KEY, keys::KEY_LEFTSHIFT, 0);
            ev(t, EV_SYN, 0, 0);
            t += period_ns / 4;
        } else {
            t += period_ns / 2;
        }
    }
    (out, presses)
}

fn run(policy: &Policy, records: &[Record]) -> Vec<Record> {
    let mut f = Filter::new(policy.clone());
    let mut out = Vec::with_capacity(records.len());
    f.push_record(focus(), &mut out);
    for r in records {
        f.push_record(r.clone(), &mut out);
    }
    f.flush(&mut out);
    out
}

fn throughput(c: &mut Criterion) {
    let text = TEXT.repeat(4);
    let (records, presses) = typing(&text, 125_000_000);
    let full = policy(Level::Full, PolicyConfig::default());
    let no_redact = policy(
        Level::Full,
        PolicyConfig {
            redact: false,
            ..Default::default()
        },
    );
    let timing = policy(Level::Timing, PolicyConfig::default());
    // The stream must exercise redaction, or the figure would flatter it.
    let redactions = run(&full, &records)
        .iter()
        .filter(|r| matches!(r, Record::Redaction(_)))
        .count();
    assert_eq!(redactions, 4 * 4, "every canary is redacted");

    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Elements(presses));
    for (name, p) in [
        ("full_redact", &full),
        ("full_no_redact", &no_redact),
        ("timing", &timing),
    ] {
        g.bench_function(name, |b| b.iter(|| run(p, &records).len()));
    }
    g.finish();
}

/// Percentile of sorted `v`.
fn pct(v: &[u64], p: f64) -> u64 {
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// Event-time wait of every key event, for a typist at `keys_per_s`. Records still held when
/// typing ends are released by `flush_idle` once `holdback_ms` of input-free wall time has
/// passed, which is modelled as that long after the last event.
fn waits(settings: &PolicyConfig, keys_per_s: u64) -> Vec<u64> {
    let p = policy(Level::Full, settings.clone());
    let (records, _) = typing(&TEXT.repeat(3), 1_000_000_000 / keys_per_s);
    let mut f = Filter::new(p);
    let mut out = Vec::new();
    f.push_record(focus(), &mut out);
    let mut waits = Vec::new();
    let mut collect = |out: &mut Vec<Record>, now: u64| {
        for r in out.drain(..) {
            if let Record::Event(e) = r {
                if e.kind == EV_KEY {
                    waits.push(now - e.mono_ns);
                }
            }
        }
    };
    let mut now = 0;
    for r in records {
        if let Record::Event(e) = &r {
            now = e.mono_ns;
        }
        f.push_record(r, &mut out);
        collect(&mut out, now);
    }
    f.flush(&mut out);
    collect(&mut out, now + settings.holdback_ms * 1_000_000);
    waits.sort_unstable();
    waits
}

/// Prints the table; criterion has no measurement of its own for event time.
fn holdback_latency(_c: &mut Criterion) {
    let d = PolicyConfig::default();
    let cases = [
        ("default (96 keys, 5000 ms)", d.clone(), 8),
        ("default (96 keys, 5000 ms)", d.clone(), 20),
        (
            "holdback_ms = 1000",
            PolicyConfig {
                holdback_ms: 1000,
                ..d.clone()
            },
            8,
        ),
        (
            "holdback_ms = 0",
            PolicyConfig {
                holdback_ms: 0,
                ..d.clone()
            },
            8,
        ),
        (
            "redact = false",
            PolicyConfig {
                redact: false,
                ..d.clone()
            },
            8,
        ),
    ];
    println!("\nholdback: event-time wait of key events from entering the filter to `out`");
    println!(
        "{:<28} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "settings", "keys/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, settings, rate) in &cases {
        let w = waits(settings, *rate);
        let ms = |ns: u64| ns as f64 / 1e6;
        println!(
            "{:<28} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            name,
            rate,
            ms(pct(&w, 0.5)),
            ms(pct(&w, 0.9)),
            ms(pct(&w, 0.99)),
            ms(*w.last().expect("waits"))
        );
    }
    println!();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = throughput, holdback_latency
}
criterion_main!(benches);
