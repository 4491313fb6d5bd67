//! Helpers shared by the integration tests: the real `imprint` binary, run against real
//! files in a private temporary directory.
#![allow(dead_code)]

pub mod daemon;
pub mod keys;
pub mod typist;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// The bundled recording made with the real `libinput record`.
pub fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/keyboard-mouse.yml")
}

/// Builds (once) and returns the `imprint` binary of this workspace.
pub fn imprint_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "imprint",
                "--bin",
                "imprint",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(out.status.success(), "cargo build -p imprint failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "imprint")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no imprint executable")
    })
}

/// A private directory with a configuration and a data directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
}

impl Env {
    /// An environment whose config has `capture.default_level = level` plus `extra` TOML.
    pub fn new(level: &str, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("imprint.toml");
        std::fs::write(
            &config,
            format!("[capture]\ndefault_level = \"{level}\"\n{extra}"),
        )
        .expect("write config");
        let data = dir.path().join("data");
        Env { dir, config, data }
    }

    /// A command for `imprint ARGS --config C --data-dir D`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(imprint_bin());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data);
        c.env("IMPRINT_LOG", "warn");
        c
    }

    /// Runs `imprint ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run imprint")
    }

    /// `imprint run --replay REC --speed max`, which must succeed.
    pub fn replay(&self, rec: &Path) -> Output {
        self.replay_with("run", rec, "max")
    }

    /// `imprint COMMAND --replay REC --speed SPEED` (`run` or `collector`), which must
    /// succeed.
    pub fn replay_with(&self, command: &str, rec: &Path, speed: &str) -> Output {
        let out = self.run(&[
            command,
            "--replay",
            rec.to_str().expect("utf-8"),
            "--speed",
            speed,
        ]);
        assert!(
            out.status.success(),
            "{command} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    /// Starts `imprint ARGS` in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imprint")
    }

    /// `imprint dump`, parsed.
    pub fn dump(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["dump"]);
        assert!(
            out.status.success(),
            "dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("dump line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// `imprint verify`: exit code and stdout.
    pub fn verify(&self) -> (i32, String) {
        let out = self.run(&["verify"]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.data.join("spool")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.data.join("run")
    }
}

/// A fresh operator age key pair: the identity file `dir/name` and the recipient (`age1…`).
pub fn operator_key(dir: &Path, name: &str) -> (PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).expect("write id");
    (path, id.to_public().to_string())
}

/// The `kind == "event"` lines of a dump.
pub fn events(dump: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    dump.iter().filter(|v| v["kind"] == "event").collect()
}

/// The `kind == "gap"` lines of a dump.
pub fn gaps(dump: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    dump.iter().filter(|v| v["kind"] == "gap").collect()
}

/// Writes a libinput recording (format version 1) of one keyboard typing `n` key
/// press/release pairs, `gap_us` apart, to `path`; returns the number of evdev events.
pub fn synthetic_recording(path: &Path, n: usize, gap_us: u64) -> usize {
    synthetic_recording_named(path, "synthetic-keyboard", n, gap_us)
}

/// [`synthetic_recording`] from a keyboard called `name`.
pub fn synthetic_recording_named(path: &Path, name: &str, n: usize, gap_us: u64) -> usize {
    let mut s = format!(
        "version: 1\nndevices: 1\nlibinput:\n  version: \"1.22.1\"\n  git: \"unknown\"\ndevices:\n- node: /dev/input/event9\n  evdev:\n    name: \"{name}\"\n    id: [6, 4617, 9, 1]\n  events:\n",
    );
    let mut t = 0u64;
    let mut count = 0;
    for i in 0..n {
        // Words of KEY_Q..KEY_T and a space: typing, not one endless token (which the
        // redaction holdback would hold and then mask).
        let code = if i % 6 == 5 { 57 } else { 16 + (i % 6) };
        for value in [1, 0] {
            t += gap_us;
            let (sec, usec) = (t / 1_000_000, t % 1_000_000);
            s.push_str(&format!("  - evdev:\n    - [{sec}, {usec}, 1, {code}, {value}]\n    - [{sec}, {usec}, 0, 0, 0]\n"));
            count += 2;
        }
    }
    std::fs::write(path, s).expect("write recording");
    count
}

/// Focus records produced by a focus tracker (or resolver) running on its own runtime thread.
pub struct FocusRun {
    rx: std::sync::mpsc::Receiver<imprint_record::FocusInfo>,
    seen: std::cell::RefCell<Vec<imprint_record::FocusInfo>>,
}

/// Runs `start(tx)` on a private tokio runtime and collects the focus records it sends.
/// Dropping the returned value closes the channel, which stops the tracker.
pub fn spawn_focus<F, Fut>(start: F) -> FocusRun
where
    F: FnOnce(imprint_session::FocusTx) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (out, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let fut = start(tx);
            let fwd = async move {
                while let Some(f) = rx.recv().await {
                    if out.send(*f).is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                () = fut => {},
                () = fwd => {},
            }
        });
    });
    FocusRun {
        rx,
        seen: Default::default(),
    }
}

impl FocusRun {
    /// Waits for a focus record matching `pred`; panics with every record seen on timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: std::time::Duration,
        pred: impl Fn(&imprint_record::FocusInfo) -> bool,
    ) -> imprint_record::FocusInfo {
        self.try_wait_for(timeout, pred).unwrap_or_else(|| {
            panic!(
                "no focus record for {what} within {timeout:?}; seen: {:#?}",
                self.seen.borrow()
            )
        })
    }

    /// Like [`FocusRun::wait_for`], but `None` on timeout.
    pub fn try_wait_for(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&imprint_record::FocusInfo) -> bool,
    ) -> Option<imprint_record::FocusInfo> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let f = self.rx.recv_timeout(left).ok()?;
            self.seen.borrow_mut().push(f.clone());
            if pred(&f) {
                return Some(f);
            }
        }
    }

    /// Every record received so far.
    pub fn seen(&self) -> Vec<imprint_record::FocusInfo> {
        self.seen.borrow().clone()
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Builds (once per binary) and returns binary `bin` of workspace package `package`.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(out.status.success(), "cargo build -p {package} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == bin)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {bin} executable"))
}

pub mod pipeline;
pub mod xserver;
