//! Level `full`: the rebuilt text of each focus context, and the detectors run over it.

use super::*;

impl Filter {
    pub(super) fn full_key(&mut self, e: InputEvent) {
        let typed = self.keyboard(e.device).key(e.code, e.value);
        let scan = self.pending_scan.remove(&e.device);
        if e.value == 0 {
            // A release belongs with its press (redacted with it).
            let owner = self.key_owner.remove(&(e.device, e.code));
            let id = self.push(Record::Event(e), None, e.mono_ns, true);
            match owner {
                Some(Owner::Char(focus, cid)) => self.link(focus, cid, id, scan),
                Some(Owner::Composing) => {
                    if let Some(c) = self.composing.get_mut(&e.device) {
                        c.ids.push(id);
                        c.ids.extend(scan);
                    }
                }
                Some(Owner::Masked | Owner::Dropped) | None => {}
            }
            return;
        }
        if self.typing.as_ref().is_some_and(|t| t.focus != e.focus) {
            // Typing elsewhere ends the token of the context left.
            self.typing = None;
        }
        let id = self.push(Record::Event(e), None, e.mono_ns, true);
        let mut composed = Vec::new();
        if !matches!(typed, Typed::Nothing | Typed::Composing) {
            // A sequence ends with the key that completes or breaks it.
            if let Some(p) = self.composing.remove(&e.device) {
                if matches!(typed, Typed::Char(_)) && p.focus == e.focus {
                    composed = p.ids;
                }
            }
        }
        let f = e.focus;
        match typed {
            Typed::Char(c) => {
                let cid = self.text_push(f, c, Some(id));
                if let Some(s) = scan {
                    self.link(f, cid, s, None);
                }
                // The dead key (or compose sequence) typed this char too.
                for i in composed {
                    self.link(f, cid, i, None);
                }
                for o in self.key_owner.values_mut() {
                    if matches!(o, Owner::Composing) {
                        *o = Owner::Char(f, cid);
                    }
                }
                self.key_owner
                    .insert((e.device, e.code), Owner::Char(f, cid));
                self.scan_text(f);
            }
            Typed::Composing => {
                let c = self.composing.entry(e.device).or_insert(Composing {
                    focus: f,
                    ids: Vec::new(),
                });
                if c.focus != f {
                    c.focus = f;
                    c.ids.clear();
                }
                c.ids.push(id);
                c.ids.extend(scan);
                self.key_owner.insert((e.device, e.code), Owner::Composing);
            }
            Typed::Paste if e.value == 1 => {
                self.stats.pastes += 1;
                self.push(
                    Record::Paste(Paste {
                        mono_ns: e.mono_ns,
                        focus: f,
                        device: e.device,
                    }),
                    None,
                    e.mono_ns,
                    false,
                );
                self.text(f).moved();
            }
            Typed::Newline => {
                self.text_push(f, '\n', None);
                self.scan_text(f);
            }
            Typed::Tab => {
                self.text_push(f, '\t', None);
            }
            Typed::Backspace => self.text(f).backspace(),
            Typed::Delete => self.text(f).delete(),
            Typed::Left => self.text(f).left(),
            Typed::Right => self.text(f).right(),
            Typed::Moved => self.text(f).moved(),
            Typed::Paste | Typed::Nothing => {}
        }
        if !matches!(typed, Typed::Nothing | Typed::Composing) {
            self.follow_token(f, e.mono_ns);
        }
    }

    pub(super) fn text(&mut self, focus: u64) -> &mut Text {
        self.texts.entry(focus).or_default()
    }

    /// Inserts a char in a focus context's text; returns its char id.
    pub(super) fn text_push(&mut self, focus: u64, c: char, id: Option<u64>) -> u64 {
        let (cid, group) = self.text(focus).insert(c, id);
        if let (Some(g), Some(id)) = (group, id) {
            self.mark(id, g);
        }
        cid
    }

    /// Adds record `id` (and a scan code) to char `cid` of `focus`, redacting it with the char.
    pub(super) fn link(&mut self, focus: u64, cid: u64, id: u64, scan: Option<u64>) {
        let group = self
            .texts
            .get_mut(&focus)
            .and_then(|t| t.get_mut(cid))
            .and_then(|ch| {
                ch.ids.push(id);
                ch.ids.extend(scan);
                ch.group
            });
        if let Some(g) = group {
            self.mark(id, g);
            if let Some(s) = scan {
                self.mark(s, g);
            }
        }
    }

    pub(super) fn scan_text(&mut self, focus: u64) {
        if !self.policy.settings().redact {
            return;
        }
        let Some(t) = self.texts.get(&focus) else {
            return;
        };
        let text = t.string();
        let starts: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        let to_char = |b: usize| starts.partition_point(|s| *s < b);
        let mut spans: Vec<(String, usize, usize)> = self
            .policy
            .detectors()
            .scan(&text)
            .into_iter()
            .map(|(n, r)| (n.to_owned(), to_char(r.start), to_char(r.end)))
            .collect();
        let mut pem_end = false;
        if t.pem.is_none() {
            if let Some(m) = self.policy.detectors().pem_begin.find(&text) {
                spans.push(("private_key".into(), to_char(m.start()), t.chars.len()));
            }
        } else if self.policy.detectors().pem_end.is_match(&text) {
            pem_end = true;
        }
        for (rule, a, b) in spans {
            let _ = self.redact_span(focus, &rule, a, b);
        }
        if pem_end {
            if let Some(t) = self.texts.get_mut(&focus) {
                // The block's chars stay (their releases still link to them) but no longer
                // read as a BEGIN line.
                let g = t.pem.take();
                for c in t
                    .chars
                    .iter_mut()
                    .filter(|c| c.group.is_some() && c.group == g)
                {
                    c.c = UNKNOWN;
                }
            }
        }
    }

    /// Puts chars `a..b` of `focus`'s text (and so their records) into a redaction group;
    /// returns the group.
    pub(super) fn redact_span(
        &mut self,
        focus: u64,
        rule: &str,
        a: usize,
        b: usize,
    ) -> Option<u64> {
        let t = self.texts.get_mut(&focus)?;
        let b = b.min(t.chars.len());
        if a >= b {
            return None;
        }
        let existing = t.chars[a..b].iter().find_map(|c| c.group);
        let g = match existing {
            Some(g) => g,
            None => {
                let g = self.next_group;
                self.next_group += 1;
                self.groups.insert(
                    g,
                    Group {
                        rule: rule.to_owned(),
                        focus,
                    },
                );
                g
            }
        };
        if rule == "private_key" {
            t.pem = Some(g);
        }
        let mut ids = Vec::new();
        for c in &mut t.chars[a..b] {
            if c.group.is_none() {
                c.group = Some(g);
                ids.extend(c.ids.iter().copied());
            }
        }
        for id in ids {
            self.mark(id, g);
        }
        Some(g)
    }

    pub(super) fn mark(&mut self, id: u64, g: u64) {
        let Some(front) = self.queue.front().map(|h| h.id) else {
            self.stats.late_matches += 1;
            return;
        };
        match id
            .checked_sub(front)
            .and_then(|i| self.queue.get_mut(i as usize))
        {
            Some(h) if h.id == id => h.group = Some(g),
            _ => self.stats.late_matches += 1,
        }
    }
}
