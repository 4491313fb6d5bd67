//! A real X server in the guest that takes its input from the kernel: Debian's `Xorg` with the
//! dummy video driver (a 1280x800 framebuffer in memory) and `xf86-input-libinput` reading the
//! guest's uinput devices through their `/dev/input/eventN` nodes. Tests can then compare what
//! was sent (or what a capture tool recorded) with what X itself reports: `xdotool
//! getmouselocation` for the pointer position, `xinput test-xi2 --root` for every XI2 event with
//! its root coordinates.
//!
//! There is no udev in the guest, so the server does not hot-plug anything (`AutoAddDevices
//! off`): each device has an `InputDevice` section, and [`start`] writes the udev database
//! entries libinput reads (`/run/udev/data/c13:N`: `ID_INPUT`, `ID_INPUT_MOUSE` or
//! `ID_INPUT_KEY`/`ID_INPUT_KEYBOARD`, the `seat` tag) before it starts the server. libinput's
//! path backend waits for a device to be "initialized", which libudev takes to mean "has a
//! database file". Pointers use libinput's flat acceleration profile with speed 0, whose factor
//! is exactly 1, so one device unit moves the pointer one pixel.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::harness::{shell_quote, Initramfs, Vm};

/// The screen the dummy driver provides.
pub const SCREEN: (i32, i32) = (1280, 800);
/// The display the server runs on.
pub const DISPLAY: &str = ":0";
/// Where [`start`] writes the configuration in the guest.
pub const CONF_PATH: &str = "/etc/X11/imprint-xorg.conf";
/// How long [`start`] waits for the server to list every input (about 3 s here under TCG).
pub const START_TIMEOUT_S: u32 = 60;
/// Guest RAM for a VM with the server in it.
pub const MEMORY_MB: u32 = 1024;
/// The server's log in the guest (`-logfile`).
pub const LOG_PATH: &str = "/tmp/Xorg.0.log";

/// Host files the server needs, beyond the dynamic libraries of the executables.
const XORG: &str = "/usr/lib/xorg/Xorg";
const MODULES: [&str; 2] = [
    "/usr/lib/xorg/modules/input/libinput_drv.so",
    "/usr/lib/xorg/modules/drivers/dummy_drv.so",
];
const CLIENTS: [&str; 3] = ["/usr/bin/xkbcomp", "/usr/bin/xinput", "/usr/bin/xdotool"];
const PACKAGES: &str =
    "xserver-xorg-core xserver-xorg-input-libinput xserver-xorg-video-dummy xinput xdotool";

/// Copies Xorg, the two driver modules, the XKB data and compiler, `xinput` and `xdotool`
/// with all their libraries into the initramfs (about 22 MB in all).
pub fn install(fs: &mut Initramfs) -> Result<()> {
    for path in std::iter::once(XORG).chain(MODULES).chain(CLIENTS) {
        if !Path::new(path).exists() {
            bail!("{path} is missing; apt-get install {PACKAGES} (or run tests/setup.sh)");
        }
        fs.copy_dynamic(Path::new(path))
            .with_context(|| format!("copying {path} and its libraries"))?;
    }
    // The keymap sources (Xorg runs xkbcomp on them at startup) and libinput's device quirks.
    fs.copy_tree(Path::new("/usr/share/X11/xkb"))?;
    fs.copy_tree(Path::new("/usr/share/libinput"))?;
    // xkbcomp writes the compiled keymap here.
    fs.dir("/var/lib/xkb");
    fs.dir("/run/udev/data");
    fs.dir("/tmp/.X11-unix");
    Ok(())
}

/// A VM with the X server installed (and a longer timeout: it takes a few seconds to start
/// under TCG).
pub fn vm(name: &str) -> Result<Vm> {
    // 512 MB is not enough: the unpacked initramfs (about 35 MB, twice while it is unpacked)
    // plus the server's framebuffer and keymap compilation ran out of memory.
    let mut vm = Vm::new(name)
        .timeout(std::time::Duration::from_secs(180))
        .memory_mb(MEMORY_MB);
    install(vm.initramfs())?;
    Ok(vm)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Keyboard,
    Pointer,
}

/// A uinput device the guest creates, which the server is to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The device's name, as in `/sys/class/input/eventN/device/name`.
    pub name: String,
    pub kind: Kind,
}

