//! Screen lock detection against a real Xvfb with real lockers (i3lock, xsecurelock).
//!
//! These lockers never take EWMH focus: they map an override-redirect window over the screen
//! and grab the keyboard. The test plays the window manager's part for an ordinary client
//! (xterm), setting `_NET_ACTIVE_WINDOW` to it with xprop as an EWMH window manager does, then
//! starts a locker and checks that `imprint_session::lock::watch_x11` reports the session
//! locked while `_NET_ACTIVE_WINDOW` still names xterm (so focus alone would have attributed
//! the typed password to xterm), and unlocked once the locker is killed.
//!
//! End to end (`i3lock_masks_typing_through_the_pipeline`): xterm running `cat` is the
//! `_NET_ACTIVE_WINDOW` (in scope at `full`), i3lock is up, and the real `imprint-session`
//! reports to a real collector replaying the bundled recording while the real agent writes
//! the spool: no printable key identity is written and the focus record says `locked: true`.
//! Without i3lock the same run keeps the typed keys.
//!
//! The logind watcher is only unit-tested (message parsing, in agent/session/src/lock.rs): no
//! logind runs here, and it has not been run against a real one.

mod common;

use common::pipeline::{Outcome, Pipeline};
use common::wait_until;
use common::xserver::{
    activate, active_window, client, mapped_toplevels, one_at_a_time, require, window_of, xvfb,
    Kill,
};
use imprint_session::lock::{watch_x11, LockState};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Generous: every wait ends as soon as its condition holds.
const T: Duration = Duration::from_secs(30);

/// A locker and everything it started. xsecurelock's savers call setsid(), so neither its
/// process group nor its parentage (they are re-parented when it dies) finds them all: every
/// process carrying the marker variable set on the locker (children inherit it) is killed.
struct Locker {
    child: Child,
    marker: String,
    done: bool,
}

impl Locker {
    fn spawn(display: &str, cmd: &[&str], package: &str) -> Locker {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let marker = format!(
            "IMPRINT_TEST_LOCKER={}.{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let (k, v) = marker.split_once('=').expect("marker has a =");
        let child = Command::new(cmd[0])
            .args(&cmd[1..])
            .env("DISPLAY", display)
            .env(k, v)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} (apt-get install {package}): {e}", cmd[0]));
        Locker {
            child,
            marker,
            done: false,
        }
    }

    /// Processes (other than the locker itself) whose environment holds the marker.
    fn descendants(&self) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| pid != self.child.id() as i32)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|&b| b == 0)
                        .any(|kv| kv == self.marker.as_bytes())
                })
            })
            .collect()
    }

    fn kill(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        use nix::sys::signal::{kill, Signal};
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Repeated: a saver may have been starting one more process.
        for _ in 0..50 {
            let left = self.descendants();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lock states from a `watch_x11` running on its own runtime thread.
struct Watch {
    rx: std::sync::mpsc::Receiver<Result<LockState, String>>,
    seen: std::cell::RefCell<Vec<LockState>>,
}

fn watch(display: &str) -> Watch {
    let display = display.to_owned();
    let (out, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(16);
            let done = out.clone();
            let run = async move {
                let r = watch_x11(Some(display), None, Vec::new(), tx).await;
                let _ = done.send(Err(format!("watch_x11 returned {r:?}")));
            };
            let fwd = async move {
                while let Some(s) = rx.recv().await {
                    if out.send(Ok(s)).is_err() {
                        break;
                    }
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                () = run => {},
                () = fwd => {},
            }
        });
    });
    Watch {
        rx,
        seen: Default::default(),
    }
}

impl Watch {
    /// Waits for the next state change and checks it; panics with everything seen if it
    /// does not come, or the watcher stops.
    fn next(&self, what: &str) -> LockState {
        match self.rx.recv_timeout(T) {
            Ok(Ok(s)) => {
                self.seen.borrow_mut().push(s.clone());
                s
            }
            Ok(Err(e)) => panic!("waiting for {what}: {e}; seen: {:?}", self.seen.borrow()),
            Err(_) => panic!(
                "no lock state for {what} within {T:?}; seen: {:?}",
                self.seen.borrow()
            ),
        }
    }

    /// The watcher sends only changes, so the next state must be this one.
    fn expect(&self, what: &str, want: LockState) {
        let got = self.next(what);
        assert_eq!(got, want, "{what}; seen: {:?}", self.seen.borrow());
    }
}

fn unlocked() -> LockState {
    LockState {
        locked: false,
        by: "x11".into(),
    }
}

fn locked_by(locker: &str) -> LockState {
    LockState {
        locked: true,
        by: format!("x11:{locker}"),
    }
}

