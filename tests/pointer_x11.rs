//! Pointer positions, screen layout and window geometry from a real X server (Xvfb), through
//! the real `imprint-session`, collector and agent into the spool.
//!
//! xdotool clicks through XTEST, which the server handles like any device: XInput2 raw
//! events, with the pointer where xdotool put it (`mousemove` warps the pointer, which makes no
//! raw motion event, so motion samples are tested in the VM, with a real device). The kernel sees none of it (on this host
//! the collector replays a long synthetic recording, only to keep a ring open); the test is
//! of what the display server says, joined to a focus. The kernel half, Xorg fed by uinput in
//! the VM, is tests/vm/xorg.rs.
//!
//! Scope holds for positions too: with the focused window out of scope (`off`), no position is
//! written although the helper sends them.

mod common;

use common::pipeline::Pipeline;
use common::xserver::{activate, client, one_at_a_time, window_of, xdotool, xvfb};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Pointer lines of a dump.
fn pointers(dump: &[Value]) -> Vec<&Value> {
    dump.iter().filter(|v| v["kind"] == "pointer").collect()
}

fn find<'a>(dump: &'a [Value], trigger: &str, button: u64) -> Option<&'a Value> {
    pointers(dump)
        .into_iter()
        .find(|p| p["trigger"] == trigger && p["button"] == button)
}

/// The first number named `key` anywhere in `v`.
fn field(v: &Value, key: &str) -> Option<u64> {
    match v {
        Value::Object(o) => o
            .get(key)
            .and_then(Value::as_u64)
            .or_else(|| o.values().find_map(|x| field(x, key))),
        Value::Array(a) => a.iter().find_map(|x| field(x, key)),
        _ => None,
    }
}

fn xy(v: &Value) -> (f64, f64) {
    (
        v["x"].as_f64().unwrap_or(f64::NAN),
        v["y"].as_f64().unwrap_or(f64::NAN),
    )
}

/// `xwininfo -id WIN`'s origin (inside the border) on the root, and size.
fn xwininfo(display: &str, win: u32) -> (i64, i64, i64, i64) {
    let out = std::process::Command::new("xwininfo")
        .args(["-display", display, "-id", &win.to_string()])
        .output()
        .expect("xwininfo");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> i64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("xwininfo has no {name}: {text}"))
    };
    // xwininfo's corner is outside the border; window coordinates start inside it.
    let border = field("Border width:");
    (
        field("Absolute upper-left X:") + border,
        field("Absolute upper-left Y:") + border,
        field("Width:"),
        field("Height:"),
    )
}