impl Input {
    pub fn keyboard(name: &str) -> Self {
        Input {
            name: name.to_owned(),
            kind: Kind::Keyboard,
        }
    }

    pub fn pointer(name: &str) -> Self {
        Input {
            name: name.to_owned(),
            kind: Kind::Pointer,
        }
    }

    /// What [`start`] passes to [`conf`] for input `index`, and replaces in the guest with the
    /// device's event node once it has found it.
    fn placeholder(index: usize) -> String {
        format!("@imprint-xorg-device-{index}@")
    }

    /// The udev database entry libinput needs to take the device.
    fn udev_data(&self) -> &'static str {
        match self.kind {
            Kind::Pointer => "E:ID_INPUT=1\\nE:ID_INPUT_MOUSE=1\\nG:seat\\nQ:seat\\nV:1\\n",
            Kind::Keyboard => {
                "E:ID_INPUT=1\\nE:ID_INPUT_KEY=1\\nE:ID_INPUT_KEYBOARD=1\\nG:seat\\nQ:seat\\nV:1\\n"
            }
        }
    }
}

/// The server's configuration: the dummy driver at 1280x800, no hot-plugging, no VT switching,
/// no screen blanking, and one libinput `InputDevice` per input (the first pointer and the
/// first keyboard are the core devices). Input `i` is read from `devices[i]`, its event node
/// itself (`/dev/input/eventN`): xf86-input-libinput finds the device libinput asks it to open
/// by comparing that path with its `Device` option, and libinput asks for the node udev names,
/// never a symlink to it ("Failed to look up path").
pub fn conf(inputs: &[Input], devices: &[String]) -> String {
    let (w, h) = SCREEN;
    let mut out = format!(
        r#"Section "ServerFlags"
    Option "AutoAddDevices" "off"
    # Unflushed, the log stops at a 4 KiB boundary, which hides the end of a failed start.
    Option "Log" "flush"
    Option "DontVTSwitch" "on"
    Option "DontZap" "on"
    Option "BlankTime" "0"
    Option "StandbyTime" "0"
    Option "SuspendTime" "0"
    Option "OffTime" "0"
EndSection

Section "Module"
    Disable "glx"
EndSection

Section "Device"
    Identifier "dummy"
    Driver "dummy"
    VideoRam 16384
EndSection

Section "Monitor"
    Identifier "monitor"
    HorizSync 5.0 - 1000.0
    VertRefresh 5.0 - 200.0
    Modeline "{w}x{h}" 83.50 1280 1352 1480 1680 800 803 809 831 -hsync +vsync
EndSection

Section "Screen"
    Identifier "screen"
    Device "dummy"
    Monitor "monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Modes "{w}x{h}"
        Virtual {w} {h}
    EndSubSection
EndSection
"#
    );
    for (i, input) in inputs.iter().enumerate() {
        let extra = match input.kind {
            // Flat profile, speed 0: libinput's factor is exactly 1 (device units = pixels).
            Kind::Pointer => concat!(
                "    Option \"AccelProfile\" \"flat\"\n",
                "    Option \"AccelSpeed\" \"0\"\n"
            ),
            Kind::Keyboard => concat!(
                "    Option \"XkbRules\" \"evdev\"\n",
                "    Option \"XkbModel\" \"pc105\"\n",
                "    Option \"XkbLayout\" \"us\"\n"
            ),
        };
        out.push_str(&format!(
            "\nSection \"InputDevice\"\n    Identifier {name}\n    Driver \"libinput\"\n    \
             Option \"Device\" \"{link}\"\n{extra}EndSection\n",
            name = conf_string(&input.name),
            link = devices.get(i).map_or("", String::as_str),
        ));
    }
    out.push_str("\nSection \"ServerLayout\"\n    Identifier \"layout\"\n    Screen \"screen\"\n");
    let mut core = [false, false];
    for input in inputs {
        let (slot, role) = match input.kind {
            Kind::Pointer => (0, "CorePointer"),
            Kind::Keyboard => (1, "CoreKeyboard"),
        };
        let role = if core[slot] { "SendCoreEvents" } else { role };
        core[slot] = true;
        out.push_str(&format!(
            "    InputDevice {} \"{role}\"\n",
            conf_string(&input.name)
        ));
    }
    out.push_str("EndSection\n");
    out
}

