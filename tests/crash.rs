//! Crash safety: the agent is killed with SIGKILL again and again while a replay streams
//! through the collector. After every kill the spool verifies, nothing that was on disk
//! disappears, and at the end every recorded event is present exactly once.

mod common;

use common::{events, gaps, synthetic_recording, Env};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

const KILLS: usize = 60;

#[test]
fn sigkill_loop_loses_and_duplicates_nothing() {
    // A short fsync interval so that many batches become durable between kills.
    // Redaction off: the detectors' time per key (large in a debug build) decided whether an
    // agent living 5-150 ms got as far as an fsync; this test is of durability, not of them.
    let env = Env::new(
        "full",
        "[spool]\nfsync_interval_ms = 20\nsegment_max_bytes = 16384\n[policy]\nredact = false\n",
    );
    let rec = env.dir.path().join("typing.yml");
    // 2000 key presses and releases 2.5 ms apart: 10 s of typing, 8000 events with SYN_REPORTs.
    let total = synthetic_recording(&rec, 2000, 2500);
    let mut collector = env.spawn(&[
        "collector",
        "--replay",
        rec.to_str().expect("utf-8"),
        "--speed",
        "1",
    ]);

    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let mut durable = 0usize;
    let mut kills = 0;
    let started = Instant::now();
    while kills < KILLS {
        let mut agent = env.spawn(&["agent"]);
        std::thread::sleep(Duration::from_millis(rand(5, 150)));
        kill(Pid::from_raw(agent.id() as i32), Signal::SIGKILL).expect("SIGKILL");
        let status = agent.wait().expect("wait");
        assert!(
            status.code().is_none(),
            "the agent must have died by the signal: {status:?}"
        );
        kills += 1;

        if kills % 7 == 0 {
            // The worst moment to die: after the spool fsync, before the ring commit. Roll
            // the committed position back to the start of the ring; the restarted agent must
            // recognise what is already on disk instead of writing it twice.
            rewind_cursor(&env);
        }
        let (code, text) = env.verify();
        assert_eq!(code, 0, "verify after kill {kills}: {text}");
        let dump = env.dump();
        let n = events(&dump).len();
        assert!(
            n >= durable,
            "kill {kills}: events on disk went from {durable} to {n}"
        );
        durable = n;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "crash loop took too long"
        );
    }
    assert!(
        durable > 0,
        "batches must have become durable between kills"
    );
    // Drain: the collector finishes its replay and closes the ring; one last agent drains it.
    let status = collector.wait().expect("collector");
    assert!(status.success(), "collector failed");
    let out = env.run(&["agent", "--exit-when-closed"]);
    assert!(
        out.status.success(),
        "final agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, text) = env.verify();
    assert_eq!(code, 0, "{text}");
    let dump = env.dump();
    assert!(
        gaps(&dump).is_empty(),
        "nothing may be lost: {:?}",
        gaps(&dump)
    );
    let got: Vec<(u64, String, i64)> = events(&dump)
        .iter()
        .map(|v| {
            (
                v["mono_ns"].as_u64().expect("t"),
                v["code"].as_str().expect("code").to_owned(),
                v["value"].as_i64().expect("v"),
            )
        })
        .collect();
    // Every key event exactly once, in recorded order (timestamps are unique and rising).
    assert_eq!(
        got.len(),
        total / 2,
        "key events present (kills: {kills}, durable before last: {durable})"
    );
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "no duplicates, in order"
    );
    let want: Vec<(u64, String, i64)> = (0..total / 2)
        .map(|i| {
            // As common::synthetic_recording types them: five letters and a space.
            let key = ["KEY_Q", "KEY_W", "KEY_E", "KEY_R", "KEY_T", "KEY_SPACE"][(i / 2) % 6];
            (
                (i as u64 + 1) * 2_500_000,
                key.to_owned(),
                if i % 2 == 0 { 1 } else { 0 },
            )
        })
        .collect();
    assert_eq!(got, want);
}

/// Sets the agent's committed ring position (bytes 16..24 of `ring.cursor`) to zero.
fn rewind_cursor(env: &Env) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(env.run_dir().join("ring.cursor"))
        .expect("open cursor");
    f.write_all_at(&0u64.to_le_bytes(), 16)
        .expect("rewind cursor");
}
