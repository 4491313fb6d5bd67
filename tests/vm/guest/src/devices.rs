//! The virtual (uinput) devices the guest drives, and the actions it performs on them.
//!
//! Every action sleeps a little after each report so that recordings and captures carry real,
//! distinct timestamps. Every emitted event is also appended to a log so the caller can print
//! exactly what was sent.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use evdev::uinput::VirtualDevice;
use evdev::{AttributeSet, BusType, EventType, InputEvent, InputId, KeyCode, RelativeAxisCode};

use crate::keymap;

/// Name of the test keyboard. Tests find its node by this name, never by number.
pub const KEYBOARD_NAME: &str = "imprint-test-keyboard";
/// Name of the test mouse.
pub const MOUSE_NAME: &str = "imprint-test-mouse";

/// One emitted event, printed as a JSON line in the same shape `imprint dump` uses.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

impl Sent {
    pub fn json(&self) -> String {
        format!(
            r#"{{"type":"{}","code":"{}","value":{}}}"#,
            type_name(self.kind),
            code_name(self.kind, self.code),
            self.value
        )
    }
}

/// `EV_KEY`, `EV_REL`, ... for an event type number.
pub fn type_name(kind: u16) -> String {
    match EventType(kind) {
        EventType::SYNCHRONIZATION => "EV_SYN".into(),
        EventType::KEY => "EV_KEY".into(),
        EventType::RELATIVE => "EV_REL".into(),
        EventType::ABSOLUTE => "EV_ABS".into(),
        EventType::MISC => "EV_MSC".into(),
        EventType::REPEAT => "EV_REP".into(),
        EventType::LED => "EV_LED".into(),
        other => format!("EV_{:#x}", other.0),
    }
}

/// `KEY_A`, `BTN_LEFT`, `REL_X`, ... for a code of the given type.
pub fn code_name(kind: u16, code: u16) -> String {
    match EventType(kind) {
        EventType::KEY => format!("{:?}", KeyCode::new(code)),
        EventType::RELATIVE => format!("{:?}", RelativeAxisCode(code)),
        EventType::SYNCHRONIZATION if code == 0 => "SYN_REPORT".into(),
        _ => format!("{code}"),
    }
}

/// A uinput device plus the log of everything written to it.
pub struct Driven {
    dev: VirtualDevice,
    name: String,
    node: PathBuf,
    /// Pause after each report.
    pub step: Duration,
    pub sent: Vec<Sent>,
}

impl Driven {
    /// `/dev/input/eventN` of this device.
    pub fn node(&self) -> &Path {
        &self.node
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes one report (the events, then SYN_REPORT) and sleeps `step`.
    fn report(&mut self, events: &[(EventType, u16, i32)]) -> Result<()> {
        let batch: Vec<InputEvent> = events
            .iter()
            .map(|&(kind, code, value)| InputEvent::new(kind.0, code, value))
            .collect();
        self.dev
            .emit(&batch)
            .with_context(|| format!("writing {} events to {}", batch.len(), self.name))?;
        self.sent
            .extend(events.iter().map(|&(kind, code, value)| Sent {
                kind: kind.0,
                code,
                value,
            }));
        sleep(self.step);
        Ok(())
    }

    /// Writes one key report without logging it or sleeping (for floods).
    pub fn emit_key(&mut self, key: KeyCode, value: i32) -> Result<()> {
        self.dev
            .emit(&[InputEvent::new(EventType::KEY.0, key.code(), value)])
            .with_context(|| format!("writing to {}", self.name))
    }

    /// Writes one relative-axis report without logging it or sleeping (for floods).
    pub fn emit_rel(&mut self, axis: RelativeAxisCode, value: i32) -> Result<()> {
        self.dev
            .emit(&[InputEvent::new(EventType::RELATIVE.0, axis.0, value)])
            .with_context(|| format!("writing to {}", self.name))
    }

    pub fn key(&mut self, key: KeyCode, value: i32) -> Result<()> {
        self.report(&[(EventType::KEY, key.code(), value)])
    }

    /// Press and release `key`.
    pub fn tap(&mut self, key: KeyCode) -> Result<()> {
        self.key(key, 1)?;
        self.key(key, 0)
    }

    /// Types `text` on a US layout, holding left shift or left ctrl where a character needs
    /// it.
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        for c in text.chars() {
            let stroke = keymap::stroke(c)?;
            let held: Vec<KeyCode> = [
                (stroke.ctrl, KeyCode::KEY_LEFTCTRL),
                (stroke.shift, KeyCode::KEY_LEFTSHIFT),
            ]
            .into_iter()
            .filter_map(|(on, key)| on.then_some(key))
            .collect();
            for key in &held {
                self.key(*key, 1)?;
            }
            self.tap(stroke.key)?;
            for key in held.iter().rev() {
                self.key(*key, 0)?;
            }
        }
        Ok(())
    }

    /// Moves the pointer by (dx, dy) in one report. Zero components are left out, as the kernel
    /// would drop them anyway.
    pub fn motion(&mut self, dx: i32, dy: i32) -> Result<()> {
        let mut events = Vec::with_capacity(2);
        if dx != 0 {
            events.push((EventType::RELATIVE, RelativeAxisCode::REL_X.0, dx));
        }
        if dy != 0 {
            events.push((EventType::RELATIVE, RelativeAxisCode::REL_Y.0, dy));
        }
        if events.is_empty() {
            return Ok(());
        }
        self.report(&events)
    }

    /// One wheel detent: +1 is up (away from the user), -1 down.
    pub fn wheel(&mut self, detents: i32) -> Result<()> {
        self.report(&[(EventType::RELATIVE, RelativeAxisCode::REL_WHEEL.0, detents)])
    }

