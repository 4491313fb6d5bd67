//! The action layer: one session's records → actions (click, drag, scroll, type, hotkey…),
//! each keeping the range of raw events it came from. Pure: records in, rows out.
//!
//! Pointer actions take their positions from the display server's samples ([`Samples`]);
//! without one the position is None with a reason. Kernel events alone decide what happened
//! (a click or a drag is told by device motion when no sample says where the pointer was).

use crate::pyautogui;
use crate::rows::{unix_ms, Action, PathPoint, Rect};
use crate::samples::{x_button, Found, Sample, Samples, Want};
use crate::text::{self, MASKED_CHAR, MASKED_KEY};
use imprint_policy::keys::{self, Modifiers, EV_KEY, EV_REL};
use imprint_policy::xkb::{Keyboard, Layout, Typed};
use imprint_policy::Level;
use imprint_record::{
    DisplayInfo, FocusInfo, InputEvent, PointerTrigger, Record, Redaction, WindowRect,
};
use std::collections::HashMap;

/// A press and release closer than this (root pixels) is a click, unless the desktop's
/// double-click distance says otherwise.
pub const CLICK_DISTANCE_PX: f64 = 4.0;
/// Without positions: device motion (sum of |REL_X| + |REL_Y|, device units) that makes a
/// press-release a drag.
pub const CLICK_SLOP_DEVICE_UNITS: i64 = 8;
/// A press held this long without moving is a long press.
pub const LONG_PRESS_NS: u64 = 500_000_000;
/// Double-click time when the desktop's is not known.
pub const DEFAULT_DOUBLE_CLICK_MS: u32 = 400;
/// Double-click distance when the desktop's is not known.
pub const DEFAULT_DOUBLE_CLICK_DISTANCE: u32 = 4;
/// Wheel events closer than this form one scroll.
pub const SCROLL_GROUP_NS: u64 = 300_000_000;
/// Motion samples further apart than this start a new move.
pub const MOVE_GAP_NS: u64 = 500_000_000;
/// A pause longer than this between keys ends a `type` action.
pub const TYPE_IDLE_NS: u64 = 1_000_000_000;

const BTN_LEFT: u16 = 0x110;
const BTN_RIGHT: u16 = 0x111;
const BTN_MIDDLE: u16 = 0x112;
const BTN_TASK: u16 = 0x117;

/// Where a record sat in the ring: its batch's epoch and sequence range (0: not known).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingPos {
    pub epoch: u64,
    pub first: u64,
    pub last: u64,
}

/// One record of a session, with what its batch says about it.
#[derive(Clone, Debug)]
pub struct Item {
    pub rec: Record,
    pub realtime_offset_ns: i64,
    pub ring: RingPos,
    /// The event's index in the export's `events` table (events only).
    pub event_index: Option<u64>,
    /// The level the policy applied to this event, when it can be told.
    pub level: Option<Level>,
}

impl Item {
    /// An item with no batch information (tests, tools).
    pub fn new(rec: Record) -> Item {
        Item {
            rec,
            realtime_offset_ns: 0,
            ring: RingPos::default(),
            event_index: None,
            level: None,
        }
    }
}

/// The actions of one session's items (in spool order), sorted by start time.
pub fn build(items: &[Item]) -> Vec<Action> {
    let samples = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| match &it.rec {
            Record::Pointer(p) => Some(Sample {
                t: if p.event_mono_ns != 0 {
                    p.event_mono_ns
                } else {
                    p.mono_ns
                },
                s: *p,
                item: i,
            }),
            _ => None,
        })
        .collect();
    let mut b = Builder {
        items,
        samples: Samples::new(samples),
        ..Builder::default()
    };
    for i in 0..items.len() {
        b.record(i);
    }
    b.flush_typing();
    b.flush_scroll();
    b.moves();
    let mut out = b.out;
    out.sort_by_key(|a| a.start_mono_ns);
    for a in &mut out {
        a.pyautogui = pyautogui::call(a);
    }
    out
}

/// A `type` action being accumulated.
struct Typing {
    first: usize,
    last: usize,
    t0: u64,
    t_end: u64,
    t_key: u64,
    device: u32,
    focus: u64,
    text: String,
    times: Vec<u64>,
}

