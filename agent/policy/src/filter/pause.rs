//! A user's own pause: events typed while it lasts become one gap record, never events.

use super::*;

impl Filter {
    /// Pauses capture of `uid`'s sessions for events stamped in `[from_ns, until_ns)`. The
    /// events not written become one `paused` gap, so the dataset shows the pause rather
    /// than silence. A new call for the same user replaces the interval.
    pub fn pause(&mut self, uid: u32, from_ns: u64, until_ns: u64) {
        let p = self.pauses.entry(uid).or_insert(Pause {
            from_ns,
            until_ns,
            gap: None,
        });
        p.from_ns = from_ns;
        p.until_ns = until_ns;
    }

    /// Forgets `uid`'s pause, writing the gap it made.
    pub fn resume(&mut self, uid: u32, out: &mut Vec<Record>) {
        if let Some(p) = self.pauses.remove(&uid) {
            self.push_pause_gap(p.gap);
            self.release(out);
        }
    }

    /// The users with a pause, and its interval in event time.
    pub fn pauses(&self) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
        self.pauses
            .iter()
            .map(|(uid, p)| (*uid, p.from_ns, p.until_ns))
    }

    /// True when an event of `focus` is not written because its user paused; counts it.
    pub(super) fn paused(&mut self, focus: u64, e: &InputEvent) -> bool {
        if self.pauses.is_empty() {
            return false;
        }
        let Some(uid) = self.foci.get(&focus).filter(|f| !f.unknown).map(|f| f.uid) else {
            return false;
        };
        let Some(p) = self.pauses.get_mut(&uid) else {
            return false;
        };
        if e.mono_ns >= p.until_ns {
            let gap = p.gap.take();
            self.pauses.remove(&uid);
            self.push_pause_gap(gap);
            return false;
        }
        if e.mono_ns < p.from_ns {
            return false;
        }
        let g = p.gap.get_or_insert(Gap {
            from_ns: e.mono_ns,
            to_ns: e.mono_ns,
            stage: Stage::Paused,
            count: 0,
            device: NO_DEVICE,
        });
        g.to_ns = g.to_ns.max(e.mono_ns);
        g.count += 1;
        self.stats.paused += 1;
        true
    }

    pub(super) fn push_pause_gap(&mut self, gap: Option<Gap>) {
        if let Some(g) = gap {
            self.push(Record::Gap(g), None, g.to_ns, false);
        }
    }

    /// True when `focus`'s user has a pause covering `t`; unlike [`Filter::paused`] it
    /// neither counts nor ends the pause.
    pub(super) fn is_paused(&self, focus: u64, t: u64) -> bool {
        self.foci
            .get(&focus)
            .filter(|f| !f.unknown)
            .and_then(|f| self.pauses.get(&f.uid))
            .is_some_and(|p| t >= p.from_ns && t < p.until_ns)
    }
}
