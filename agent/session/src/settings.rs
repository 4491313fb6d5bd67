//! The helper's settings: the `[focus]` and `[notice]` tables of imprint.toml (the rest
//! belongs to the agent), and which display server its own session has.

use crate::{FocusConfig, TrackerKind};
use imprint_config::NoticeConfig;
use serde::Deserialize;
use std::path::Path;

/// Reads `[focus]` from `path`; a missing file means the defaults (titles and command lines
/// off). A malformed file is an error that names it.
pub fn load_focus(path: &Path) -> Result<FocusConfig, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FocusConfig::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match table.get("focus") {
        None => Ok(FocusConfig::default()),
        Some(v) => FocusConfig::deserialize(v.clone())
            .map_err(|e| format!("{}: [focus]: {e}", path.display())),
    }
}

/// Parses a tracker name.
pub fn tracker_from_str(s: &str) -> Option<TrackerKind> {
    Some(match s {
        "auto" => TrackerKind::Auto,
        "x11" => TrackerKind::X11,
        "sway" => TrackerKind::Sway,
        "hyprland" => TrackerKind::Hyprland,
        "gnome" => TrackerKind::Gnome,
        "kde" => TrackerKind::Kde,
        "tty" => TrackerKind::Tty,
        "none" => TrackerKind::None,
        _ => return None,
    })
}

/// Points an `auto` configuration at this process's own session, from its environment: the
/// helper runs inside the session, so it needs no logind lookup to find its display server.
pub fn own_session(cfg: &mut FocusConfig) {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if cfg.tracker == TrackerKind::Auto {
        let desktop = env("XDG_CURRENT_DESKTOP")
            .unwrap_or_default()
            .to_ascii_lowercase();
        cfg.tracker = if env("SWAYSOCK").is_some() {
            TrackerKind::Sway
        } else if env("HYPRLAND_INSTANCE_SIGNATURE").is_some() {
            TrackerKind::Hyprland
        } else if desktop.contains("gnome") && env("WAYLAND_DISPLAY").is_some() {
            TrackerKind::Gnome
        } else if desktop.contains("kde") && env("WAYLAND_DISPLAY").is_some() {
            TrackerKind::Kde
        } else if env("DISPLAY").is_some() {
            TrackerKind::X11
        } else {
            TrackerKind::Tty
        };
    }
    if cfg.x11_display.is_none() {
        cfg.x11_display = env("DISPLAY");
    }
    if cfg.x11_xauthority.is_none() {
        cfg.x11_xauthority = env("XAUTHORITY").map(Into::into);
    }
    if cfg.sway_socket.is_none() {
        cfg.sway_socket = env("SWAYSOCK").map(Into::into);
    }
    if cfg.hyprland_signature.is_none() {
        cfg.hyprland_signature = env("HYPRLAND_INSTANCE_SIGNATURE");
    }
    if cfg.runtime_dir.is_none() {
        cfg.runtime_dir = env("XDG_RUNTIME_DIR").map(Into::into);
    }
    if cfg.dbus_address.is_none() {
        cfg.dbus_address = env("DBUS_SESSION_BUS_ADDRESS");
    }
}

/// Reads `[notice]` from `path` (the organisation's notice, shown once per version at login);
/// a missing file or section means no notice. A malformed file is an error that names it.
pub fn load_notice(path: &Path) -> Result<NoticeConfig, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NoticeConfig::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match table.get("notice") {
        None => Ok(NoticeConfig::default()),
        Some(v) => NoticeConfig::deserialize(v.clone())
            .map_err(|e| format!("{}: [notice]: {e}", path.display())),
    }
}
