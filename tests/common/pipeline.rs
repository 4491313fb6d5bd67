//! The whole pipeline, with the real binaries, as one user (the test's, root here): the agent
//! (`imprint-agent`), the helper (`imprint-session`, X11 tracker) and the collector
//! (`imprint collector --replay REC --session-focus`), then `imprint dump`. The three-user
//! split is tested in tests/as_shipped.rs; this runner is for what the helper reports.
//!
//! Order: agent, then helper, then (once the test has seen in the helper's log that it knows
//! what the test set up) the collector. The helper merges every watcher's state while the
//! collector's socket is not there yet and sends the merged report when it connects, so the
//! collector's replay, which starts at the *first* report, is attributed to that state.

use super::{imprint_bin, wait_until, workspace_bin};
use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Generous: every wait ends as soon as its condition holds.
pub const T: Duration = Duration::from_secs(60);

/// Printable keys the bundled recording types (`Hello, world!`).
pub const TYPED: &[&str] = &[
    "KEY_H",
    "KEY_E",
    "KEY_L",
    "KEY_O",
    "KEY_COMMA",
    "KEY_SPACE",
    "KEY_W",
    "KEY_R",
    "KEY_D",
    "KEY_1",
];
/// Key presses of printable keys in the bundled recording.
pub const TYPED_PRESSES: usize = 13;
/// What may be left of the recording's keys at `timing`: the placeholder and the keys that
/// print nothing (shift, backspace, the mouse buttons).
pub const TIMING_KEYS: &[&str] = &[
    "KEY_A",
    "KEY_LEFTSHIFT",
    "KEY_BACKSPACE",
    "BTN_LEFT",
    "BTN_RIGHT",
    "BTN_MIDDLE",
];

/// A process's stderr, line by line, collected on a thread.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn capture(r: impl Read + Send + 'static) -> Log {
        let log = Log::default();
        let lines = log.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        log
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// A child with its stderr captured, killed (and reaped) on drop.
struct Proc {
    child: Child,
    log: Log,
}

impl Proc {
    fn spawn(mut c: Command, what: &str) -> Proc {
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let log = Log::capture(child.stderr.take().expect("stderr"));
        Proc { child, log }
    }

