//! `[focus]`: which focus tracker imprint-session runs, and what it may record (titles and
//! command lines are off unless configured). Read by the helper and by `imprint run`.

use serde::Deserialize;
use std::path::PathBuf;

/// Which tracker to run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    /// Follow the seat's active logind session and pick by its type and desktop.
    #[default]
    Auto,
    X11,
    Sway,
    Hyprland,
    Gnome,
    Kde,
    /// The active VT (text console).
    Tty,
    /// No focus tracking: every event has focus 0 ("unknown").
    None,
}

impl TrackerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerKind::Auto => "auto",
            TrackerKind::X11 => "x11",
            TrackerKind::Sway => "sway",
            TrackerKind::Hyprland => "hyprland",
            TrackerKind::Gnome => "gnome",
            TrackerKind::Kde => "kde",
            TrackerKind::Tty => "tty",
            TrackerKind::None => "none",
        }
    }
}

/// `[focus]` in imprint.toml.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FocusConfig {
    pub tracker: TrackerKind,
    /// Record window titles (they can hold private data: off by default).
    pub titles: bool,
    /// Record command lines (they can hold secrets: off by default).
    pub cmdline: bool,
    /// Follow terminal emulators to the foreground program of their pty.
    pub follow_terminals: bool,
    /// Executable names treated as terminal emulators, besides the built-in list.
    pub terminals: Vec<String>,
    /// The seat whose active session is followed.
    pub seat: String,
    /// X11: the display (`:0`); by default the session's `DISPLAY`.
    pub x11_display: Option<String>,
    /// X11: the Xauthority file holding the display's cookie.
    pub x11_xauthority: Option<PathBuf>,
    /// sway: the IPC socket; by default the newest `sway-ipc.*.sock` in the runtime dir.
    pub sway_socket: Option<PathBuf>,
    /// Hyprland: `HYPRLAND_INSTANCE_SIGNATURE`; by default the newest instance.
    pub hyprland_signature: Option<String>,
    /// The session's `XDG_RUNTIME_DIR`; by default `/run/user/UID` of the session.
    pub runtime_dir: Option<PathBuf>,
    /// GNOME / KDE: the session bus address; by default `unix:path=RUNTIME_DIR/bus`.
    pub dbus_address: Option<String>,
    /// KDE: the KWin script to load (its `main.js` or package directory); by default the
    /// installed `imprint-focus` script.
    pub kwin_script: Option<PathBuf>,
    /// Longest wait between reconnection attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// While a terminal program has focus, how often its tty's echo state and foreground
    /// program are re-read (milliseconds). No event announces a termios change, so this is
    /// the one timer; nothing polls while anything else has focus.
    pub tty_poll_ms: u64,
}

impl Default for FocusConfig {
    fn default() -> Self {
        FocusConfig {
            tracker: TrackerKind::Auto,
            titles: false,
            cmdline: false,
            follow_terminals: true,
            terminals: Vec::new(),
            seat: "seat0".into(),
            x11_display: None,
            x11_xauthority: None,
            sway_socket: None,
            hyprland_signature: None,
            runtime_dir: None,
            dbus_address: None,
            kwin_script: None,
            max_backoff_ms: 5000,
            tty_poll_ms: 50,
        }
    }
}
