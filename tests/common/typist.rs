//! A human typist for replay tests: text becomes a libinput recording of one keyboard (US
//! layout, with scan codes) typed with human timing from a seeded generator, so runs repeat
//! exactly. 60–250 ms between keys, 30–120 ms a key is held, Shift pressed a little before
//! its key and sometimes released before it (roll-over), and the ways people really type a
//! secret: a long pause in the middle, a typo fixed with Backspace, a forgotten character put
//! back with the cursor keys, Caps Lock for capitals.

use std::path::Path;

pub const SHIFT: u16 = 42;
pub const ENTER: u16 = 28;
pub const BACKSPACE: u16 = 14;
pub const CAPSLOCK: u16 = 58;
pub const LEFT: u16 = 105;
pub const RIGHT: u16 = 106;

/// US key code and shift for `c` (printable ASCII, space, newline).
pub fn key_for(c: char) -> Option<(u16, bool)> {
    const ROWS: &[(u16, &str, &str)] = &[
        (2, "1234567890-=", "!@#$%^&*()_+"),
        (16, "qwertyuiop[]", "QWERTYUIOP{}"),
        (30, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
        (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    ];
    match c {
        ' ' => return Some((57, false)),
        '\n' => return Some((ENTER, false)),
        _ => {}
    }
    ROWS.iter().find_map(|(base, plain, shifted)| {
        if let Some(i) = plain.chars().position(|x| x == c) {
            return Some((base + i as u16, false));
        }
        shifted
            .chars()
            .position(|x| x == c)
            .map(|i| (base + i as u16, true))
    })
}

/// One frame: (type, code, value) events at one time.
type Frame = (u64, Vec<(u16, u16, i32)>);

/// A keyboard being typed on; [`Typist::write`] saves the recording.
pub struct Typist {
    state: u64,
    t_us: u64,
    frames: Vec<Frame>,
    caps: bool,
}

impl Typist {
    pub fn new(seed: u64) -> Typist {
        Typist {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            t_us: 1_000_000,
            frames: Vec::new(),
            caps: false,
        }
    }

    /// xorshift64*: repeatable, and all a typing rhythm needs.
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn frame(&mut self, evs: Vec<(u16, u16, i32)>) {
        self.frames.push((self.t_us, evs));
    }

    fn after_ms(&mut self, lo: u64, hi: u64) {
        self.t_us += self.between(lo, hi) * 1000;
    }

    /// Presses and releases `code` (with Shift around it when `shift`), then waits 60–250 ms.
    pub fn key(&mut self, code: u16, shift: bool) {
        let scan = 0x70000 + i32::from(code);
        if shift {
            self.frame(vec![(1, SHIFT, 1)]);
            self.after_ms(20, 70);
        }
        self.frame(vec![(4, 4, scan), (1, code, 1)]);
        let rollover = shift && self.chance(30);
        if rollover {
            // Shift comes up while the key is still down.
            self.after_ms(10, 25);
            self.frame(vec![(1, SHIFT, 0)]);
        }
        self.after_ms(30, 120);
        self.frame(vec![(4, 4, scan), (1, code, 0)]);
        if shift && !rollover {
            self.after_ms(10, 40);
            self.frame(vec![(1, SHIFT, 0)]);
        }
        self.after_ms(60, 250);
    }

    /// Types one char; with Caps Lock on, letters take Shift only to type lower case.
    /// Characters with no US key are skipped (and returned as false).
    pub fn char(&mut self, c: char) -> bool {
        let Some((code, mut shift)) = key_for(c) else {
            return false;
        };
        if self.caps && c.is_ascii_alphabetic() {
            shift = !shift;
        }
        self.key(code, shift);
        true
    }

    pub fn text(&mut self, s: &str) {
        for c in s.chars() {
            self.char(c);
        }
    }

    pub fn caps_lock(&mut self) {
        self.key(CAPSLOCK, false);
        self.caps = !self.caps;
    }

    pub fn pause_ms(&mut self, ms: u64) {
        self.t_us += ms * 1000;
    }

    /// `s` with a wrong key in the middle, noticed and fixed with Backspace.
    pub fn with_typo(&mut self, s: &str) {
        let chars: Vec<char> = s.chars().collect();
        let at = chars.len() / 2;
        for (i, &c) in chars.iter().enumerate() {
            if i == at {
                let wrong = if c == 'x' { 'z' } else { 'x' };
                self.char(wrong);
                self.after_ms(150, 400);
                self.key(BACKSPACE, false);
            }
            self.char(c);
        }
    }

    /// `s` with one character left out, put back with the cursor keys after the rest.
    pub fn with_cursor_fix(&mut self, s: &str) {
        let chars: Vec<char> = s.chars().collect();
        let at = chars.len() / 2;
        for (i, &c) in chars.iter().enumerate() {
            if i != at {
                self.char(c);
            }
        }
        let back = chars.len() - at - 1;
        for _ in 0..back {
            self.key(LEFT, false);
        }
        if let Some(&c) = chars.get(at) {
            self.char(c);
        }
        for _ in 0..back {
            self.key(RIGHT, false);
        }
    }

    /// `s` with a pause of `ms` in the middle (looking up the rest).
    pub fn with_pause(&mut self, s: &str, ms: u64) {
        let chars: Vec<char> = s.chars().collect();
        let at = chars.len() / 2;
        for (i, &c) in chars.iter().enumerate() {
            if i == at {
                self.pause_ms(ms);
            }
            self.char(c);
        }
    }

    /// Key presses made, Shift not counted: what a spool must account for.
    pub fn presses(&self) -> u64 {
        self.frames
            .iter()
            .flat_map(|(_, evs)| evs)
            .filter(|&&(ty, code, value)| ty == 1 && value == 1 && code != SHIFT)
            .count() as u64
    }

    /// Event time so far, µs.
    pub fn now_us(&self) -> u64 {
        self.t_us
    }

    /// Writes the recording (each frame ends with SYN_REPORT).
    pub fn write(&self, path: &Path) {
        let mut s = String::from(
            "version: 1\nndevices: 1\nlibinput:\n  version: \"1.22.1\"\n  git: \"unknown\"\ndevices:\n- node: /dev/input/event9\n  evdev:\n    name: \"typist-keyboard\"\n    id: [3, 4617, 9, 1]\n  events:\n",
        );
        for (t, evs) in &self.frames {
            let (sec, usec) = (t / 1_000_000, t % 1_000_000);
            s.push_str("  - evdev:\n");
            for (ty, code, value) in evs {
                s.push_str(&format!("    - [{sec}, {usec}, {ty}, {code}, {value}]\n"));
            }
            s.push_str(&format!("    - [{sec}, {usec}, 0, 0, 0]\n"));
        }
        std::fs::write(path, s).expect("write recording");
    }
}

/// The text a dump's written key presses spell (US layout; Shift, Caps Lock, Backspace and
/// the Left/Right cursor keys applied), with `#` for each key a redaction record replaced.
pub fn rebuilt(dump: &[serde_json::Value]) -> String {
    let names: Vec<(String, u16)> = (1..128u16)
        .map(|c| (imprint_record::names::code_name(1, c).to_string(), c))
        .collect();
    let code_of = |name: &str| names.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
    let (mut shift, mut caps) = (false, false);
    let mut text: Vec<char> = Vec::new();
    let mut cursor = 0usize;
    for v in dump {
        if v["kind"] == "redaction" {
            for _ in 0..v["count"].as_u64().unwrap_or(0) {
                text.insert(cursor, '#');
                cursor += 1;
            }
            continue;
        }
        if v["kind"] != "event" || v["type"] != "EV_KEY" {
            continue;
        }
        let Some(code) = v["code"].as_str().and_then(code_of) else {
            continue;
        };
        let value = v["value"].as_i64().unwrap_or(0);
        match code {
            SHIFT | 54 => shift = value != 0,
            _ if value == 0 => {}
            CAPSLOCK => caps = !caps,
            BACKSPACE if cursor > 0 => {
                cursor -= 1;
                text.remove(cursor);
            }
            LEFT => cursor = cursor.saturating_sub(1),
            RIGHT => cursor = (cursor + 1).min(text.len()),
            _ => {
                let c = (' '..='~').chain(['\n']).find(|&c| {
                    key_for(c).is_some_and(|(k, s)| {
                        let s = if caps && c.is_ascii_alphabetic() {
                            !s
                        } else {
                            s
                        };
                        k == code && s == shift
                    })
                });
                if let Some(c) = c {
                    text.insert(cursor, c);
                    cursor += 1;
                }
            }
        }
    }
    text.into_iter().collect()
}
