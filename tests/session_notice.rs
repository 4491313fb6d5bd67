//! The organisation's notice (`[notice]`) against a real notification server: a real Xvfb,
//! a private session bus (`dbus-daemon`, with no service directories, so nothing is
//! D-Bus-activated behind the test's back), and Debian's `dunst` owning
//! `org.freedesktop.Notifications` on it. The real `imprint-session` binary
//! (`--tracker none`, a collector socket that does not exist) is started three times with
//! `HOME` and `XDG_STATE_HOME` in a temporary directory, and what dunst received is read
//! back from dunst itself (`dunstctl count`, `dunstctl close-all`, `dunstctl history`):
//!
//! 1. `version = 3`, never shown: dunst displays exactly one notification, from `imprint`,
//!    whose body holds the text and whose id is the one the helper logged; nothing goes to
//!    the terminal; `$XDG_STATE_HOME/imprint/notice-version` holds 3, mode 0600, in a
//!    directory of mode 0700.
//! 2. `version = 3` again: the helper decides it was already shown and dunst receives
//!    nothing new.
//! 3. `version = 4`: shown again (a second notification, saying version 4); the file
//!    holds 4.
//!
//! Needs: xvfb, dbus-daemon, dunst (which brings dunstctl; it calls dbus-send and busctl)
//! (tests/setup.sh).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: the CI machine may be busy.
const T: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
/// Plain text, so dunst's copy of the body is the text itself (the helper escapes markup).
const TEXT: &str = "Keyboard and pointer input on this machine is recorded for the audit team.";

/// A child killed, with its process group, on drop (unless it was already reaped, so a
/// reused id is never signalled).
struct Group(Child);
impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Fails loudly, naming the Debian package, when a program the test needs is missing.
fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is missing: apt-get install {package} (or run tests/setup.sh)"
    );
}

/// The first line a child prints on stdout, read on a thread.
fn first_line(stdout: impl std::io::Read + Send + 'static, what: &str) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(T)
        .unwrap_or_else(|e| panic!("no {what} within {T:?} ({e})"));
    assert!(!line.trim().is_empty(), "{what}: the program exited first");
    line.trim().to_string()
}

/// Polls `f` until it returns Some, or panics with `what()` after `T`.
fn wait_for<R>(what: impl Fn() -> String, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "{} (within {T:?})", what());
        std::thread::sleep(POLL);
    }
}

/// A real Xvfb on a display it picks itself (`-displayfd`); `-noreset` so it stays as it
/// is between clients. Returns the server and `:N`.
fn xvfb() -> (Group, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-noreset",
            "-nolisten",
            "tcp",
            "-screen",
            "0",
            "640x480x24",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn Xvfb (apt-get install xvfb)");
    let stdout = child.stdout.take().expect("Xvfb stdout");
    let child = Group(child);
    // Xvfb writes the number once it accepts connections.
    let n = first_line(stdout, "display number from Xvfb -displayfd");
    let n: u32 = n.parse().expect("Xvfb display number");
    (child, format!(":{n}"))
}

/// A private session bus listening in `dir`, without service directories: (daemon, address).
fn session_bus(dir: &Path) -> (Group, String) {
    let conf = dir.join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            dir.join("bus").display()
        ),
    )
    .expect("write bus.conf");
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn dbus-daemon (apt-get install dbus-daemon)");
    let stdout = child.stdout.take().expect("dbus-daemon stdout");
    let child = Group(child);
    // It prints the address once it listens.
    let addr = first_line(stdout, "address from dbus-daemon --print-address");
    (child, addr)
}

/// The fake login session: display, bus, dunst, and the user's directories.
struct Desktop {
    dir: tempfile::TempDir,
    display: String,
    bus: String,
    dunst_log: PathBuf,
    _dunst: Group,
    _bus: Group,
    _x: Group,
}

