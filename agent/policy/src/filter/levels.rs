//! Levels: each input event handled as its context's level says (`off`, `counts`, `timing`,
//! `full`), after the pause and secure-input caps.

use super::*;

impl Filter {
    pub(super) fn event(&mut self, mut e: InputEvent) {
        if e.focus == 0
            && self
                .devices
                .get(&e.device)
                .is_some_and(|d| d.source == imprint_record::Source::Replay)
        {
            if let Some(f) = self.policy.replay_focus() {
                e.focus = f.seq;
                if !self.foci.contains_key(&f.seq) {
                    self.push_focus(Arc::new(f));
                }
            }
        }
        if e.mono_ns > self.newest_ns {
            self.newest_ns = e.mono_ns;
        }
        if e.kind == EV_KEY && e.value == 1 && !keys::is_keyboard_code(e.code) {
            self.end_token_by_click();
        }
        if e.kind == EV_SYN {
            let (summed, due) = self.motion.frame_end(e.device, e.mono_ns);
            if self.frame_admitted.insert(e.device, false).unwrap_or(false) {
                self.push(Record::Event(e), None, e.mono_ns, false);
            } else if !summed {
                self.stats.dropped_policy += 1;
            }
            if let Some(m) = due {
                self.push_motion(m);
            }
            return;
        }
        let coalesce = self.motion.on() && Coalescer::is_motion(&e);
        if !coalesce && !self.motion.is_empty() {
            // A click lands where the pointer is: the motion before it is written first.
            if let Some(m) = self.motion.take(e.device) {
                self.push_motion(m);
            }
        }
        let class = keys::classify(e.kind, e.code, self.devices.get(&e.device));
        let is_kbd_key = e.kind == EV_KEY && keys::is_keyboard_code(e.code);
        let d = self.decision(e.focus, class);
        let mut level = d.level;
        // The tty state comes from the session helper with the focus record (the agent,
        // unprivileged, cannot read another user's terminal).
        if is_kbd_key && e.value == 1 {
            match d.secure {
                Some("echo_off") => self.stats.echo_off_keys += 1,
                Some("tty_unknown") => self.stats.tty_unknown_keys += 1,
                _ => {}
            }
        }
        // A key's release and repeats belong to its press: they take the press's level and
        // context, whatever has focus when they come (Ctrl pressed in an editor and released
        // in an out-of-scope shell is released in the editor). One whose press this filter
        // never saw (written by an earlier run, or lost in a gap) goes by focus. Releases of
        // presses that the scope gate kept in the kernel never get here: the collector keeps
        // them out too.
        if is_kbd_key {
            let key = (e.device, e.code);
            let press = match e.value {
                1 => {
                    if self.seen_down.len() >= 256 {
                        self.seen_down.clear(); // releases lost to a SYN_DROPPED
                    }
                    self.seen_down.insert(key, (level, e.focus));
                    None
                }
                0 => self.seen_down.remove(&key),
                2 => self.seen_down.get(&key).copied(),
                _ => None,
            };
            if let Some((l, focus)) = press {
                level = l;
                e.focus = focus;
            }
        }
        if level == Level::Off && d.rule == NO_HELPER_RULE && e.kind != EV_SYN {
            self.stats.no_helper_dropped += 1;
        }
        // A key's release and repeats follow the level of its press.
        if is_kbd_key && e.value != 1 {
            match self.key_owner.get(&(e.device, e.code)) {
                Some(Owner::Dropped) => {
                    level = Level::Off;
                    if e.value == 0 {
                        self.key_owner.remove(&(e.device, e.code));
                    }
                }
                Some(Owner::Masked) => {
                    level = level.min(Level::Timing);
                    if e.value == 0 {
                        self.key_owner.remove(&(e.device, e.code));
                    }
                }
                _ => {}
            }
        }
        if e.kind == EV_KEY && e.value == 1 && !is_kbd_key {
            if let Some(t) = self.texts.get_mut(&e.focus) {
                // A click may have put the cursor anywhere.
                t.moved();
            }
        }
        let paused = level > Level::Off && self.paused(e.focus, &e);
        if is_kbd_key && (paused || level < Level::Full) {
            // Modifiers and locks are followed whatever is written.
            if let Some(k) = self.keyboards.get_mut(&e.device) {
                k.track(e.code, e.value);
            }
            self.composing.remove(&e.device);
        }
        if paused {
            return;
        }
        match level {
            Level::Timing | Level::Full if coalesce => {
                if let Some(m) = self.motion.add(&e, self.cur_seq) {
                    self.push_motion(m);
                }
            }
            Level::Off => {
                if is_kbd_key && e.value == 1 {
                    self.key_owner.insert((e.device, e.code), Owner::Dropped);
                }
                self.stats.dropped_policy += 1
            }
            Level::Counts => self.count(e),
            Level::Timing => {
                if e.kind == EV_MSC && e.code == MSC_SCAN {
                    // The scan code names the key.
                    return;
                }
                if is_kbd_key {
                    if e.value == 1 {
                        // Marks the key as masked so its release is masked too.
                        self.key_owner.insert((e.device, e.code), Owner::Masked);
                    }
                    if keys::is_printable_key(e.code) {
                        e.code = KEY_A;
                        self.stats.masked_keys += 1;
                    }
                    if e.value != 0 {
                        if let Some(t) = self.texts.get_mut(&e.focus) {
                            // The context's text is no longer known.
                            t.clear();
                        }
                    }
                }
                self.frame_admitted.insert(e.device, true);
                self.push(Record::Event(e), None, e.mono_ns, is_kbd_key);
            }
            Level::Full => {
                self.frame_admitted.insert(e.device, true);
                if e.kind == EV_MSC && e.code == MSC_SCAN {
                    let id = self.push(Record::Event(e), None, e.mono_ns, false);
                    self.pending_scan.insert(e.device, id);
                } else if is_kbd_key {
                    self.full_key(e);
                } else {
                    self.push(Record::Event(e), None, e.mono_ns, false);
                }
            }
        }
    }

    /// The state of keyboard `device` (loading the layout on first use).
    pub(super) fn keyboard(&mut self, device: u32) -> &mut Keyboard {
        let layout = self.layout.get_or_insert_with(|| {
            let (l, err) = self.policy.layout();
            self.stats.keymap = l.label();
            self.stats.keymap_fallback = err.is_some();
            l
        });
        self.keyboards
            .entry(device)
            .or_insert_with(|| layout.keyboard())
    }
}
