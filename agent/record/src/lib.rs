//! The records that cross stage boundaries (source → collector → ring → agent → spool),
//! defined once. Their wire form is the Cap'n Proto schema in `capnp/`; see [`codec`].

pub mod codec;
pub mod names;
pub mod screen_codec;
pub mod wire;

use imprint_common::RawInput;
use serde::Serialize;

/// Where a record's events came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Unknown,
    Evdev,
    Ebpf,
    Replay,
}

/// One input event, tagged with its device and the focus in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputEvent {
    pub mono_ns: u64,
    pub device: u32,
    pub kind: u16,
    pub code: u16,
    pub value: i32,
    /// Focus sequence in force (0 while focus is unknown).
    pub focus: u64,
}

impl From<RawInput> for InputEvent {
    fn from(r: RawInput) -> Self {
        InputEvent {
            mono_ns: r.mono_ns,
            device: r.device,
            kind: r.kind,
            code: r.code,
            value: r.value,
            focus: 0,
        }
    }
}

/// An input device in the collector's device table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub index: u32,
    pub name: String,
    pub bus: u16,
    pub vendor: u16,
    pub product: u16,
    pub version: u16,
    pub phys: String,
    /// uinput or otherwise injected rather than physical hardware.
    pub is_virtual: bool,
    pub node: String,
    pub removed: bool,
    pub mono_ns: u64,
    pub source: Source,
}

/// The stage at which events were lost; mirrors `Stage` in the schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    Unknown,
    BpfReserve,
    RingFull,
    EvdevSynDropped,
    Policy,
    Disk,
    RingCorrupt,
    SpoolCorrupt,
    SpoolTorn,
    Paused,
    /// The disk budget forced deleting a spool segment that was not yet shipped.
    Retention,
    /// The collector died without closing its ring; what it held, and input until its
    /// restart, was not captured. The count is 0: nobody can know it.
    CollectorCrash,
    /// A ring was replaced before the agent had read all of it; the count is in frames.
    RingReplaced,
}

impl Stage {
    /// The label used in metrics and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Unknown => "unknown",
            Stage::BpfReserve => "bpf_reserve",
            Stage::RingFull => "ring_full",
            Stage::EvdevSynDropped => "evdev_syn_dropped",
            Stage::Policy => "policy",
            Stage::Disk => "disk",
            Stage::RingCorrupt => "ring_corrupt",
            Stage::SpoolCorrupt => "spool_corrupt",
            Stage::SpoolTorn => "spool_torn",
            Stage::Paused => "paused",
            Stage::Retention => "retention",
            Stage::CollectorCrash => "collector_crash",
            Stage::RingReplaced => "ring_replaced",
        }
    }
}

/// `Gap::device` when a loss concerns no single device.
pub const NO_DEVICE: u32 = u32::MAX;

/// A counted loss of events between two instants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gap {
    pub from_ns: u64,
    pub to_ns: u64,
    pub stage: Stage,
    pub count: u64,
    pub device: u32,
}

/// The application that had focus from `mono_ns` on; events carry its `seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FocusInfo {
    /// Increases with every focus change within one collector run; 0 means "unknown".
    pub seq: u64,
    pub mono_ns: u64,
    pub pid: u32,
    /// Process start time in clock ticks since boot (with `pid`, a unique process identity).
    pub start_time: u64,
    pub exe: String,
    pub app_id: String,
    pub unit: String,
    pub cgroup: String,
    pub uid: u32,
    pub session: String,
    pub seat: String,
    /// Only filled when titles are enabled by configuration.
    pub title: String,
    pub wm_class: String,
    /// The pid came from the display server or kernel, not from the client's own claim.
    pub pid_verified: bool,
    /// Which tracker reported it (x11, sway, hyprland, gnome, kde, tty).
    pub tracker: String,
    /// Focus is not known (no tracker, or it lost its display server).
    pub unknown: bool,
    /// For a terminal window: the terminal emulator (pid/exe are its foreground program).
    pub terminal_pid: u32,
    pub terminal_exe: String,
    /// Only filled when enabled by configuration: command lines can hold secrets.
    pub cmdline: String,
    /// For a terminal program: how its tty reads input (a password prompt is `NoEcho`).
    pub tty: TtyMode,
    /// The session is locked (a lock screen is up, or logind's LockedHint).
    pub locked: bool,
    pub locked_by: String,
    /// The focused accessible is a password field (AT-SPI role `password text`).
    pub secure_field: bool,
    /// The focused accessible's role name, when known.
    pub role: String,
    /// Who reported this focus: `session` (an imprint-session helper) or `inproc`.
    pub reporter: String,
    /// The helper's uid, from the kernel (SO_PEERCRED), not from the message.
    pub reporter_uid: u32,
    /// Why focus is unknown (`no_session_helper`, `helper_exited`, …), when it is.
    pub unknown_reason: String,
    /// The focused window's rectangle in screen coordinates (all 0: not known).
    pub window: WindowRect,
    /// The session's live keymap, when the helper knows it.
    pub keymap: String,
}

/// How a terminal program's tty reads input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TtyMode {
    /// Not a terminal program.
    #[default]
    None,
    /// A terminal program whose tty state could not be read: treated as a prompt.
    Unknown,
    /// Line buffered with echo: an ordinary program reading lines.
    Echo,
    /// Echo off while line buffered: a password prompt (getpass, sudo, ssh, `read -s`).
    NoEcho,
    /// Echo and line buffering off: a line editor or full-screen program.
    Raw,
}