    /// Wheel detents the way a high-resolution wheel mouse reports them: the classic axis
    /// (`REL_WHEEL`, or `REL_HWHEEL` when `horizontal`) and its hi-res twin (120 per detent)
    /// in one report. Vertical +1 is up, horizontal +1 is right.
    pub fn wheel_hires(&mut self, detents: i32, horizontal: bool) -> Result<()> {
        let (lo, hi) = if horizontal {
            (
                RelativeAxisCode::REL_HWHEEL,
                RelativeAxisCode::REL_HWHEEL_HI_RES,
            )
        } else {
            (
                RelativeAxisCode::REL_WHEEL,
                RelativeAxisCode::REL_WHEEL_HI_RES,
            )
        };
        self.report(&[
            (EventType::RELATIVE, lo.0, detents),
            (EventType::RELATIVE, hi.0, detents * 120),
        ])
    }
}

fn input_id(product: u16) -> InputId {
    // pid.codes' test vendor id; BUS_VIRTUAL because that is what these devices are.
    InputId::new(BusType::BUS_VIRTUAL, 0x1209, product, 1)
}

/// A full-size keyboard: every key from KEY_ESC to KEY_MICMUTE, no EV_REP (so no autorepeat).
pub fn keyboard_named(name: &str, step: Duration) -> Result<Driven> {
    let keys: AttributeSet<KeyCode> = (KeyCode::KEY_ESC.code()..=KeyCode::KEY_MICMUTE.code())
        .map(KeyCode::new)
        .collect();
    let dev = VirtualDevice::builder()
        .context("opening /dev/uinput (is uinput.ko loaded?)")?
        .name(name)
        .input_id(input_id(0x0001))
        .with_keys(&keys)
        .context("setting keyboard keys")?
        .build()
        .context("creating the uinput keyboard")?;
    finish(dev, name, step)
}

/// A three-button wheel mouse.
pub fn mouse(step: Duration) -> Result<Driven> {
    mouse_named(MOUSE_NAME, step)
}

/// A three-button wheel mouse called `name`.
pub fn mouse_named(name: &str, step: Duration) -> Result<Driven> {
    let buttons: AttributeSet<KeyCode> =
        [KeyCode::BTN_LEFT, KeyCode::BTN_RIGHT, KeyCode::BTN_MIDDLE]
            .into_iter()
            .collect();
    let axes: AttributeSet<RelativeAxisCode> = [
        RelativeAxisCode::REL_X,
        RelativeAxisCode::REL_Y,
        RelativeAxisCode::REL_WHEEL,
    ]
    .into_iter()
    .collect();
    let dev = VirtualDevice::builder()
        .context("opening /dev/uinput (is uinput.ko loaded?)")?
        .name(name)
        .input_id(input_id(0x0002))
        .with_keys(&buttons)
        .context("setting mouse buttons")?
        .with_relative_axes(&axes)
        .context("setting mouse axes")?
        .build()
        .context("creating the uinput mouse")?;
    finish(dev, name, step)
}

/// A three-button mouse with vertical and horizontal wheels and their hi-res axes
/// (`REL_WHEEL_HI_RES`, `REL_HWHEEL_HI_RES`), like most current wheel mice.
pub fn pointer_named(name: &str, step: Duration) -> Result<Driven> {
    let buttons: AttributeSet<KeyCode> =
        [KeyCode::BTN_LEFT, KeyCode::BTN_RIGHT, KeyCode::BTN_MIDDLE]
            .into_iter()
            .collect();
    let axes: AttributeSet<RelativeAxisCode> = [
        RelativeAxisCode::REL_X,
        RelativeAxisCode::REL_Y,
        RelativeAxisCode::REL_WHEEL,
        RelativeAxisCode::REL_HWHEEL,
        RelativeAxisCode::REL_WHEEL_HI_RES,
        RelativeAxisCode::REL_HWHEEL_HI_RES,
    ]
    .into_iter()
    .collect();
    let dev = VirtualDevice::builder()
        .context("opening /dev/uinput (is uinput.ko loaded?)")?
        .name(name)
        .input_id(input_id(0x0004))
        .with_keys(&buttons)
        .context("setting pointer buttons")?
        .with_relative_axes(&axes)
        .context("setting pointer axes")?
        .build()
        .context("creating the uinput pointer")?;
    finish(dev, name, step)
}

fn finish(mut dev: VirtualDevice, name: &str, step: Duration) -> Result<Driven> {
    let node = event_node(&mut dev).with_context(|| format!("finding the event node of {name}"))?;
    Ok(Driven {
        dev,
        name: name.to_owned(),
        node,
        step,
        sent: Vec::new(),
    })
}

/// Waits until the device's `/dev/input/eventN` exists (devtmpfs creates it asynchronously).
fn event_node(dev: &mut VirtualDevice) -> Result<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let node = dev
            .enumerate_dev_nodes_blocking()
            .context("listing the uinput device's sysfs directory")?
            .filter_map(|entry| entry.ok())
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("event"))
            });
        if let Some(node) = node {
            if node.exists() {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            bail!("no /dev/input/event* node appeared within 10 s (is evdev.ko loaded?)");
        }
        sleep(Duration::from_millis(10));
    }
}

/// Finds `/dev/input/eventN` whose device is called `name`, via sysfs.
pub fn find_node_by_name(name: &str) -> Result<PathBuf> {
    let dir = Path::new("/sys/class/input");
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if !file.starts_with("event") {
            continue;
        }
        let found = std::fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if found.trim_end() == name {
            return Ok(Path::new("/dev/input").join(file));
        }
    }
    bail!("no input device named {name:?} under {}", dir.display())
}