/// A scroll being accumulated.
struct Scroll {
    first: usize,
    last: usize,
    t0: u64,
    t_end: u64,
    horizontal: bool,
    detents: i64,
    hi_res: i64,
    saw_detent: bool,
    saw_hi_res: bool,
    at: Result<Found, String>,
}

/// A pointer button held down.
struct Press {
    item: usize,
    t: u64,
    rel_at: i64,
}

/// The last left click, for double and triple clicks.
struct LastClick {
    out: usize,
    press_t: u64,
    at: Option<(f64, f64)>,
    count: u32,
}

/// A key or hotkey action that later repeats and the release extend.
struct KeyAction {
    out: usize,
    device: u32,
    code: u16,
}

#[derive(Default)]
struct Builder<'a> {
    items: &'a [Item],
    samples: Samples,
    display: Option<DisplayInfo>,
    foci: HashMap<u64, FocusInfo>,
    keymap: String,
    layout: Option<Layout>,
    keyboards: HashMap<u32, Keyboard>,
    mods: HashMap<u32, Modifiers>,
    typing: Option<Typing>,
    scroll: Option<Scroll>,
    pressed: HashMap<u16, Press>,
    rel_total: i64,
    last_click: Option<LastClick>,
    last_key: Option<KeyAction>,
    /// A Ctrl, Alt or Super pressed with no key yet: a tap of it alone is a `key`.
    lone_modifier: Option<(u32, u16, usize)>,
    /// Press..release of every button action (their motion samples belong to them).
    held_spans: Vec<(u64, u64)>,
    /// (time, item) of REL_X / REL_Y events, for the raw range of moves.
    motion_events: Vec<(u64, usize)>,
    out: Vec<Action>,
}