impl TtyMode {
    /// Reads the mode from a termios local-flags word.
    pub fn from_lflag(echo: bool, canonical: bool) -> TtyMode {
        match (echo, canonical) {
            (false, true) => TtyMode::NoEcho,
            (_, false) => TtyMode::Raw,
            (true, true) => TtyMode::Echo,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TtyMode::None => "none",
            TtyMode::Unknown => "unknown",
            TtyMode::Echo => "echo",
            TtyMode::NoEcho => "no_echo",
            TtyMode::Raw => "raw",
        }
    }
}

/// A window rectangle in screen coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowRect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// The policy in force when records were admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyStamp {
    pub version: u64,
    pub hash: String,
    pub default_level: String,
    /// Number of rules in the effective policy.
    pub rules: u32,
}

/// Key events replaced by policy: their timing is kept, their identity is not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redaction {
    pub from_ns: u64,
    pub to_ns: u64,
    /// The detector (or secure-input rule) that matched.
    pub rule: String,
    /// Key presses replaced.
    pub count: u32,
    pub placeholder: String,
    pub focus: u64,
    pub device: u32,
    /// Press time of every replaced key.
    pub key_times_ns: Vec<u64>,
}

/// Per-interval activity counts (level `counts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub from_ns: u64,
    pub to_ns: u64,
    pub focus: u64,
    pub keys: u32,
    pub clicks: u32,
    pub motion: u32,
    pub scroll: u32,
}

/// A paste shortcut, without content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paste {
    pub mono_ns: u64,
    pub focus: u64,
    pub device: u32,
}

/// What made the session helper read the pointer position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PointerTrigger {
    #[default]
    Unknown,
    Motion,
    Press,
    Release,
    Scroll,
}

/// Where the display server put the pointer, in its root (screen) coordinates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PointerSample {
    /// When the helper read the position.
    pub mono_ns: u64,
    pub x: f64,
    pub y: f64,
    pub trigger: PointerTrigger,
    /// The display server's button number for press and release (1 left, 2 middle, 3 right).
    pub button: u32,
    /// The display server's own event time.
    pub server_time_ms: u32,
    /// Focus sequence in force, filled by the collector.
    pub focus: u64,
    /// When the server event that triggered the read happened, if the helper knows (0: not).
    pub event_mono_ns: u64,
}

/// One monitor of a session's screen.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Monitor {
    pub name: String,
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub scale: f64,
    pub primary: bool,
}

/// A session's display: server, screen layout and pointer settings, sent when it changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DisplayInfo {
    pub mono_ns: u64,
    /// x11, sway, gnome, kde, hyprland, tty.
    pub server: String,
    pub width: u32,
    pub height: u32,
    pub monitors: Vec<Monitor>,
    /// Pointer positions are available from this display server.
    pub pointer: bool,
    /// Why they are not, when they are not.
    pub pointer_unavailable: String,
    /// The desktop's double-click time in ms (0: not known).
    pub double_click_ms: u32,
    pub double_click_distance: u32,
    /// The reporting helper's uid, from SO_PEERCRED (filled by the collector).
    pub uid: u32,
    pub session: String,
}

/// The focused window moved or was resized without a focus change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowGeometry {
    pub mono_ns: u64,
    /// Focus sequence of the window.
    pub focus: u64,
    pub rect: WindowRect,
}

/// Any record that travels through the ring and lands in the spool.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(InputEvent),
    Device(DeviceInfo),
    Gap(Gap),
    Focus(Box<FocusInfo>),
    Policy(PolicyStamp),
    Redaction(Box<Redaction>),
    Counts(Counts),
    Paste(Paste),
    Pointer(PointerSample),
    Display(Box<DisplayInfo>),
    Window(WindowGeometry),
    /// A record kind this build does not interpret (written by a newer producer).
    Other,
}

impl Record {
    /// The monotonic timestamp the record refers to, for ordering.
    pub fn mono_ns(&self) -> u64 {
        match self {
            Record::Event(e) => e.mono_ns,
            Record::Device(d) => d.mono_ns,
            Record::Gap(g) => g.from_ns,
            Record::Focus(f) => f.mono_ns,
            Record::Redaction(r) => r.from_ns,
            Record::Counts(c) => c.from_ns,
            Record::Paste(p) => p.mono_ns,
            Record::Pointer(p) => p.mono_ns,
            Record::Display(d) => d.mono_ns,
            Record::Window(w) => w.mono_ns,
            Record::Policy(_) | Record::Other => 0,
        }
    }
}

/// Reads the current CLOCK_MONOTONIC time in nanoseconds.
pub fn monotonic_now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Reads CLOCK_REALTIME - CLOCK_MONOTONIC in nanoseconds: add it to a `mono_ns` to get Unix time.
pub fn realtime_offset_ns() -> i64 {
    let read = |id| {
        nix::time::clock_gettime(id)
            .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
            .unwrap_or(0)
    };
    // Bracket the realtime read with two monotonic reads, so a preemption between them shows
    // as at most half their distance of error.
    let m0 = read(nix::time::ClockId::CLOCK_MONOTONIC);
    let r = read(nix::time::ClockId::CLOCK_REALTIME);
    let m1 = read(nix::time::ClockId::CLOCK_MONOTONIC);
    r - (m0 + (m1 - m0) / 2)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), or "" when it cannot be read.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
