//! X11 focus against a real Xvfb with two real clients (xmessage and xterm). Xvfb has no
//! window manager, so the test plays the WM's part: it sets `_NET_ACTIVE_WINDOW` on the
//! root window with xprop, exactly as an EWMH window manager does. The tracker must name the
//! processes the test spawned (taken from X-Resource, not from the client), follow xterm to
//! the program in its pty, survive a client lying in `_NET_WM_PID`, and come back after the
//! X server dies and restarts.

mod common;

use common::xserver::{activate, client, one_at_a_time, window_of, xvfb, xvfb_on};
use common::{spawn_focus, wait_until, FocusRun};
use imprint_session::{FocusConfig, TrackerKind};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);
const GEOMETRY: &str = "640x480x24";

fn tracker(display: &str) -> FocusRun {
    let cfg = FocusConfig {
        tracker: TrackerKind::X11,
        x11_display: Some(display.to_owned()),
        titles: true,
        max_backoff_ms: 200,
        ..FocusConfig::default()
    };
    spawn_focus(move |tx| imprint_session::run(cfg, tx))
}

fn child_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[test]
fn x11_focus_names_the_real_processes() {
    let _serial = one_at_a_time();
    let (server, display) = xvfb(GEOMETRY);
    let msg = client(
        &display,
        &["xmessage", "-name", "imprint-one", "hello"],
        "x11-utils",
    );
    let term = client(&display, &["xterm", "-e", "sleep", "60"], "xterm");
    let sleep_pid = wait_until("xterm's child", T, || child_of(term.0.id()));
    let msg_win = window_of(&display, "Xmessage");
    let term_win = window_of(&display, "XTerm");
    let focus = tracker(&display);

    // No active window yet.
    focus.wait_for("the initial unknown focus", T, |f| f.unknown);

    activate(&display, msg_win);
    let f = focus.wait_for("xmessage", T, |f| f.pid == msg.0.id());
    assert!(f.pid_verified, "X-Resource vouches for the pid: {f:?}");
    assert_eq!(f.tracker, "x11");
    assert_eq!(f.wm_class, "Xmessage");
    assert!(f.exe.ends_with("/xmessage"), "{f:?}");
    assert!(f.start_time > 0 && !f.unknown);
    assert_eq!(f.terminal_pid, 0);
    assert_eq!(f.title, "imprint-one", "titles are on in this test");
    // The window's rectangle on the root, as xwininfo sees it; the record's origin is the
    // content's (inside the border), where window-relative coordinates start.
    let info = Command::new("xwininfo")
        .args(["-display", &display, "-id", &msg_win.to_string()])
        .output()
        .expect("xwininfo (apt-get install x11-utils)");
    let info = String::from_utf8_lossy(&info.stdout);
    let field = |name: &str| -> i64 {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in xwininfo: {info}"))
    };
    assert_eq!(
        (
            i64::from(f.window.x),
            i64::from(f.window.y),
            i64::from(f.window.width),
            i64::from(f.window.height)
        ),
        (
            field("Absolute upper-left X:") + field("Border width:"),
            field("Absolute upper-left Y:") + field("Border width:"),
            field("Width:"),
            field("Height:")
        ),
        "the focus record carries the window's rectangle: {f:?}"
    );
    assert!(f.window.width > 0 && f.window.height > 0);
    // The live keymap: Xvfb starts with `us`; switching the layout is a new focus context.
    assert_eq!(f.keymap, "us", "{f:?}");
    let ok = Command::new("setxkbmap")
        .args([
            "-display",
            &display,
            "-layout",
            "de",
            "-variant",
            "nodeadkeys",
        ])
        .status()
        .expect("setxkbmap (apt-get install x11-xkb-utils)")
        .success();
    assert!(ok, "setxkbmap");
    let f = focus.wait_for("the new layout", T, |f| f.keymap == "de(nodeadkeys)");
    assert_eq!(f.pid, msg.0.id(), "same window, new layout: {f:?}");

    // xterm: the record names the program in its pty, and the terminal beside it.
    activate(&display, term_win);
    let f = focus.wait_for("xterm", T, |f| f.terminal_pid == term.0.id());
    assert_eq!(
        f.pid, sleep_pid,
        "attributed to the foreground program: {f:?}"
    );
    assert!(f.exe.ends_with("/sleep"), "{f:?}");
    assert!(f.terminal_exe.ends_with("/xterm"), "{f:?}");
    assert_eq!(f.wm_class, "XTerm");

    // A client lying in _NET_WM_PID is still attributed to its real pid.
    let ok = Command::new("xprop")
        .args(["-display", &display, "-id", &msg_win.to_string()])
        .args(["-f", "_NET_WM_PID", "32c", "-set", "_NET_WM_PID", "1"])
        .status()
        .expect("xprop")
        .success();
    assert!(ok);
    activate(&display, msg_win);
    let f = focus.wait_for("xmessage again", T, |f| f.wm_class == "Xmessage");
    assert_eq!(
        f.pid,
        msg.0.id(),
        "the lie in _NET_WM_PID is ignored: {f:?}"
    );
    assert!(f.pid_verified);

    // The X server dies: an unknown focus, then reconnection once a server is back.
    drop(msg);
    drop(term);
    drop(server);
    focus.wait_for("unknown focus after the server died", T, |f| f.unknown);
    let _server = xvfb_on(&display, GEOMETRY);
    let again = client(&display, &["xmessage", "back"], "x11-utils");
    let win = window_of(&display, "Xmessage");
    // The tracker reconnects with backoff; keep announcing until it hears.
    let f = wait_until("focus records to resume", T, || {
        activate(&display, win);
        focus.try_wait_for(Duration::from_millis(500), |f| f.pid == again.0.id())
    });
    assert!(f.pid_verified && !f.unknown, "{f:?}");
}