fn conf_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Guest shell lines that start the pointer-script driver on `script` in the background (its
/// pid in `$driver`; it waits for `/tmp/go`) and wait until its devices exist.
pub fn driver(script: &str, mouse: &str, keyboard: &str) -> String {
    format!(
        r#"imprint-vm-guest pointer-script --script {script} --mouse-name {mouse} \
    --keyboard-name {keyboard} --nodes /tmp/nodes --go /tmp/go --sent /tmp/sent.jsonl \
    --marks /tmp/marks.jsonl > /tmp/driver.log 2>&1 &
driver=$!
i=0
while [ ! -f /tmp/nodes ]; do
    i=$((i + 1))
    if [ $i -gt 500 ]; then echo "the driver made no devices"; cat /tmp/driver.log; exit 1; fi
    sleep 0.02
done
"#
    )
}

/// A guest shell snippet, to run once the uinput devices exist: finds each input's event node
/// by name under /sys/class/input (waiting up to 10 s), writes its udev database entry, writes
/// [`conf`] with the nodes it found to [`CONF_PATH`], starts `Xorg :0` in the
/// background (`$xorg_pid`), waits up to 60 s until `xinput list` names every input, and
/// exports `DISPLAY=:0`. If the server does not come up, it prints its log as section
/// `xorg-log` and exits 1.
pub fn start(inputs: &[Input]) -> String {
    let mut out = String::from(
        r#"# xorg::start
xorg_find() {
    xorg_i=0
    while [ $xorg_i -lt 500 ]; do
        for xorg_d in /sys/class/input/event*; do
            if [ "$(cat $xorg_d/device/name 2>/dev/null)" = "$1" ]; then
                echo "${xorg_d##*/}"
                return 0
            fi
        done
        sleep 0.02
        xorg_i=$((xorg_i + 1))
    done
    echo "xorg: no input device named $1 under /sys/class/input" >&2
    return 1
}
mkdir -p /run/udev/data /var/lib/xkb /tmp/.X11-unix /etc/X11
"#,
    );
    for (i, input) in inputs.iter().enumerate() {
        out.push_str(&format!(
            "xorg_ev=$(xorg_find {name}) || exit 1\n\
             xorg_dev{i}=/dev/input/$xorg_ev\n\
             printf '{data}' > /run/udev/data/c$(cat /sys/class/input/$xorg_ev/dev)\n\
             echo \"xorg: \"{name}\" is /dev/input/$xorg_ev\"\n",
            name = shell_quote(&input.name),
            data = input.udev_data(),
        ));
    }
    let placeholders: Vec<String> = (0..inputs.len()).map(Input::placeholder).collect();
    out.push_str(&format!(
        "cat > {CONF_PATH} <<'XORG_CONF_EOF'\n{}XORG_CONF_EOF\n",
        conf(inputs, &placeholders)
    ));
    for (i, placeholder) in placeholders.iter().enumerate() {
        out.push_str(&format!(
            "sed -i \"s|{placeholder}|$xorg_dev{i}|\" {CONF_PATH}\n"
        ));
    }
    out.push_str(&format!(
        r#"{XORG} {DISPLAY} -nolisten tcp -noreset -novtswitch -config {CONF_PATH} -logfile {LOG_PATH} vt2 \
    > /tmp/Xorg.out 2>&1 &
xorg_pid=$!
export DISPLAY={DISPLAY}
xorg_t0=$(cut -d. -f1 /proc/uptime)
xorg_i=0
while :; do
    # A client that connects while the server still initialises waits for it: bound each try.
    xorg_names=$(timeout 5 xinput list --name-only 2>/dev/null)
    xorg_missing=""
"#
    ));
    for input in inputs {
        out.push_str(&format!(
            "    echo \"$xorg_names\" | grep -qxF {name} || xorg_missing=\"$xorg_missing \"{name}\n",
            name = shell_quote(&input.name)
        ));
    }
    out.push_str(&format!(
        r#"    if [ -n "$xorg_names" ] && [ -z "$xorg_missing" ]; then break; fi
    xorg_i=$((xorg_i + 1))
    xorg_t=$(( $(cut -d. -f1 /proc/uptime) - xorg_t0 ))
    if [ $xorg_t -gt {START_TIMEOUT_S} ] || ! kill -0 $xorg_pid 2>/dev/null; then
        echo "xorg: the server did not come up with every input within $xorg_t s (missing:$xorg_missing)"
        cat /tmp/Xorg.out
        # Where a server that is still alive waits, and what it has open.
        ps
        echo "xorg: wchan $(cat /proc/$xorg_pid/wchan 2>/dev/null), syscall $(cat /proc/$xorg_pid/syscall 2>/dev/null)"
        ls -l /proc/$xorg_pid/fd 2>/dev/null
        for t in /proc/$xorg_pid/task/*; do echo "xorg: thread $t $(cat $t/comm) $(cat $t/wchan)"; done
        timeout 5 xinput list; echo "xorg: xinput list: $?"
        section xorg-log {LOG_PATH}
        exit 1
    fi
    sleep 0.1
done
echo "xorg: up after $xorg_t s ($xorg_i polls)"
"#
    ));
    out
}

/// A guest shell snippet that stops the server [`start`] started (SIGTERM, then SIGKILL after
/// 10 s) and waits for it.
pub fn stop() -> String {
    r#"# xorg::stop
kill -TERM $xorg_pid 2>/dev/null
( sleep 10; kill -KILL $xorg_pid 2>/dev/null ) &
xorg_watchdog=$!
wait $xorg_pid
kill $xorg_watchdog 2>/dev/null
"#
    .to_owned()
}

/// The position in `xdotool getmouselocation` output (`x:100 y:200 screen:0 window:1234`).
pub fn mouse_location(text: &str) -> Result<(i32, i32)> {
    let field = |key: &str| -> Result<i32> {
        let value = text
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .with_context(|| format!("no {key} in {text:?}"))?;
        value
            .parse()
            .with_context(|| format!("{key}{value} in {text:?} is not a number"))
    };
    Ok((field("x:")?, field("y:")?))
}

/// One event as `xinput test-xi2` prints it. There is no timestamp: xinput 1.6.3 does not
/// print the event's server time, so events can be matched only by order, kind and place.
#[derive(Debug, Clone, PartialEq)]
pub struct Xi2Event {
    /// The XI2 event type number (2 KeyPress, 4 ButtonPress, 6 Motion, 15 RawButtonPress...).
    pub type_id: u32,
    /// Its name: `KeyPress`, `ButtonPress`, `Motion`, ...
    pub kind: String,
    /// The device the event is delivered for (a master: 2 is the core pointer, 3 the core
    /// keyboard; or, for events selected on slaves, the slave itself).
    pub device: Option<u32>,
    /// The slave device it came from.
    pub source: Option<u32>,
    /// The button number or X keycode (evdev code + 8).
    pub detail: Option<u32>,
    /// The `flags:` line (e.g. `emulated` for wheel buttons made from smooth scrolling).
    pub flags: String,
    /// Root window coordinates (fractional for sub-pixel motion), for device events; raw and
    /// hierarchy events have none.
    pub root_x: Option<f64>,
    pub root_y: Option<f64>,
}

impl Xi2Event {
    /// Delivered for a master device (as a client that selects on the core devices sees it),
    /// as opposed to a copy for the slave that produced it.
    pub fn for_master(&self) -> bool {
        self.device.is_some() && self.device != self.source
    }

    /// Root coordinates as whole pixels, if they are whole.
    pub fn root_px(&self) -> Option<(i32, i32)> {
        let (x, y) = (self.root_x?, self.root_y?);
        (x.fract() == 0.0 && y.fract() == 0.0).then_some((x as i32, y as i32))
    }
}

/// Parses `xinput test-xi2 [--root]` output: blocks that start with `EVENT type N (Name)` and
/// carry indented `device: A (B)`, `detail: D`, `flags: ...`, `root: X/Y` lines. Anything
/// outside a block is skipped.
pub fn xi2_events(text: &str) -> Vec<Xi2Event> {
    let mut events = Vec::new();
    let mut current: Option<Xi2Event> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("EVENT type ") {
            events.extend(current.take());
            let (num, name) = rest.split_once(' ').unwrap_or((rest, ""));
            let Ok(type_id) = num.parse() else { continue };
            current = Some(Xi2Event {
                type_id,
                kind: name
                    .trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .to_owned(),
                device: None,
                source: None,
                detail: None,
                flags: String::new(),
                root_x: None,
                root_y: None,
            });
            continue;
        }
        let Some(event) = current.as_mut() else {
            continue;
        };
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("device: ") {
            let mut words = rest.split_whitespace();
            event.device = words.next().and_then(|w| w.parse().ok());
            event.source = words
                .next()
                .and_then(|w| w.trim_matches(['(', ')']).parse().ok());
        } else if let Some(rest) = line.strip_prefix("detail: ") {
            event.detail = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("flags:") {
            event.flags = rest.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("root: ") {
            if let Some((x, y)) = rest.split_once('/') {
                event.root_x = x.trim().parse().ok();
                event.root_y = y.trim().parse().ok();
            }
        }
    }
    events.extend(current);
    events
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parses_mouse_location() {
        assert_eq!(
            mouse_location("x:433 y:30 screen:0 window:1293\n").unwrap(),
            (433, 30)
        );
        assert_eq!(mouse_location("x:0 y:0 screen:0 window:1").unwrap(), (0, 0));
        assert!(mouse_location("Can't open display").is_err());
        assert!(mouse_location("x:a y:1").is_err());
    }

    #[test]
    fn parses_xi2_blocks() {
        let text = "\
EVENT type 15 (RawButtonPress)
    device: 2 (11)
    detail: 1
    flags: 
    valuators:

EVENT type 4 (ButtonPress)
    device: 2 (11)
    detail: 1
    flags: 
    root: 433.00/30.00
    event: 433.00/30.00
    buttons:
    modifiers: locked 0 latched 0 base 0 effective: 0
    windows: root 0x50d event 0x50d child 0x0
EVENT type 4 (ButtonPress)
    device: 11 (11)
    detail: 4
    flags: emulated
    root: 433.50/30.25
";
        let events = xi2_events(text);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].kind, "RawButtonPress");
        assert_eq!((events[0].root_x, events[0].root_y), (None, None));
        assert_eq!(events[1].type_id, 4);
        assert_eq!(events[1].kind, "ButtonPress");
        assert_eq!((events[1].device, events[1].source), (Some(2), Some(11)));
        assert_eq!(events[1].detail, Some(1));
        assert_eq!(events[1].root_px(), Some((433, 30)));
        assert!(events[1].for_master());
        assert!(!events[2].for_master());
        assert_eq!(events[2].flags, "emulated");
        assert_eq!(
            (events[2].root_x, events[2].root_y),
            (Some(433.5), Some(30.25))
        );
        assert_eq!(events[2].root_px(), None);
    }

    #[test]
    fn conf_has_a_section_per_input_and_core_roles() {
        let devices: Vec<String> = (3..6).map(|n| format!("/dev/input/event{n}")).collect();
        let conf = conf(
            &[
                Input::pointer("p1"),
                Input::keyboard("k1"),
                Input::pointer("p2"),
            ],
            &devices,
        );
        assert!(conf.contains("Option \"AutoAddDevices\" \"off\""));
        assert!(conf.contains("Option \"Device\" \"/dev/input/event5\""));
        assert_eq!(conf.matches("Section \"InputDevice\"").count(), 3);
        assert_eq!(conf.matches("\"AccelProfile\" \"flat\"").count(), 2);
        assert!(conf.contains("InputDevice \"p1\" \"CorePointer\""));
        assert!(conf.contains("InputDevice \"k1\" \"CoreKeyboard\""));
        assert!(conf.contains("InputDevice \"p2\" \"SendCoreEvents\""));
    }
}

/// Positions, in order, where the script asks `xdotool getmouselocation`, and what the
/// script's relative moves must have produced there (the first one is the corner the pointer
/// is pushed into; the fourth is the screen's far corner, past which the pointer cannot go).
const SCRIPT: &str = r#"# To a known origin: far past the top-left corner.
move -2000 -2000
exec xdotool getmouselocation > /tmp/xloc/0
move 100 50
exec xdotool getmouselocation > /tmp/xloc/1
move 333 -20
click left
move -133 470
click right
# A fast drag: about 36 units a report, which any accelerated profile would scale.
drag left 250 100 7
exec xdotool getmouselocation > /tmp/xloc/2
move 7 3
move 1 0
move 1 0
move 1 0
move 0 -1
click middle
move 2000 2000
exec xdotool getmouselocation > /tmp/xloc/3
move -279 -299
exec xdotool getmouselocation > /tmp/xloc/4
scroll 2
hscroll -1
type hi X1!
chord ctrl+s
sleep 300
exec xdotool getmouselocation > /tmp/xloc/5
"#;

/// Where each `getmouselocation` of [`SCRIPT`] must find the pointer.
const LOCATIONS: [(i32, i32); 6] = [
    (0, 0),
    (100, 50),
    (550, 600),
    (SCREEN.0 - 1, SCREEN.1 - 1),
    (1000, 500),
    (1000, 500),
];

/// Evdev codes of the keys [`SCRIPT`] presses, in order: `hi X1!` (h, i, space, shift, x, 1,
/// shift, 1) and ctrl+s. X's keycodes are these plus 8.
const KEYS_PRESSED: [u32; 10] = [35, 23, 57, 42, 45, 2, 42, 2, 29, 31];

/// A real Xorg reads the guest's uinput mouse and keyboard through libinput: the pointer moves
/// exactly as far as the device said (flat profile, speed 0: 1 unit = 1 pixel, also for a
/// fast drag), stops at the screen's edges, and every button and key press arrives with the
/// root coordinates the moves lead to.
#[test]
fn xorg_takes_input_from_uinput() {
    const MOUSE: &str = "imprint-test-mouse";
    const KEYBOARD: &str = "imprint-test-keyboard";
    let inputs = [Input::pointer(MOUSE), Input::keyboard(KEYBOARD)];
    let script = format!(
        r#"export DISPLAY={DISPLAY}
mkdir -p /tmp/xloc
{driver}{start}
xinput list > /tmp/xinput-list.txt 2>&1
xinput list --id-only {MOUSE} > /tmp/ids
xinput list --id-only {KEYBOARD} >> /tmp/ids
xinput list-props {MOUSE} > /tmp/mouse-props.txt 2>&1
xinput test-xi2 --root > /tmp/xi2.txt 2>&1 &
xi2=$!
# Wait until test-xi2 has selected its events: XTest moves (alternating, so each one moves)
# until it reports one. The script's first step then pushes the pointer to the corner anyway.
i=0
until grep -q '(Motion)' /tmp/xi2.txt; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "xinput test-xi2 reported no motion"; break; fi
    xdotool mousemove $((3 + i % 2)) 3
    sleep 0.1
done
touch /tmp/go
wait $driver
driver_rc=$?
sleep 0.5
kill $xi2
{stop}
# Only what the host checks: device events other than motion, and their key lines.
awk '/^EVENT type/ {{ keep = ($0 !~ /Raw|Motion|DeviceChanged/) }}
    keep && (/^EVENT/ || /^ *(device|detail|flags|root):/)' /tmp/xi2.txt > /tmp/xi2-kept.txt
grep -c 'EVENT type 6 (Motion)' /tmp/xi2.txt > /tmp/motions
for f in /tmp/xloc/*; do echo "${{f##*/}} $(cat $f)"; done > /tmp/locs
section xorg-log {LOG_PATH}
section xinput-list /tmp/xinput-list.txt
section mouse-props /tmp/mouse-props.txt
section marks /tmp/marks.jsonl
section driver-log /tmp/driver.log
section ids /tmp/ids
section motions /tmp/motions
section xi2 /tmp/xi2-kept.txt
section locs /tmp/locs
exit $driver_rc
"#,
        driver = driver("/etc/imprint-test/pointer.txt", MOUSE, KEYBOARD),
        start = start(&inputs),
        stop = stop(),
    );
    let vm = vm("xorg_takes_input_from_uinput")
        .unwrap_or_else(|err| panic!("putting Xorg into the initramfs: {err:#}"))
        .file("/etc/imprint-test/pointer.txt", SCRIPT, 0o644)
        .script(&script);
    let run = vm.run().unwrap_or_else(|err| panic!("{err:#}"));
    run.assert_success();

    // Where X put the pointer, by xdotool.
    let locs: Vec<(usize, (i32, i32))> = run
        .section("locs")
        .lines()
        .map(|line| {
            let (n, text) = line.split_once(' ').unwrap_or((line, ""));
            match (n.parse(), mouse_location(text)) {
                (Ok(n), Ok(at)) => (n, at),
                (_, Err(err)) => run.fail(&format!("section locs: {err:#}")),
                (Err(_), _) => run.fail(&format!("section locs: bad line {line:?}")),
            }
        })
        .collect();
    let want: Vec<(usize, (i32, i32))> = LOCATIONS.iter().copied().enumerate().collect();
    if locs != want {
        run.fail(&format!(
            "pointer positions X reported (xdotool getmouselocation), as (step, (x, y)):\n   \
             got: {locs:?}\n  want: {want:?}\n(mouse properties:\n{})",
            run.section("mouse-props")
        ));
    }

    let ids: Vec<u32> = run
        .section("ids")
        .lines()
        .map(|l| match l.trim().parse() {
            Ok(id) => id,
            Err(_) => run.fail(&format!("section ids: not a device id: {l:?}")),
        })
        .collect();
    let [mouse_id, kb_id] = ids[..] else {
        run.fail(&format!("section ids: want two ids, got {ids:?}"))
    };
    let motions: u32 = run.section("motions").trim().parse().unwrap_or(0);
    if motions < 10 {
        run.fail(&format!("xinput test-xi2 saw {motions} Motion events"));
    }

    // What X delivered for the core devices, from our devices.
    let events = xi2_events(run.section("xi2"));
    let of = |source: u32, kinds: &[&str], emulated: bool| -> Vec<(String, u32, (i32, i32))> {
        events
            .iter()
            .filter(|e| e.for_master() && e.source == Some(source))
            .filter(|e| kinds.contains(&e.kind.as_str()))
            .filter(|e| e.flags.contains("emulated") == emulated)
            .map(|e| match (e.detail, e.root_px()) {
                (Some(detail), Some(at)) => (e.kind.clone(), detail, at),
                _ => run.fail(&format!(
                    "an XI2 event without detail or whole root pixels: {e:?}"
                )),
            })
            .collect()
    };
    let ev = |kind: &str, detail: u32, at: (i32, i32)| (kind.to_owned(), detail, at);
    let buttons = of(mouse_id, &["ButtonPress", "ButtonRelease"], false);
    let want = vec![
        ev("ButtonPress", 1, (433, 30)),
        ev("ButtonRelease", 1, (433, 30)),
        ev("ButtonPress", 3, (300, 500)),
        ev("ButtonRelease", 3, (300, 500)),
        ev("ButtonPress", 1, (300, 500)),
        ev("ButtonRelease", 1, (550, 600)),
        ev("ButtonPress", 2, (560, 602)),
        ev("ButtonRelease", 2, (560, 602)),
    ];
    if buttons != want {
        run.fail(&format!(
            "button events X delivered from {MOUSE} (device {mouse_id}), as (kind, button, \
             root):\n   got: {buttons:?}\n  want: {want:?}"
        ));
    }
    // Wheel detents become X's emulated buttons 4 (up) and 6 (left), from the hi-res axes.
    let wheel: Vec<(String, u32, (i32, i32))> = of(mouse_id, &["ButtonPress"], true);
    let want = vec![
        ev("ButtonPress", 4, (1000, 500)),
        ev("ButtonPress", 4, (1000, 500)),
        ev("ButtonPress", 6, (1000, 500)),
    ];
    if wheel != want {
        run.fail(&format!(
            "emulated wheel button presses from {MOUSE}:\n   got: {wheel:?}\n  want: {want:?}"
        ));
    }
    let keys = of(kb_id, &["KeyPress"], false);
    let want: Vec<_> = KEYS_PRESSED
        .iter()
        .map(|code| ev("KeyPress", code + 8, (1000, 500)))
        .collect();
    if keys != want {
        run.fail(&format!(
            "key presses X delivered from {KEYBOARD} (device {kb_id}), as (kind, X keycode, \
             root):\n   got: {keys:?}\n  want: {want:?}"
        ));
    }
    let releases = of(kb_id, &["KeyRelease"], false).len();
    if releases != KEYS_PRESSED.len() {
        run.fail(&format!(
            "{releases} key releases from {KEYBOARD}, want {}",
            KEYS_PRESSED.len()
        ));
    }
}