/// An ordinary client with EWMH focus, and a full-screen override-redirect window of a
/// program that is no locker (which must not count as a lock).
fn desktop(display: &str) -> (Kill, u32, Kill) {
    let term = client(display, &["xterm", "-e", "sleep", "300"], "xterm");
    let term_win = window_of(display, "XTerm");
    activate(display, term_win);
    assert_eq!(active_window(display), Some(term_win));
    let cover = client(
        display,
        &[
            "xmessage",
            "-xrm",
            "*overrideRedirect: true",
            "-geometry",
            "640x480+0+0",
            "not a locker",
        ],
        "x11-utils",
    );
    // An override-redirect Xt shell gets no WM_CLASS or name: find it by its geometry.
    wait_until("the covering xmessage window", T, || {
        mapped_toplevels(display)
            .contains("640x480+0+0")
            .then_some(())
    });
    (term, term_win, cover)
}

/// Runs one locker through lock and unlock.
fn lock_cycle(locker: &str, cmd: &[&str], package: &str, class: &str) {
    let _serial = one_at_a_time();
    require(cmd[0], package);
    let (_server, display) = xvfb("640x480x24");
    let (_term, term_win, _cover) = desktop(&display);

    let w = watch(&display);
    w.expect(
        "the initial state, a covering window of xmessage up",
        unlocked(),
    );

    let mut lock = Locker::spawn(&display, cmd, package);
    w.expect(&format!("{locker} running"), locked_by(locker));
    // The locker's window is there and mapped, and it did not take EWMH focus.
    let lock_win = window_of(&display, class);
    assert_eq!(
        active_window(&display),
        Some(term_win),
        "_NET_ACTIVE_WINDOW should still name xterm while {locker} (window {lock_win:#x}) \
         is up; windows:\n{}",
        mapped_toplevels(&display)
    );

    // A watcher started while the locker is up sees it at once (the start-up scan).
    let late = watch(&display);
    late.expect(&format!("{locker} already running"), locked_by(locker));

    // Killed (not asked to unlock: a crash, or kill from another VT).
    lock.kill();
    w.expect(&format!("{locker} killed"), unlocked());
    late.expect(&format!("{locker} killed (late watcher)"), unlocked());
}

#[test]
fn i3lock_locks_without_taking_focus() {
    lock_cycle("i3lock", &["i3lock", "-n"], "i3lock", "i3lock");
}

#[test]
fn xsecurelock_locks_without_taking_focus() {
    lock_cycle(
        "xsecurelock",
        &["xsecurelock"],
        "xsecurelock",
        "xsecurelock",
    );
}

/// The display going away ends the watcher with an error (the caller then treats the lock
/// state as unknown).
#[test]
fn watcher_reports_a_lost_display() {
    let _serial = one_at_a_time();
    let (server, display) = xvfb("640x480x24");
    let w = watch(&display);
    w.expect("the initial state", unlocked());
    drop(server);
    match w.rx.recv_timeout(T) {
        Ok(Err(e)) => assert!(e.contains("Err("), "{e}"),
        other => panic!("expected the watcher to fail, got {other:?}"),
    }
}

/// One run of the pipeline with xterm running `cat` as `_NET_ACTIVE_WINDOW`, and i3lock up
/// when `locked`; the helper has seen both before the collector starts replaying.
fn pipeline_with_xterm(locked: bool) -> Outcome {
    let _serial = one_at_a_time();
    require("i3lock", "i3lock");
    let (_server, display) = xvfb("640x480x24");
    let _term = client(&display, &["xterm", "-e", "cat"], "xterm");
    let term_win = window_of(&display, "XTerm");
    activate(&display, term_win);
    let _lock = locked.then(|| {
        let l = Locker::spawn(&display, &["i3lock", "-n"], "i3lock");
        window_of(&display, "i3lock");
        l
    });
    let mut p = Pipeline::start(
        r#"[[rule]]
name = "terminal"
exe = "/usr/bin/xterm"
level = "full"
"#,
    );
    p.start_helper(&[("DISPLAY", display.as_ref())]);
    p.helper_logged(
        "xterm's cat focused",
        0,
        &[" focus ", "tracker=x11", "exe=/usr/bin/cat"],
    );
    p.helper_logged(
        "the lock state",
        0,
        &["lock state", &format!("locked={locked}")],
    );
    assert_eq!(
        active_window(&display),
        Some(term_win),
        "_NET_ACTIVE_WINDOW still names xterm; windows:\n{}",
        mapped_toplevels(&display)
    );
    // Now the collector: the helper's first report to it carries the lock state.
    p.replay(&common::recording(), "max")
}

#[test]
fn i3lock_masks_typing_through_the_pipeline() {
    let started = std::time::Instant::now();
    let in_xterm =
        |f: &serde_json::Value| f["exe"] == "/usr/bin/cat" && f["terminal_exe"] == "/usr/bin/xterm";
    let locked = pipeline_with_xterm(true);
    locked.assert_every_event_under("cat in xterm with i3lock up", |f| {
        in_xterm(f) && f["locked"] == true && f["locked_by"] == "x11:i3lock"
    });
    locked.assert_masked();

    // Control: no locker, same terminal, same rule: the typed keys are kept.
    let open = pipeline_with_xterm(false);
    open.assert_every_event_under("cat in xterm, unlocked", |f| {
        in_xterm(f) && f["locked"] != true && f["tty"] == "echo"
    });
    open.assert_kept();
    eprintln!("i3lock through the pipeline: {:?}", started.elapsed());
}
