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

mod counts;
mod held_token;
mod holdback;
mod levels;
mod pause;
mod pointer;
mod redaction;
mod scope;
#[cfg(test)]
mod tests;

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
}
