//! Scope: which focus an event belongs to and what the policy decides for it (cached).

use super::*;

impl Filter {
    pub(super) fn push_focus(&mut self, f: Arc<FocusInfo>) {
        let seq = f.seq;
        self.foci.insert(seq, f.clone());
        while self.foci.len() > FOCI_MAX {
            self.foci.pop_first();
        }
        self.decisions.retain(|(s, _), _| *s != seq);
        self.set_current(Some(&f));
        // A focus record for an out-of-scope application would itself say that the
        // person used it: it is written only when something about it may be.
        if self.shown(&f) {
            self.push(Record::Focus(Box::new((*f).clone())), None, 0, false);
        }
    }

    /// Whether anything typed or pointed in `f` may be written, so that records naming it may.
    pub(super) fn shown(&self, f: &FocusInfo) -> bool {
        [
            DeviceClass::Keyboard,
            DeviceClass::Pointer,
            DeviceClass::Touchpad,
            DeviceClass::Tablet,
            DeviceClass::Virtual,
        ]
        .iter()
        .any(|c| self.policy.decide(Some(f), Some(*c)).level > Level::Off)
    }

    pub(super) fn set_current(&mut self, f: Option<&FocusInfo>) {
        let d = self.policy.decide(f, Some(DeviceClass::Keyboard));
        self.current = Some(CurrentFocus {
            seq: f.map(|f| f.seq).unwrap_or(0),
            uid: f.filter(|f| !f.unknown).map(|f| f.uid),
            exe: f.map(|f| f.exe.clone()).unwrap_or_default(),
            app_id: f.map(|f| f.app_id.clone()).unwrap_or_default(),
            level: d.level.as_str().into(),
            rule: d.rule,
            secure: d.secure.map(Into::into),
        });
    }

    pub(super) fn decision(&mut self, focus: u64, class: DeviceClass) -> Decision {
        let key = (focus, Some(class));
        if let Some(d) = self.decisions.get(&key) {
            return d.clone();
        }
        let f = self.foci.get(&focus).cloned();
        let d = self.policy.decide(f.as_deref(), Some(class));
        if self.decisions.len() > 4 * FOCI_MAX {
            self.decisions.clear();
        }
        self.decisions.insert(key, d.clone());
        d
    }
}
