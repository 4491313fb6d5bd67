//! A real X server for tests: Xvfb on a display it picks itself, clients, and the window
//! manager's part (`_NET_ACTIVE_WINDOW`) played with xprop.

use super::wait_until;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Generous: every wait ends as soon as its condition holds.
const T: Duration = Duration::from_secs(30);

/// One X test at a time per test binary: parallel X clients under load were seen to miss
/// deadlines.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Panics naming the Debian package when `program` is not on PATH.
pub fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: apt-get install {package} (or run tests/setup.sh)"
    );
}

/// A child process, killed (and reaped) when dropped.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running Xvfb, stopped with SIGTERM so that it removes its socket and lock file (a
/// killed one leaves them, and display numbers run out).
pub struct XServer(Child);
impl Drop for XServer {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// A running Xvfb with one screen of `geometry` (`640x480x24`) and its display name. Xvfb picks
/// a free display number itself (`-displayfd`), so nothing races with other tests for one.
pub fn xvfb(geometry: &str) -> (XServer, String) {
    xvfb_with(geometry, &[])
}

/// [`xvfb`] with more server arguments (`-ac`, for clients of other users).
pub fn xvfb_with(geometry: &str, extra: &[&str]) -> (XServer, String) {
    use std::io::BufRead;
    let mut child = spawn_xvfb(&["-displayfd", "1"], geometry, extra);
    let stdout = child.stdout.take().expect("Xvfb's stdout");
    let server = XServer(child);
    // Written once the server accepts clients; EOF if it failed to start.
    let mut line = String::new();
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    let n: u32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Xvfb did not start (it printed {line:?} for -displayfd)"));
    let display = format!(":{n}");
    wait_for_server(&display);
    (server, display)
}

/// A new Xvfb on `display` itself: for a test that restarts the server a client was using.
pub fn xvfb_on(display: &str, geometry: &str) -> XServer {
    let server = XServer(spawn_xvfb(&[display], geometry, &[]));
    wait_for_server(display);
    server
}

fn spawn_xvfb(at: &[&str], geometry: &str, extra: &[&str]) -> Child {
    require("Xvfb", "xvfb");
    require("xprop", "x11-utils");
    Command::new("Xvfb")
        .args(at)
        // -noreset: by default Xvfb resets when its last client leaves (the xprop below),
        // and a client connecting meanwhile is refused ("Can't open display").
        .args(["-noreset", "-nolisten", "tcp"])
        .args(extra)
        .args(["-screen", "0", geometry])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn Xvfb (apt-get install xvfb)")
}

/// Waits until the server on `display` answers (xprop succeeds).
fn wait_for_server(display: &str) {
    wait_until("Xvfb to answer", T, || {
        Command::new("xprop")
            .args(["-display", display, "-root", "-len", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    });
}

/// Starts X client `cmd` (from Debian package `package`) on `display`.
pub fn client(display: &str, cmd: &[&str], package: &str) -> Kill {
    require(cmd[0], package);
    Kill(
        Command::new(cmd[0])
            .args(&cmd[1..])
            .env("DISPLAY", display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} (apt-get install {package}): {e}", cmd[0])),
    )
}

/// The top-level window of the client with WM_CLASS `class`.
pub fn window_of(display: &str, class: &str) -> u32 {
    require("xdotool", "xdotool");
    wait_until(&format!("a {class} window"), T, || {
        let out = Command::new("xdotool")
            .args(["search", "--class", class])
            .env("DISPLAY", display)
            .output()
            .ok()?;
        // The last match is the top-level window (toolkits create inner ones first).
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
    })
}

/// Sets `_NET_ACTIVE_WINDOW`, as an EWMH window manager does on a focus change.
pub fn activate(display: &str, window: u32) {
    let ok = Command::new("xprop")
        .args([
            "-display",
            display,
            "-root",
            "-f",
            "_NET_ACTIVE_WINDOW",
            "32x",
        ])
        .args(["-set", "_NET_ACTIVE_WINDOW", &format!("{window:#x}")])
        .status()
        .expect("xprop")
        .success();
    assert!(ok, "xprop -set _NET_ACTIVE_WINDOW {window:#x}");
}

/// `_NET_ACTIVE_WINDOW` of the root window, if set.
pub fn active_window(display: &str) -> Option<u32> {
    let out = Command::new("xprop")
        .args(["-display", display, "-root", "_NET_ACTIVE_WINDOW"])
        .output()
        .expect("xprop");
    let text = String::from_utf8_lossy(&out.stdout);
    // "_NET_ACTIVE_WINDOW(WINDOW): window id # 0x400003", or, as set by `activate` (type
    // CARDINAL), "_NET_ACTIVE_WINDOW(CARDINAL) = 4194307".
    let value = text.rsplit(['#', '=']).next()?.trim();
    let value = value.split(',').next()?.trim();
    match value.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// The root's children as `xwininfo -children` lists them (names, classes, geometry).
pub fn mapped_toplevels(display: &str) -> String {
    let out = Command::new("xwininfo")
        .args(["-display", display, "-root", "-children"])
        .output()
        .expect("xwininfo");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `xdotool ARGS` on `display`, which must succeed; its output.
pub fn xdotool(display: &str, args: &[&str]) -> String {
    require("xdotool", "xdotool");
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
