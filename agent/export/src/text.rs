//! Key codes → text and key names. Text is rebuilt with the policy crate's keyboards (the
//! session's xkb keymap when recorded, else the built-in US table), the same code the agent's
//! redaction uses; key names follow pyautogui's (`ctrl`, `enter`, `pageup`).

use imprint_policy::keys::{self, Modifiers};
use imprint_policy::xkb::{KeymapNames, Layout, DEFAULT_COMPOSE_LOCALE};
use imprint_record::names::code_name;

/// What a key masked at level `timing` reads as in `text` (not on any US key, so it cannot be
/// mistaken for typed text).
pub const MASKED_CHAR: char = '\u{2022}';
/// The key name of a masked key in `keys`.
pub const MASKED_KEY: &str = "<masked>";

/// The layout for a session keymap as the session helper reports it (`de`, `de(nodeadkeys)`);
/// "" is the built-in US table.
pub fn layout_for(keymap: &str) -> Layout {
    let Some(names) = parse_keymap(keymap) else {
        return Layout::Us;
    };
    Layout::load(&names, DEFAULT_COMPOSE_LOCALE).0
}

/// `layout(variant)` → xkb names; None for "" or names xkb does not use.
pub fn parse_keymap(keymap: &str) -> Option<KeymapNames> {
    let keymap = keymap.trim();
    if keymap.is_empty() {
        return None;
    }
    let (layout, variant) = match keymap.split_once('(') {
        Some((l, v)) => (l, v.trim_end_matches(')')),
        None => (keymap, ""),
    };
    let names = KeymapNames {
        layout: layout.to_owned(),
        variant: variant.to_owned(),
        ..Default::default()
    };
    names.check().ok().map(|()| names)
}

/// The modifiers held, by pyautogui name, in a fixed order.
pub fn modifier_names(m: &Modifiers) -> Vec<String> {
    let mut out = Vec::new();
    if m.ctrl > 0 {
        out.push("ctrl".to_owned());
    }
    if m.alt > 0 {
        out.push("alt".to_owned());
    }
    if m.altgr {
        out.push("altright".to_owned());
    }
    if m.shift > 0 {
        out.push("shift".to_owned());
    }
    if m.meta > 0 {
        out.push("win".to_owned());
    }
    out
}

/// A key's pyautogui name: printable keys by their unshifted US character, the rest by their
/// kernel name in pyautogui's spelling.
pub fn key_name(code: u16) -> String {
    if keys::is_printable_key(code) {
        if code == keys::KEY_SPACE {
            return "space".into();
        }
        if let Some(c) = keys::us_char(code, &Modifiers::default()) {
            return c.to_string();
        }
    }
    let kernel = code_name(keys::EV_KEY, code);
    let base = kernel
        .strip_prefix("KEY_")
        .unwrap_or(&kernel)
        .to_lowercase();
    match base.as_str() {
        "leftctrl" | "rightctrl" => "ctrl".into(),
        "leftshift" | "rightshift" => "shift".into(),
        "leftalt" => "alt".into(),
        "rightalt" => "altright".into(),
        "leftmeta" | "rightmeta" => "win".into(),
        "esc" => "esc".into(),
        "kpenter" => "enter".into(),
        "sysrq" => "printscreen".into(),
        "compose" => "apps".into(),
        "playpause" => "playpause".into(),
        "volumeup" => "volumeup".into(),
        "volumedown" => "volumedown".into(),
        "mute" => "volumemute".into(),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyautogui_key_names() {
        assert_eq!(key_name(31), "s");
        assert_eq!(key_name(keys::KEY_ENTER), "enter");
        assert_eq!(key_name(keys::KEY_LEFTCTRL), "ctrl");
        assert_eq!(key_name(1), "esc");
        assert_eq!(key_name(51), ",");
        assert_eq!(key_name(keys::KEY_SPACE), "space");
        assert_eq!(key_name(104), "pageup");
        assert_eq!(key_name(59), "f1");
        assert_eq!(key_name(keys::KEY_LEFT), "left");
    }

    #[test]
    fn keymaps_as_helpers_report_them() {
        assert_eq!(parse_keymap(""), None);
        let de = parse_keymap("de(nodeadkeys)").expect("names");
        assert_eq!(
            (de.layout.as_str(), de.variant.as_str()),
            ("de", "nodeadkeys")
        );
        assert_eq!(parse_keymap("us").map(|k| k.layout), Some("us".into()));
        assert_eq!(parse_keymap("us;rm -rf"), None);
    }
}