/// Runs the pipeline with xmessage focused at `level` and drives the pointer; the dump.
/// `until` says when the dump holds what the test waits for.
/// One run's spool and logs, with its X server still up (to compare with).
struct Run {
    dump: Vec<Value>,
    logs: String,
    win: u32,
    display: String,
    _msg: common::xserver::Kill,
    _server: common::xserver::XServer,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn run(level: &str, until: impl Fn(&[Value], &Value) -> bool) -> Run {
    let _serial = one_at_a_time();
    let (_server, display) = xvfb("1024x768x24");
    let _msg = client(
        &display,
        &["xmessage", "-name", "pointer-test", "hi"],
        "x11-utils",
    );
    let win = window_of(&display, "Xmessage");
    activate(&display, win);
    // A second rule keeps the policy from capturing nothing at all (the collector would then
    // open no input and take no reports) when xmessage's own level is `off`.
    let mut p = Pipeline::start(&format!(
        "[[rule]]\nname = \"xmessage\"\nexe = \"/usr/bin/xmessage\"\nlevel = \"{level}\"\n\n[[rule]]\nname = \"other\"\nexe = \"/usr/bin/xterm\"\nlevel = \"full\"\n"
    ));
    p.start_helper(&[("DISPLAY", display.as_ref())]);
    let mark = p.helper_logged("the pointer watcher", 0, &["x11 pointer watcher connected"]);
    p.helper_logged("xmessage focused", 0, &[" focus ", "exe=/usr/bin/xmessage"]);
    // Only to keep a ring open while X is driven: ten minutes of slow typing, stopped below as
    // soon as the spool holds what the test waits for.
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("slow.yml");
    common::synthetic_recording(&rec, 3000, 100_000);
    p.start_collector(&rec, "1");
    p.helper_logged("the collector", mark, &["connected to the collector"]);
    xdotool(&display, &["mousemove", "123", "234"]);
    xdotool(&display, &["click", "1"]);
    xdotool(&display, &["mousemove", "300", "400"]);
    xdotool(&display, &["click", "5"]);
    xdotool(&display, &["windowmove", &win.to_string(), "50", "60"]);
    let deadline = std::time::Instant::now() + T;
    loop {
        let (d, status) = (p.dump_now(), p.status_json());
        if until(&d, &status) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let out = p.stop();
            panic!(
                "the spool did not get the positions in {T:?}; status {status:#}\ndump {:#?}\n{}",
                out.dump, out.logs
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = p.stop();
    Run {
        dump: out.dump,
        logs: out.logs,
        win,
        display,
        _msg,
        _server,
        _serial,
    }
}

#[test]
fn clicks_carry_the_x_servers_positions_into_the_spool() {
    let started = std::time::Instant::now();
    let r = run("full", |d, _| {
        find(d, "scroll", 5).is_some() && d.iter().any(|v| v["kind"] == "window")
    });
    let (dump, logs) = (&r.dump, &r.logs);
    let ctx = || format!("dump:\n{dump:#?}\n{logs}");
    let display = dump
        .iter()
        .find(|v| v["kind"] == "display")
        .unwrap_or_else(|| panic!("no display record; {}", ctx()));
    assert_eq!(display["server"], "x11", "{display}");
    assert_eq!(
        (display["width"].as_u64(), display["height"].as_u64()),
        (Some(1024), Some(768)),
        "{display}"
    );
    assert_eq!(display["pointer"], true, "{display}");
    let m = &display["monitors"][0];
    assert_eq!(
        (m["width"].as_u64(), m["height"].as_u64()),
        (Some(1024), Some(768)),
        "{display}"
    );
    assert_eq!(
        display["uid"], 0,
        "the collector fills the reporter's uid: {display}"
    );

    let focus = dump
        .iter()
        .rfind(|v| v["kind"] == "focus" && v["exe"] == "/usr/bin/xmessage")
        .unwrap_or_else(|| panic!("no xmessage focus; {}", ctx()));
    let press = find(dump, "press", 1).unwrap_or_else(|| panic!("no press; {}", ctx()));
    let release = find(dump, "release", 1).unwrap_or_else(|| panic!("no release; {}", ctx()));
    let scroll = find(dump, "scroll", 5).unwrap_or_else(|| panic!("no scroll; {}", ctx()));
    assert_eq!(xy(press), (123.0, 234.0), "{press}");
    assert_eq!(xy(release), (123.0, 234.0), "{release}");
    assert_eq!(xy(scroll), (300.0, 400.0), "{scroll}");
    for p in pointers(dump) {
        assert_eq!(
            p["focus"], focus["seq"],
            "positions belong to the focus: {p}"
        );
        // Xvfb's clock is CLOCK_MONOTONIC in ms: the server's event time is mapped, and it is
        // before the read and not long before.
        let (ev, read) = (p["event_mono_ns"].as_u64(), p["mono_ns"].as_u64());
        let (Some(ev), Some(read)) = (ev, read) else {
            panic!("times: {p}")
        };
        assert!(
            ev > 0 && ev <= read + 1_000_000,
            "server time on our clock: {p}"
        );
        assert!(
            read - ev.min(read) < 2_000_000_000,
            "read soon after the event: {p}"
        );
    }
    let w = dump
        .iter()
        .find(|v| v["kind"] == "window")
        .unwrap_or_else(|| panic!("no window record; {}", ctx()));
    assert_eq!(w["focus"], focus["seq"], "{w}");
    let (x, y, width, height) = xwininfo(&r.display, r.win);
    assert_eq!(
        (
            w["x"].as_i64(),
            w["y"].as_i64(),
            w["width"].as_i64(),
            w["height"].as_i64()
        ),
        (Some(x), Some(y), Some(width), Some(height)),
        "the moved window's rectangle is what xwininfo says: {w}"
    );
    assert!(
        (50..=52).contains(&x) && (60..=62).contains(&y),
        "moved to 50,60 (inside its border): {w}"
    );
    eprintln!(
        "{} pointer samples in {:?}",
        pointers(dump).len(),
        started.elapsed()
    );
}

#[test]
fn no_position_is_kept_for_an_out_of_scope_window() {
    // The collector has written the positions of both clicks and the scroll to the ring (the
    // agent is the one that drops them).
    let r = run("off", |_, status| {
        field(status, "pointer_samples").unwrap_or(0) >= 3
    });
    let (dump, logs) = (&r.dump, &r.logs);
    assert!(
        pointers(dump).is_empty(),
        "positions over an `off` window: {:#?}\n{logs}",
        pointers(dump)
    );
    assert!(
        !dump.iter().any(|v| v["kind"] == "window"),
        "window geometry of an `off` window: {dump:#?}"
    );
}
