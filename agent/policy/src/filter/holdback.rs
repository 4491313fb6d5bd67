//! The holdback queue: records wait here (in order) until they are due, so that a secret's
//! keys can still become a redaction record; released, redacted keys become that record.

use super::*;

impl Filter {
    /// The ring seq of the oldest record not yet released (None: nothing is held). Frames
    /// from this seq on must not be committed: they are not on disk yet.
    pub fn oldest_held_seq(&self) -> Option<u64> {
        [
            self.queue.front().map(|h| h.seq),
            self.open.as_ref().map(|o| o.seq),
            self.counts_seq.values().min().copied(),
            self.early.values().min().copied(),
            self.motion.oldest_seq(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True while records are held back.
    pub fn holding(&self) -> bool {
        !self.queue.is_empty()
            || self.open.is_some()
            || !self.counts.is_empty()
            || !self.motion.is_empty()
    }

    /// How long the agent may sleep before [`Filter::flush_idle`] has work.
    pub fn idle_timeout(&self) -> Option<Duration> {
        if !self.holding() {
            return None;
        }
        let window = Duration::from_millis(self.policy.settings().holdback_ms.max(1));
        // Only the open token is left: nothing is due before its own limit.
        let wait = if self.only_token_held() {
            Duration::from_millis(token::MAX_OPEN_MS)
        } else {
            window
        };
        Some(match self.last_push {
            Some(at) => wait.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// Releases everything when no record arrived for a whole holdback window (wall time),
    /// except an open token, which waits until [`token::MAX_OPEN_MS`] and is then masked.
    pub fn flush_idle(&mut self, out: &mut Vec<Record>) {
        let window = Duration::from_millis(self.policy.settings().holdback_ms);
        let idle = self.last_push.map(|at| at.elapsed());
        if idle.is_some_and(|i| i < window) {
            return;
        }
        if self.token_hold().is_some() {
            if idle.is_some_and(|i| i < Duration::from_millis(token::MAX_OPEN_MS)) {
                self.release_before_token(out);
                return;
            }
            self.mask_token();
        }
        self.flush(out);
    }

    /// True when everything held is the open token (and what came after it).
    pub(super) fn only_token_held(&self) -> bool {
        let Some(hold) = self.token_hold() else {
            return false;
        };
        self.open.is_none()
            && self.counts.is_empty()
            && self.motion.is_empty()
            && self.queue.front().is_none_or(|f| f.id >= hold)
    }

    /// Idle: writes everything held before the open token.
    pub(super) fn release_before_token(&mut self, out: &mut Vec<Record>) {
        self.queue_pending();
        let hold = self.token_hold();
        while let Some(front) = self.queue.front() {
            if hold.is_some_and(|h| front.id >= h) {
                break;
            }
            if let Some(h) = self.queue.pop_front() {
                self.emit(h, out);
            }
        }
        self.close_open(out);
    }

    /// Puts pause gaps, summed motion and counts into the queue.
    pub(super) fn queue_pending(&mut self) {
        let gaps: Vec<Option<Gap>> = self.pauses.values_mut().map(|p| p.gap.take()).collect();
        for g in gaps {
            self.push_pause_gap(g);
        }
        for m in self.motion.take_all() {
            self.push_motion(m);
        }
        let counts = std::mem::take(&mut self.counts);
        let seqs = std::mem::take(&mut self.counts_seq);
        for (focus, c) in counts {
            self.cur_seq = seqs.get(&focus).copied().unwrap_or(self.cur_seq);
            self.push(Record::Counts(c), None, 0, false);
        }
    }

    /// Releases every held record (stop, ring closed, policy reload).
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        // A stop ends the token being typed like a space would: the detectors have seen it.
        self.typing = None;
        self.queue_pending();
        while let Some(h) = self.queue.pop_front() {
            self.emit(h, out);
        }
        self.close_open(out);
        self.held_keys = 0;
        // Keys still down keep the decision made at their press; chars are gone.
        self.key_owner
            .retain(|_, o| matches!(o, Owner::Dropped | Owner::Masked));
        self.composing.clear();
        for t in self.texts.values_mut() {
            // Released chars can no longer be redacted: start the contexts afresh.
            t.clear();
        }
        self.groups.retain(|_, _| false);
    }

    pub(super) fn push(&mut self, rec: Record, group: Option<u64>, t: u64, is_key: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if is_key {
            self.held_keys += 1;
        }
        self.last_push = Some(Instant::now());
        // Records without a time of their own age with the events around them.
        let t = if t == 0 { self.newest_ns } else { t };
        if self.queue.back().is_some_and(|b| b.seq > self.cur_seq) {
            self.early.insert(id, self.cur_seq);
        }
        self.queue.push_back(Held {
            id,
            seq: self.cur_seq,
            rec,
            group,
            t,
            is_key,
        });
        id
    }

    /// Releases the records that have waited long enough.
    pub(super) fn release(&mut self, out: &mut Vec<Record>) {
        let s = self.policy.settings();
        let (max_keys, window) = (s.holdback_keys as usize, s.holdback_ms * 1_000_000);
        let redacting = s.redact;
        if redacting && self.token_over_bound() {
            self.mask_token();
        }
        let hold = if redacting { self.token_hold() } else { None };
        while let Some(front) = self.queue.front() {
            let due = !redacting
                || self.held_keys > max_keys
                || front.t.saturating_add(window) < self.newest_ns;
            if !due || hold.is_some_and(|h| front.id >= h) {
                break;
            }
            if let Some(h) = self.queue.pop_front() {
                self.emit(h, out);
            }
        }
    }

    pub(super) fn emit(&mut self, h: Held, out: &mut Vec<Record>) {
        if !self.early.is_empty() {
            self.early.remove(&h.id);
        }
        if h.is_key {
            self.held_keys = self.held_keys.saturating_sub(1);
        }
        match (h.group, h.rec) {
            (Some(g), Record::Event(e)) if !(e.kind == EV_KEY && e.value != 0) => {
                // A release or scan code of a redacted key: its press is counted in a
                // redaction record; alone it would still say which key it was.
                let _ = g;
            }
            (Some(g), Record::Event(e)) => {
                if self.open.as_ref().is_some_and(|o| o.group != g) {
                    self.close_open(out);
                }
                let (rule, focus) = self
                    .groups
                    .get(&g)
                    .map(|gr| (gr.rule.clone(), gr.focus))
                    .unwrap_or_else(|| ("unknown".into(), e.focus));
                let o = self.open.get_or_insert_with(|| OpenRedaction {
                    seq: h.seq,
                    group: g,
                    rec: Redaction {
                        from_ns: e.mono_ns,
                        to_ns: e.mono_ns,
                        placeholder: format!("[{rule}]"),
                        rule,
                        focus,
                        device: e.device,
                        ..Default::default()
                    },
                });
                let r = &mut o.rec;
                r.from_ns = r.from_ns.min(e.mono_ns);
                r.to_ns = r.to_ns.max(e.mono_ns);
                if r.device != e.device {
                    r.device = imprint_record::NO_DEVICE;
                }
                r.count += 1;
                r.key_times_ns.push(e.mono_ns);
            }
            (_, rec) => {
                if let Record::Event(e) = &rec {
                    if e.kind == EV_KEY
                        && e.value == 1
                        && keys::is_keyboard_code(e.code)
                        && !keys::is_modifier(e.code)
                    {
                        self.close_open(out);
                    }
                }
                out.push(rec);
            }
        }
    }

    pub(super) fn close_open(&mut self, out: &mut Vec<Record>) {
        if let Some(o) = self.open.take() {
            *self.stats.redacted.entry(o.rec.rule.clone()).or_insert(0) += u64::from(o.rec.count);
            out.push(Record::Redaction(Box::new(o.rec)));
        }
    }
}
