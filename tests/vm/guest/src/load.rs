//! The overhead bench's load (`imprint-vm-guest load`): a keyboard and a mouse for each phase,
//! created once so that every tool measured in the boot sees the same devices, driven on
//! command.
//!
//! Each phase has its own pair of devices (`<prefix>-paced-kbd`, `-paced-mouse`,
//! `-flood-kbd`, `-flood-mouse`), so that a tool's output says which phase an event belongs
//! to by its device alone, however the tool writes time. Commands arrive as files:
//! `DIR/go-paced` or `DIR/go-flood` runs that phase, then `DIR/done-<phase>` holds
//! `events=<n>` (key and motion events, SYN_REPORT not counted); `DIR/quit` ends.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use evdev::{KeyCode, RelativeAxisCode};

use crate::devices::{self, Driven};

/// How the paced phase is spread: reports per second, both devices together.
pub struct Pace {
    pub reports: u64,
    pub per_second: u64,
}

struct Pair {
    kbd: Driven,
    mouse: Driven,
}

impl Pair {
    fn new(prefix: &str, phase: &str) -> Result<Pair> {
        Ok(Pair {
            kbd: devices::keyboard_named(&format!("{prefix}-{phase}-kbd"), Duration::ZERO)?,
            mouse: devices::mouse_named(&format!("{prefix}-{phase}-mouse"), Duration::ZERO)?,
        })
    }

    /// Report `i`: even ones are keys (words of five A and a space, so typing looks like
    /// typing to the redaction holdback), odd ones a one-unit move, left and right in turn.
    fn report(&mut self, i: u64) -> Result<()> {
        let k = i / 2;
        if i.is_multiple_of(2) {
            let key = if (k / 2) % 6 == 5 {
                KeyCode::KEY_SPACE
            } else {
                KeyCode::KEY_A
            };
            self.kbd.emit_key(key, i32::from(k.is_multiple_of(2)))
        } else {
            let dx = if k.is_multiple_of(2) { 1 } else { -1 };
            self.mouse.emit_rel(RelativeAxisCode::REL_X, dx)
        }
    }

    /// Leaves no key down: an even number of key reports ends on a release.
    fn finish(&mut self, reports: u64) -> Result<u64> {
        let keys = reports.div_ceil(2);
        if keys % 2 == 1 {
            self.report(2 * keys)?;
            return Ok(reports + 1);
        }
        Ok(reports)
    }

    fn nodes(&self) -> String {
        format!(
            "{} {}\n{} {}\n",
            self.kbd.name(),
            self.kbd.node().display(),
            self.mouse.name(),
            self.mouse.node().display()
        )
    }
}

/// Creates the devices, writes their nodes to `DIR/nodes`, then runs phases on command.
pub fn serve(dir: &Path, prefix: &str, pace: Pace, flood_reports: u64) -> Result<()> {
    let mut paced = Pair::new(prefix, "paced")?;
    let mut flood = Pair::new(prefix, "flood")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let nodes = format!("{}{}", paced.nodes(), flood.nodes());
    std::fs::write(dir.join("nodes"), nodes).context("writing the nodes file")?;
    let period = Duration::from_nanos(1_000_000_000 / pace.per_second.max(1));
    loop {
        if dir.join("quit").exists() {
            return Ok(());
        }
        if take(&dir.join("go-paced"))? {
            // Deadlines from the start, not sleeps after each report, so a slow report does
            // not slow the pace that follows it.
            let start = Instant::now();
            for i in 0..pace.reports {
                paced.report(i)?;
                let next = start + period * u32::try_from(i + 1).unwrap_or(u32::MAX);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    sleep(wait);
                }
            }
            let n = paced.finish(pace.reports)?;
            done(dir, "paced", n)?;
        } else if take(&dir.join("go-flood"))? {
            for i in 0..flood_reports {
                flood.report(i)?;
            }
            let n = flood.finish(flood_reports)?;
            done(dir, "flood", n)?;
        } else {
            sleep(Duration::from_millis(20));
        }
    }
}

/// True (and the file removed) if `path` existed.
fn take(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn done(dir: &Path, phase: &str, events: u64) -> Result<()> {
    let path = dir.join(format!("done-{phase}"));
    std::fs::write(&path, format!("events={events}\n"))
        .with_context(|| format!("writing {}", path.display()))
}
