//! The text typed into one focus context, as rebuilt from key events: its chars, the cursor
//! within it, and which held records typed each char (so a secret's keys can be redacted).

/// Characters of rebuilt text kept per focus context.
const TEXT_MAX: usize = 256;
/// Stands where the cursor went somewhere unknown: no detector matches across it.
pub const UNKNOWN: char = '\u{1}';

/// One rebuilt char.
pub struct TChar {
    pub c: char,
    /// Stable id (indexes shift as chars are inserted and deleted).
    pub id: u64,
    /// Ids of the held records that typed it (scan code, press, repeats, release).
    pub ids: Vec<u64>,
    /// Redaction group, once a detector matched it.
    pub group: Option<u64>,
}

/// One focus context's text.
#[derive(Default)]
pub struct Text {
    pub chars: Vec<TChar>,
    /// Index the next char is inserted at.
    cursor: usize,
    next_id: u64,
    /// The redaction group of an open PEM block: new chars join it.
    pub pem: Option<u64>,
    /// The group of a token masked for being held too long: its further chars join it until
    /// it ends.
    pub masking: Option<u64>,
}

impl Text {
    /// Inserts `c` (typed by record `rec`) at the cursor; returns its id and group.
    pub fn insert(&mut self, c: char, rec: Option<u64>) -> (u64, Option<u64>) {
        if self.chars.len() >= TEXT_MAX {
            let cut = TEXT_MAX / 4;
            self.chars.drain(..cut);
            self.cursor = self.cursor.saturating_sub(cut);
        }
        let id = self.next_id;
        self.next_id += 1;
        let at = self.cursor.min(self.chars.len());
        if c.is_whitespace() || c == UNKNOWN {
            // The masked token ended (the numbers rule may reopen it: then it is masked
            // again, being over its bound still).
            self.masking = None;
        }
        let group = self.pem.or(self.masking);
        self.chars.insert(
            at,
            TChar {
                c,
                id,
                ids: rec.into_iter().collect(),
                group,
            },
        );
        self.cursor = at + 1;
        (id, group)
    }

    /// The char with id `id`, while it is still in the text.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut TChar> {
        // Recent chars are the ones asked for.
        self.chars.iter_mut().rev().find(|c| c.id == id)
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 && self.cursor <= self.chars.len() {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        if self.cursor == 0 {
            // Into text that was typed before what is kept here.
            self.moved();
        } else {
            self.cursor -= 1;
        }
    }

    pub fn right(&mut self) {
        // At the end this is most likely the end of the field too: nothing moves.
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    /// The cursor went somewhere unknown: what follows is typed after a marker.
    pub fn moved(&mut self) {
        self.cursor = self.chars.len();
        if self.chars.last().is_none_or(|c| c.c != UNKNOWN) {
            self.insert(UNKNOWN, None);
        }
    }

    /// Forgets the text (its context left level `full`, or its records were released).
    pub fn clear(&mut self) {
        self.chars.clear();
        self.cursor = 0;
        self.masking = None;
    }

    /// Where the next char goes.
    pub fn cursor(&self) -> usize {
        self.cursor.min(self.chars.len())
    }

    /// The open token around the cursor (see [`super::token`]), as char indexes.
    pub fn open_token(&self) -> Option<std::ops::Range<usize>> {
        let chars: Vec<char> = self.chars.iter().map(|c| c.c).collect();
        super::token::open_range(&chars, self.cursor())
    }

    pub fn string(&self) -> String {
        self.chars.iter().map(|c| c.c).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(t: &mut Text, s: &str) {
        for c in s.chars() {
            t.insert(c, None);
        }
    }

    #[test]
    fn cursor_movement_edits_in_place() {
        let mut t = Text::default();
        typed(&mut t, "bob@exmple.com");
        for _ in 0..8 {
            t.left();
        }
        typed(&mut t, "a");
        assert_eq!(t.string(), "bob@example.com");
        t.right();
        t.delete();
        t.backspace();
        assert_eq!(t.string(), "bob@exale.com");
        for _ in 0..20 {
            t.right();
        }
        typed(&mut t, "!");
        assert_eq!(t.string(), "bob@exale.com!");
    }

    #[test]
    fn leaving_the_known_text_is_a_marker() {
        let mut t = Text::default();
        typed(&mut t, "ab");
        t.left();
        t.left();
        t.left();
        typed(&mut t, "c");
        assert_eq!(t.string(), "ab\u{1}c");
        t.moved();
        t.moved();
        assert_eq!(t.string(), "ab\u{1}c\u{1}");
    }

    #[test]
    fn ids_survive_insertions_and_trimming() {
        let mut t = Text::default();
        let (a, _) = t.insert('a', Some(7));
        t.left();
        t.insert('b', None);
        t.right();
        assert_eq!(
            t.get_mut(a).map(|c| (c.c, c.ids.clone())),
            Some(('a', vec![7]))
        );
        for _ in 0..TEXT_MAX {
            t.insert('x', None);
        }
        assert!(t.chars.len() <= TEXT_MAX);
        assert!(t.get_mut(a).is_none());
    }
}
