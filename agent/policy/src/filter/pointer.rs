//! Pointer positions (kept at `timing` and above) and summed relative motion.

use super::*;

impl Filter {
    /// A pointer position is kept where the pointer's own events are kept with their timing
    /// (level `timing` or `full`), and never while its user has paused.
    pub(super) fn pointer(&mut self, p: PointerSample) {
        let level = self.decision(p.focus, DeviceClass::Pointer).level;
        if level < Level::Timing || self.is_paused(p.focus, p.mono_ns) {
            self.stats.dropped_pointer += 1;
            return;
        }
        self.push(Record::Pointer(p), None, p.mono_ns, false);
    }

    /// Writes summed motion (through the holdback queue, as of its first frame).
    pub(super) fn push_motion(&mut self, m: Motion) {
        let now = self.cur_seq;
        self.cur_seq = m.seq;
        let mut written = 0;
        for ev in m.events() {
            self.push(Record::Event(ev), None, ev.mono_ns, false);
            written += 1;
        }
        if written > 0 {
            let syn = InputEvent {
                kind: EV_SYN,
                code: 0,
                value: 0,
                mono_ns: m.to_ns,
                device: m.device,
                focus: m.focus,
            };
            self.push(Record::Event(syn), None, m.to_ns, false);
        }
        self.stats.motion_coalesced += m.events.saturating_sub(written);
        self.cur_seq = now;
    }
}
