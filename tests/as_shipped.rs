//! The process split as shipped: the collector, the agent and imprint-session run as three
//! different users, with only the capabilities the units give them (`setpriv`). The typing is
//! the bundled real recording, replayed by the collector and attributed to the focus that the
//! helper reports from a real Xvfb session with a real xterm owned by a third user.
//!
//! - The collector's effective capabilities are exactly CAP_BPF + CAP_PERFMON.
//! - With a real `read -s` prompt (echo off) in the in-scope xterm, no printable key
//!   identity reaches the spool: the helper read the echo state from the user's own pty,
//!   which the agent (another user, no capabilities) could not have opened.
//! - The same run with `cat` (echo on) keeps the keys: the test can tell the difference.
//! - With the helper killed mid-session, the collector marks focus unknown (`helper_exited`)
//!   and nothing more is written.
//!
//! The agent is the shipped `imprint-agent`; the collector is `imprint collector`, the CLI
//! build of the same collector library with replay (the shipped binary has none).

mod common;

use common::xserver::{xvfb_with, Kill};
use common::{imprint_bin, recording, synthetic_recording, wait_until, workspace_bin};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const COLLECTOR_UID: u32 = 61001;
const AGENT_UID: u32 = 61002;
const USER_UID: u32 = 61003;
/// Another local user, whose session is not the seat's active one.
const OTHER_UID: u32 = 61004;
/// The group the ring and the agent's cursor are shared through (`imprint` in the packages).
const SHARED_GID: u32 = 61010;
const T: Duration = Duration::from_secs(30);
/// CAP_BPF (39) and CAP_PERFMON (38).
const COLLECTOR_CAPS: u64 = (1 << 38) | (1 << 39);

fn chown(path: &Path, uid: u32, gid: u32, mode: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkdir(path: &Path, uid: u32, gid: u32, mode: u32) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    chown(path, uid, gid, mode);
    path.to_owned()
}

/// `setpriv` as `uid`:`gid` with no supplementary groups and exactly `caps` (ambient, so they
/// survive the exec of an unprivileged binary; `-all` for none).
fn setpriv(uid: u32, gid: u32, caps: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={uid}"),
        &format!("--regid={gid}"),
        "--clear-groups",
        &format!("--inh-caps=-all{caps}"),
        &format!("--ambient-caps=-all{caps}"),
        &format!("--bounding-set=-all{caps}"),
        "--",
    ]);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("IMPRINT_LOG", "info");
    c
}

/// The termios mode (`echo`, `no_echo`, `raw`) of the pty that the first child of `pid` runs
/// on, as `stty` reports it.
fn pty_mode_of_child(pid: u32) -> Option<String> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let child: u32 = children.split_whitespace().next()?.parse().ok()?;
    let pty = std::fs::read_link(format!("/proc/{child}/fd/0")).ok()?;
    let out = Command::new("stty")
        .args(["-a", "-F"])
        .arg(&pty)
        .output()
        .ok()?;
    let flags = String::from_utf8_lossy(&out.stdout).into_owned();
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    Some(
        match (has("echo"), has("icanon")) {
            (false, true) => "no_echo",
            (_, false) => "raw",
            (true, true) => "echo",
        }
        .to_owned(),
    )
}

fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex")
}

fn x(display: &str, args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("DISPLAY", display)
        .output()
        .expect("x11-utils / xdotool");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What one run with `program` in the focused xterm wrote.
struct Outcome {
    keys: Vec<String>,
    dump: Vec<Value>,
    status: Value,
}

/// How the typing is played.
struct Replay<'a> {
    recording: &'a Path,
    speed: &'a str,
    /// Kill the helper once the first events are on disk.
    kill_helper: bool,
}

