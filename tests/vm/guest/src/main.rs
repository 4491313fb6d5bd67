//! imprint-vm-guest: runs inside the QEMU guest of the `tests/vm` harness.
//!
//! It creates uinput devices with fixed names and drives them with known input, so that the host
//! side can compare what the guest sent with what a capture tool (imprint, `libinput record`)
//! saw. It writes what it sent (and, on request, what it read back) as JSON lines to files that
//! the guest's `/init` prints between marker lines on the serial console.

mod devices;
mod drive;
mod keymap;
mod load;
mod measure;
mod pointer;
mod raw;
mod record;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use evdev::{EventType, KeyCode};

use devices::{Driven, Sent};

#[derive(Parser)]
#[command(about = "Drives uinput devices inside the imprint test VM")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the test keyboard and type a text on it.
    Type {
        /// Device name; other tools find the device by it.
        #[arg(long, default_value = devices::KEYBOARD_NAME)]
        name: String,
        /// Text to type (US layout; shift is pressed for capitals and shifted punctuation).
        #[arg(long)]
        text: String,
        /// Press and release backspace this many times after the text.
        #[arg(long, default_value_t = 0)]
        backspaces: u32,
        /// Pause after every report, in milliseconds.
        #[arg(long, default_value_t = 20)]
        step_ms: u64,
        /// Wait after creating the device before typing, so hotplug-following readers open it.
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        /// Before settling, wait (up to 60 s) until this many other processes hold the device's
        /// event node open: a hotplug follower that opened it cannot miss the typing, however
        /// slow the machine.
        #[arg(long, default_value_t = 0)]
        await_readers: usize,
        /// Keep the device alive this long after typing, so readers drain it before it vanishes.
        #[arg(long, default_value_t = 500)]
        linger_ms: u64,
        /// Write every event sent (without SYN_REPORT) here, one JSON object per line.
        #[arg(long)]
        sent: Option<PathBuf>,
        /// Also read the device's own /dev/input/eventN back, and write what was read here.
        #[arg(long)]
        readback: Option<PathBuf>,
    },
    /// Record the keyboard-and-mouse fixture with `libinput record` (see tests/data/README.md).
    Record {
        /// Path of the libinput-record executable.
        #[arg(long, default_value = "/usr/libexec/libinput/libinput-record")]
        recorder: PathBuf,
        /// Where libinput-record writes the YAML.
        #[arg(long)]
        out: PathBuf,
        /// Write every event sent here, one JSON object per line.
        #[arg(long)]
        sent: Option<PathBuf>,
    },
    /// Create a keyboard with kernel autorepeat (EV_REP), type a text, then hold one key so
    /// the kernel autorepeats it. `--sent` lists what the guest wrote (no repeats: the kernel
    /// makes those).
    Hold {
        #[arg(long, default_value = devices::KEYBOARD_NAME)]
        name: String,
        /// Text to type first: lowercase letters, digits and spaces.
        #[arg(long, default_value = "")]
        text: String,
        /// The character whose key is held.
        #[arg(long)]
        hold: char,
        /// How long the key is held (the kernel repeats after 250 ms, then every 33 ms).
        #[arg(long, default_value_t = 700)]
        hold_ms: u64,
        #[arg(long, default_value_t = 20)]
        step_ms: u64,
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        /// As for `type`: wait until this many other processes hold the event node open.
        #[arg(long, default_value_t = 0)]
        await_readers: usize,
        #[arg(long, default_value_t = 500)]
        linger_ms: u64,
        #[arg(long)]
        sent: Option<PathBuf>,
        /// Read the device's own node back and write `events=N` here: every event a reader of
        /// it got, SYN reports and the kernel's repeats included (how many a capture must see).
        #[arg(long)]
        count: Option<PathBuf>,
    },
    /// Flood a keyboard with `--reports` key reports (KEY_A down, up, down, ..., every sixth
    /// press and release KEY_SPACE; each report is
    /// the key event plus SYN_REPORT), as fast as uinput takes them, pausing `--pause-us` after
    /// every `--burst` reports. Writes `events=<n>` (SYN_REPORT included) to `--count`.
    Flood {
        #[arg(long, default_value = "imprint-test-flood")]
        name: String,
        #[arg(long)]
        reports: u64,
        #[arg(long, default_value_t = 64)]
        burst: u64,
        #[arg(long, default_value_t = 0)]
        pause_us: u64,
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        #[arg(long, default_value_t = 500)]
        linger_ms: u64,
        #[arg(long)]
        count: PathBuf,
    },
    /// The overhead bench's load (see `load.rs`): a keyboard and a mouse per phase, a paced
    /// phase of `--paced-reports` at `--per-second`, a flood of `--flood-reports` as fast as
    /// uinput takes them, each run when `DIR/go-<phase>` appears.
    Load {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "bench")]
        prefix: String,
        #[arg(long, default_value_t = 10_000)]
        paced_reports: u64,
        #[arg(long, default_value_t = 1000)]
        per_second: u64,
        #[arg(long, default_value_t = 15_000)]
        flood_reports: u64,
    },
    /// The overhead bench's measurement of a tool's processes (see `measure.rs`) around the
    /// load's phases; writes one line of `key=value` to `--out`.
    Measure {
        /// The tool's processes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        #[arg(long)]
        load_dir: PathBuf,
        /// Sizes of `*.open` and `*.sealed` under this directory after each phase.
        #[arg(long)]
        spool: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        idle_s: u64,
        #[arg(long, default_value_t = 20)]
        execs: u32,
        /// Wait after each phase, so what the tool buffered is counted.
        #[arg(long, default_value_t = 3000)]
        drain_ms: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a keyboard and follow a steps file (see `drive.rs`): type texts into whatever
    /// runs in a terminal's foreground, waiting between them for the foreground program, the
    /// terminal's echo flag or a file. Writes a mark per typed step to `--marks`.
    Drive {
        #[arg(long, default_value = devices::KEYBOARD_NAME)]
        name: String,
        /// The steps: `type LABEL FILE`, `fg EXE`, `echo on|off`, `file PATH`, `sleep MS`,
        /// `touch PATH`.
        #[arg(long)]
        steps: PathBuf,
        /// The terminal whose foreground and echo flag the steps wait for.
        #[arg(long, default_value = "/dev/tty1")]
        tty: PathBuf,
        #[arg(long, default_value_t = 20)]
        step_ms: u64,
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        #[arg(long, default_value_t = 500)]
        linger_ms: u64,
        /// Longest wait for one condition, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        #[arg(long)]
        sent: Option<PathBuf>,
        /// One JSON line per typed step: label, from_ns, to_ns (CLOCK_MONOTONIC), and the
        /// index and count of its events in `--sent`.
        #[arg(long)]
        marks: PathBuf,
    },
    /// Create a wheel mouse and a keyboard, write their event nodes to `--nodes`, wait until
    /// `--go` exists (so a server can be started on them first), then follow a pointer script
    /// (see `pointer.rs`): `move DX DY`, `press|release|click BTN`, `drag BTN DX DY STEPS`,
    /// `scroll N`, `hscroll N`, `type TEXT`, `key KEY`, `chord KEY+KEY`, `sleep MS`,
    /// `exec CMD`.
    PointerScript {
        #[arg(long)]
        script: PathBuf,
        #[arg(long, default_value = devices::MOUSE_NAME)]
        mouse_name: String,
        #[arg(long, default_value = devices::KEYBOARD_NAME)]
        keyboard_name: String,
        /// Written once both devices exist: `mouse /dev/input/eventN` and
        /// `keyboard /dev/input/eventM`, one a line.
        #[arg(long)]
        nodes: Option<PathBuf>,
        /// Wait until this file exists before the first step.
        #[arg(long)]
        go: Option<PathBuf>,
        /// Longest wait for `--go`, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Keep the devices alive this long after the last step.
        #[arg(long, default_value_t = 300)]
        linger_ms: u64,
        /// Every event sent (without SYN_REPORT), mouse first, one JSON object per line.
        #[arg(long)]
        sent: Option<PathBuf>,
        /// One JSON line per step: its line, from_ns, to_ns (CLOCK_MONOTONIC), and which
        /// device's events (`dev`, `first`, `count` in that device's part of `--sent`).
        #[arg(long)]
        marks: Option<PathBuf>,
    },
    /// Print the /dev/input/eventN node of the device with this name.
    Find { name: String },
}

