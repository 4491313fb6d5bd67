//! Level `counts`: events folded into per-interval counts records.

use super::*;

impl Filter {
    pub(super) fn count(&mut self, e: InputEvent) {
        self.stats.counted += 1;
        let interval = self.policy.settings().counts_interval_ms * 1_000_000;
        if let Some(c) = self.counts.get(&e.focus) {
            if e.mono_ns >= c.from_ns.saturating_add(interval) {
                if let Some(c) = self.counts.remove(&e.focus) {
                    let now = self.cur_seq;
                    self.cur_seq = self.counts_seq.remove(&e.focus).unwrap_or(now);
                    self.push(Record::Counts(c), None, c.to_ns, false);
                    self.cur_seq = now;
                }
            }
        }
        self.counts_seq.entry(e.focus).or_insert(self.cur_seq);
        let c = self.counts.entry(e.focus).or_insert(Counts {
            from_ns: e.mono_ns,
            to_ns: e.mono_ns,
            focus: e.focus,
            ..Default::default()
        });
        c.to_ns = c.to_ns.max(e.mono_ns);
        match (e.kind, e.code) {
            (EV_KEY, code) if e.value == 1 && keys::is_keyboard_code(code) => c.keys += 1,
            (EV_KEY, _) if e.value == 1 => c.clicks += 1,
            (EV_REL, keys::REL_X | keys::REL_Y) | (keys::EV_ABS, 0 | 0x35) => c.motion += 1,
            (EV_REL, keys::REL_WHEEL | keys::REL_HWHEEL) => c.scroll += 1,
            _ => {}
        }
    }
}
