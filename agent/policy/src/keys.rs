//! Key codes: which keys print (and are masked at level `timing`), which are modifiers, and
//! the built-in US layout (text rebuild falls back to it when xkb cannot be used).

use super::rules::DeviceClass;
use imprint_record::DeviceInfo;

pub const EV_SYN: u16 = 0x00;
pub const EV_KEY: u16 = 0x01;
pub const EV_REL: u16 = 0x02;
pub const EV_ABS: u16 = 0x03;
pub const EV_MSC: u16 = 0x04;
pub const MSC_SCAN: u16 = 0x04;
pub const REL_X: u16 = 0x00;
pub const REL_Y: u16 = 0x01;
pub const REL_HWHEEL: u16 = 0x06;
pub const REL_WHEEL: u16 = 0x08;
pub const REL_WHEEL_HI_RES: u16 = 0x0b;
pub const REL_HWHEEL_HI_RES: u16 = 0x0c;

/// The code every printable key is masked to at level `timing` (as `libinput record` does).
pub const KEY_A: u16 = 30;
pub const KEY_BACKSPACE: u16 = 14;
pub const KEY_TAB: u16 = 15;
pub const KEY_ENTER: u16 = 28;
pub const KEY_LEFTCTRL: u16 = 29;
pub const KEY_LEFTSHIFT: u16 = 42;
pub const KEY_RIGHTSHIFT: u16 = 54;
pub const KEY_LEFTALT: u16 = 56;
pub const KEY_SPACE: u16 = 57;
pub const KEY_CAPSLOCK: u16 = 58;
pub const KEY_KPENTER: u16 = 96;
pub const KEY_RIGHTCTRL: u16 = 97;
pub const KEY_RIGHTALT: u16 = 100;
pub const KEY_DELETE: u16 = 111;
pub const KEY_LEFT: u16 = 105;
pub const KEY_RIGHT: u16 = 106;
pub const KEY_INSERT: u16 = 110;
pub const KEY_V: u16 = 47;
pub const KEY_LEFTMETA: u16 = 125;
pub const KEY_RIGHTMETA: u16 = 126;
const BTN_MISC: u16 = 0x100;
const BTN_MOUSE: u16 = 0x110;
const BTN_TASK: u16 = 0x117;
const BTN_TOOL_PEN: u16 = 0x140;
const BTN_DIGI_END: u16 = 0x14f;
const KEY_OK: u16 = 0x160;

/// True for keys kept as they are at level `timing`: modifiers, navigation, editing and
/// function keys. Every other keyboard key (anything that can print) is masked.
pub fn is_non_printing(code: u16) -> bool {
    matches!(code,
        0 | 1 // reserved, ESC
        | 14 | 15 | 28 | 29 | 42 | 54 | 56 | 58 // backspace tab enter ctrl shifts alt capslock
        | 59..=70 // F1–F10, num lock, scroll lock
        | 87 | 88 | 96 | 97 | 99 | 100 | 101 // F11 F12 kpenter rctrl sysrq ralt linefeed
        | 102..=111 // home up pgup left right end down pgdn insert delete
        | 113..=116 | 119 // volume, power, pause
        | 125..=127 // meta, compose
        | 183..=194 // F13–F24
    ) || code >= BTN_MISC
}

/// True for key codes of keyboards (not pointer, joystick or tablet buttons).
pub fn is_keyboard_code(code: u16) -> bool {
    !(BTN_MISC..KEY_OK).contains(&code)
}

/// True for keys that can produce a printable character: their identity is what `timing`
/// removes.
pub fn is_printable_key(code: u16) -> bool {
    !is_non_printing(code)
}

/// True for modifier keys.
pub fn is_modifier(code: u16) -> bool {
    matches!(
        code,
        KEY_LEFTCTRL
            | KEY_RIGHTCTRL
            | KEY_LEFTSHIFT
            | KEY_RIGHTSHIFT
            | KEY_LEFTALT
            | KEY_RIGHTALT
            | KEY_LEFTMETA
            | KEY_RIGHTMETA
            | KEY_CAPSLOCK
    )
}

/// The class of one event's device: keyboard keys, pointer buttons and motion, touchpad or
/// tablet absolute input; anything from a virtual device is `virtual`.
pub fn classify(kind: u16, code: u16, dev: Option<&DeviceInfo>) -> DeviceClass {
    if dev.is_some_and(|d| d.is_virtual) {
        return DeviceClass::Virtual;
    }
    let name = dev.map(|d| d.name.to_lowercase()).unwrap_or_default();
    let named = |words: &[&str]| words.iter().any(|w| name.contains(w));
    match kind {
        EV_KEY if is_keyboard_code(code) => DeviceClass::Keyboard,
        EV_KEY if (BTN_MOUSE..=BTN_TASK).contains(&code) => {
            if named(&["touchpad", "trackpad"]) {
                DeviceClass::Touchpad
            } else {
                DeviceClass::Pointer
            }
        }
        EV_KEY if (BTN_TOOL_PEN..=BTN_DIGI_END).contains(&code) && named(&["pen", "stylus"]) => {
            DeviceClass::Tablet
        }
        EV_REL => DeviceClass::Pointer,
        _ if named(&["touchpad", "trackpad"]) => DeviceClass::Touchpad,
        _ if named(&["tablet", "wacom", "pen", "stylus"]) => DeviceClass::Tablet,
        EV_ABS | EV_KEY => DeviceClass::Touchpad,
        _ if named(&["keyboard", "kbd"]) => DeviceClass::Keyboard,
        _ => DeviceClass::Pointer,
    }
}

