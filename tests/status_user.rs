//! Transparency as deployed: `imprint status` run by an ordinary user (uid 65534, no groups,
//! via `setpriv`), who cannot read the collector's ring, still tells the truth. Capture on
//! and the live source come from the agent's control socket; the caller's own focus, its
//! level and the deciding rule, and the organisation's `[notice]` are shown; once the agent
//! is gone, capture is reported as unknown, never as off.

mod common;

use common::daemon::Daemon;
use common::{imprint_bin, synthetic_recording, wait_until, Env};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;
const NOTICE: &str =
    "Keyboard and pointer input on this workstation is recorded for model training, as agreed.";
const T: Duration = Duration::from_secs(30);

/// `imprint ARGS` as uid/gid 65534 with no supplementary groups.
fn as_nobody(env: &Env, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(imprint_bin())
        .args(args)
        .arg("--config")
        .arg(&env.config)
        .arg("--data-dir")
        .arg(&env.data)
        .env("IMPRINT_LOG", "warn")
        .output()
        .expect("setpriv (util-linux)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn an_unprivileged_user_sees_capture_their_focus_and_the_notice() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users with setpriv: run it as root"
    );
    let started = Instant::now();
    // The replayed input is attributed to an editor of uid 65534, which a rule captures.
    let env = Env::new(
        "off",
        &format!(
            r#"
[spool]
fsync_interval_ms = 50

[policy]
user_pause_max_minutes = 5

[replay]
focus_exe = "/usr/bin/gedit"
focus_uid = {NOBODY}

[[rule]]
name = "editor"
exe = "/usr/bin/gedit"
level = "full"

[notice]
text = "{NOTICE}"
version = 7
"#
        ),
    );
    // 300 key presses and releases, 20 ms apart: 12 s at the recorded pace, long enough to
    // ask while it runs (it is stopped once checked).
    let rec = env.dir.path().join("typing.yml");
    synthetic_recording(&rec, 300, 20_000);
    let mut run = Daemon::start(
        &env,
        &[
            "run",
            "--replay",
            rec.to_str().expect("utf-8"),
            "--speed",
            "1",
        ],
    );
    let socket = env.data.join("control.sock");
    let ring = env.run_dir().join("ring");
    wait_until("the control socket and the ring", T, || {
        (socket.exists() && ring.exists()).then_some(())
    });
    run.assert_alive("after start");
    // The way to the control socket, as /run/imprint-status is: enterable by everyone. The
    // data directory stays unreadable, and the ring keeps the mode the collector gave it.
    chmod(env.dir.path(), 0o711);
    chmod(&env.data, 0o711);
    let ring_mode = std::fs::metadata(&ring).expect("ring").permissions().mode() & 0o777;
    assert_eq!(
        ring_mode, 0o640,
        "the ring is for the collector and its group"
    );
    // The path under test: that user cannot read the ring itself.
    let denied = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            "head",
            "-c",
            "1",
        ])
        .arg(&ring)
        .output()
        .expect("setpriv head");
    assert!(
        !denied.status.success() && text(&denied).contains("Permission denied"),
        "uid {NOBODY} must not be able to read the ring: {}",
        text(&denied)
    );

    // Once the agent has attributed input to the user's editor, status says so.
    let status = wait_until("status to show the caller's focus", T, || {
        let out = as_nobody(&env, &["status"]);
        let s = text(&out);
        (out.status.success() && s.contains("you:       focused")).then_some(s)
    });
    eprintln!("imprint status as uid {NOBODY}:\n{status}");
    let line = |prefix: &str| {
        status
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{status}"))
            .to_owned()
    };
    let capture = line("capture:");
    assert!(
        capture.starts_with("capture:   on (source: replay,")
            && capture.contains("as the agent reports"),
        "{status}"
    );
    assert!(!status.contains("Permission denied"), "{status}");
    assert!(
        !status.contains("capture:   off") && !status.contains("unknown"),
        "{status}"
    );
    assert!(line("captured:").contains("replay="), "{status}");
    assert_eq!(
        line("you:"),
        "you:       focused /usr/bin/gedit: captured at level full (rule editor)",
        "{status}"
    );
    assert!(line("paused:").contains("up to 5 minutes"), "{status}");
    assert_eq!(line("notice:"), "notice:    version 7", "{status}");
    assert!(status.contains(&format!("  {NOTICE}")), "{status}");

    let out = as_nobody(&env, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(v["capture_on"], true, "{v:#}");
    assert_eq!(v["capture_from"], "agent", "{v:#}");
    assert_eq!(v["capture"]["source"], "replay", "{v:#}");
    assert_eq!(
        v["ring"],
        Value::Null,
        "the ring was not read directly: {v:#}"
    );
    assert_eq!(v["notice"]["text"], NOTICE, "{v:#}");
    assert_eq!(v["notice"]["version"], 7, "{v:#}");
    let you = &v["you"]["Ok"];
    assert_eq!(you["uid"], NOBODY, "{v:#}");
    assert_eq!(you["focused"]["exe"], "/usr/bin/gedit", "{v:#}");
    assert_eq!(you["focused"]["level"], "full", "{v:#}");
    assert_eq!(you["focused"]["rule"], "editor", "{v:#}");
    assert_eq!(you["notice"]["version"], 7, "{v:#}");

    // Root reads the ring itself, and is told the same.
    let root = env.run(&["status", "--json"]);
    let r: Value = serde_json::from_slice(&root.stdout).expect("status json");
    assert_eq!(
        (&r["capture_on"], &r["capture_from"]),
        (&Value::Bool(true), &Value::from("ring")),
        "{r:#}"
    );

    // Without the agent, and without the right to read the ring: unknown, never off.
    nix::sys::signal::kill(run.pid(), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    run.wait_success(T);
    let out = as_nobody(&env, &["status"]);
    let gone = text(&out);
    eprintln!("imprint status as uid {NOBODY} with no agent:\n{gone}");
    assert!(
        gone.contains("capture:   unknown: the agent is not answering"),
        "{gone}"
    );
    assert!(!gone.contains("capture:   off"), "{gone}");
    assert!(gone.contains("notice:    version 7"), "{gone}");
    let v: Value = serde_json::from_slice(&as_nobody(&env, &["status", "--json"]).stdout)
        .expect("status json");
    assert_eq!(v["capture_on"], Value::Null, "{v:#}");
    eprintln!("took {:?}", started.elapsed());
}
