//! The policy applied to the record stream, in the agent, before anything reaches disk.
//!
//! Per event: focus seq → [`FocusInfo`] (from the Focus records seen on the ring) → device
//! class → [`Decision`] (cached), then the level:
//! - `off`: dropped (counted);
//! - `counts`: folded into per-interval [`Counts`] records;
//! - `timing`: printable keys masked to `KEY_A`, scan codes dropped, everything else kept;
//! - `full`: typed text is rebuilt per focus context and scanned by the detectors; records
//!   wait in a holdback window (N keys / T ms of event time) so that the key events forming a
//!   secret are replaced by one [`Redaction`] record (rule, count, times) before release. The
//!   token being typed ([`super::token`]) is held whole until it ends, however long that
//!   takes; past its bounds its keys are masked (`holdback_full`), never released.
//!
//! Text is rebuilt with the session's xkb keymap ([`super::xkb`]) into per-context
//! [`Text`]s. Relative pointer motion may be summed ([`Coalescer`]) at `timing` and `full`.
//! Terminal programs reading with echo off are capped at `timing` on every key press.
//! Paste shortcuts (Ctrl+V, Shift+Insert, Ctrl+Shift+V) become a [`Paste`] record.
//!
//! Known limit: records held back are not yet on disk when the ring position is committed, so
//! an agent crash can lose at most one holdback window (a clean stop flushes it).

use super::keys::{self, EV_KEY, EV_MSC, EV_REL, EV_SYN, KEY_A, MSC_SCAN};
use super::motion::{Coalescer, Motion};
use super::rules::DeviceClass;
use super::text::{Text, UNKNOWN};
use super::token;
use super::xkb::{Keyboard, Layout, Typed};
use super::{Decision, Level, Policy, NO_HELPER_RULE};
use imprint_record::{
    Counts, DeviceInfo, FocusInfo, Gap, InputEvent, Paste, PointerSample, Record, Redaction, Stage,
    NO_DEVICE,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Focus records remembered (older ones are forgotten; their events are then unknown focus).
const FOCI_MAX: usize = 4096;

/// What the filter did, for status and metrics.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FilterStats {
    /// Input events dropped because their context is out of scope (`off`).
    pub dropped_policy: u64,
    /// Pointer positions not written: their focus's pointer level is below `timing`, or paused.
    pub dropped_pointer: u64,
    /// Input events summarised into counts records.
    pub counted: u64,
    /// Printable key events masked at `timing`.
    pub masked_keys: u64,
    /// Key presses capped to `timing` because the terminal had echo off.
    pub echo_off_keys: u64,
    /// Key presses capped to `timing` because nobody could read the terminal's state.
    #[serde(default)]
    pub tty_unknown_keys: u64,
    /// Input events dropped because no imprint-session helper reported the focus (none was
    /// running, or it died): fail closed.
    #[serde(default)]
    pub no_helper_dropped: u64,
    /// Key presses replaced by redaction records, per rule.
    pub redacted: BTreeMap<String, u64>,
    /// Matches found after part of the match had already been released (holdback too short).
    pub late_matches: u64,
    /// Tokens whose keys were masked because they stayed open past a bound (`holdback_full`).
    #[serde(default)]
    pub holdback_masked: u64,
    pub pastes: u64,
    /// Input events not written because their user had paused capture.
    pub paused: u64,
    /// Relative motion events summed into others (`policy.motion_*`).
    #[serde(default)]
    pub motion_coalesced: u64,
    /// The layout typed text is rebuilt with (set once a context at `full` is typed in).
    #[serde(default)]
    pub keymap: String,
    /// True when that is the built-in US table because xkb could not be used.
    #[serde(default)]
    pub keymap_fallback: bool,
}

/// A user's pause, in event time (CLOCK_MONOTONIC, as input events are stamped), and the
/// gap it has made so far. Event time rather than arrival time: an event typed before the
/// pause but read after it is still written, one typed during it never is.
struct Pause {
    from_ns: u64,
    until_ns: u64,
    gap: Option<Gap>,
}

/// The focused context and what policy decided about it (for `imprint status`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CurrentFocus {
    pub seq: u64,
    pub uid: Option<u32>,
    pub exe: String,
    pub app_id: String,
    pub level: String,
    pub rule: String,
    pub secure: Option<String>,
}

struct Held {
    id: u64,
    /// Ring sequence number of the frame the record came from (or was triggered by).
    seq: u64,
    rec: Record,
    /// Redaction group the record belongs to.
    group: Option<u64>,
    /// Event time (0 for records without one).
    t: u64,
    is_key: bool,
}

/// Where a key's release (and repeats) belong: with what its press typed.
#[derive(Clone, Copy)]
enum Owner {
    /// Out of scope: the release is dropped too (Enter typed in a shell that is `off`
    /// starts a program that is in scope before the key comes up).
    Dropped,
    /// Masked at `timing`: the release is masked too.
    Masked,
    /// Char `cid` of `focus`'s text.
    Char(u64, u64),
    /// A dead key or compose key, whose char is still to come.
    Composing,
}

/// The records of a dead key or compose sequence in progress on one keyboard.
struct Composing {
    focus: u64,
    ids: Vec<u64>,
}

