//! The token being typed: the run of rebuilt text around the cursor that a secret could still
//! be part of. The holdback keeps such a run back whole, however slowly it is typed, and
//! releases it only once it has ended (and the detectors have had all of it).
//!
//! A token is a run without whitespace, extended
//! - across single spaces between digits and the characters of a phone or card number
//!   (`4111 1111 1111 1111`, `(415) 555-0132`), since people type those in groups and pause to
//!   look up the next one;
//! - back to an opening quote after `=` or `:` on the same line (`secret = "two words`), so
//!   that a quoted value is held until its closing quote.
//!
//! Whitespace, Enter and Tab end it, and so does anything that moves the cursor to an unknown
//! place (the [`UNKNOWN`] marker): a click, Home or End, a paste.

use super::text::UNKNOWN;
use std::ops::Range;

/// Chars one token may reach before its keys are masked instead of held any longer. The
/// detectors see at most the last 256 chars of a context, so a longer run could not be
/// matched as a whole; the longest formats commonly typed (JWTs, fine-grained GitHub tokens,
/// webhook URLs) fit.
pub const MAX_CHARS: usize = 192;
/// Event time a token may stay open (from its first key) before its keys are masked. A token
/// is typed in seconds, even at 60 ms a key with pauses to look things up; one open longer
/// than this is more likely a field left half-filled, and holding it would hold everything
/// typed after it too.
pub const MAX_OPEN_MS: u64 = 60_000;
/// Records (keys, motion, anything) held behind an open token before it is masked: bounds the
/// agent's memory and what a crash would lose.
pub const MAX_HELD_RECORDS: usize = 8192;

/// Digits and what phone and card numbers are typed with.
fn numeric(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '(' | ')' | '+' | '-' | '.' | '/')
}

/// A char that ends a token wherever it stands.
fn hard_break(c: char) -> bool {
    c == UNKNOWN || c == '\n' || c == '\t' || c == '\r'
}

/// The open token around `cursor` in `chars` (as char indexes), or `None` when the char
/// before the cursor ended the last one.
pub fn open_range(chars: &[char], cursor: usize) -> Option<Range<usize>> {
    let cursor = cursor.min(chars.len());
    let mut start = cursor;
    while start > 0 {
        let c = chars[start - 1];
        if hard_break(c) {
            break;
        }
        if c.is_whitespace() {
            // One space inside a number typed in groups: the number goes on.
            let joins = c == ' '
                && start >= 2
                && numeric(chars[start - 2])
                && chars[start..cursor].iter().all(|&c| numeric(c) || c == ' ');
            if !joins {
                break;
            }
        }
        start -= 1;
    }
    if let Some(q) = open_quote(chars, cursor) {
        start = start.min(q);
    }
    if start == cursor {
        return None;
    }
    // Chars after the cursor (a correction typed inside the token) belong to it too.
    let end = cursor
        + chars[cursor..]
            .iter()
            .take_while(|&&c| !hard_break(c) && !c.is_whitespace())
            .count();
    Some(start..end)
}

/// The index of a quote opened after `=` or `:` on the cursor's line and not yet closed.
fn open_quote(chars: &[char], cursor: usize) -> Option<usize> {
    let line = chars[..cursor]
        .iter()
        .rposition(|&c| hard_break(c))
        .map_or(0, |i| i + 1);
    let mut open: Option<(char, usize)> = None;
    let mut prev_solid: Option<char> = None;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate().take(cursor).skip(line) {
        match open {
            Some((q, _)) => {
                if c == q && !escaped {
                    open = None;
                }
                escaped = c == '\\' && !escaped;
            }
            None if (c == '"' || c == '\'') && matches!(prev_solid, Some('=' | ':')) => {
                open = Some((c, i));
                escaped = false;
            }
            None => {}
        }
        if !c.is_whitespace() {
            prev_solid = Some(c);
        }
    }
    open.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(s: &str) -> Option<String> {
        let chars: Vec<char> = s.chars().collect();
        open_range(&chars, chars.len()).map(|r| chars[r].iter().collect())
    }

    #[test]
    fn a_word_is_open_until_whitespace() {
        assert_eq!(open("my token ghp_abc").as_deref(), Some("ghp_abc"));
        assert_eq!(open("my token ghp_abc "), None);
        assert_eq!(open("line\n"), None);
        assert_eq!(open(""), None);
        assert_eq!(open("a\u{1}"), None);
    }

    #[test]
    fn numbers_typed_in_groups_stay_open() {
        assert_eq!(
            open("card 4111 1111 ").as_deref(),
            Some("4111 1111 "),
            "a pause after a group"
        );
        assert_eq!(open("call (415) 555-01").as_deref(), Some("(415) 555-01"));
        assert_eq!(open("4111 1111 then"), Some("then".into()));
        assert_eq!(open("I have 3 "), Some("3 ".into()));
        assert_eq!(open("4111  "), None, "two spaces end it");
    }

    #[test]
    fn quoted_values_after_an_assignment_stay_open() {
        assert_eq!(
            open(r#"secret = "two words an"#).as_deref(),
            Some(r#""two words an"#)
        );
        assert_eq!(open(r#"secret = "two words" "#), None);
        assert_eq!(
            open(r#"{"client_secret": "a b"#).as_deref(),
            Some(r#""a b"#)
        );
        assert_eq!(open(r#"x = 'it\'s a "#).as_deref(), Some(r"'it\'s a "));
        // Prose quotes do not hold a sentence.
        assert_eq!(open(r#"he said "hello there "#), None);
        assert_eq!(open("don't "), None);
    }

    #[test]
    fn chars_after_the_cursor_belong_to_the_token() {
        let chars: Vec<char> = "ab ghp_xyz rest".chars().collect();
        // Cursor after "ghp_" (a correction typed there).
        assert_eq!(open_range(&chars, 7), Some(3..10));
    }
}