impl Desktop {
    fn start() -> Desktop {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).expect("home");
        let (x, display) = xvfb();
        let (bus_daemon, bus) = session_bus(dir.path());
        // dunst's built-in defaults, not whatever /etc/xdg/dunst/dunstrc says.
        let dunstrc = dir.path().join("dunstrc");
        std::fs::write(&dunstrc, "").expect("write dunstrc");
        let dunst_log = dir.path().join("dunst.log");
        let log = std::fs::File::create(&dunst_log).expect("dunst.log");
        let dunst = Command::new("dunst")
            .arg("-config")
            .arg(&dunstrc)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dunst.log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn dunst (apt-get install dunst)");
        let desk = Desktop {
            dir,
            display,
            bus,
            dunst_log,
            _dunst: Group(dunst),
            _bus: bus_daemon,
            _x: x,
        };
        // `dunstctl debug` succeeds once dunst owns the name and answers on its own interface.
        wait_for(
            || {
                format!(
                    "dunst never answered `dunstctl debug`; its log:\n{}",
                    desk.dunst_log()
                )
            },
            || desk.dunstctl(&["debug"]).ok(),
        );
        desk
    }

    fn dunst_log(&self) -> String {
        std::fs::read_to_string(&self.dunst_log).unwrap_or_default()
    }

    /// `dunstctl ARGS` against this session's dunst: its stdout, or what went wrong.
    fn dunstctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("dunstctl")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run dunstctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "dunstctl {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn count(&self, which: &str) -> u32 {
        let out = self
            .dunstctl(&["count", which])
            .unwrap_or_else(|e| panic!("{e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("dunstctl count {which}: {out:?}: {e}"))
    }

    /// Closes every notification on screen (dunst moves them to its history).
    fn close_all(&self) {
        self.dunstctl(&["close-all"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// dunst's history (`dunstctl history`, newest first): per notification its fields.
    fn history(&self) -> Vec<Note> {
        let out = self
            .dunstctl(&["history"])
            .unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("dunstctl history is not JSON ({e}): {out}"));
        let field = |n: &serde_json::Value, k: &str| n[k]["data"].clone();
        v["data"][0]
            .as_array()
            .unwrap_or_else(|| panic!("dunstctl history: no list in {out}"))
            .iter()
            .map(|n| Note {
                id: field(n, "id").as_u64().expect("history id"),
                appname: field(n, "appname").as_str().unwrap_or_default().into(),
                summary: field(n, "summary").as_str().unwrap_or_default().into(),
                body: field(n, "body").as_str().unwrap_or_default().into(),
            })
            .collect()
    }

    /// Closes what is on screen and returns the history once it holds `n` notifications.
    fn history_of(&self, n: usize) -> Vec<Note> {
        self.close_all();
        wait_for(
            || {
                format!(
                    "dunst's history never held {n} notifications: {:#?}",
                    self.history()
                )
            },
            || {
                let h = self.history();
                (h.len() >= n).then_some(h)
            },
        )
    }

    fn state_home(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn state_file(&self) -> PathBuf {
        self.state_home().join("imprint").join("notice-version")
    }

    /// Starts the real imprint-session with `[notice] version = version`; `tag` names its
    /// log file.
    fn session(&self, version: u32, tag: &str) -> Session {
        let config = self.dir.path().join(format!("imprint-{version}.toml"));
        std::fs::write(
            &config,
            format!("[notice]\ntext = \"{TEXT}\"\nversion = {version}\n"),
        )
        .expect("write config");
        let stderr = self.dir.path().join(format!("session-{tag}.stderr"));
        let child = Command::new(session_bin())
            .arg("--config")
            .arg(&config)
            .args(["--socket", "/nonexistent", "--tracker", "none"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_STATE_HOME", self.state_home())
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            // The decision "already shown" is logged at debug.
            .env("IMPRINT_LOG", "info,imprint_session::notice=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("session stderr"))
            .process_group(0)
            .spawn()
            .expect("spawn imprint-session");
        Session {
            child: Group(child),
            stderr,
        }
    }
}

#[derive(Debug)]
struct Note {
    id: u64,
    appname: String,
    summary: String,
    body: String,
}

struct Session {
    child: Group,
    stderr: PathBuf,
}

impl Session {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for a log line containing `needle` (failing if the helper exits first).
    fn wait_line(&mut self, needle: &str) -> String {
        let path = self.stderr.clone();
        wait_for(
            || {
                format!(
                    "imprint-session never logged {needle:?}; its stderr:\n{}",
                    std::fs::read_to_string(&path).unwrap_or_default()
                )
            },
            || {
                if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                    return Some(line.to_string());
                }
                if let Ok(Some(st)) = self.child.0.try_wait() {
                    panic!(
                        "imprint-session exited ({st}) before logging {needle:?}; its stderr:\n{}",
                        self.log()
                    );
                }
                None
            },
        )
    }

    /// The notification id from `notice shown … shown=Desktop(ID)`.
    fn shown_on_desktop(&mut self, version: u32) -> u64 {
        let line = self.wait_line(&format!("notice shown version={version}"));
        let id = line
            .split("shown=Desktop(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the notice was not shown as a desktop notification: {line:?}; stderr:\n{}",
                    self.log()
                )
            });
        assert!(
            !self
                .log()
                .contains("imprint: notice from your organisation"),
            "the notice also went to the terminal:\n{}",
            self.log()
        );
        id
    }

    /// SIGTERM, and waits for the helper to exit.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.0.wait();
    }
}

fn session_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| common::workspace_bin("imprint-session", "imprint-session"))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn state(desk: &Desktop) -> Option<String> {
    std::fs::read_to_string(desk.state_file())
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn notice_is_shown_once_per_version_by_a_real_notification_server() {
    require("Xvfb", "xvfb");
    require("dbus-daemon", "dbus-daemon");
    require("dunst", "dunst");
    require("dunstctl", "dunst");
    require("dbus-send", "dbus-bin");
    require("busctl", "systemd");
    session_bin();
    let started = Instant::now();
    let desk = Desktop::start();
    assert!(desk.history().is_empty(), "dunst starts with no history");

    // 1. Never shown: one notification, remembered as 3.
    let mut s = desk.session(3, "first");
    let id3 = s.shown_on_desktop(3);
    wait_for(
        || format!("the state file never said 3: {:?}", state(&desk)),
        || (state(&desk).as_deref() == Some("3")).then_some(()),
    );
    assert_eq!(mode(&desk.state_file()), 0o600, "state file mode");
    assert_eq!(
        mode(desk.state_file().parent().expect("dir")),
        0o700,
        "state directory mode"
    );
    wait_for(
        || "dunst never displayed the notice".into(),
        || (desk.count("displayed") + desk.count("waiting") >= 1).then_some(()),
    );
    assert_eq!(desk.count("displayed"), 1, "one notification on screen");
    assert_eq!(desk.count("waiting"), 0);
    let h = desk.history_of(1);
    assert_eq!(h.len(), 1, "exactly one notification: {h:#?}");
    let n = &h[0];
    assert_eq!(n.id, id3, "the id the helper logged: {n:#?}");
    assert_eq!(n.appname, "imprint", "{n:#?}");
    assert!(n.body.contains(TEXT), "the body holds the text: {n:#?}");
    assert!(n.summary.contains("version 3"), "{n:#?}");
    s.stop();

    // 2. Same version: the helper decides so, and dunst receives nothing.
    let mut s = desk.session(3, "again");
    s.wait_line("notice already shown");
    assert!(
        !s.log().contains("notice shown version="),
        "shown again:\n{}",
        s.log()
    );
    assert_eq!(desk.count("displayed"), 0, "nothing new on screen");
    assert_eq!(desk.count("waiting"), 0, "nothing new queued");
    let h = desk.history();
    assert_eq!(h.len(), 1, "no new notification: {h:#?}");
    assert_eq!(state(&desk).as_deref(), Some("3"));
    s.stop();

    // 3. A newer version: shown again.
    let mut s = desk.session(4, "newer");
    let id4 = s.shown_on_desktop(4);
    assert_ne!(id4, id3);
    wait_for(
        || format!("the state file never said 4: {:?}", state(&desk)),
        || (state(&desk).as_deref() == Some("4")).then_some(()),
    );
    assert_eq!(mode(&desk.state_file()), 0o600, "state file mode");
    let h = desk.history_of(2);
    assert_eq!(h.len(), 2, "exactly one more notification: {h:#?}");
    let n = h
        .iter()
        .find(|n| n.id == id4)
        .unwrap_or_else(|| panic!("no notification {id4} in {h:#?}"));
    assert_eq!(n.appname, "imprint", "{n:#?}");
    assert!(n.body.contains(TEXT), "the body holds the text: {n:#?}");
    assert!(n.summary.contains("version 4"), "{n:#?}");
    s.stop();
    eprintln!("session_notice: {:?}", started.elapsed());
}
