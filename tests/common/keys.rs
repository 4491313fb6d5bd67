//! Recordings of plain key events (no SYN_REPORT), so that every ring record after the
//! device announcement is one event `dump` prints and loss accounting can be exact.

use serde_json::Value;
use std::path::Path;

/// (mono_ns, key name, value) of one key event, as `dump` prints it.
pub type Ev = (u64, String, i64);

/// Words of five letters and a space: typing, not one endless token (which the redaction
/// holdback would hold whole and then mask).
const KEYS: [(u16, &str); 6] = [
    (16, "KEY_Q"),
    (17, "KEY_W"),
    (18, "KEY_E"),
    (19, "KEY_R"),
    (20, "KEY_T"),
    (57, "KEY_SPACE"),
];

/// Writes a libinput recording of `n` key events (press/release of [`KEYS`]), `gap_us`
/// apart, with no SYN_REPORTs; returns the events `dump` must print for it.
pub fn key_recording(path: &Path, name: &str, n: usize, gap_us: u64) -> Vec<Ev> {
    let mut s = format!(
        "version: 1\nndevices: 1\nlibinput:\n  version: \"1.22.1\"\n  git: \"unknown\"\ndevices:\n- node: /dev/input/event9\n  evdev:\n    name: \"{name}\"\n    id: [3, 4617, 9, 1]\n  events:\n",
    );
    let mut want = Vec::with_capacity(n);
    for i in 0..n {
        let t = (i as u64 + 1) * gap_us;
        let (code, key) = KEYS[(i / 2) % KEYS.len()];
        let value = if i % 2 == 0 { 1 } else { 0 };
        s.push_str(&format!(
            "  - evdev:\n    - [{}, {}, 1, {code}, {value}]\n",
            t / 1_000_000,
            t % 1_000_000
        ));
        want.push((t * 1000, key.to_owned(), value));
    }
    std::fs::write(path, s).expect("write recording");
    want
}

pub fn dumped_events(dump: &[Value]) -> Vec<Ev> {
    dump.iter()
        .filter(|v| v["kind"] == "event")
        .map(|v| {
            (
                v["mono_ns"].as_u64().expect("mono_ns"),
                v["code"].as_str().expect("code").to_owned(),
                v["value"].as_i64().expect("value"),
            )
        })
        .collect()
}
