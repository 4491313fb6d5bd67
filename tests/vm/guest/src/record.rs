//! The scenario behind `tests/data/keyboard-mouse.yml`: the real `libinput record` records the
//! test keyboard and mouse while this program types, moves, clicks and scrolls.

use std::path::Path;
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use evdev::KeyCode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::devices::{self, Driven};

/// What the keyboard types before one backspace.
pub const TEXT: &str = "Hello, world!";

/// Creates both devices, records them with `recorder` into `out`, and returns them (with their
/// logs of what was sent) once the recorder has exited cleanly.
pub fn run(recorder: &Path, out: &Path) -> Result<(Driven, Driven)> {
    let mut kb = devices::keyboard_named(devices::KEYBOARD_NAME, Duration::from_millis(30))?;
    let mut mouse = devices::mouse(Duration::from_millis(15))?;
    eprintln!(
        "imprint-vm-guest: recording {} ({}) and {} ({})",
        kb.name(),
        kb.node().display(),
        mouse.name(),
        mouse.node().display()
    );

    let mut child = Command::new(recorder)
        .arg("--show-keycodes")
        .arg("-o")
        .arg(out)
        .arg(kb.node())
        .arg(mouse.node())
        .spawn()
        .with_context(|| format!("starting {}", recorder.display()))?;

    let result = drive_while_recording(&mut child, out, &mut kb, &mut mouse);
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result?;
    stop(&mut child, recorder)?;
    Ok((kb, mouse))
}

fn drive_while_recording(
    child: &mut Child,
    out: &Path,
    kb: &mut Driven,
    mouse: &mut Driven,
) -> Result<()> {
    wait_until_recording(child, out)?;

    kb.type_text(TEXT)?;
    kb.tap(KeyCode::KEY_BACKSPACE)?;
    sleep(Duration::from_millis(50));

    // A diagonal sweep down-right, then a shallower one back left.
    for _ in 0..20 {
        mouse.motion(4, 2)?;
    }
    for _ in 0..12 {
        mouse.motion(-3, 1)?;
    }
    for button in [KeyCode::BTN_LEFT, KeyCode::BTN_RIGHT] {
        mouse.key(button, 1)?;
        sleep(Duration::from_millis(40));
        mouse.key(button, 0)?;
        sleep(Duration::from_millis(30));
    }
    for detents in [1, 1, 1, -1, -1] {
        mouse.wheel(detents)?;
        sleep(Duration::from_millis(20));
    }
    // Let the recorder read the tail before it is stopped.
    sleep(Duration::from_millis(500));
    Ok(())
}

/// libinput-record writes the first device's description as soon as it is ready; wait for it.
fn wait_until_recording(child: &mut Child, out: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("libinput-record exited before recording started: {status}");
        }
        let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        if size > 0 {
            // The header is written before the event loop starts polling; give it a moment.
            sleep(Duration::from_millis(500));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "libinput-record wrote nothing to {} within 30 s",
                out.display()
            );
        }
        sleep(Duration::from_millis(50));
    }
}

/// Stops the recorder with SIGINT (its normal way to finish) and checks that it exited cleanly.
fn stop(child: &mut Child, recorder: &Path) -> Result<()> {
    let pid = Pid::from_raw(i32::try_from(child.id()).context("recorder pid out of range")?);
    kill(pid, Signal::SIGINT).context("sending SIGINT to libinput-record")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{} exited with {status} after SIGINT", recorder.display());
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{} did not exit within 20 s of SIGINT", recorder.display());
        }
        sleep(Duration::from_millis(50));
    }
}
