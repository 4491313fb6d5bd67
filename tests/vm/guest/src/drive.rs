//! Typing into real programs on a virtual terminal: one keyboard follows a script of steps
//! that type texts and wait for the terminal's state (its foreground program, its echo flag,
//! a file the program writes) in between. Keys of a uinput keyboard reach the active VT's
//! line discipline through the kernel's keyboard handler, so whatever runs in the VT's
//! foreground really reads them.
//!
//! Each typed step is logged as a mark: its label, the CLOCK_MONOTONIC interval it was typed
//! in (the clock input events are stamped with) and which of the sent events it made, so the
//! host can ask what a capture tool wrote for exactly that text.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::libc;

use crate::devices::Driven;

/// One line of a steps file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `type LABEL FILE`: type the contents of FILE (exactly; a trailing newline is Enter).
    Type { label: String, file: PathBuf },
    /// `fg EXE`: wait until the terminal's foreground process group runs EXE.
    Foreground(String),
    /// `echo on|off`: wait until the terminal's ECHO flag is so.
    Echo(bool),
    /// `file PATH`: wait until PATH exists.
    File(PathBuf),
    /// `touch PATH`: create PATH (empty), to tell a script that the steps before it are done.
    Touch(PathBuf),
    /// `sleep MS`.
    Sleep(Duration),
}

/// Parses a steps file: one step per line; blank lines and `#` comments are skipped.
pub fn parse(text: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let step = match words.as_slice() {
            ["type", label, file] => Step::Type {
                label: (*label).to_owned(),
                file: PathBuf::from(file),
            },
            ["fg", exe] => Step::Foreground((*exe).to_owned()),
            ["echo", "on"] => Step::Echo(true),
            ["echo", "off"] => Step::Echo(false),
            ["file", path] => Step::File(PathBuf::from(path)),
            ["touch", path] => Step::Touch(PathBuf::from(path)),
            ["sleep", ms] => {
                Step::Sleep(Duration::from_millis(ms.parse().with_context(|| {
                    format!("steps line {}: bad milliseconds", n + 1)
                })?))
            }
            _ => bail!("steps line {}: cannot parse {line:?}", n + 1),
        };
        steps.push(step);
    }
    Ok(steps)
}

/// What the terminal looks like from outside its session.
pub struct Terminal {
    path: PathBuf,
    /// The terminal's number as `/proc/PID/stat` shows it (`tty_nr`).
    tty_nr: u64,
}

impl Terminal {
    pub fn open(path: &Path) -> Result<Terminal> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("no terminal {}", path.display()))?;
        if !meta.file_type().is_char_device() {
            bail!("{} is not a character device", path.display());
        }
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
        Ok(Terminal {
            path: path.to_owned(),
            // The kernel's new_encode_dev, which is what `tty_nr` carries.
            tty_nr: (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12),
        })
    }

    /// The foreground process group's id, from any process on the terminal (only members of
    /// its session may ask the terminal itself).
    pub fn foreground_group(&self) -> Option<u32> {
        procs().find_map(|(_, stat)| {
            (stat.tty_nr == self.tty_nr && stat.tpgid > 0).then_some(stat.tpgid as u32)
        })
    }

    /// The executable the foreground group runs (its leader's, or any member's once the
    /// leader has gone).
    pub fn foreground_exe(&self) -> Option<String> {
        let group = self.foreground_group()?;
        let exe = |pid: u32| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        };
        exe(group).or_else(|| {
            procs()
                .filter(|(_, s)| s.pgrp == group)
                .find_map(|(pid, _)| exe(pid))
        })
    }

    /// Whether the terminal echoes what is typed.
    pub fn echo(&self) -> Result<bool> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let mut t = std::mem::MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: `file` stays open across the call and `t` is a writable termios.
        if unsafe { libc::tcgetattr(file.as_raw_fd(), t.as_mut_ptr()) } != 0 {
            bail!(
                "tcgetattr {}: {}",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: tcgetattr succeeded, so it filled `t`.
        let t = unsafe { t.assume_init() };
        Ok(t.c_lflag & libc::ECHO != 0)
    }
}

struct ProcStat {
    pgrp: u32,
    tty_nr: u64,
    tpgid: i64,
}

/// Every process's stat fields that matter here.
fn procs() -> impl Iterator<Item = (u32, ProcStat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The command name may hold spaces and parentheses: fields follow the last ')'.
            let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
            Some((
                pid,
                ProcStat {
                    pgrp: rest.get(2)?.parse().ok()?,
                    tty_nr: rest.get(4)?.parse().ok()?,
                    tpgid: rest.get(5)?.parse().ok()?,
                },
            ))
        })
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `steps` on `kb`, waiting at most `timeout` for each condition, and appends a JSON
/// line to `marks` for every typed step (also when a later step fails).
pub fn run(
    kb: &mut Driven,
    tty: &Terminal,
    steps: &[Step],
    timeout: Duration,
    marks: &mut String,
) -> Result<()> {
    for step in steps {
        let started = Instant::now();
        match step {
            Step::Type { label, file } => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let first = kb.sent.len();
                let from_ns = monotonic_ns();
                kb.type_text(&text)
                    .with_context(|| format!("typing step {label}"))?;
                let to_ns = monotonic_ns();
                let _ = writeln!(
                    marks,
                    r#"{{"label":"{label}","from_ns":{from_ns},"to_ns":{to_ns},"first":{first},"count":{}}}"#,
                    kb.sent.len() - first
                );
            }
            Step::Sleep(d) => sleep(*d),
            Step::Touch(path) => {
                std::fs::write(path, "").with_context(|| format!("creating {}", path.display()))?
            }
            Step::Foreground(want) => wait(step, started, timeout, || {
                let got = tty.foreground_exe();
                Ok((got.as_deref() == Some(want.as_str()), format!("{got:?}")))
            })?,
            Step::Echo(want) => wait(step, started, timeout, || {
                let got = tty.echo()?;
                Ok((got == *want, format!("echo {got}")))
            })?,
            Step::File(path) => wait(step, started, timeout, || {
                Ok((path.exists(), "absent".to_owned()))
            })?,
        }
        eprintln!(
            "imprint-vm-guest: drive: {step:?} done after {} ms",
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// Polls `check` (true when done, and what it saw) until it holds or `timeout` passes.
fn wait(
    step: &Step,
    started: Instant,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(bool, String)>,
) -> Result<()> {
    loop {
        let (done, seen) = check()?;
        if done {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "drive: {step:?} did not happen within {} s (last seen: {seen})",
                timeout.as_secs()
            );
        }
        sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps() {
        let steps = parse(
            "# a comment\n\nfg /usr/bin/cat\ntype canaries /etc/t\necho off\nfile /tmp/x\nsleep 250\ntouch /tmp/y\n",
        )
        .expect("parse");
        assert_eq!(
            steps,
            vec![
                Step::Foreground("/usr/bin/cat".into()),
                Step::Type {
                    label: "canaries".into(),
                    file: "/etc/t".into()
                },
                Step::Echo(false),
                Step::File("/tmp/x".into()),
                Step::Sleep(Duration::from_millis(250)),
                Step::Touch("/tmp/y".into()),
            ]
        );
        assert!(parse("fly away\n").is_err());
        assert!(parse("sleep soon\n").is_err());
    }
}
