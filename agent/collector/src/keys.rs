//! Key releases across the scope gate. While the gate is closed the kernel keeps every event
//! in, presses included; the release of a key pressed then comes after the gate has opened
//! for the next focus, and would be that key's only trace: it is kept out too. A release
//! whose press was lost some other way (a full BPF ring buffer) is still written: it tells
//! the dataset the key came up, and its press is counted in a gap.

use imprint_common::RawInput;
use std::collections::HashMap;

const EV_KEY: u16 = 1;

/// Keys seen down, and when each key was last seen relative to gate closures.
#[derive(Default)]
pub struct KeyState {
    /// How many times the gate has closed.
    closures: u64,
    /// Per (device, code): whether it is down, and the closure count when last seen.
    keys: HashMap<(u32, u16), (bool, u64)>,
}

impl KeyState {
    /// The gate has just closed.
    pub fn gate_closed(&mut self) {
        self.closures += 1;
    }

    /// Tracks `ev`; true when it is the release (or repeat) of a key whose press may have
    /// been kept in the kernel by a closed gate: not seen down, and the gate has closed
    /// since this key was last seen.
    pub fn gated_release(&mut self, ev: &RawInput) -> bool {
        if ev.kind != EV_KEY {
            return false;
        }
        let key = (ev.device, ev.code);
        let (down, seen_at) = self.keys.get(&key).copied().unwrap_or((false, 0));
        let gated = ev.value != 1 && !down && seen_at < self.closures;
        if !gated {
            if self.keys.len() >= 4096 {
                self.keys.clear(); // bounded: a device can only have so many keys
            }
            self.keys.insert(key, (ev.value != 0, self.closures));
        }
        gated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: u16, value: i32) -> RawInput {
        RawInput {
            kind: EV_KEY,
            code,
            value,
            device: 1,
            ..Default::default()
        }
    }

    #[test]
    fn releases_of_presses_kept_out_by_the_gate_are_kept_out() {
        let mut k = KeyState::default();
        // Never any closure: a release without its press (lost to a full buffer) is kept.
        assert!(!k.gated_release(&key(28, 0)));
        // Ctrl pressed while open, gate closes, released later: its press was written.
        assert!(!k.gated_release(&key(29, 1)));
        k.gate_closed();
        assert!(
            !k.gated_release(&key(29, 0)),
            "the release of a written press"
        );
        // Enter pressed while closed (never seen), released once open: kept out.
        assert!(k.gated_release(&key(28, 0)));
        assert!(k.gated_release(&key(28, 2)), "repeats too");
        // Seen again after the closure: normal from then on.
        assert!(!k.gated_release(&key(28, 1)));
        assert!(!k.gated_release(&key(28, 0)));
        // Pointer events are not keys' business here.
        assert!(!k.gated_release(&RawInput {
            kind: 2,
            ..Default::default()
        }));
    }
}