    /// Waits (up to `timeout`) for the process to exit; its status.
    fn wait(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_until(what, timeout, || child.try_wait().expect("wait"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command with a clean environment: no session variables leak in from the test's own
/// (`XDG_SESSION_ID` would start the logind lock watcher, `DBUS_SESSION_BUS_ADDRESS` AT-SPI).
fn clean(program: &Path, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("IMPRINT_LOG", "info");
    c
}

/// The agent and helper of one run, and its private directories.
pub struct Pipeline {
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    agent: Proc,
    helper: Option<Proc>,
    collector: Option<Proc>,
}

/// What one run wrote.
pub struct Outcome {
    pub dump: Vec<Value>,
    /// Every process's log, for failure messages.
    pub logs: String,
}

impl Pipeline {
    /// Writes a configuration with `rules` (`[[rule]]` tables; nothing else is captured),
    /// with the collector trusting uid 0's focus reports and verdicts, and starts the agent.
    pub fn start(rules: &str) -> Pipeline {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the pipeline runs its daemons as root ([session] owner_uid = 0): run the test as root"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).expect("mkdir");
            p
        };
        let (run, agent_run, data, status) = (sub("run"), sub("agent"), sub("data"), sub("status"));
        sub("home");
        let config = dir.path().join("imprint.toml");
        std::fs::write(
            &config,
            format!(
                r#"[paths]
run_dir = "{}"
agent_run_dir = "{}"
data_dir = "{}"
status_dir = "{}"

[session]
owner_uid = 0
agent_user = "0"

[spool]
fsync_interval_ms = 50

{rules}
"#,
                run.display(),
                agent_run.display(),
                data.display(),
                status.display()
            ),
        )
        .expect("write config");
        let agent_bin = workspace_bin("imprint-agent", "imprint-agent");
        let mut c = clean(&agent_bin, &dir.path().join("home"));
        c.arg("--config").arg(&config).arg("--exit-when-closed");
        let agent = Proc::spawn(c, "imprint-agent");
        Pipeline {
            socket: run.join("session.sock"),
            dir,
            config,
            agent,
            helper: None,
            collector: None,
        }
    }

    /// Starts `imprint-session --tracker x11` with only `env` (DISPLAY, …) besides PATH and
    /// HOME, logging its focus and accessibility reports (debug) for [`Pipeline::helper_logged`].
    pub fn start_helper(&mut self, env: &[(&str, &OsStr)]) {
        let bin = workspace_bin("imprint-session", "imprint-session");
        let mut c = clean(&bin, &self.dir.path().join("home"));
        c.env("IMPRINT_LOG", "info,imprint_session=debug")
            .arg("--config")
            .arg(&self.config)
            .args(["--tracker", "x11", "--socket"])
            .arg(&self.socket);
        for (k, v) in env {
            c.env(k, v);
        }
        self.helper = Some(Proc::spawn(c, "imprint-session"));
    }

    fn helper_log(&self) -> &Log {
        &self.helper.as_ref().expect("the helper was started").log
    }

    /// How many lines the helper has logged so far (for [`Pipeline::helper_logged`]'s `from`).
    pub fn helper_mark(&self) -> usize {
        self.helper_log().lines().len()
    }

    /// Waits until the helper logs, at line `from` or later, a line containing every one of
    /// `needles`; returns the index after that line. Panics with the log on timeout, or if
    /// the helper exits.
    pub fn helper_logged(&mut self, what: &str, from: usize, needles: &[&str]) -> usize {
        self.try_helper_logged(from, needles, T).unwrap_or_else(|| {
            panic!(
                "imprint-session did not log {what} ({needles:?}) within {T:?}; its log:\n{}",
                self.helper_log().text()
            )
        })
    }

    /// Like [`Pipeline::helper_logged`], but `None` after `timeout`.
    pub fn try_helper_logged(
        &mut self,
        from: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Option<usize> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let lines = self.helper_log().lines();
            if let Some(i) = lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
                .map(|(i, _)| i)
            {
                return Some(i + 1);
            }
            let helper = self.helper.as_mut().expect("helper");
            if let Some(st) = helper.child.try_wait().expect("wait") {
                panic!(
                    "imprint-session exited ({st}) while awaited ({needles:?}); its log:\n{}",
                    lines.join("\n")
                );
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the collector replaying `recording` at `speed` from the helper's first report,
    /// waits for it and the agent to finish, and dumps the spool.
    pub fn replay(mut self, recording: &Path, speed: &str) -> Outcome {
        self.start_collector(recording, speed);
        self.finish()
    }

    /// Starts `imprint collector --replay RECORDING --speed SPEED --session-focus`: it serves
    /// the session socket and replays once the helper's first report has arrived.
    pub fn start_collector(&mut self, recording: &Path, speed: &str) {
        let mut c = clean(imprint_bin(), &self.dir.path().join("home"));
        c.arg("--config")
            .arg(&self.config)
            .args(["collector", "--replay"])
            .arg(recording)
            .args(["--speed", speed, "--session-focus"]);
        self.collector = Some(Proc::spawn(c, "imprint collector"));
    }

    /// The session socket exists (the collector serves it).
    pub fn wait_for_socket(&self) {
        wait_until("the session socket", T, || {
            self.socket.exists().then_some(())
        });
    }

    /// `imprint dump` of the spool now, while the daemons run.
    pub fn dump_now(&self) -> Vec<Value> {
        dump(&self.config, "")
    }

    /// `imprint status --json` now, parsed (`Null` if it printed no JSON).
    pub fn status_json(&self) -> Value {
        let out = Command::new(imprint_bin())
            .arg("--config")
            .arg(&self.config)
            .args(["status", "--json"])
            .env("IMPRINT_LOG", "warn")
            .output()
            .expect("imprint status");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Stops the collector (SIGTERM) before its replay ends, then as [`Pipeline::finish`].
    pub fn stop(self) -> Outcome {
        use nix::sys::signal::{kill, Signal};
        let c = self.collector.as_ref().expect("the collector was started");
        kill(
            nix::unistd::Pid::from_raw(c.child.id() as i32),
            Signal::SIGTERM,
        )
        .expect("SIGTERM the collector");
        self.finish()
    }

    /// Waits for the collector to finish its replay and the agent to drain the ring; the
    /// spool, dumped.
    pub fn finish(mut self) -> Outcome {
        let mut collector = self.collector.take().expect("the collector was started");
        let done = collector.wait("the collector to finish the replay", T);
        let logs = |p: &Pipeline, collector: &Proc| {
            format!(
                "collector log:\n{}\nagent log:\n{}\nhelper log:\n{}",
                collector.log.text(),
                p.agent.log.text(),
                p.helper.as_ref().map(|h| h.log.text()).unwrap_or_default()
            )
        };
        assert!(
            done.success(),
            "collector: {done}\n{}",
            logs(&self, &collector)
        );
        let a = self.agent.wait("the agent to drain the ring", T);
        assert!(a.success(), "agent: {a}\n{}", logs(&self, &collector));
        let logs = logs(&self, &collector);
        let dump = dump(&self.config, &logs);
        Outcome { dump, logs }
    }
}

/// `imprint --config CONFIG dump`, parsed; `logs` go into a failure message.
fn dump(config: &Path, logs: &str) -> Vec<Value> {
    let out = Command::new(imprint_bin())
        .arg("--config")
        .arg(config)
        .arg("dump")
        .env("IMPRINT_LOG", "warn")
        .output()
        .expect("imprint dump");
    assert!(
        out.status.success(),
        "dump: {}\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("dump line ({e}): {l}")))
        .collect()
}

impl Outcome {
    /// The focus records.
    pub fn foci(&self) -> Vec<&Value> {
        self.dump.iter().filter(|r| r["kind"] == "focus").collect()
    }

    /// Every EV_KEY event: (code, value).
    pub fn keys(&self) -> Vec<(String, i64)> {
        self.dump
            .iter()
            .filter(|r| r["kind"] == "event" && r["type"] == "EV_KEY")
            .map(|r| {
                (
                    r["code"].as_str().unwrap_or("?").to_owned(),
                    r["value"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    /// The codes of key presses.
    pub fn presses(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|(_, v)| *v == 1)
            .map(|(c, _)| c)
            .collect()
    }

    /// The focus record each event names (`"focus": SEQ`) satisfies `pred`; panics naming
    /// the first event that does not.
    pub fn assert_every_event_under(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        let foci = self.foci();
        let events: Vec<&Value> = self.dump.iter().filter(|r| r["kind"] == "event").collect();
        assert!(!events.is_empty(), "no events written\n{}", self.context());
        for e in events {
            let f = foci
                .iter()
                .find(|f| f["seq"] == e["focus"])
                .unwrap_or_else(|| panic!("event {e} names no focus record\n{}", self.context()));
            assert!(
                pred(f),
                "event {e} is attributed to focus {f}, which is not {what}\n{}",
                self.context()
            );
        }
    }

    /// No printable key identity is left: every key is the `KEY_A` placeholder or prints
    /// nothing, the timing of every typed key is kept, and no typed text is anywhere.
    pub fn assert_masked(&self) {
        let keys = self.keys();
        let leaked: Vec<&(String, i64)> = keys
            .iter()
            .filter(|(c, _)| !TIMING_KEYS.contains(&c.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "key identities written in a secure context: {leaked:?}\n{}",
            self.context()
        );
        let placeholders = self.presses().iter().filter(|c| *c == "KEY_A").count();
        assert_eq!(
            placeholders,
            TYPED_PRESSES,
            "every typed key is kept as a placeholder (timing): {:?}\n{}",
            self.presses(),
            self.context()
        );
        let all = serde_json::to_string(&self.dump)
            .expect("json")
            .to_lowercase();
        assert!(
            !all.contains("hello") && !all.contains("world"),
            "typed text written in a secure context\n{}",
            self.context()
        );
    }

    /// The typed keys are there, by identity.
    pub fn assert_kept(&self) {
        let presses = self.presses();
        let typed = presses
            .iter()
            .filter(|c| TYPED.contains(&c.as_str()))
            .count();
        assert_eq!(
            typed,
            TYPED_PRESSES,
            "at `full` every typed key is kept: {presses:?}\n{}",
            self.context()
        );
        for k in [
            "KEY_H", "KEY_E", "KEY_L", "KEY_O", "KEY_W", "KEY_R", "KEY_D",
        ] {
            assert!(presses.iter().any(|c| c == k), "{k} kept: {presses:?}");
        }
    }

    /// The focus records and the logs, for failure messages.
    pub fn context(&self) -> String {
        let foci: Vec<String> = self.foci().iter().map(|f| f.to_string()).collect();
        format!("focus records:\n{}\n{}", foci.join("\n"), self.logs)
    }
}