struct Group {
    rule: String,
    focus: u64,
}

/// The context whose token may still be open, and since when (event time).
struct Typing {
    focus: u64,
    since_ns: u64,
}

#[derive(Default)]
struct OpenRedaction {
    /// Ring seq of its first key event: the redaction record is not on disk before it is.
    seq: u64,
    group: u64,
    rec: Redaction,
}

/// The policy applied to a stream of records.
pub struct Filter {
    policy: Policy,
    foci: BTreeMap<u64, Arc<FocusInfo>>,
    devices: BTreeMap<u32, DeviceInfo>,
    decisions: HashMap<(u64, Option<DeviceClass>), Decision>,
    /// Loaded when a context at `full` is first typed in (compiling a keymap takes ms).
    layout: Option<Layout>,
    keyboards: HashMap<u32, Keyboard>,
    composing: HashMap<u32, Composing>,
    texts: HashMap<u64, Text>,
    motion: Coalescer,
    /// (id → ring seq) of held records queued behind records of a later frame (counts,
    /// summed motion): the front of the queue does not say how old they are.
    early: BTreeMap<u64, u64>,
    /// Held records, ids consecutive from the front.
    queue: VecDeque<Held>,
    next_id: u64,
    held_keys: usize,
    newest_ns: u64,
    last_push: Option<Instant>,
    counts: BTreeMap<u64, Counts>,
    /// Ring seq of the first event in each pending counts record.
    counts_seq: BTreeMap<u64, u64>,
    /// Ring seq of the record being pushed.
    cur_seq: u64,
    frame_admitted: HashMap<u32, bool>,
    pending_scan: HashMap<u32, u64>,
    /// (device, code) → what the last press of that key typed.
    key_owner: HashMap<(u32, u16), Owner>,
    /// Keyboard keys whose press this filter has seen and that are still down: the level
    /// and focus their press was decided with.
    seen_down: HashMap<(u32, u16), (Level, u64)>,
    groups: HashMap<u64, Group>,
    next_group: u64,
    open: Option<OpenRedaction>,
    typing: Option<Typing>,
    current: Option<CurrentFocus>,
    /// Users who paused capture of their own sessions (by uid).
    pauses: HashMap<u32, Pause>,
    pub stats: FilterStats,
}