fn run_with(program: &str, want_tty: &str, replay: Replay<'_>) -> Outcome {
    let imprint = imprint_bin();
    let helper = workspace_bin("imprint-session", "imprint-session");
    let agent_bin = workspace_bin("imprint-agent", "imprint-agent");
    let tmp = tempfile::tempdir().expect("tmp");
    chown(tmp.path(), 0, 0, 0o755);
    let run = mkdir(&tmp.path().join("run"), COLLECTOR_UID, SHARED_GID, 0o755);
    let agent_run = mkdir(&tmp.path().join("agent"), AGENT_UID, SHARED_GID, 0o750);
    let data = mkdir(&tmp.path().join("data"), AGENT_UID, AGENT_UID, 0o700);
    let status = mkdir(&tmp.path().join("status"), AGENT_UID, AGENT_UID, 0o755);
    let home = mkdir(&tmp.path().join("home"), USER_UID, USER_UID, 0o700);
    let config = tmp.path().join("imprint.toml");
    std::fs::write(
        &config,
        format!(
            r#"[paths]
run_dir = "{}"
agent_run_dir = "{}"
data_dir = "{}"
status_dir = "{}"

[session]
owner_uid = {USER_UID}
agent_user = "{AGENT_UID}"

[spool]
fsync_interval_ms = 50

[[rule]]
name = "terminal"
exe = "/usr/bin/xterm"
level = "full"
"#,
            run.display(),
            agent_run.display(),
            data.display(),
            status.display()
        ),
    )
    .expect("config");
    chown(&config, 0, 0, 0o644);
    let cfg = config.to_str().expect("utf-8");

    // `-ac`: the helper and the xterm run as another user than the server's.
    let (_x, display) = xvfb_with("640x480x24", &["-ac"]);
    // The third user's terminal, with the program under test in its pty.
    let _xterm = Kill(
        setpriv(USER_UID, USER_UID, "")
            .env("DISPLAY", &display)
            .env("HOME", &home)
            .args(["xterm", "-e", "bash", "-c", program])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xterm (apt-get install xterm)"),
    );
    // The program must be reading its terminal the way the test says before anything is
    // typed: bash reaches `read -s` a moment after xterm maps its window.
    let xterm_pid = _xterm.0.id();
    wait_until(
        &format!("the xterm's program to read with {want_tty}"),
        T,
        || {
            let mode = pty_mode_of_child(xterm_pid)?;
            (mode == want_tty.trim_matches('"')).then_some(())
        },
    );
    let window = wait_until("the xterm window", T, || {
        x(&display, &["xdotool", "search", "--class", "xterm"])
            .lines()
            .last()
            .map(|l| l.trim().to_owned())
    });
    // Xvfb has no window manager: play its part.
    x(
        &display,
        &[
            "xprop",
            "-root",
            "-f",
            "_NET_ACTIVE_WINDOW",
            "32x",
            "-set",
            "_NET_ACTIVE_WINDOW",
            &window,
        ],
    );

    let mut agent = Kill(
        setpriv(AGENT_UID, SHARED_GID, "")
            .arg(&agent_bin)
            .args(["--config", cfg, "--exit-when-closed"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("agent"),
    );
    let mut collector = Kill(
        setpriv(COLLECTOR_UID, SHARED_GID, ",+bpf,+perfmon")
            .arg(imprint)
            .args(["--config", cfg, "collector", "--replay"])
            .arg(replay.recording)
            .args(["--speed", replay.speed, "--session-focus"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("collector"),
    );
    let socket = run.join("session.sock");
    wait_until("the session socket", T, || socket.exists().then_some(()));
    // The collector waits for the helper's first report, so it is still running here.
    assert_eq!(
        cap_eff(collector.0.id()),
        COLLECTOR_CAPS,
        "the collector's effective capabilities are exactly CAP_BPF + CAP_PERFMON"
    );
    // Another user's helper reports first: it does not own the active session, so its report
    // is refused and counted, and the replay keeps waiting for the real one.
    let other_home = mkdir(&tmp.path().join("other"), OTHER_UID, OTHER_UID, 0o700);
    let _other = Kill(
        setpriv(OTHER_UID, OTHER_UID, "")
            .env("DISPLAY", &display)
            .env("HOME", &other_home)
            .arg(&helper)
            .args(["--config", cfg, "--tracker", "x11", "--socket"])
            .arg(&socket)
            .stderr(Stdio::null())
            .spawn()
            .expect("imprint-session"),
    );
    wait_until("the other user's report to be refused", T, || {
        let out = Command::new(imprint)
            .args(["--config", cfg, "status", "--json"])
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v.pointer("/ring/reports_refused")?.as_u64()? >= 1).then_some(())
    });
    assert!(
        collector.0.try_wait().expect("wait").is_none(),
        "a refused report does not start the replay"
    );
    let mut helper = Kill(
        setpriv(USER_UID, USER_UID, "")
            .env("DISPLAY", &display)
            .env("HOME", &home)
            .arg(&helper)
            .args(["--config", cfg, "--tracker", "x11", "--socket"])
            .arg(&socket)
            .stderr(Stdio::piped())
            .spawn()
            .expect("imprint-session"),
    );
    if replay.kill_helper {
        wait_until("the first events on disk", T, || {
            let out = Command::new(imprint)
                .args(["--config", cfg, "dump"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("\"kind\":\"event\"")
                .then_some(())
        });
        let _ = helper.0.kill();
        let _ = helper.0.wait();
    }
    let done = wait_until(
        "the collector to finish the replay",
        Duration::from_secs(60),
        || collector.0.try_wait().expect("wait"),
    );
    let mut err = String::new();
    if let Some(mut e) = collector.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(done.success(), "collector: {done:?}\n{err}");
    let a = wait_until(
        "the agent to drain the ring",
        Duration::from_secs(60),
        || agent.0.try_wait().expect("wait"),
    );
    let mut agent_log = String::new();
    if let Some(mut e) = agent.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut agent_log);
    }
    assert!(a.success(), "agent: {a:?}\n{agent_log}");
    eprintln!("collector log:\n{err}\nagent log:\n{agent_log}");

    let out = Command::new(imprint)
        .args(["--config", cfg, "dump"])
        .output()
        .expect("dump");
    assert!(
        out.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let foci: Vec<&Value> = dump.iter().filter(|r| r["kind"] == "focus").collect();
    assert!(
        foci.iter().any(|f| f.to_string().contains(want_tty)),
        "a focus record from the helper with tty {want_tty}: {foci:?}\ncollector log:\n{err}"
    );
    let keys = dump
        .iter()
        .filter(|r| r["kind"] == "event" && r["type"] == "EV_KEY" && r["value"] == 1)
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect();
    let status = Command::new(imprint)
        .args(["--config", cfg, "status", "--json"])
        .output()
        .expect("status");
    let status: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
    Outcome { keys, dump, status }
}

const PRINTABLE: &[&str] = &[
    "KEY_H", "KEY_E", "KEY_L", "KEY_O", "KEY_W", "KEY_R", "KEY_D",
];

#[test]
fn three_users_with_the_shipped_capabilities() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users with setpriv: run it as root"
    );
    // A real echo-off prompt: bash's `read -s` in the third user's pty.
    let rec = recording();
    let max = |recording| Replay {
        recording,
        speed: "max",
        kill_helper: false,
    };
    let prompt = run_with(
        "read -s -p 'Password: ' secret; sleep 600",
        "no_echo",
        max(&rec),
    );
    assert!(
        !prompt.keys.is_empty(),
        "key timing is kept: {:?}",
        prompt.dump
    );
    let leaked: Vec<&String> = prompt
        .keys
        .iter()
        .filter(|k| PRINTABLE.contains(&k.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "printable key identities written at an echo-off prompt: {leaked:?}"
    );
    // Control: echo on, in scope at `full`: the same typing keeps its keys.
    let echo = run_with("cat; sleep 600", "\"echo\"", max(&rec));
    assert!(
        echo.keys.iter().any(|k| PRINTABLE.contains(&k.as_str())),
        "with echo on the typed keys are kept: {:?}",
        echo.keys
    );
}

#[test]
fn a_killed_helper_stops_capture() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users with setpriv: run it as root"
    );
    // 240 key presses 40 ms apart (9.6 s at the recorded pace): the helper is killed once the
    // first ones are on disk (the redaction holdback releases them after at most 96 keys).
    let tmp = tempfile::tempdir().expect("tmp");
    let rec = tmp.path().join("long.yml");
    let sent = synthetic_recording(&rec, 240, 20_000);
    chown(tmp.path(), 0, 0, 0o755);
    chown(&rec, 0, 0, 0o644);
    let out = run_with(
        "cat; sleep 600",
        "\"echo\"",
        Replay {
            recording: &rec,
            speed: "1",
            kill_helper: true,
        },
    );
    let written = out.keys.len();
    assert!(
        written > 0,
        "events before the kill are kept: {:?}",
        out.dump
    );
    assert!(
        written < sent / 4,
        "after the helper was killed nothing more is written: {written} of {} presses",
        sent / 4
    );
    let lost = out
        .status
        .pointer("/ring/helpers_lost")
        .and_then(Value::as_u64);
    assert_eq!(
        lost,
        Some(1),
        "the collector counts the lost helper: {}",
        out.status
    );
}
