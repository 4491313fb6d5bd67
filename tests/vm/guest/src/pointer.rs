//! A pointer-and-keyboard script: one uinput mouse and one uinput keyboard follow a list of
//! steps (moves, clicks, drags, scrolls, typing, chords, sleeps and shell commands), for tests
//! that run a real X server on the devices and compare what it reports with what was sent.
//!
//! One step a line; blank lines and `#` comments are skipped:
//!
//! - `move DX DY`: relative motion, split into reports of at most [`MAX_MOTION`] units whose
//!   sum is exactly (DX, DY).
//! - `press BTN`, `release BTN`, `click BTN`: BTN is `left`, `right`, `middle` (or `1`, `3`,
//!   `2`, X's numbers, or an evdev name such as `BTN_LEFT`).
//! - `drag BTN DX DY STEPS`: press, move (DX, DY) in STEPS reports, release.
//! - `scroll N`, `hscroll N`: N wheel detents (vertical: + is up; horizontal: + is right), one
//!   report each, with the hi-res axes (120 per detent) alongside the classic ones.
//! - `type TEXT`: the rest of the line, on a US layout (shift where needed); `\n`, `\t` and
//!   `\\` are escapes.
//! - `key KEY`: press and release one key: an evdev name (`KEY_ENTER`), the same without the
//!   prefix in any case (`enter`, `f5`), an alias (`ctrl`, `shift`, `alt`, `super`, `del`,
//!   `pgup`, `pgdn`) or a single character's unshifted key.
//! - `chord KEY+KEY+...`: press the keys in order, release them in reverse (`ctrl+s`).
//! - `sleep MS`.
//! - `exec CMD`: run `sh -c CMD` and wait for it; a non-zero exit fails the script.
//!
//! Between key reports the driver pauses 30-80 ms (a fixed pseudo-random sequence, so runs are
//! repeatable), like a person typing; motion reports are 4 ms apart.

use std::fmt::Write as _;
use std::process::Command;
use std::str::FromStr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use evdev::KeyCode;

use crate::devices::Driven;
use crate::drive::monotonic_ns;
use crate::keymap;

/// The largest motion, in device units per axis, of one report.
pub const MAX_MOTION: i32 = 10;
/// The pause after each motion report.
pub const MOTION_STEP: Duration = Duration::from_millis(4);

/// One line of a pointer script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Move {
        dx: i32,
        dy: i32,
    },
    Press(KeyCode),
    Release(KeyCode),
    Click(KeyCode),
    Drag {
        button: KeyCode,
        dx: i32,
        dy: i32,
        steps: u32,
    },
    Scroll(i32),
    HScroll(i32),
    Type(String),
    Key(KeyCode),
    Chord(Vec<KeyCode>),
    Sleep(Duration),
    Exec(String),
}

/// Parses a script into its steps, each with its source line (for logs and marks).
pub fn parse(text: &str) -> Result<Vec<(String, Step)>> {
    let mut steps = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start().trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let step = parse_line(line).with_context(|| format!("script line {}: {line:?}", n + 1))?;
        steps.push((line.trim_end().to_owned(), step));
    }
    Ok(steps)
}

fn parse_line(line: &str) -> Result<Step> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let words: Vec<&str> = rest.split_whitespace().collect();
    let int = |s: &str| -> Result<i32> { s.parse().with_context(|| format!("bad number {s:?}")) };
    Ok(match (verb, words.as_slice()) {
        ("move", [dx, dy]) => Step::Move {
            dx: int(dx)?,
            dy: int(dy)?,
        },
        ("press", [b]) => Step::Press(button(b)?),
        ("release", [b]) => Step::Release(button(b)?),
        ("click", [b]) => Step::Click(button(b)?),
        ("drag", [b, dx, dy, steps]) => Step::Drag {
            button: button(b)?,
            dx: int(dx)?,
            dy: int(dy)?,
            steps: steps
                .parse()
                .ok()
                .filter(|&s| s > 0)
                .with_context(|| format!("bad step count {steps:?}"))?,
        },
        ("scroll", [n]) => Step::Scroll(int(n)?),
        ("hscroll", [n]) => Step::HScroll(int(n)?),
        ("type", _) if !rest.is_empty() => Step::Type(unescape(rest)?),
        ("key", [k]) => Step::Key(key(k)?),
        ("chord", [keys]) => Step::Chord(keys.split('+').map(key).collect::<Result<Vec<_>>>()?),
        ("sleep", [ms]) => Step::Sleep(Duration::from_millis(
            ms.parse()
                .with_context(|| format!("bad milliseconds {ms:?}"))?,
        )),
        ("exec", _) if !rest.trim().is_empty() => Step::Exec(rest.to_owned()),
        _ => bail!("cannot parse this step"),
    })
}