#[test]
fn titles_are_off_by_default() {
    let _serial = one_at_a_time();
    let (_server, display) = xvfb(GEOMETRY);
    let msg = client(
        &display,
        &["xmessage", "-name", "private-title", "x"],
        "x11-utils",
    );
    let win = window_of(&display, "Xmessage");
    let cfg = FocusConfig {
        tracker: TrackerKind::X11,
        x11_display: Some(display.clone()),
        ..FocusConfig::default()
    };
    let focus = spawn_focus(move |tx| imprint_session::run(cfg, tx));
    activate(&display, win);
    let f = focus.wait_for("xmessage", T, |f| f.pid == msg.0.id());
    assert_eq!(f.title, "", "no title unless configured");
    assert_eq!(f.cmdline, "", "no command line unless configured");
}

/// End to end through the daemons: the collector runs the X11 tracker, and the focus record
/// travels through the ring and the agent into the spool, where `dump` shows it.
#[test]
fn focus_records_reach_the_spool_through_the_pipeline() {
    let _serial = one_at_a_time();
    use nix::sys::signal::{kill, Signal};
    let (_server, display) = xvfb(GEOMETRY);
    let msg = client(
        &display,
        &["xmessage", "-name", "e2e-private", "hi"],
        "x11-utils",
    );
    let win = window_of(&display, "Xmessage");
    let env = common::Env::new(
        "full",
        &format!("[focus]\ntracker = \"x11\"\nx11_display = \"{display}\"\n[spool]\nfsync_interval_ms = 50\n"),
    );
    let mut run = env.spawn(&["run"]);
    wait_until("the collector to run", T, || {
        let out = env.run(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["collector_running"] == true).then_some(())
    });
    let pid = msg.0.id();
    let line = wait_until("the focus record in the spool", T, || {
        activate(&display, win);
        env.dump()
            .into_iter()
            .find(|v| v["kind"] == "focus" && v["pid"] == pid)
    });
    kill(nix::unistd::Pid::from_raw(run.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = run.wait().expect("wait");
    assert!(
        status.success(),
        "imprint run exits cleanly on SIGTERM: {status:?}"
    );
    assert_eq!(line["tracker"], "x11", "{line}");
    assert_eq!(line["pid_verified"], true, "{line}");
    assert_eq!(line["wm_class"], "Xmessage", "{line}");
    assert!(
        line["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/xmessage")),
        "{line}"
    );
    assert!(line["seq"].as_u64().is_some_and(|s| s > 0), "{line}");
    assert!(
        line.get("title").is_none(),
        "titles are off by default: {line}"
    );
}