/// Modifier state of one keyboard, for rebuilding text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Modifiers {
    pub shift: u8,
    pub ctrl: u8,
    pub alt: u8,
    pub meta: u8,
    pub altgr: bool,
    pub caps: bool,
}

impl Modifiers {
    /// Follows a key press (value 1) or release (value 0) of a modifier.
    pub fn update(&mut self, code: u16, value: i32) {
        let add = |n: &mut u8| {
            if value == 1 {
                *n = n.saturating_add(1)
            } else if value == 0 {
                *n = n.saturating_sub(1)
            }
        };
        match code {
            KEY_LEFTSHIFT | KEY_RIGHTSHIFT => add(&mut self.shift),
            KEY_LEFTCTRL | KEY_RIGHTCTRL => add(&mut self.ctrl),
            KEY_LEFTALT => add(&mut self.alt),
            KEY_RIGHTALT => self.altgr = value != 0,
            KEY_LEFTMETA | KEY_RIGHTMETA => add(&mut self.meta),
            KEY_CAPSLOCK if value == 1 => self.caps = !self.caps,
            _ => {}
        }
    }

    /// A shortcut is being typed (no character is produced).
    pub fn shortcut(&self) -> bool {
        self.ctrl > 0 || self.alt > 0 || self.meta > 0
    }
}

/// The character a key press produces with the US layout, if any.
pub fn us_char(code: u16, m: &Modifiers) -> Option<char> {
    const ROW_NUM: &[u8; 12] = b"1234567890-=";
    const ROW_NUM_S: &[u8; 12] = b"!@#$%^&*()_+";
    const ROW_Q: &[u8; 12] = b"qwertyuiop[]";
    const ROW_Q_S: &[u8; 12] = b"QWERTYUIOP{}";
    const ROW_A: &[u8; 12] = b"asdfghjkl;'`";
    const ROW_A_S: &[u8; 12] = b"ASDFGHJKL:\"~";
    const ROW_Z: &[u8; 11] = b"\\zxcvbnm,./";
    const ROW_Z_S: &[u8; 11] = b"|ZXCVBNM<>?";
    let shift = m.shift > 0;
    let pick = |plain: &[u8], shifted: &[u8], i: usize, letter: bool| -> Option<char> {
        let up = if letter { shift ^ m.caps } else { shift };
        let table = if up { shifted } else { plain };
        table.get(i).map(|b| *b as char)
    };
    let letter = |c: u16| matches!(c, 16..=25 | 30..=38 | 44..=50);
    match code {
        2..=13 => pick(ROW_NUM, ROW_NUM_S, (code - 2) as usize, false),
        16..=27 => pick(ROW_Q, ROW_Q_S, (code - 16) as usize, letter(code)),
        30..=41 => pick(ROW_A, ROW_A_S, (code - 30) as usize, letter(code)),
        43..=53 => pick(ROW_Z, ROW_Z_S, (code - 43) as usize, letter(code)),
        KEY_SPACE => Some(' '),
        55 => Some('*'),
        74 => Some('-'),
        78 => Some('+'),
        98 => Some('/'),
        83 => Some('.'),
        71..=73 => Some((b'7' + (code - 71) as u8) as char),
        75..=77 => Some((b'4' + (code - 75) as u8) as char),
        79..=81 => Some((b'1' + (code - 79) as u8) as char),
        82 => Some('0'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_layout() {
        let mut m = Modifiers::default();
        assert_eq!(us_char(30, &m), Some('a'));
        assert_eq!(us_char(2, &m), Some('1'));
        m.update(KEY_LEFTSHIFT, 1);
        assert_eq!(us_char(30, &m), Some('A'));
        assert_eq!(us_char(3, &m), Some('@'));
        assert_eq!(us_char(53, &m), Some('?'));
        m.update(KEY_LEFTSHIFT, 0);
        assert_eq!(us_char(43, &m), Some('\\'));
        assert_eq!(us_char(44, &m), Some('z'));
        assert_eq!(us_char(12, &m), Some('-'));
        assert_eq!(us_char(KEY_ENTER, &m), None);
        for c in 0..0x100u16 {
            if us_char(c, &m).is_some() {
                assert!(is_printable_key(c), "code {c} prints but is not masked");
            }
        }
        assert!(!is_printable_key(KEY_LEFTSHIFT) && !is_printable_key(KEY_BACKSPACE));
    }
}