fn unescape(text: &str) -> Result<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            other => bail!(
                "unknown escape \\{}",
                other.map(String::from).unwrap_or_default()
            ),
        }
    }
    Ok(out)
}

/// A mouse button by X number, short name or evdev name.
pub fn button(name: &str) -> Result<KeyCode> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "left" | "1" | "btn_left" => KeyCode::BTN_LEFT,
        "middle" | "2" | "btn_middle" => KeyCode::BTN_MIDDLE,
        "right" | "3" | "btn_right" => KeyCode::BTN_RIGHT,
        _ => bail!("unknown button {name:?} (left, middle, right)"),
    })
}

/// A key by evdev name, name without `KEY_`, alias or single character.
pub fn key(name: &str) -> Result<KeyCode> {
    let alias = match name.to_ascii_lowercase().as_str() {
        "ctrl" | "control" => Some(KeyCode::KEY_LEFTCTRL),
        "shift" => Some(KeyCode::KEY_LEFTSHIFT),
        "alt" => Some(KeyCode::KEY_LEFTALT),
        "super" | "meta" | "win" => Some(KeyCode::KEY_LEFTMETA),
        "del" => Some(KeyCode::KEY_DELETE),
        "return" => Some(KeyCode::KEY_ENTER),
        "pgup" => Some(KeyCode::KEY_PAGEUP),
        "pgdn" => Some(KeyCode::KEY_PAGEDOWN),
        _ => None,
    };
    if let Some(key) = alias {
        return Ok(key);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("KEY_") {
        upper
    } else {
        format!("KEY_{upper}")
    };
    if let Ok(key) = KeyCode::from_str(&full) {
        return Ok(key);
    }
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Ok(keymap::stroke(c)?.key);
    }
    bail!("unknown key {name:?}")
}

/// `total` split into `parts` integer steps that add up to it exactly.
pub fn split(total: i32, parts: u32) -> Vec<i32> {
    let parts = parts.max(1) as i64;
    (1..=parts)
        .map(|i| (total as i64 * i / parts - total as i64 * (i - 1) / parts) as i32)
        .collect()
}

/// Repeatable pauses between key reports, 30-80 ms.
struct Pace(u64);

impl Pace {
    fn next(&mut self) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(30 + self.0 % 51)
    }
}

