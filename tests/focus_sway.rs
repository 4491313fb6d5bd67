//! sway focus against a real headless sway (`WLR_BACKENDS=headless`) with two real Wayland
//! clients (foot, with distinct app ids), focused in turn through `swaymsg`. sway refuses to
//! run as root, so the compositor and its clients run as `nobody` in a private runtime dir,
//! as a user session would; the tracker (root, like the collector) finds the IPC socket
//! there. Then sway is killed: the tracker must report an unknown focus, reconnect to the
//! next sway, and resume.

mod common;

use common::{spawn_focus, wait_until};
use imprint_session::{FocusConfig, TrackerKind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const NOBODY: &str = "65534";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` as nobody in the session's environment (`setpriv` execs, so the child's pid
/// is the program's).
fn as_user(dir: &Path, cmd: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ])
    .args(cmd)
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env("HOME", dir)
    .env("XDG_RUNTIME_DIR", dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

fn sway(dir: &Path) -> (Kill, PathBuf) {
    let before: Vec<PathBuf> = socks(dir);
    let child = as_user(dir, &["sway", "-c", &dir.join("config").to_string_lossy()])
        .env("WLR_BACKENDS", "headless")
        .env("WLR_LIBINPUT_NO_DEVICES", "1")
        .spawn()
        .expect("spawn sway (apt-get install sway foot)");
    let sock = wait_until("sway's IPC socket", T, || {
        socks(dir).into_iter().find(|s| !before.contains(s))
    });
    wait_until("sway to answer", T, || {
        Command::new("swaymsg")
            .args(["-s", &sock.to_string_lossy(), "-t", "get_version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    });
    (Kill(child), sock)
}

fn socks(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("sway-ipc."))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wayland_display(dir: &Path) -> String {
    wait_until("the wayland socket", T, || {
        std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n.starts_with("wayland-") && !n.ends_with(".lock")).then_some(n)
        })
    })
}

fn foot(dir: &Path, app_id: &str) -> Kill {
    let wl = wayland_display(dir);
    Kill(
        as_user(dir, &["foot", "--app-id", app_id, "sleep", "120"])
            .env("WAYLAND_DISPLAY", wl)
            .spawn()
            .expect("spawn foot"),
    )
}

fn swaymsg(sock: &Path, cmd: &str) -> bool {
    Command::new("swaymsg")
        .args(["-s", &sock.to_string_lossy(), cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn child_of(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[test]
fn sway_focus_follows_swaymsg_and_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("config"), "").expect("config");
    let ok = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}"), &dir.to_string_lossy()])
        .status()
        .expect("chown")
        .success();
    assert!(ok);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");

    let (server, sock) = sway(&dir);
    let cfg = FocusConfig {
        tracker: TrackerKind::Sway,
        // Discovery, as for a real session: the newest live sway-ipc.*.sock in the dir.
        runtime_dir: Some(dir.clone()),
        max_backoff_ms: 300,
        ..FocusConfig::default()
    };
    let focus = spawn_focus(move |tx| imprint_session::run(cfg, tx));

    let one = foot(&dir, "imprint-one");
    focus.wait_for("foot one mapped", T, |f| f.app_id == "imprint-one");
    let two = foot(&dir, "imprint-two");
    focus.wait_for("foot two mapped", T, |f| f.app_id == "imprint-two");
    let one_child = wait_until("foot one's child", T, || child_of(one.0.id()));
    let two_child = wait_until("foot two's child", T, || child_of(two.0.id()));

    for (app, term, prog) in [
        ("imprint-one", &one, one_child),
        ("imprint-two", &two, two_child),
        ("imprint-one", &one, one_child),
    ] {
        assert!(swaymsg(&sock, &format!("[app_id={app}] focus")));
        let f = focus.wait_for(app, T, |f| f.app_id == app && f.terminal_pid != 0);
        assert_eq!(f.tracker, "sway");
        assert_eq!(
            f.terminal_pid,
            term.0.id(),
            "the foot that has focus: {f:?}"
        );
        assert!(f.terminal_exe.ends_with("/foot"), "{f:?}");
        assert_eq!(f.pid, prog, "the program in foot's pty: {f:?}");
        assert!(f.exe.ends_with("/sleep"), "{f:?}");
        assert!(f.pid_verified);
        assert_eq!(f.uid, 65534);
    }

    // The compositor dies.
    drop(one);
    drop(two);
    drop(server);
    focus.wait_for("unknown focus after sway died", T, |f| f.unknown);

    // A new sway (new socket name): the tracker finds it and focus records resume.
    let (_server, sock) = sway(&dir);
    let three = foot(&dir, "imprint-three");
    let f = wait_until("focus records to resume", T, || {
        swaymsg(&sock, "[app_id=imprint-three] focus");
        focus.try_wait_for(Duration::from_millis(500), |f| f.app_id == "imprint-three")
    });
    assert_eq!(f.terminal_pid, three.0.id(), "{f:?}");
    assert!(!f.unknown);
}