/// Counts every event a reader of a node gets, on a thread that reads it every 5 ms (the
/// kernel's per-client buffer holds only 64 events).
struct EventCounter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<u64>>,
}

impl EventCounter {
    fn start(node: &Path) -> Result<EventCounter> {
        use std::sync::atomic::Ordering;
        let mut reader = open_reader(node)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || -> Result<u64> {
            let mut events = 0u64;
            loop {
                // Read once more after the stop flag, for what came before it.
                let last = stop2.load(Ordering::Acquire);
                loop {
                    match reader.fetch_events() {
                        Ok(batch) => {
                            for e in batch {
                                if e.event_type() == EventType::SYNCHRONIZATION && e.code() == 3 {
                                    bail!("the read-back lost events (SYN_DROPPED)");
                                }
                                events += 1;
                            }
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(err) => bail!("reading back events: {err}"),
                    }
                }
                if last {
                    return Ok(events);
                }
                sleep(Duration::from_millis(5));
            }
        });
        Ok(EventCounter { stop, thread })
    }

    fn finish(self) -> Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the read-back thread panicked"))?
    }
}

/// Waits until at least `n` other processes have `node` open (their `/proc/PID/fd` entries
/// link to it), polling every 20 ms for up to 60 s.
fn wait_for_readers(node: &Path, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let me = std::process::id().to_string();
    let started = std::time::Instant::now();
    loop {
        let mut readers = 0;
        for proc_entry in std::fs::read_dir("/proc")?.flatten() {
            let pid = proc_entry.file_name().to_string_lossy().into_owned();
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
                continue;
            };
            if fds
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == node))
            {
                readers += 1;
            }
        }
        if readers >= n {
            eprintln!(
                "imprint-vm-guest: {} open in {readers} other processes after {} ms",
                node.display(),
                started.elapsed().as_millis()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "{} is open in {readers} other processes after 60 s, want {n}",
                node.display()
            );
        }
        sleep(Duration::from_millis(20));
    }
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("imprint-vm-guest: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Type {
            name,
            text,
            backspaces,
            step_ms,
            settle_ms,
            await_readers,
            linger_ms,
            sent,
            readback,
        } => {
            let mut kb = devices::keyboard_named(&name, Duration::from_millis(step_ms))?;
            eprintln!("imprint-vm-guest: {name} is {}", kb.node().display());
            wait_for_readers(kb.node(), await_readers)?;
            // Open our own node before typing so the read-back sees everything from the start.
            let mut reader = match &readback {
                Some(_) => Some(open_reader(kb.node())?),
                None => None,
            };
            sleep(Duration::from_millis(settle_ms));
            kb.type_text(&text)?;
            for _ in 0..backspaces {
                kb.tap(KeyCode::KEY_BACKSPACE)?;
            }
            sleep(Duration::from_millis(linger_ms));
            if let Some(path) = &sent {
                write_sent(path, &[&kb])?;
            }
            if let (Some(path), Some(reader)) = (&readback, reader.as_mut()) {
                write_readback(path, reader)?;
            }
            Ok(())
        }
        Command::Record {
            recorder,
            out,
            sent,
        } => {
            let (kb, mouse) = record::run(&recorder, &out)?;
            if let Some(path) = &sent {
                write_sent(path, &[&kb, &mouse])?;
            }
            Ok(())
        }
        Command::Hold {
            name,
            text,
            hold,
            hold_ms,
            step_ms,
            settle_ms,
            await_readers,
            linger_ms,
            sent,
            count,
        } => {
            let mut kb =
                raw::RepeatKeyboard::create(&name, 0x0003, Duration::from_millis(step_ms))?;
            eprintln!(
                "imprint-vm-guest: {name} (autorepeat) is {}",
                kb.node.display()
            );
            wait_for_readers(&kb.node, await_readers)?;
            let counter = match &count {
                Some(_) => Some(EventCounter::start(&kb.node)?),
                None => None,
            };
            sleep(Duration::from_millis(settle_ms));
            for c in text.chars() {
                let stroke = keymap::stroke(c)?;
                if stroke.shift || stroke.ctrl {
                    bail!("hold: {c:?} needs a modifier; use lowercase text");
                }
                kb.tap(stroke.key)?;
            }
            let key = keymap::stroke(hold)?.key;
            kb.key(key, 1)?;
            sleep(Duration::from_millis(hold_ms));
            kb.key(key, 0)?;
            sleep(Duration::from_millis(linger_ms));
            if let Some(path) = &sent {
                let lines: Vec<String> = kb.sent.iter().map(|e| with_device(&kb.name, e)).collect();
                std::fs::write(path, lines.join("\n") + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let (Some(path), Some(counter)) = (&count, counter) {
                let events = counter.finish()?;
                std::fs::write(path, format!("events={events}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Flood {
            name,
            reports,
            burst,
            pause_us,
            settle_ms,
            linger_ms,
            count,
        } => {
            let mut kb = devices::keyboard_named(&name, Duration::ZERO)?;
            eprintln!("imprint-vm-guest: {name} is {}", kb.node().display());
            sleep(Duration::from_millis(settle_ms));
            let mut events = 0u64;
            for i in 0..reports {
                // Words: five A presses and a space. One endless run would be a token the
                // redaction holdback masks, and the test is of loss, not of redaction.
                let key = if (i / 2) % 6 == 5 {
                    KeyCode::KEY_SPACE
                } else {
                    KeyCode::KEY_A
                };
                kb.emit_key(key, i32::from(i % 2 == 0))?;
                events += 2;
                if pause_us > 0 && (i + 1) % burst.max(1) == 0 {
                    sleep(Duration::from_micros(pause_us));
                }
            }
            // Leave the key up.
            if reports % 2 == 1 {
                let key = if ((reports - 1) / 2) % 6 == 5 {
                    KeyCode::KEY_SPACE
                } else {
                    KeyCode::KEY_A
                };
                kb.emit_key(key, 0)?;
                events += 2;
            }
            sleep(Duration::from_millis(linger_ms));
            std::fs::write(&count, format!("events={events}\n"))
                .with_context(|| format!("writing {}", count.display()))?;
            Ok(())
        }
        Command::Load {
            dir,
            prefix,
            paced_reports,
            per_second,
            flood_reports,
        } => load::serve(
            &dir,
            &prefix,
            load::Pace {
                reports: paced_reports,
                per_second,
            },
            flood_reports,
        ),
        Command::Measure {
            pids,
            load_dir,
            spool,
            idle_s,
            execs,
            drain_ms,
            out,
        } => {
            let line = measure::run(&measure::Plan {
                pids,
                load_dir,
                spool,
                idle: Duration::from_secs(idle_s),
                execs,
                drain: Duration::from_millis(drain_ms),
            })?;
            std::fs::write(&out, format!("{line}\n"))
                .with_context(|| format!("writing {}", out.display()))
        }
        Command::Drive {
            name,
            steps,
            tty,
            step_ms,
            settle_ms,
            linger_ms,
            timeout_s,
            sent,
            marks,
        } => {
            let text = std::fs::read_to_string(&steps)
                .with_context(|| format!("reading {}", steps.display()))?;
            let steps = drive::parse(&text)?;
            let tty = drive::Terminal::open(&tty)?;
            let mut kb = devices::keyboard_named(&name, Duration::from_millis(step_ms))?;
            eprintln!("imprint-vm-guest: {name} is {}", kb.node().display());
            sleep(Duration::from_millis(settle_ms));
            // Whatever happens, write what was sent and typed so far: a failed wait is best
            // read next to the keys that led to it.
            let mut lines = String::new();
            let result = drive::run(
                &mut kb,
                &tty,
                &steps,
                Duration::from_secs(timeout_s),
                &mut lines,
            );
            sleep(Duration::from_millis(linger_ms));
            if let Some(path) = &sent {
                write_sent(path, &[&kb])?;
            }
            std::fs::write(&marks, lines)
                .with_context(|| format!("writing {}", marks.display()))?;
            result
        }
        Command::PointerScript {
            script,
            mouse_name,
            keyboard_name,
            nodes,
            go,
            timeout_s,
            linger_ms,
            sent,
            marks,
        } => {
            let text = std::fs::read_to_string(&script)
                .with_context(|| format!("reading {}", script.display()))?;
            let steps = pointer::parse(&text)?;
            let mut mouse = devices::pointer_named(&mouse_name, pointer::MOTION_STEP)?;
            let mut kb = devices::keyboard_named(&keyboard_name, Duration::from_millis(40))?;
            let listing = format!(
                "mouse {}\nkeyboard {}\n",
                mouse.node().display(),
                kb.node().display()
            );
            eprint!("imprint-vm-guest: pointer-script devices:\n{listing}");
            if let Some(path) = &nodes {
                // Written whole under another name first, so a reader never sees half of it.
                let partial = path.with_extension("partial");
                std::fs::write(&partial, &listing)
                    .with_context(|| format!("writing {}", partial.display()))?;
                std::fs::rename(&partial, path)
                    .with_context(|| format!("renaming to {}", path.display()))?;
            }
            if let Some(go) = &go {
                let deadline = std::time::Instant::now() + Duration::from_secs(timeout_s);
                while !go.exists() {
                    if std::time::Instant::now() > deadline {
                        bail!("{} did not appear within {timeout_s} s", go.display());
                    }
                    sleep(Duration::from_millis(20));
                }
            }
            let mut lines = String::new();
            let result = pointer::run(&mut mouse, &mut kb, &steps, &mut lines);
            sleep(Duration::from_millis(linger_ms));
            if let Some(path) = &sent {
                write_sent(path, &[&mouse, &kb])?;
            }
            if let Some(path) = &marks {
                std::fs::write(path, lines)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            result
        }
        Command::Find { name } => {
            println!("{}", devices::find_node_by_name(&name)?.display());
            Ok(())
        }
    }
}

fn open_reader(node: &Path) -> Result<evdev::Device> {
    let dev = evdev::Device::open(node)
        .with_context(|| format!("opening {} to read back", node.display()))?;
    dev.set_nonblocking(true)
        .context("making the read-back handle non-blocking")?;
    Ok(dev)
}

/// Writes `{"device":"<name>", "type":..., "code":..., "value":...}` lines for every event sent.
fn write_sent(path: &Path, devs: &[&Driven]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for dev in devs {
        for event in &dev.sent {
            writeln!(out, "{}", with_device(dev.name(), event))?;
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// Drains every pending event from `reader` (SYN_REPORT left out) into `path`.
fn write_readback(path: &Path, reader: &mut evdev::Device) -> Result<()> {
    let name = reader.name().unwrap_or("?").to_owned();
    let mut lines = Vec::new();
    loop {
        match reader.fetch_events() {
            Ok(events) => {
                for event in events {
                    if event.event_type() == EventType::SYNCHRONIZATION {
                        continue;
                    }
                    let sent = Sent {
                        kind: event.event_type().0,
                        code: event.code(),
                        value: event.value(),
                    };
                    lines.push(with_device(&name, &sent));
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => bail!("reading back events: {err}"),
        }
    }
    std::fs::write(path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn with_device(name: &str, event: &Sent) -> String {
    let json = event.json();
    format!(r#"{{"device":"{name}",{}"#, &json[1..])
}
