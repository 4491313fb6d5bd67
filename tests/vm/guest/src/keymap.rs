//! US-layout mapping from characters to the key presses that type them.

use anyhow::{bail, Result};
use evdev::KeyCode;

/// One character's key, and whether shift must be held for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stroke {
    pub key: KeyCode,
    pub shift: bool,
}

/// The stroke that types `c` on a US keyboard layout.
pub fn stroke(c: char) -> Result<Stroke> {
    let plain = |key| Stroke { key, shift: false };
    let shifted = |key| Stroke { key, shift: true };
    Ok(match c {
        'a'..='z' => plain(letter(c.to_ascii_uppercase())),
        'A'..='Z' => shifted(letter(c)),
        '0' => plain(KeyCode::KEY_0),
        '1'..='9' => plain(KeyCode::new(
            KeyCode::KEY_1.code() + (c as u16 - '1' as u16),
        )),
        ' ' => plain(KeyCode::KEY_SPACE),
        '\n' => plain(KeyCode::KEY_ENTER),
        '\t' => plain(KeyCode::KEY_TAB),
        ',' => plain(KeyCode::KEY_COMMA),
        '.' => plain(KeyCode::KEY_DOT),
        '/' => plain(KeyCode::KEY_SLASH),
        ';' => plain(KeyCode::KEY_SEMICOLON),
        '\'' => plain(KeyCode::KEY_APOSTROPHE),
        '-' => plain(KeyCode::KEY_MINUS),
        '=' => plain(KeyCode::KEY_EQUAL),
        '!' => shifted(KeyCode::KEY_1),
        '@' => shifted(KeyCode::KEY_2),
        '?' => shifted(KeyCode::KEY_SLASH),
        ':' => shifted(KeyCode::KEY_SEMICOLON),
        '_' => shifted(KeyCode::KEY_MINUS),
        _ => bail!("no key for character {c:?} in the US layout table"),
    })
}

fn letter(upper: char) -> KeyCode {
    // KEY_A.. are not contiguous (they follow the keyboard rows), so map by table.
    const ROWS: [(char, KeyCode); 26] = [
        ('A', KeyCode::KEY_A),
        ('B', KeyCode::KEY_B),
        ('C', KeyCode::KEY_C),
        ('D', KeyCode::KEY_D),
        ('E', KeyCode::KEY_E),
        ('F', KeyCode::KEY_F),
        ('G', KeyCode::KEY_G),
        ('H', KeyCode::KEY_H),
        ('I', KeyCode::KEY_I),
        ('J', KeyCode::KEY_J),
        ('K', KeyCode::KEY_K),
        ('L', KeyCode::KEY_L),
        ('M', KeyCode::KEY_M),
        ('N', KeyCode::KEY_N),
        ('O', KeyCode::KEY_O),
        ('P', KeyCode::KEY_P),
        ('Q', KeyCode::KEY_Q),
        ('R', KeyCode::KEY_R),
        ('S', KeyCode::KEY_S),
        ('T', KeyCode::KEY_T),
        ('U', KeyCode::KEY_U),
        ('V', KeyCode::KEY_V),
        ('W', KeyCode::KEY_W),
        ('X', KeyCode::KEY_X),
        ('Y', KeyCode::KEY_Y),
        ('Z', KeyCode::KEY_Z),
    ];
    ROWS[(upper as u8 - b'A') as usize].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_letters_digits_and_shifted_punctuation() {
        assert_eq!(
            stroke('h').unwrap(),
            Stroke {
                key: KeyCode::KEY_H,
                shift: false
            }
        );
        assert_eq!(
            stroke('H').unwrap(),
            Stroke {
                key: KeyCode::KEY_H,
                shift: true
            }
        );
        assert_eq!(stroke('3').unwrap().key, KeyCode::KEY_3);
        assert_eq!(stroke('9').unwrap().key, KeyCode::KEY_9);
        assert_eq!(
            stroke('!').unwrap(),
            Stroke {
                key: KeyCode::KEY_1,
                shift: true
            }
        );
        assert!(stroke('€').is_err());
    }
}
