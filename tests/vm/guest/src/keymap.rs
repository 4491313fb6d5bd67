//! US-layout mapping from characters to the key presses that type them.

use anyhow::{bail, Result};
use evdev::KeyCode;

/// One character's key, and the modifiers that must be held for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stroke {
    pub key: KeyCode,
    pub shift: bool,
    /// Control characters (U+0001..U+001A, e.g. `\u{4}` for Ctrl+D: end of input at a
    /// terminal) are typed as Ctrl plus the letter.
    pub ctrl: bool,
}

/// The keyboard rows of the US layout: the first key's code, then what each key types
/// unshifted and shifted. Evdev codes follow the physical rows, so a row is contiguous.
const ROWS: [(u16, &str, &str); 4] = [
    (2, "1234567890-=", "!@#$%^&*()_+"),
    (16, "qwertyuiop[]", "QWERTYUIOP{}"),
    (30, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
];

/// The stroke that types `c` on a US keyboard layout.
pub fn stroke(c: char) -> Result<Stroke> {
    let plain = |key| Stroke {
        key,
        shift: false,
        ctrl: false,
    };
    match c {
        ' ' => return Ok(plain(KeyCode::KEY_SPACE)),
        '\n' => return Ok(plain(KeyCode::KEY_ENTER)),
        '\t' => return Ok(plain(KeyCode::KEY_TAB)),
        '\u{1}'..='\u{1a}' => {
            let letter = char::from(b'a' + (c as u8 - 1));
            return Ok(Stroke {
                ctrl: true,
                ..stroke(letter)?
            });
        }
        _ => {}
    }
    for (first, unshifted, shifted) in ROWS {
        for (shift, row) in [(false, unshifted), (true, shifted)] {
            if let Some(i) = row.chars().position(|k| k == c) {
                return Ok(Stroke {
                    key: KeyCode::new(first + i as u16),
                    shift,
                    ctrl: false,
                });
            }
        }
    }
    bail!("no key for character {c:?} in the US layout table")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> (KeyCode, bool, bool) {
        let s = stroke(c).expect("mapped");
        (s.key, s.shift, s.ctrl)
    }

    #[test]
    fn maps_letters_digits_punctuation_and_control() {
        assert_eq!(key('h'), (KeyCode::KEY_H, false, false));
        assert_eq!(key('H'), (KeyCode::KEY_H, true, false));
        assert_eq!(key('a'), (KeyCode::KEY_A, false, false));
        assert_eq!(key('z'), (KeyCode::KEY_Z, false, false));
        assert_eq!(key('m'), (KeyCode::KEY_M, false, false));
        assert_eq!(key('p'), (KeyCode::KEY_P, false, false));
        assert_eq!(key('0'), (KeyCode::KEY_0, false, false));
        assert_eq!(key('3'), (KeyCode::KEY_3, false, false));
        assert_eq!(key('9'), (KeyCode::KEY_9, false, false));
        assert_eq!(key('!'), (KeyCode::KEY_1, true, false));
        assert_eq!(key('>'), (KeyCode::KEY_DOT, true, false));
        assert_eq!(key('&'), (KeyCode::KEY_7, true, false));
        assert_eq!(key('|'), (KeyCode::KEY_BACKSLASH, true, false));
        assert_eq!(key('`'), (KeyCode::KEY_GRAVE, false, false));
        assert_eq!(key('\''), (KeyCode::KEY_APOSTROPHE, false, false));
        assert_eq!(key(']'), (KeyCode::KEY_RIGHTBRACE, false, false));
        assert_eq!(key('\n'), (KeyCode::KEY_ENTER, false, false));
        assert_eq!(key('\u{4}'), (KeyCode::KEY_D, false, true));
        assert!(stroke('€').is_err());
        assert!(stroke('\u{1b}').is_err());
    }
}
