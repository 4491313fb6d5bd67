//! Recordings of plain key events (no SYN_REPORT), so that every ring record after the
//! device announcement is one event `dump` prints and loss accounting can be exact.

use serde_json::Value;
use std::path::Path;

/// (mono_ns, key name, value) of one key event, as `dump` prints it.
pub type Ev = (u64, String, i64);

const KEYS: [&str; 10] = [
    "KEY_Q", "KEY_W", "KEY_E", "KEY_R", "KEY_T", "KEY_Y", "KEY_U", "KEY_I", "KEY_O", "KEY_P",
];

/// Writes a libinput recording of `n` key events (press/release of KEY_Q..KEY_P), `gap_us`
/// apart, with no SYN_REPORTs; returns the events `dump` must print for it.
pub fn key_recording(path: &Path, name: &str, n: usize, gap_us: u64) -> Vec<Ev> {
    let mut s = format!(
        "version: 1\nndevices: 1\nlibinput:\n  version: \"1.22.1\"\n  git: \"unknown\"\ndevices:\n- node: /dev/input/event9\n  evdev:\n    name: \"{name}\"\n    id: [3, 4617, 9, 1]\n  events:\n",
    );
    let mut want = Vec::with_capacity(n);
    for i in 0..n {
        let t = (i as u64 + 1) * gap_us;
        let code = 16 + (i / 2) % 10;
        let value = if i % 2 == 0 { 1 } else { 0 };
        s.push_str(&format!(
            "  - evdev:\n    - [{}, {}, 1, {code}, {value}]\n",
            t / 1_000_000,
            t % 1_000_000
        ));
        want.push((t * 1000, KEYS[(i / 2) % 10].to_owned(), value));
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