impl Builder<'_> {
    fn record(&mut self, i: usize) {
        match &self.items[i].rec {
            Record::Event(e) => self.event(i, *e),
            Record::Focus(f) => {
                self.flush_typing();
                self.flush_scroll();
                if !f.keymap.is_empty() && f.keymap != self.keymap {
                    self.keymap = f.keymap.clone();
                    self.layout = None;
                    self.keyboards.clear();
                }
                self.foci.insert(f.seq, (**f).clone());
                let mut a = self.base("focus", i, i, f.mono_ns, f.mono_ns, f.seq);
                a.window_rect = rect(f.window);
                self.push(a);
            }
            Record::Window(w) => {
                if let Some(f) = self.foci.get_mut(&w.focus) {
                    f.window = w.rect;
                }
            }
            Record::Display(d) => self.display = Some((**d).clone()),
            Record::Redaction(r) => self.redaction(i, r),
            Record::Gap(g) => {
                self.flush_typing();
                self.flush_scroll();
                let mut a = self.base("gap", i, i, g.from_ns, g.to_ns.max(g.from_ns), 0);
                a.gap_stage = Some(g.stage.as_str().to_owned());
                a.gap_count = Some(g.count);
                self.push(a);
            }
            // Counts carry no events (level `counts`: nothing below `timing` leaves), a paste
            // is already its shortcut's hotkey, and pointer samples are joined, not walked.
            Record::Counts(_)
            | Record::Paste(_)
            | Record::Pointer(_)
            | Record::Device(_)
            | Record::Policy(_)
            | Record::Other => {}
        }
    }

    fn redaction(&mut self, i: usize, r: &Redaction) {
        self.flush_typing();
        self.flush_scroll();
        let mut a = self.base("redacted", i, i, r.from_ns, r.to_ns.max(r.from_ns), r.focus);
        a.redaction_rule = Some(r.rule.clone());
        a.redaction_count = Some(r.count);
        a.redaction_placeholder = Some(r.placeholder.clone());
        a.key_times_ms = Some(
            r.key_times_ns
                .iter()
                .map(|t| ms_between(r.from_ns, *t))
                .collect(),
        );
        self.push(a);
    }

    fn event(&mut self, i: usize, e: InputEvent) {
        match e.kind {
            EV_KEY if (BTN_LEFT..=BTN_TASK).contains(&e.code) => self.button(i, e),
            EV_KEY if keys::is_keyboard_code(e.code) => self.key(i, e),
            EV_REL => match e.code {
                keys::REL_X | keys::REL_Y => {
                    self.rel_total = self.rel_total.saturating_add(i64::from(e.value).abs());
                    self.motion_events.push((e.mono_ns, i));
                }
                keys::REL_WHEEL
                | keys::REL_WHEEL_HI_RES
                | keys::REL_HWHEEL
                | keys::REL_HWHEEL_HI_RES => self.wheel(i, e),
                _ => {}
            },
            _ => {}
        }
    }

    // --- keyboard ---

    fn key(&mut self, i: usize, e: InputEvent) {
        let code = e.code;
        let masked = self.items[i].level == Some(Level::Timing) && code == keys::KEY_A;
        let held = {
            let m = self.mods.entry(e.device).or_default();
            if keys::is_modifier(code) {
                m.update(code, e.value);
            }
            *m
        };
        if keys::is_modifier(code) {
            self.keyboard(e.device).key(code, e.value);
            let tap_able = matches!(
                code,
                keys::KEY_LEFTCTRL
                    | keys::KEY_RIGHTCTRL
                    | keys::KEY_LEFTALT
                    | keys::KEY_LEFTMETA
                    | keys::KEY_RIGHTMETA
            );
            match e.value {
                1 if tap_able => self.lone_modifier = Some((e.device, code, i)),
                0 => {
                    if let Some((dev, c, first)) = self.lone_modifier.take() {
                        if (dev, c) == (e.device, code) {
                            self.flush_typing();
                            self.flush_scroll();
                            let mut a = self.key_action("key", first, i, e.focus);
                            a.keys = Some(vec![text::key_name(code)]);
                            a.modifiers = Some(Vec::new());
                            self.push(a);
                        }
                    }
                }
                _ => {}
            }
            return;
        }
        if e.value == 0 {
            if !masked {
                self.keyboard(e.device).key(code, 0);
            }
            self.extend_key_release(i, e);
            return;
        }
        self.lone_modifier = None;
        let shortcut = held.shortcut();
        if e.value == 2 && !keys::is_printable_key(code) {
            if let Some(k) = &self.last_key {
                if (k.device, k.code) == (e.device, code) && self.out.len() > k.out {
                    let out = k.out;
                    let a = &mut self.out[out];
                    a.repeat_count = Some(a.repeat_count.unwrap_or(0) + 1);
                    self.extend(out, i, e.mono_ns);
                    return;
                }
            }
        }
        if keys::is_printable_key(code) && !shortcut {
            let typed = if masked {
                Typed::Char(MASKED_CHAR)
            } else {
                self.keyboard(e.device).key(code, e.value)
            };
            match typed {
                Typed::Char(c) => self.type_char(i, e, Some(c)),
                Typed::Composing | Typed::Nothing | Typed::Moved => self.type_char(i, e, None),
                Typed::Newline | Typed::Tab | Typed::Backspace | Typed::Delete => {
                    self.type_char(i, e, None)
                }
                Typed::Left | Typed::Right | Typed::Paste => self.type_char(i, e, None),
            }
            return;
        }
        let typed = self.keyboard(e.device).key(code, e.value);
        if typed == Typed::Backspace && held.shift == 0 && !shortcut && self.typing_accepts(&e) {
            self.backspace(i, e);
            return;
        }
        self.flush_typing();
        self.flush_scroll();
        let name = if masked {
            MASKED_KEY.to_owned()
        } else {
            text::key_name(code)
        };
        let names = text::modifier_names(&held);
        let kind = if names.is_empty() { "key" } else { "hotkey" };
        let mut a = self.key_action(kind, i, i, e.focus);
        let mut ks = names.clone();
        ks.push(name);
        a.keys = Some(ks);
        a.modifiers = Some(names);
        let out = self.push(a);
        self.last_key = Some(KeyAction {
            out,
            device: e.device,
            code,
        });
    }

    fn keyboard(&mut self, device: u32) -> &mut Keyboard {
        let keymap = &self.keymap;
        let layout = self.layout.get_or_insert_with(|| text::layout_for(keymap));
        self.keyboards
            .entry(device)
            .or_insert_with(|| layout.keyboard())
    }

    /// The open `type` action takes this key (same keyboard and focus, not idle).
    fn typing_accepts(&self, e: &InputEvent) -> bool {
        self.typing.as_ref().is_some_and(|t| {
            t.device == e.device
                && t.focus == e.focus
                && e.mono_ns.saturating_sub(t.t_key) <= TYPE_IDLE_NS
        })
    }

    fn type_char(&mut self, i: usize, e: InputEvent, c: Option<char>) {
        if !self.typing_accepts(&e) {
            self.flush_typing();
        }
        self.flush_scroll();
        self.last_key = None;
        let t = self.typing.get_or_insert_with(|| Typing {
            first: i,
            last: i,
            t0: e.mono_ns,
            t_end: e.mono_ns,
            t_key: e.mono_ns,
            device: e.device,
            focus: e.focus,
            text: String::new(),
            times: Vec::new(),
        });
        t.last = i;
        t.t_end = e.mono_ns;
        t.t_key = e.mono_ns;
        t.times.push(e.mono_ns);
        if let Some(c) = c {
            t.text.push(c);
        }
    }

    fn backspace(&mut self, i: usize, e: InputEvent) {
        if let Some(t) = &mut self.typing {
            t.text.pop();
            t.last = i;
            t.t_end = e.mono_ns;
            t.t_key = e.mono_ns;
            t.times.push(e.mono_ns);
        }
    }

    /// A key's release (and its raw events) belongs to the action its press made.
    fn extend_key_release(&mut self, i: usize, e: InputEvent) {
        if let Some(t) = &mut self.typing {
            if t.device == e.device {
                t.last = i;
                t.t_end = t.t_end.max(e.mono_ns);
                return;
            }
        }
        if let Some(k) = &self.last_key {
            if (k.device, k.code) == (e.device, e.code) && self.out.len() > k.out {
                let out = k.out;
                self.extend(out, i, e.mono_ns);
            }
        }
    }

    fn flush_typing(&mut self) {
        let Some(t) = self.typing.take() else {
            return;
        };
        let mut a = self.key_action("type", t.first, t.last, t.focus);
        a.start_mono_ns = t.t0;
        a.end_mono_ns = t.t_end;
        let offset = self.items[t.first].realtime_offset_ns;
        a.start_unix_ms = unix_ms(t.t0, offset);
        a.end_unix_ms = unix_ms(t.t_end, offset);
        a.key_times_ms = Some(t.times.iter().map(|k| ms_between(t.t0, *k)).collect());
        a.text = Some(t.text);
        self.push(a);
    }

    fn key_action(&self, kind: &str, first: usize, last: usize, focus: u64) -> Action {
        let (t0, t1) = (self.time(first), self.time(last));
        let mut a = self.base(kind, first, last, t0, t1, focus);
        a.level = self.items[first].level.map(|l| l.as_str().to_owned());
        a
    }

    // --- pointer ---

    fn button(&mut self, i: usize, e: InputEvent) {
        match e.value {
            1 => {
                self.flush_typing();
                self.flush_scroll();
                self.last_key = None;
                self.pressed.insert(
                    e.code,
                    Press {
                        item: i,
                        t: e.mono_ns,
                        rel_at: self.rel_total,
                    },
                );
            }
            0 => {
                if let Some(p) = self.pressed.remove(&e.code) {
                    self.release(p, i, e);
                }
            }
            _ => {}
        }
    }

    fn release(&mut self, p: Press, i: usize, e: InputEvent) {
        let xb = x_button(e.code);
        let start = self.locate(p.t, Want::Button(PointerTrigger::Press, xb));
        let end = self.locate(e.mono_ns, Want::Button(PointerTrigger::Release, xb));
        let path = self.samples.motion_between(p.t, e.mono_ns);
        self.held_spans.push((p.t, e.mono_ns));
        let slop = self
            .display
            .as_ref()
            .map(|d| f64::from(d.double_click_distance))
            .filter(|d| *d > 0.0)
            .unwrap_or(CLICK_DISTANCE_PX);
        let origin = start.as_ref().or(end.as_ref()).ok().map(|f| (f.x, f.y));
        let moved = match origin {
            Some((x0, y0)) => path
                .iter()
                .map(|s| (s.s.x, s.s.y))
                .chain(end.as_ref().ok().map(|f| (f.x, f.y)))
                .any(|(x, y)| (x - x0).hypot(y - y0) > slop),
            None => self.rel_total - p.rel_at > CLICK_SLOP_DEVICE_UNITS,
        };
        let held_ns = e.mono_ns.saturating_sub(p.t);
        let kind = if moved {
            "drag"
        } else if held_ns >= LONG_PRESS_NS {
            "long_press"
        } else {
            match e.code {
                BTN_RIGHT => "right_click",
                BTN_MIDDLE => "middle_click",
                _ => "click",
            }
        };
        let focus = match &self.items[p.item].rec {
            Record::Event(pe) => pe.focus,
            _ => e.focus,
        };
        if kind == "click" && e.code == BTN_LEFT && self.merge_click(&p, i, e.mono_ns, origin) {
            return;
        }
        let mut a = self.base(kind, p.item, i, p.t, e.mono_ns, focus);
        a.level = self.items[p.item].level.map(|l| l.as_str().to_owned());
        a.button = Some(button_name(e.code).to_owned());
        a.click_count = Some(1);
        let first = if kind == "drag" {
            start.clone()
        } else {
            start.clone().or_else(|_| end.clone())
        };
        self.place(&mut a, &first);
        if kind == "drag" {
            if let Ok(f) = &end {
                let (nx, ny, _) = self.normalise(f.x, f.y);
                a.end_x = Some(f.x);
                a.end_y = Some(f.y);
                a.end_x_norm = nx;
                a.end_y_norm = ny;
            }
            if start.is_ok() || end.is_ok() || !path.is_empty() {
                let mut pts: Vec<PathPoint> = Vec::new();
                if let Ok(f) = &start {
                    pts.push(PathPoint {
                        t_ms: 0.0,
                        x: f.x,
                        y: f.y,
                    });
                }
                pts.extend(path.iter().map(|s| PathPoint {
                    t_ms: ms_between(p.t, s.t),
                    x: s.s.x,
                    y: s.s.y,
                }));
                if let Ok(f) = &end {
                    pts.push(PathPoint {
                        t_ms: ms_between(p.t, e.mono_ns),
                        x: f.x,
                        y: f.y,
                    });
                }
                a.path = Some(pts);
            }
        }
        let out = self.push(a);
        self.last_click = (kind == "click" && e.code == BTN_LEFT).then_some(LastClick {
            out,
            press_t: p.t,
            at: origin,
            count: 1,
        });
    }

    /// Folds a left click into the one before it when the desktop would see a double or
    /// triple click; true when it did.
    fn merge_click(&mut self, p: &Press, i: usize, t: u64, at: Option<(f64, f64)>) -> bool {
        let (ms, dist) = self
            .display
            .as_ref()
            .map(|d| (d.double_click_ms, d.double_click_distance))
            .unwrap_or((0, 0));
        let ms = if ms == 0 { DEFAULT_DOUBLE_CLICK_MS } else { ms };
        let dist = if dist == 0 {
            DEFAULT_DOUBLE_CLICK_DISTANCE
        } else {
            dist
        };
        let Some(last) = &mut self.last_click else {
            return false;
        };
        let near = match (last.at, at) {
            (Some((x0, y0)), Some((x1, y1))) => (x1 - x0).hypot(y1 - y0) <= f64::from(dist),
            // Without positions the time alone decides.
            _ => true,
        };
        let in_time = p.t.saturating_sub(last.press_t) <= u64::from(ms) * 1_000_000;
        if !(near && in_time && last.count < 3 && last.out + 1 == self.out.len()) {
            return false;
        }
        last.count += 1;
        last.press_t = p.t;
        let (out, count) = (last.out, last.count);
        let a = &mut self.out[out];
        a.kind = if count == 2 {
            "double_click"
        } else {
            "triple_click"
        }
        .into();
        a.click_count = Some(count);
        self.extend(out, i, t);
        true
    }

    fn wheel(&mut self, i: usize, e: InputEvent) {
        self.flush_typing();
        self.last_key = None;
        let horizontal = matches!(e.code, keys::REL_HWHEEL | keys::REL_HWHEEL_HI_RES);
        let joins = self.scroll.as_ref().is_some_and(|s| {
            s.horizontal == horizontal && e.mono_ns.saturating_sub(s.t_end) <= SCROLL_GROUP_NS
        });
        if !joins {
            self.flush_scroll();
            let at = self.locate(e.mono_ns, Want::Scroll { horizontal });
            self.scroll = Some(Scroll {
                first: i,
                last: i,
                t0: e.mono_ns,
                t_end: e.mono_ns,
                horizontal,
                detents: 0,
                hi_res: 0,
                saw_detent: false,
                saw_hi_res: false,
                at,
            });
        }
        if let Some(s) = &mut self.scroll {
            s.last = i;
            s.t_end = e.mono_ns;
            match e.code {
                keys::REL_WHEEL | keys::REL_HWHEEL => {
                    s.detents += i64::from(e.value);
                    s.saw_detent = true;
                }
                _ => {
                    s.hi_res += i64::from(e.value);
                    s.saw_hi_res = true;
                }
            }
        }
    }

    fn flush_scroll(&mut self) {
        let Some(s) = self.scroll.take() else {
            return;
        };
        let kind = if s.horizontal { "hscroll" } else { "scroll" };
        let focus = match &self.items[s.first].rec {
            Record::Event(e) => e.focus,
            _ => 0,
        };
        let mut a = self.base(kind, s.first, s.last, s.t0, s.t_end, focus);
        a.level = self.items[s.first].level.map(|l| l.as_str().to_owned());
        // Devices that send only hi-res values: 120 units are one detent.
        a.scroll_detents = Some(if s.saw_detent {
            s.detents
        } else {
            s.hi_res / 120
        });
        a.scroll_hi_res = s.saw_hi_res.then_some(s.hi_res);
        self.place(&mut a, &s.at);
        self.push(a);
    }

    /// Motion samples outside button actions, grouped into moves split at pauses and at any
    /// other action.
    fn moves(&mut self) {
        let mut splits: Vec<u64> = self.out.iter().map(|a| a.start_mono_ns).collect();
        splits.sort_unstable();
        let held = std::mem::take(&mut self.held_spans);
        let free: Vec<Sample> = self
            .samples
            .motion()
            .filter(|s| !held.iter().any(|(a, b)| (*a..=*b).contains(&s.t)))
            .copied()
            .collect();
        let mut group: Vec<Sample> = Vec::new();
        for s in free {
            if let Some(prev) = group.last() {
                let split = splits.partition_point(|x| *x <= prev.t)
                    != splits.partition_point(|x| *x <= s.t);
                if split || s.t - prev.t > MOVE_GAP_NS {
                    let g = std::mem::take(&mut group);
                    self.move_action(g);
                }
            }
            group.push(s);
        }
        self.move_action(group);
    }

    fn move_action(&mut self, group: Vec<Sample>) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return;
        };
        if group.len() < 2 {
            return;
        }
        let (t0, t1) = (first.t, last.t);
        let mut a = self.base("move", first.item, last.item, t0, t1, last.s.focus);
        a.event_first = None;
        a.event_last = None;
        let lo = self.motion_events.partition_point(|(t, _)| *t < t0);
        let hi = self.motion_events.partition_point(|(t, _)| *t <= t1);
        if let (Some((_, f)), Some((_, l))) = (
            self.motion_events[lo..hi].first(),
            self.motion_events[lo..hi].last(),
        ) {
            a.event_first = self.items[*f].event_index;
            a.event_last = self.items[*l].event_index;
        }
        let end = Found {
            x: last.s.x,
            y: last.s.y,
            lag_ms: 0.0,
            focus: last.s.focus,
        };
        self.place(&mut a, &Ok(end));
        a.position_lag_ms = None;
        a.path = Some(
            group
                .iter()
                .map(|s| PathPoint {
                    t_ms: ms_between(t0, s.t),
                    x: s.s.x,
                    y: s.s.y,
                })
                .collect(),
        );
        self.out.push(a);
    }

    /// The sample for an event, or why there is none.
    fn locate(&mut self, t: u64, want: Want) -> Result<Found, String> {
        if let Some(f) = self.samples.join(t, want) {
            return Ok(f);
        }
        Err(match &self.display {
            None if self.samples.is_empty() => "no_pointer_source".to_owned(),
            Some(d) if !d.pointer => {
                if d.pointer_unavailable.is_empty() {
                    "pointer_unavailable".to_owned()
                } else {
                    d.pointer_unavailable.clone()
                }
            }
            _ => "no_pointer_sample".to_owned(),
        })
    }

    /// Fills position, monitor, normalised and window-relative coordinates.
    fn place(&self, a: &mut Action, at: &Result<Found, String>) {
        match at {
            Ok(f) => {
                a.x = Some(f.x);
                a.y = Some(f.y);
                a.position_lag_ms = Some(f.lag_ms);
                let (nx, ny, monitor) = self.normalise(f.x, f.y);
                a.x_norm = nx;
                a.y_norm = ny;
                a.monitor = monitor;
                if let Some(r) = a.window_rect {
                    a.window_x = Some(f.x - f64::from(r.x));
                    a.window_y = Some(f.y - f64::from(r.y));
                }
            }
            Err(reason) => a.position_unavailable = Some(reason.clone()),
        }
    }

    /// (x, y) as fractions of the monitor that holds the point (else of the screen), and the
    /// monitor's name.
    fn normalise(&self, x: f64, y: f64) -> (Option<f64>, Option<f64>, Option<String>) {
        let Some(d) = &self.display else {
            return (None, None, None);
        };
        let inside = d.monitors.iter().find(|m| {
            m.width > 0
                && m.height > 0
                && x >= f64::from(m.x)
                && x < f64::from(m.x) + f64::from(m.width)
                && y >= f64::from(m.y)
                && y < f64::from(m.y) + f64::from(m.height)
        });
        if let Some(m) = inside {
            return (
                Some((x - f64::from(m.x)) / f64::from(m.width)),
                Some((y - f64::from(m.y)) / f64::from(m.height)),
                Some(m.name.clone()),
            );
        }
        if d.width > 0 && d.height > 0 {
            return (
                Some(x / f64::from(d.width)),
                Some(y / f64::from(d.height)),
                None,
            );
        }
        (None, None, None)
    }

    // --- rows ---

    fn time(&self, i: usize) -> u64 {
        self.items[i].rec.mono_ns()
    }

    /// An action of `kind` from item `first` to item `last`, with times, raw range, ring
    /// range and focus identity.
    fn base(&self, kind: &str, first: usize, last: usize, t0: u64, t1: u64, focus: u64) -> Action {
        let (f, l) = (&self.items[first], &self.items[last]);
        let offset = f.realtime_offset_ns;
        let mut a = Action {
            kind: kind.to_owned(),
            start_mono_ns: t0,
            end_mono_ns: t1.max(t0),
            start_unix_ms: unix_ms(t0, offset),
            end_unix_ms: unix_ms(t1.max(t0), offset),
            event_first: f.event_index,
            event_last: l.event_index.or(f.event_index),
            ring_epoch: (f.ring.last != 0).then_some(f.ring.epoch),
            ring_seq_first: (f.ring.first != 0).then_some(f.ring.first),
            ring_seq_last: (l.ring.last != 0).then_some(l.ring.last),
            ..Action::default()
        };
        if focus != 0 {
            a.focus_seq = Some(focus);
            if let Some(fi) = self.foci.get(&focus) {
                let s = |v: &str| (!v.is_empty()).then(|| v.to_owned());
                a.app_id = s(&fi.app_id);
                a.wm_class = s(&fi.wm_class);
                a.exe = s(&fi.exe);
                a.title = s(&fi.title);
                a.window_rect = rect(fi.window);
            }
        }
        a
    }

    /// Extends action `out` to item `i` at time `t`.
    fn extend(&mut self, out: usize, i: usize, t: u64) {
        let it = &self.items[i];
        let (idx, ring_last) = (it.event_index, it.ring.last);
        let a = &mut self.out[out];
        a.end_mono_ns = a.end_mono_ns.max(t);
        let offset = self.items[i].realtime_offset_ns;
        a.end_unix_ms = unix_ms(a.end_mono_ns, offset);
        if idx.is_some() {
            a.event_last = idx;
        }
        if ring_last != 0 {
            a.ring_seq_last = Some(ring_last);
        }
    }

    fn push(&mut self, a: Action) -> usize {
        self.out.push(a);
        self.out.len() - 1
    }
}

fn button_name(code: u16) -> &'static str {
    match code {
        BTN_LEFT => "left",
        BTN_RIGHT => "right",
        BTN_MIDDLE => "middle",
        0x113 => "side",
        0x114 => "extra",
        0x115 => "forward",
        0x116 => "back",
        _ => "task",
    }
}

fn rect(w: WindowRect) -> Option<Rect> {
    (w.width != 0 && w.height != 0).then_some(Rect {
        x: w.x,
        y: w.y,
        width: w.width,
        height: w.height,
    })
}

fn ms_between(from: u64, to: u64) -> f64 {
    (to as f64 - from as f64) / 1e6
}

#[cfg(test)]
mod tests;