/// Runs `steps` on the two devices. Every step leaves a JSON line in `marks`: its source line,
/// the CLOCK_MONOTONIC interval it ran in, and the index and count of its events in the
/// device's sent log (`dev` is `mouse`, `keyboard` or `none`).
pub fn run(
    mouse: &mut Driven,
    kb: &mut Driven,
    steps: &[(String, Step)],
    marks: &mut String,
) -> Result<()> {
    let mut pace = Pace(0x9e37_79b9_7f4a_7c15);
    mouse.step = MOTION_STEP;
    for (line, step) in steps {
        let started = Instant::now();
        let from_ns = monotonic_ns();
        let (mouse_first, kb_first) = (mouse.sent.len(), kb.sent.len());
        match step {
            Step::Move { dx, dy } => motion(mouse, *dx, *dy, None)?,
            Step::Press(b) => mouse.key(*b, 1)?,
            Step::Release(b) => mouse.key(*b, 0)?,
            Step::Click(b) => {
                mouse.key(*b, 1)?;
                sleep(pace.next());
                mouse.key(*b, 0)?;
            }
            Step::Drag {
                button,
                dx,
                dy,
                steps,
            } => {
                mouse.key(*button, 1)?;
                sleep(pace.next());
                motion(mouse, *dx, *dy, Some(*steps))?;
                sleep(pace.next());
                mouse.key(*button, 0)?;
            }
            Step::Scroll(n) | Step::HScroll(n) => {
                let horizontal = matches!(step, Step::HScroll(_));
                for _ in 0..n.unsigned_abs() {
                    mouse.wheel_hires(n.signum(), horizontal)?;
                    sleep(pace.next());
                }
            }
            Step::Type(text) => {
                for c in text.chars() {
                    let stroke = keymap::stroke(c)?;
                    let mut held = Vec::new();
                    if stroke.ctrl {
                        held.push(KeyCode::KEY_LEFTCTRL);
                    }
                    if stroke.shift {
                        held.push(KeyCode::KEY_LEFTSHIFT);
                    }
                    let mut chord = held;
                    chord.push(stroke.key);
                    press_chord(kb, &chord, &mut pace)?;
                }
            }
            Step::Key(k) => press_chord(kb, &[*k], &mut pace)?,
            Step::Chord(keys) => press_chord(kb, keys, &mut pace)?,
            Step::Sleep(d) => sleep(*d),
            Step::Exec(cmd) => {
                let status = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .status()
                    .with_context(|| format!("running sh -c {cmd:?}"))?;
                if !status.success() {
                    bail!("step {line:?}: the command exited with {status}");
                }
            }
        }
        let to_ns = monotonic_ns();
        let (dev, first, count) = if mouse.sent.len() > mouse_first {
            ("mouse", mouse_first, mouse.sent.len() - mouse_first)
        } else if kb.sent.len() > kb_first {
            ("keyboard", kb_first, kb.sent.len() - kb_first)
        } else {
            ("none", 0, 0)
        };
        let _ = writeln!(
            marks,
            r#"{{"step":"{}","from_ns":{from_ns},"to_ns":{to_ns},"dev":"{dev}","first":{first},"count":{count}}}"#,
            json_escape(line)
        );
        eprintln!(
            "imprint-vm-guest: pointer-script: {line:?} done after {} ms",
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// Relative motion in reports of at most [`MAX_MOTION`] per axis (or exactly `parts` reports).
fn motion(mouse: &mut Driven, dx: i32, dy: i32, parts: Option<u32>) -> Result<()> {
    let longest = dx.unsigned_abs().max(dy.unsigned_abs());
    let parts = parts.unwrap_or_else(|| longest.div_ceil(MAX_MOTION as u32).max(1));
    for (x, y) in split(dx, parts).into_iter().zip(split(dy, parts)) {
        mouse.motion(x, y)?;
    }
    Ok(())
}

/// Presses `keys` in order and releases them in reverse, pausing like a typist in between.
fn press_chord(kb: &mut Driven, keys: &[KeyCode], pace: &mut Pace) -> Result<()> {
    for key in keys {
        kb.step = pace.next();
        kb.key(*key, 1)?;
    }
    for key in keys.iter().rev() {
        kb.step = pace.next();
        kb.key(*key, 0)?;
    }
    Ok(())
}

fn json_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step() {
        let steps = parse(
            "# origin\nmove -2000 -2000\npress left\nrelease 3\nclick middle\n\
             drag left 30 -40 5\nscroll -2\nhscroll 1\ntype Hi, you!\\n\nkey enter\n\
             key KEY_F5\nchord ctrl+s\nsleep 250\nexec xdotool getmouselocation > /tmp/loc\n",
        )
        .expect("parse");
        let steps: Vec<Step> = steps.into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            vec![
                Step::Move {
                    dx: -2000,
                    dy: -2000
                },
                Step::Press(KeyCode::BTN_LEFT),
                Step::Release(KeyCode::BTN_RIGHT),
                Step::Click(KeyCode::BTN_MIDDLE),
                Step::Drag {
                    button: KeyCode::BTN_LEFT,
                    dx: 30,
                    dy: -40,
                    steps: 5
                },
                Step::Scroll(-2),
                Step::HScroll(1),
                Step::Type("Hi, you!\n".into()),
                Step::Key(KeyCode::KEY_ENTER),
                Step::Key(KeyCode::KEY_F5),
                Step::Chord(vec![KeyCode::KEY_LEFTCTRL, KeyCode::KEY_S]),
                Step::Sleep(Duration::from_millis(250)),
                Step::Exec("xdotool getmouselocation > /tmp/loc".into()),
            ]
        );
        for bad in [
            "move 1\n",
            "click thumb\n",
            "drag left 1 1 0\n",
            "key nosuchkey\n",
            "type\n",
            "exec\n",
            "fly\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn splits_exactly() {
        assert_eq!(split(25, 3), vec![8, 8, 9]);
        assert_eq!(split(-25, 3).iter().sum::<i32>(), -25);
        assert_eq!(split(0, 4), vec![0, 0, 0, 0]);
        assert_eq!(split(7, 0), vec![7]);
        for total in [-2000, -1, 1, 13, 999] {
            for parts in 1..30 {
                let steps = split(total, parts);
                assert_eq!(steps.iter().sum::<i32>(), total);
                assert!(steps
                    .iter()
                    .all(|s| s.abs() <= total.abs() / parts as i32 + 1));
            }
        }
    }

    #[test]
    fn pace_is_humanish() {
        let mut pace = Pace(1);
        for _ in 0..1000 {
            let d = pace.next().as_millis();
            assert!((30..=80).contains(&d), "{d}");
        }
    }
}