impl Filter {
    pub fn new(policy: Policy) -> Filter {
        let s = policy.settings();
        let motion = Coalescer::new(s.motion_interval_ms, s.motion_distance);
        Filter {
            policy,
            foci: BTreeMap::new(),
            devices: BTreeMap::new(),
            decisions: HashMap::new(),
            layout: None,
            keyboards: HashMap::new(),
            composing: HashMap::new(),
            texts: HashMap::new(),
            motion,
            early: BTreeMap::new(),
            queue: VecDeque::new(),
            next_id: 1,
            held_keys: 0,
            newest_ns: 0,
            last_push: None,
            counts: BTreeMap::new(),
            counts_seq: BTreeMap::new(),
            cur_seq: 0,
            frame_admitted: HashMap::new(),
            pending_scan: HashMap::new(),
            key_owner: HashMap::new(),
            seen_down: HashMap::new(),
            groups: HashMap::new(),
            next_group: 1,
            open: None,
            typing: None,
            current: None,
            pauses: HashMap::new(),
            stats: FilterStats::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (SIGHUP). Held records are released under the old one first.
    pub fn set_policy(&mut self, policy: Policy, out: &mut Vec<Record>) {
        self.flush(out);
        let (old, new) = (self.policy.settings(), policy.settings());
        if (&old.keymap, &old.compose_locale) != (&new.keymap, &new.compose_locale) {
            self.layout = None;
            self.keyboards.clear();
        }
        self.motion = Coalescer::new(new.motion_interval_ms, new.motion_distance);
        self.policy = policy;
        self.decisions.clear();
        self.texts.clear();
        self.composing.clear();
        self.key_owner.clear();
        let cur = self.current.as_ref().map(|c| c.seq);
        if let Some(seq) = cur {
            let f = self.foci.get(&seq).cloned();
            self.set_current(f.as_deref());
        }
    }

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
    fn paused(&mut self, focus: u64, e: &InputEvent) -> bool {
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

    fn push_pause_gap(&mut self, gap: Option<Gap>) {
        if let Some(g) = gap {
            self.push(Record::Gap(g), None, g.to_ns, false);
        }
    }

    /// The focused context and its decision.
    /// The device classes the policy admits for focus `seq` (bits of
    /// [`imprint_record::wire::class`]); 0 when it admits nothing.
    pub fn admitted_classes(&mut self, seq: u64) -> u32 {
        use imprint_record::wire::class;
        [
            (DeviceClass::Keyboard, class::KEYBOARD),
            (DeviceClass::Pointer, class::POINTER),
            (DeviceClass::Touchpad, class::TOUCHPAD),
            (DeviceClass::Tablet, class::TABLET),
            (DeviceClass::Virtual, class::VIRTUAL),
        ]
        .into_iter()
        .filter(|(c, _)| self.decision(seq, *c).level > Level::Off)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    pub fn current(&self) -> Option<&CurrentFocus> {
        self.current.as_ref()
    }

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
    fn only_token_held(&self) -> bool {
        let Some(hold) = self.token_hold() else {
            return false;
        };
        self.open.is_none()
            && self.counts.is_empty()
            && self.motion.is_empty()
            && self.queue.front().is_none_or(|f| f.id >= hold)
    }

    /// Idle: writes everything held before the open token.
    fn release_before_token(&mut self, out: &mut Vec<Record>) {
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
    fn queue_pending(&mut self) {
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

    /// Applies policy to one record; what may be written is appended to `out` (possibly later,
    /// after the holdback window).
    pub fn push_record(&mut self, rec: Record, out: &mut Vec<Record>) {
        self.push_record_seq(rec, 0, out);
    }

    /// As [`Filter::push_record`], for a record read from ring frame `seq`.
    pub fn push_record_seq(&mut self, rec: Record, seq: u64, out: &mut Vec<Record>) {
        self.cur_seq = seq;
        match rec {
            Record::Event(e) => self.event(e),
            Record::Focus(f) => self.push_focus(Arc::from(f)),
            Record::Device(d) => {
                if d.removed {
                    self.devices.remove(&d.index);
                } else {
                    self.devices.insert(d.index, d.clone());
                }
                if !self.policy.captures_nothing() {
                    self.push(Record::Device(d), None, 0, false);
                }
            }
            other @ (Record::Gap(_)
            | Record::Policy(_)
            | Record::Redaction(_)
            | Record::Counts(_)
            | Record::Paste(_)) => {
                self.push(other, None, 0, false);
            }
            Record::Pointer(p) => self.pointer(p),
            Record::Window(w) => {
                let shown = self
                    .foci
                    .get(&w.focus)
                    .cloned()
                    .is_some_and(|f| self.shown(&f));
                if shown {
                    self.push(Record::Window(w), None, w.mono_ns, false);
                }
            }
            Record::Display(d) => {
                if !self.policy.captures_nothing() {
                    self.push(Record::Display(d), None, 0, false);
                }
            }
            Record::Other => {}
        }
        self.release(out);
    }

    fn push_focus(&mut self, f: Arc<FocusInfo>) {
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
    fn shown(&self, f: &FocusInfo) -> bool {
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

    /// A pointer position is kept where the pointer's own events are kept with their timing
    /// (level `timing` or `full`), and never while its user has paused.
    fn pointer(&mut self, p: PointerSample) {
        let level = self.decision(p.focus, DeviceClass::Pointer).level;
        if level < Level::Timing || self.is_paused(p.focus, p.mono_ns) {
            self.stats.dropped_pointer += 1;
            return;
        }
        self.push(Record::Pointer(p), None, p.mono_ns, false);
    }

    /// True when `focus`'s user has a pause covering `t`; unlike [`Filter::paused`] it
    /// neither counts nor ends the pause.
    fn is_paused(&self, focus: u64, t: u64) -> bool {
        self.foci
            .get(&focus)
            .filter(|f| !f.unknown)
            .and_then(|f| self.pauses.get(&f.uid))
            .is_some_and(|p| t >= p.from_ns && t < p.until_ns)
    }

    fn set_current(&mut self, f: Option<&FocusInfo>) {
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

    fn decision(&mut self, focus: u64, class: DeviceClass) -> Decision {
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

    fn event(&mut self, mut e: InputEvent) {
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

    fn count(&mut self, e: InputEvent) {
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

    /// The state of keyboard `device` (loading the layout on first use).
    fn keyboard(&mut self, device: u32) -> &mut Keyboard {
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

    fn full_key(&mut self, e: InputEvent) {
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

    /// After a key changed `focus`'s text: is a token still open there?
    fn follow_token(&mut self, focus: u64, t: u64) {
        let Some(text) = self.texts.get_mut(&focus) else {
            self.typing = None;
            return;
        };
        if text.open_token().is_none() {
            text.masking = None;
            self.typing = None;
            return;
        }
        let since_ns = match &self.typing {
            Some(ty) if ty.focus == focus => ty.since_ns,
            _ => t,
        };
        self.typing = Some(Typing { focus, since_ns });
    }

    /// The first held record of the open token: the holdback releases nothing from there on
    /// until the token ends. `None` when no token is open or it is already masked.
    fn token_hold(&self) -> Option<u64> {
        let ty = self.typing.as_ref()?;
        let text = self.texts.get(&ty.focus)?;
        if text.masking.is_some() {
            return None;
        }
        let r = text.open_token()?;
        text.chars[r]
            .iter()
            .flat_map(|c| c.ids.iter().copied())
            .min()
    }

    /// True when the open token has outgrown what may be held (see [`token`]'s bounds).
    fn token_over_bound(&self) -> bool {
        let Some(ty) = &self.typing else {
            return false;
        };
        let Some(text) = self.texts.get(&ty.focus) else {
            return false;
        };
        if text.masking.is_some() {
            return false;
        }
        let chars = text.open_token().map_or(0, |r| r.len());
        chars > token::MAX_CHARS
            || self.newest_ns.saturating_sub(ty.since_ns) > token::MAX_OPEN_MS * 1_000_000
            || self.queue.len() > token::MAX_HELD_RECORDS
    }

    /// Fail closed: the open token's keys become a `holdback_full` redaction, and so do its
    /// further chars until it ends.
    fn mask_token(&mut self) {
        let Some(focus) = self.typing.as_ref().map(|t| t.focus) else {
            return;
        };
        let Some(r) = self.texts.get(&focus).and_then(|t| t.open_token()) else {
            return;
        };
        if let Some(g) = self.redact_span(focus, "holdback_full", r.start, r.end) {
            self.stats.holdback_masked += 1;
            if let Some(t) = self.texts.get_mut(&focus) {
                t.masking = Some(g);
            }
        }
    }

    /// A click moves the caret somewhere unknown: it ends the token being typed.
    fn end_token_by_click(&mut self) {
        if let Some(ty) = self.typing.take() {
            if let Some(t) = self.texts.get_mut(&ty.focus) {
                t.moved();
            }
        }
    }

    fn text(&mut self, focus: u64) -> &mut Text {
        self.texts.entry(focus).or_default()
    }

    /// Inserts a char in a focus context's text; returns its char id.
    fn text_push(&mut self, focus: u64, c: char, id: Option<u64>) -> u64 {
        let (cid, group) = self.text(focus).insert(c, id);
        if let (Some(g), Some(id)) = (group, id) {
            self.mark(id, g);
        }
        cid
    }

    /// Adds record `id` (and a scan code) to char `cid` of `focus`, redacting it with the char.
    fn link(&mut self, focus: u64, cid: u64, id: u64, scan: Option<u64>) {
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

    /// Writes summed motion (through the holdback queue, as of its first frame).
    fn push_motion(&mut self, m: Motion) {
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

    fn scan_text(&mut self, focus: u64) {
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
    fn redact_span(&mut self, focus: u64, rule: &str, a: usize, b: usize) -> Option<u64> {
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

    fn mark(&mut self, id: u64, g: u64) {
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

    fn push(&mut self, rec: Record, group: Option<u64>, t: u64, is_key: bool) -> u64 {
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
    fn release(&mut self, out: &mut Vec<Record>) {
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

    fn emit(&mut self, h: Held, out: &mut Vec<Record>) {
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

    fn close_open(&mut self, out: &mut Vec<Record>) {
        if let Some(o) = self.open.take() {
            *self.stats.redacted.entry(o.rec.rule.clone()).or_insert(0) += u64::from(o.rec.count);
            out.push(Record::Redaction(Box::new(o.rec)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::{Origin, RuleConfig};
    use super::super::PolicySpec;
    use super::*;

    fn policy(level: Level) -> Policy {
        Policy::compile(PolicySpec {
            rules: vec![RuleConfig {
                name: Some("app".into()),
                exe: Some("/usr/bin/app".into()),
                level,
                origin: Origin::default(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("policy")
    }

    fn focus(seq: u64, exe: &str) -> Record {
        Record::Focus(Box::new(FocusInfo {
            seq,
            exe: exe.into(),
            uid: 1000,
            ..Default::default()
        }))
    }

    /// Press/release (with scan codes and SYN frames) for each key code.
    fn typing(codes: &[(u16, bool)], focus: u64) -> Vec<Record> {
        paced(codes, focus, 1_000_000, 10_000_000).0
    }

    /// As [`typing`], from event time `t0`, `step` ns between events; and the time after.
    fn paced(codes: &[(u16, bool)], focus: u64, t0: u64, step: u64) -> (Vec<Record>, u64) {
        let mut out = Vec::new();
        let mut t = t0;
        let ev = |t: u64, kind: u16, code: u16, value: i32| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 1,
                kind,
                code,
                value,
                focus,
            })
        };
        for (code, shift) in codes {
            for value in [1, 0] {
                if *shift && value == 1 {
                    out.push(ev(t, EV_KEY, keys::KEY_LEFTSHIFT, 1));
                    out.push(ev(t, EV_SYN, 0, 0));
                }
                out.push(ev(t, EV_MSC, MSC_SCAN, 0x70000 + i32::from(*code)));
                out.push(ev(t, EV_KEY, *code, value));
                out.push(ev(t, EV_SYN, 0, 0));
                t += step;
                if *shift && value == 0 {
                    out.push(ev(t, EV_KEY, keys::KEY_LEFTSHIFT, 0));
                    out.push(ev(t, EV_SYN, 0, 0));
                }
            }
        }
        (out, t)
    }

    /// US key codes for `s` (letters, digits, a few symbols).
    fn codes(s: &str) -> Vec<(u16, bool)> {
        let mut m = keys::Modifiers::default();
        s.chars()
            .map(|c| {
                for shift in [false, true] {
                    m.shift = u8::from(shift);
                    for code in 0..128u16 {
                        if keys::us_char(code, &m) == Some(c) {
                            return (code, shift);
                        }
                    }
                }
                panic!("no key for {c:?}")
            })
            .collect()
    }

    fn run(p: Policy, recs: Vec<Record>) -> (Vec<Record>, FilterStats) {
        let mut f = Filter::new(p);
        let mut out = Vec::new();
        for r in recs {
            f.push_record(r, &mut out);
        }
        f.flush(&mut out);
        (out, f.stats)
    }

    fn key_events(out: &[Record]) -> Vec<InputEvent> {
        out.iter()
            .filter_map(|r| match r {
                Record::Event(e) if e.kind == EV_KEY => Some(*e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn no_rule_writes_nothing() {
        let mut recs = vec![focus(1, "/usr/bin/other")];
        recs.extend(typing(&codes("hello"), 1));
        let (out, stats) = run(policy(Level::Full), recs);
        assert!(
            out.iter().all(|r| !matches!(r, Record::Event(_))),
            "{out:?}"
        );
        assert!(out.iter().all(|r| !matches!(r, Record::Focus(_))));
        assert!(stats.dropped_policy > 0);
        // Unknown focus (seq 0) likewise.
        let (out, _) = run(policy(Level::Full), typing(&codes("hello"), 0));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn timing_keeps_timing_not_identity() {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        let typed = typing(&codes("Hi there"), 1);
        let n_keys = typed
            .iter()
            .filter(|r| matches!(r, Record::Event(e) if e.kind == EV_KEY))
            .count();
        recs.extend(typed);
        let (out, stats) = run(policy(Level::Timing), recs);
        let keys = key_events(&out);
        assert_eq!(keys.len(), n_keys, "every key event's timing is kept");
        assert!(keys
            .iter()
            .all(|e| e.code == KEY_A || !keys::is_printable_key(e.code)));
        assert!(keys.iter().any(|e| e.code == keys::KEY_LEFTSHIFT));
        assert!(out
            .iter()
            .all(|r| !matches!(r, Record::Event(e) if e.kind == EV_MSC)));
        assert_eq!(stats.masked_keys, 16);
    }

    #[test]
    fn counts_writes_counts_only() {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        recs.extend(typing(&codes("abc"), 1));
        let (out, _) = run(policy(Level::Counts), recs);
        assert!(out.iter().all(|r| !matches!(r, Record::Event(_))));
        let keys: u32 = out
            .iter()
            .filter_map(|r| match r {
                Record::Counts(c) => Some(c.keys),
                _ => None,
            })
            .sum();
        assert_eq!(keys, 3);
    }

    fn redacted(text: &str) -> (Vec<Record>, String) {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        recs.extend(typing(&codes(text), 1));
        let (out, _) = run(policy(Level::Full), recs);
        // Rebuild what is left from the written key presses.
        let mut m = keys::Modifiers::default();
        let mut left = String::new();
        for e in key_events(&out) {
            m.update(e.code, e.value);
            if e.value == 1 {
                if let Some(c) = keys::us_char(e.code, &m) {
                    left.push(c);
                }
            }
        }
        (out, left)
    }

    #[test]
    fn full_redacts_canaries_and_keeps_timing() {
        for (canary, rule) in [
            ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
            ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "github_token"),
            ("4111111111111111", "card_number"),
            ("bob@example.com", "email"),
        ] {
            let (out, left) = redacted(&format!("x {canary} y"));
            assert!(!left.contains(canary), "{rule}: {left}");
            assert!(
                left.starts_with("x ") && left.ends_with(" y"),
                "{rule}: {left:?}"
            );
            let r: Vec<&Redaction> = out
                .iter()
                .filter_map(|r| match r {
                    Record::Redaction(r) => Some(&**r),
                    _ => None,
                })
                .collect();
            assert_eq!(r.len(), 1, "{rule}: {r:?}");
            assert_eq!(r[0].rule, rule);
            assert_eq!(r[0].count as usize, canary.len());
            assert_eq!(r[0].key_times_ns.len(), canary.len());
            assert!(r[0].from_ns < r[0].to_ns);
            // No scan code of a redacted key survives.
            let scans = out
                .iter()
                .filter(|r| matches!(r, Record::Event(e) if e.kind == EV_MSC))
                .count();
            assert_eq!(scans, 2 * "x  y".len(), "{rule}");
        }
    }

    #[test]
    fn pem_block_is_redacted() {
        let (out, left) = redacted("-----BEGIN PRIVATE KEY-----abcdef-----END PRIVATE KEY-----ok");
        assert_eq!(left, "ok", "{out:?}");
        assert!(out
            .iter()
            .any(|r| matches!(r, Record::Redaction(r) if r.rule == "private_key")));
    }

    #[test]
    fn assignment_value_is_redacted() {
        let (_, left) = redacted("password=hunter2 ");
        assert_eq!(left, "password= ");
    }

    #[test]
    fn a_pause_writes_a_gap_instead_of_events() {
        let mut f = Filter::new(policy(Level::Timing));
        let mut out = Vec::new();
        f.push_record(focus(1, "/usr/bin/app"), &mut out);
        // typing() starts at 1 ms and takes 20 ms a key: "xab" pauses on "ab" only.
        f.pause(1000, 21_000_000, 61_000_000);
        f.pause(1001, 0, u64::MAX);
        for r in typing(&codes("xabc"), 1) {
            f.push_record(r, &mut out);
        }
        f.flush(&mut out);
        let gaps: Vec<&Gap> = out
            .iter()
            .filter_map(|r| match r {
                Record::Gap(g) => Some(g),
                _ => None,
            })
            .collect();
        // "ab": 2 keys × (scan + press, scan + release); SYN reports are not counted.
        assert_eq!(gaps.len(), 1, "{out:?}");
        assert_eq!((gaps[0].stage, gaps[0].count), (Stage::Paused, 8));
        assert_eq!(f.stats.paused, 8);
        // Only "x" and "c" (press and release) were written, and the gap sits between them.
        assert_eq!(key_events(&out).len(), 4);
        let gap_at = out.iter().position(|r| matches!(r, Record::Gap(_)));
        let c_at = out
            .iter()
            .rposition(|r| matches!(r, Record::Event(e) if e.kind == EV_KEY));
        assert!(gap_at < c_at, "{out:?}");
    }

    #[test]
    fn a_key_pressed_out_of_scope_is_released_out_of_scope() {
        let ev = |t: u64, code: u16, value: i32, focus: u64| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 1,
                kind: EV_KEY,
                code,
                value,
                focus,
            })
        };
        // Enter goes down in the shell (no rule), which starts the app before it comes up.
        let recs = vec![
            focus(1, "/bin/sh"),
            ev(1, keys::KEY_ENTER, 1, 1),
            focus(2, "/usr/bin/app"),
            ev(2, keys::KEY_ENTER, 0, 2),
            ev(3, keys::KEY_ENTER, 1, 2),
            ev(4, keys::KEY_ENTER, 0, 2),
        ];
        let (out, _) = run(policy(Level::Full), recs);
        let times: Vec<u64> = key_events(&out).iter().map(|e| e.mono_ns).collect();
        assert_eq!(times, [3, 4]);
    }

    #[test]
    fn paste_is_a_marker() {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        let ev = |t: u64, code: u16, value: i32| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 1,
                kind: EV_KEY,
                code,
                value,
                focus: 1,
            })
        };
        recs.extend([
            ev(1, keys::KEY_LEFTCTRL, 1),
            ev(2, keys::KEY_V, 1),
            ev(3, keys::KEY_V, 0),
            ev(4, keys::KEY_LEFTCTRL, 0),
        ]);
        let (out, stats) = run(policy(Level::Full), recs);
        assert_eq!(stats.pastes, 1);
        assert!(out.iter().any(|r| matches!(r, Record::Paste(_))));
    }

    #[test]
    fn password_manager_is_timing_even_when_full() {
        let p = Policy::compile(PolicySpec {
            policy: super::super::PolicyConfig {
                default: Some(Level::Full),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("policy");
        let mut recs = vec![focus(1, "/usr/bin/keepassxc")];
        recs.extend(typing(&codes("secret"), 1));
        let (out, _) = run(p, recs);
        assert!(key_events(&out).iter().all(|e| e.code == KEY_A));
    }

    #[test]
    fn text_edited_with_the_cursor_is_redacted() {
        // "bob@exmple.com", eight times Left, "a": the text is bob@example.com.
        let mut keys = codes("x bob@exmple.com");
        keys.extend([(keys::KEY_LEFT, false); 8]);
        keys.extend(codes("a"));
        let mut recs = vec![focus(1, "/usr/bin/app")];
        recs.extend(typing(&keys, 1));
        let (out, stats) = run(policy(Level::Full), recs);
        assert_eq!(stats.redacted.get("email"), Some(&15), "{out:?}");
        assert!(!stats.keymap.is_empty());
    }

    /// Types `parts` into the app at `full` with `step` ns between events and `pause` ns
    /// between parts (`\u{8}` is Backspace); what is left of the text, and the redactions.
    fn typed_slowly(parts: &[&str], step: u64, pause: u64) -> (String, Vec<Redaction>) {
        let mut recs = vec![focus(1, "/usr/bin/app")];
        let mut t = 1_000_000;
        for part in parts {
            let mut codes = Vec::new();
            for c in part.chars() {
                if c == '\u{8}' {
                    codes.push((keys::KEY_BACKSPACE, false));
                } else {
                    codes.extend(self::codes(&c.to_string()));
                }
            }
            let (r, end) = paced(&codes, 1, t, step);
            recs.extend(r);
            t = end + pause;
        }
        let (out, _) = run(policy(Level::Full), recs);
        let mut m = keys::Modifiers::default();
        let mut left = String::new();
        for e in key_events(&out) {
            m.update(e.code, e.value);
            if e.value == 1 {
                if e.code == keys::KEY_BACKSPACE {
                    left.pop();
                } else if let Some(c) = keys::us_char(e.code, &m) {
                    left.push(c);
                }
            }
        }
        let reds = out
            .iter()
            .filter_map(|r| match r {
                Record::Redaction(r) => Some((**r).clone()),
                _ => None,
            })
            .collect();
        (left, reds)
    }

    /// Every redaction accounts exactly: a key time per key, from and to at the first and
    /// last of them.
    fn accounts(r: &Redaction) {
        assert!(r.count > 0, "{r:?}");
        assert_eq!(r.count as usize, r.key_times_ns.len(), "{r:?}");
        assert_eq!(r.key_times_ns.iter().min(), Some(&r.from_ns), "{r:?}");
        assert_eq!(r.key_times_ns.iter().max(), Some(&r.to_ns), "{r:?}");
    }

    #[test]
    fn a_token_typed_slower_than_the_window_is_held_whole() {
        // 800 ms a key: the token takes 33 s, far past the 5 s window.
        let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
        let (left, reds) = typed_slowly(&[&format!("x {token} y")], 400_000_000, 0);
        assert_eq!(left, "x  y");
        assert_eq!(reds.len(), 1, "{reds:?}");
        assert_eq!(reds[0].rule, "github_token");
        assert_eq!(reds[0].count as usize, token.len());
        accounts(&reds[0]);
    }

    #[test]
    fn a_pause_or_a_backspace_inside_a_secret_releases_nothing() {
        // A card number typed in groups with a 30 s pause to look up the rest.
        let (left, reds) = typed_slowly(
            &["card 4111 1111 ", "1111 1111 ok"],
            60_000_000,
            30_000_000_000,
        );
        assert!(!left.contains("4111") && !left.contains("1111"), "{left:?}");
        assert!(
            left.starts_with("card ") && left.ends_with("ok"),
            "{left:?}"
        );
        assert!(reds.iter().any(|r| r.rule == "card_number"), "{reds:?}");
        reds.iter().for_each(accounts);
        // A typo corrected with Backspace in the middle of a token, with pauses.
        let (left, reds) = typed_slowly(
            &["x ghp_0123456789abcdefgX", "\u{8}hijklmnopqrstuvwxyzAB y"],
            300_000_000,
            20_000_000_000,
        );
        assert_eq!(left, "x  y", "{reds:?}");
        reds.iter().for_each(accounts);
    }

    #[test]
    fn a_token_past_its_bounds_is_masked_not_released() {
        let long: String = "abcdefghij".repeat(25);
        let (left, reds) = typed_slowly(&[&format!("ok {long} fine")], 5_000_000, 0);
        assert_eq!(left, "ok  fine", "{reds:?}");
        assert_eq!(reds.len(), 1, "{reds:?}");
        assert_eq!(reds[0].rule, "holdback_full");
        assert_eq!(reds[0].count as usize, long.len());
        accounts(&reds[0]);
        // Open for longer than a minute of event time.
        let (left, reds) = typed_slowly(&["ok abc", "def fine"], 50_000_000, 70_000_000_000);
        assert_eq!(left, "ok  fine", "{reds:?}");
        assert_eq!(reds[0].rule, "holdback_full");
    }

    #[test]
    fn prose_typed_slowly_is_kept() {
        let text = "the quick brown fox, at 3 pm (or so), said \"hi there\" and left.";
        let (left, reds) = typed_slowly(&[text], 300_000_000, 0);
        assert_eq!(left, text);
        assert!(reds.is_empty(), "{reds:?}");
    }

    fn motion_policy(interval_ms: u64, distance: u32) -> Policy {
        Policy::compile(PolicySpec {
            policy: super::super::PolicyConfig {
                motion_interval_ms: interval_ms,
                motion_distance: distance,
                ..Default::default()
            },
            rules: vec![RuleConfig {
                exe: Some("/usr/bin/app".into()),
                level: Level::Timing,
                origin: Origin::default(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("policy")
    }

    /// Mouse frames (REL_X, REL_Y, SYN) 1 ms apart from ring seq 10 on, then a click.
    fn mouse(moves: &[(i32, i32)]) -> Vec<(u64, Record)> {
        let ev = |t: u64, kind: u16, code: u16, value: i32| {
            Record::Event(InputEvent {
                mono_ns: t,
                device: 2,
                kind,
                code,
                value,
                focus: 1,
            })
        };
        let mut recs = vec![(1, focus(1, "/usr/bin/app"))];
        let mut seq = 10;
        for (i, (dx, dy)) in moves.iter().enumerate() {
            let t = (i as u64 + 1) * 1_000_000;
            recs.push((seq, ev(t, EV_REL, keys::REL_X, *dx)));
            recs.push((seq, ev(t, EV_REL, keys::REL_Y, *dy)));
            recs.push((seq, ev(t, EV_SYN, 0, 0)));
            seq += 1;
        }
        let t = (moves.len() as u64 + 1) * 1_000_000;
        recs.push((seq, ev(t, EV_KEY, 0x110, 1)));
        recs.push((seq, ev(t, EV_SYN, 0, 0)));
        recs
    }

    #[test]
    fn coalesced_motion_keeps_sums_and_comes_before_the_click() {
        let moves: Vec<(i32, i32)> = (0..50).map(|i| (i % 5 - 1, 3 - i % 4)).collect();
        let sum = moves.iter().fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
        for (interval, distance) in [(0, 0), (10, 0), (0, 25), (1000, 0)] {
            let mut f = Filter::new(motion_policy(interval, distance));
            let mut out = Vec::new();
            for (seq, r) in mouse(&moves) {
                f.push_record_seq(r, seq, &mut out);
            }
            f.flush(&mut out);
            let evs: Vec<InputEvent> = out
                .iter()
                .filter_map(|r| match r {
                    Record::Event(e) => Some(*e),
                    _ => None,
                })
                .collect();
            let rel: Vec<&InputEvent> = evs.iter().filter(|e| e.kind == EV_REL).collect();
            let got = rel.iter().fold((0, 0), |(a, b), e| match e.code {
                keys::REL_X => (a + e.value, b),
                _ => (a, b + e.value),
            });
            assert_eq!(got, sum, "sums kept ({interval}, {distance})");
            let click = evs.iter().position(|e| e.kind == EV_KEY);
            let last_rel = evs.iter().rposition(|e| e.kind == EV_REL);
            assert!(last_rel < click, "motion before the click");
            assert_eq!(evs.last().map(|e| e.kind), Some(EV_SYN));
            let n_rel = moves
                .iter()
                .map(|(x, y)| usize::from(*x != 0) + usize::from(*y != 0))
                .sum::<usize>();
            if interval == 0 && distance == 0 {
                assert_eq!(rel.len(), 100, "off: every event kept");
                assert_eq!(f.stats.motion_coalesced, 0);
            } else {
                assert!(rel.len() < n_rel / 2, "{}: {rel:?}", rel.len());
                assert_eq!(f.stats.motion_coalesced as usize, 100 - rel.len());
                // Every SYN closes a frame with something in it.
                assert!(evs
                    .windows(2)
                    .all(|w| w[0].kind != EV_SYN || w[1].kind != EV_SYN));
            }
            if interval == 1000 {
                // One sum at once (the first frame), one with the rest before the click.
                assert_eq!(rel.len(), 4, "{rel:?}");
            }
        }
    }

    #[test]
    fn summed_motion_holds_the_commit_position() {
        let mut p = motion_policy(1000, 0);
        let mut spec = (*p.spec).clone();
        spec.policy.holdback_ms = 1;
        p = Policy::compile(spec).expect("policy");
        let mut f = Filter::new(p);
        let mut out = Vec::new();
        let recs = mouse(&[(1, 1), (2, 2), (3, 3)]);
        // The first frame (seq 10) is written at once (and released by 3 ms: the window is
        // 1 ms); 11 and 12 are summed.
        for (seq, r) in recs.iter().take(1 + 3 * 3).cloned() {
            f.push_record_seq(r, seq, &mut out);
        }
        assert_eq!(f.oldest_held_seq(), Some(11));
        // A key (seq 13) releases what is older than the 1 ms window, not the sum.
        let key = InputEvent {
            mono_ns: 3_500_000,
            device: 1,
            kind: EV_KEY,
            code: keys::KEY_LEFTSHIFT,
            value: 1,
            focus: 1,
        };
        f.push_record_seq(Record::Event(key), 13, &mut out);
        assert_eq!(f.oldest_held_seq(), Some(11));
        // The click (seq 14) writes the sum behind the key: it still holds seq 11.
        for (seq, r) in recs.iter().skip(1 + 3 * 3).cloned() {
            f.push_record_seq(r, seq + 1, &mut out);
        }
        assert!(f.motion.is_empty());
        assert_eq!(f.oldest_held_seq(), Some(11));
        f.flush(&mut out);
        assert_eq!(f.oldest_held_seq(), None);
        assert!(f.early.is_empty());
    }
}

#[cfg(test)]
mod props {
    use super::super::rules::{Origin, RuleConfig};
    use super::super::PolicySpec;
    use super::*;
    use proptest::prelude::*;

    fn policy(level: Level) -> Policy {
        Policy::compile(PolicySpec {
            rules: vec![RuleConfig {
                exe: Some("/usr/bin/app".into()),
                level,
                origin: Origin::default(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .expect("policy")
    }

    proptest! {
        /// Arbitrary event streams never panic; at `timing` no printable key identity and no
        /// scan code is written; with no focus nothing is written.
        #[test]
        fn arbitrary_streams(evs in proptest::collection::vec(
            (0u16..5, 0u16..0x200, -1i32..3, 0u64..3, 0u32..2), 0..300)) {
            for level in [Level::Full, Level::Timing, Level::Counts] {
                let mut f = Filter::new(policy(level));
                let mut out = Vec::new();
                f.push_record(Record::Focus(Box::new(FocusInfo {
                    seq: 1,
                    exe: "/usr/bin/app".into(),
                    ..Default::default()
                })), &mut out);
                for (i, (kind, code, value, focus, device)) in evs.iter().enumerate() {
                    f.push_record(Record::Event(InputEvent {
                        mono_ns: i as u64 * 1_000_000,
                        device: *device,
                        kind: *kind,
                        code: *code,
                        value: *value,
                        focus: *focus,
                    }), &mut out);
                }
                f.flush(&mut out);
                for r in &out {
                    if let Record::Event(e) = r {
                        // (A SYN_REPORT closes a frame whose events were admitted.)
                        if e.kind != EV_SYN {
                            prop_assert_eq!(e.focus, 1, "only the in-scope focus is written");
                        }
                        if level == Level::Timing {
                            prop_assert!(!(e.kind == EV_MSC && e.code == MSC_SCAN));
                            if e.kind == EV_KEY && keys::is_keyboard_code(e.code) {
                                prop_assert!(e.code == KEY_A || !keys::is_printable_key(e.code));
                            }
                        }
                        prop_assert!(level != Level::Counts);
                    }
                }
            }
        }
    }
}
