//! The checks behind the cargo-fuzz targets. They live here, not in the targets, so that
//! `tests/fuzz_seeds.rs` runs the same code over the seed corpus on stable, in a plain
//! `cargo test` (this crate has its own workspace and is never built by `cargo test`).
//!
//! Every check panics on a broken invariant: that is what libFuzzer reports as a crash.

use imprint_config::Config;
use imprint_policy::detect::Detectors;
use imprint_policy::filter::Filter;
use imprint_policy::keys::{self, Modifiers, EV_KEY, EV_MSC, EV_REL, EV_SYN, KEY_A, MSC_SCAN};
use imprint_policy::rules::{DeviceClass, Origin, RuleConfig, Subject};
use imprint_policy::{Level, Policy, PolicyConfig, PolicySpec};
use imprint_record::{FocusInfo, InputEvent, Record};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

/// Where the fuzzed text claims to come from. It must not exist: `compile_policy` reads the
/// file only to find the line of a bad setting, and a real file would make that line wrong.
const POLICY_PATH: &str = "/nonexistent/imprint-fuzz/imprint.toml";

const CLASSES: [Option<DeviceClass>; 6] = [
    None,
    Some(DeviceClass::Keyboard),
    Some(DeviceClass::Pointer),
    Some(DeviceClass::Touchpad),
    Some(DeviceClass::Tablet),
    Some(DeviceClass::Virtual),
];

/// `policy_parse`: bytes → UTF-8 → the parse and compile of `imprint policy check`, then
/// invariants every accepted policy must keep.
pub fn policy_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new(POLICY_PATH);
    let Ok(cfg) = Config::parse(text, path) else {
        return;
    };
    let policy = cfg
        .compile_policy(path)
        .expect("a configuration that parsed compiles");
    let again = cfg.compile_policy(path).expect("compiles twice");
    assert_eq!(policy.stamp(), again.stamp(), "the policy stamp is stable");
    let hash = &policy.stamp().hash;
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "hash {hash:?}"
    );

    let legacy = cfg.capture.default_level;
    assert_eq!(policy.default_level(), cfg.policy.default.unwrap_or(legacy));
    assert_eq!(
        policy.unknown_focus_level(),
        cfg.policy.unknown_focus.unwrap_or(legacy)
    );
    let nothing = policy.default_level() == Level::Off
        && policy.unknown_focus_level() == Level::Off
        && cfg.rule.iter().all(|r| r.level == Level::Off);
    assert_eq!(policy.captures_nothing(), nothing);

    // Unknown focus gets `unknown_focus`, whatever the rules say.
    let unknown = FocusInfo {
        seq: 7,
        unknown: true,
        exe: "/usr/bin/app".into(),
        ..Default::default()
    };
    let seq0 = FocusInfo {
        seq: 0,
        exe: "/usr/bin/app".into(),
        ..Default::default()
    };
    for class in CLASSES {
        for f in [None, Some(&unknown), Some(&seq0)] {
            let d = policy.decide(f, class);
            assert_eq!(d.level, policy.unknown_focus_level());
            assert_eq!(d.rule, "policy.unknown_focus");
        }
    }

    for f in sample_foci(&cfg.rule) {
        for class in CLASSES {
            let d = policy.decide(Some(&f), class);
            match d.secure {
                Some(_) => assert!(d.level <= Level::Timing && d.level <= d.rule_level),
                None => assert_eq!(d.level, d.rule_level),
            }
            if nothing {
                assert_eq!(d.level, Level::Off, "{f:?}: {d:?}");
            }
            if d.rule == "policy.default" {
                assert_eq!(d.rule_level, policy.default_level());
            } else {
                assert!(
                    policy
                        .rules()
                        .iter()
                        .any(|r| r.label == d.rule && r.level == d.rule_level),
                    "{d:?} names no rule"
                );
            }
            if cfg.rule.is_empty() {
                assert_eq!(d.rule_level, policy.default_level());
            }
            // `policy explain` must agree with what the agent decides.
            let s = Subject {
                exe: &f.exe,
                terminal_exe: &f.terminal_exe,
                app_id: &f.app_id,
                unit: &f.unit,
                wm_class: &f.wm_class,
                title: &f.title,
                uid: Some(f.uid),
                device: class,
            };
            let e = policy.explain(&s);
            assert_eq!((&e.rule, e.rule_level), (&d.rule, d.rule_level));
        }
    }
    // Password managers and lock screens are built in and can only be added to.
    for exe in ["/usr/bin/keepassxc", "/usr/bin/swaylock"] {
        let f = FocusInfo {
            seq: 3,
            exe: exe.into(),
            uid: 1000,
            ..Default::default()
        };
        for class in CLASSES {
            assert!(
                policy.decide(Some(&f), class).level <= Level::Timing,
                "{exe}"
            );
        }
    }
    // `check_custom` accepted them, so the set the agent builds later must build too.
    if !cfg.policy.detectors.is_empty() {
        let d = Detectors::new(&cfg.policy.detectors).expect("checked detectors build");
        for (name, r) in d.scan(text) {
            assert!(text.get(r.clone()).is_some(), "{name}: {r:?}");
        }
    }
}

/// Foci that exercise the rules: fixed ones, plus each rule's own strings used as identity.
fn sample_foci(rules: &[RuleConfig]) -> Vec<FocusInfo> {
    let base = |exe: &str| FocusInfo {
        seq: 1,
        exe: exe.into(),
        uid: 1000,
        ..Default::default()
    };
    let mut v = vec![
        base("/usr/bin/app"),
        base("/usr/bin/firefox"),
        FocusInfo {
            app_id: "org.gnome.Terminal".into(),
            wm_class: "Gnome-terminal".into(),
            unit: "app-gnome-org.gnome.Terminal-1234.scope".into(),
            title: "Enter password".into(),
            terminal_exe: "/usr/bin/gnome-terminal-server".into(),
            ..base("/usr/bin/bash")
        },
        FocusInfo {
            uid: 0,
            ..base("/usr/sbin/root-thing")
        },
    ];
    for r in rules.iter().take(8) {
        let mut f = base(r.exe.as_deref().unwrap_or("/usr/bin/x"));
        f.app_id = r.app_id.clone().unwrap_or_default();
        f.unit = r.unit.clone().unwrap_or_default();
        f.wm_class = r.wm_class.clone().unwrap_or_default();
        f.title = r.title.clone().unwrap_or_default();
        if let Some(uid) = r.user.as_deref().and_then(|u| u.parse().ok()) {
            f.uid = uid;
        }
        v.push(f);
    }
    v
}

/// The device the canary op types on; nothing else uses it.
const CANARY_DEVICE: u32 = 7;
/// Secrets typed whole by the canary op, each a match for a built-in detector.
const CANARIES: [&str; 4] = [
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
    "bob@example.com",
    "4111111111111111",
];
/// Executables of the foci the stream switches between, and the level each gets.
const EXES: [(&str, Level); 6] = [
    ("/usr/bin/app", Level::Full),
    ("/usr/bin/keepassxc", Level::Timing),
    ("/usr/bin/mail", Level::Timing),
    ("/usr/bin/counter", Level::Counts),
    ("/usr/bin/other", Level::Off),
    ("/usr/bin/app2", Level::Full),
];
/// Keys worth pressing and releasing on their own: modifiers, AltGr, editing, paste.
const KEYS: [u16; 24] = [
    30, // a
    2,  // 1
    57, // space
    52, // .
    keys::KEY_LEFTSHIFT,
    keys::KEY_RIGHTSHIFT,
    keys::KEY_RIGHTALT,
    keys::KEY_LEFTCTRL,
    keys::KEY_LEFTALT,
    keys::KEY_LEFTMETA,
    keys::KEY_CAPSLOCK,
    keys::KEY_BACKSPACE,
    keys::KEY_ENTER,
    keys::KEY_KPENTER,
    keys::KEY_TAB,
    keys::KEY_V,
    keys::KEY_INSERT,
    keys::KEY_DELETE,
    105,   // left
    1,     // esc
    59,    // F1
    0x110, // BTN_LEFT
    0x14a, // BTN_TOUCH
    0x2c0, // a keyboard code above the pointer range
];

/// Holdback and redaction settings the stream runs under (the first is the default).
const VARIANTS: [(u32, u64, bool); 6] = [
    (96, 5000, true),
    (0, 0, true),
    (4, 5000, true),
    (96, 20, true),
    (4096, 60_000, true),
    (96, 5000, false),
];

fn rebuild_policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        VARIANTS
            .iter()
            .map(|&(holdback_keys, holdback_ms, redact)| {
                let rules = EXES
                    .iter()
                    .filter(|(_, l)| *l != Level::Off)
                    .map(|(exe, level)| RuleConfig {
                        exe: Some((*exe).into()),
                        // The password manager asks for `full` and is capped by secure input.
                        level: if exe.ends_with("keepassxc") {
                            Level::Full
                        } else {
                            *level
                        },
                        origin: Origin::default(),
                        ..Default::default()
                    })
                    .collect();
                Policy::compile(PolicySpec {
                    policy: PolicyConfig {
                        holdback_keys,
                        holdback_ms,
                        redact,
                        ..Default::default()
                    },
                    rules,
                    ..Default::default()
                })
                .expect("fuzz policy")
            })
            .collect()
    })
}

/// US key code and shift for a printable ASCII char.
fn key_for(c: char) -> Option<(u16, bool)> {
    let mut m = Modifiers::default();
    for shift in [false, true] {
        m.shift = u8::from(shift);
        for code in 1..128u16 {
            if keys::us_char(code, &m) == Some(c) {
                return Some((code, shift));
            }
        }
    }
    None
}

/// One input event and what the harness knows about it.
struct In {
    e: InputEvent,
    /// The level of its focus when it was pushed.
    level: Level,
    /// Typed by the canary op as part of the secret (not a separator or Shift).
    secret: bool,
}

/// Builds the stream while feeding the filter, so the harness knows each event's level.
struct Stream<'a> {
    data: &'a [u8],
    pos: usize,
    filter: Filter,
    out: Vec<Record>,
    t: u64,
    focus: u64,
    levels: HashMap<u64, Level>,
    /// Keyboard keys whose press was fed and that are still down, with the level and focus
    /// of their press.
    down: HashMap<(u32, u16), (Level, u64)>,
    ins: BTreeMap<u64, In>,
    secret: bool,
}

impl Stream<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn ev(&mut self, device: u32, kind: u16, code: u16, value: i32) {
        // Unique, increasing times let each written event be traced to its input.
        self.t += 1_000;
        let e = InputEvent {
            mono_ns: self.t,
            device,
            kind,
            code,
            value,
            focus: self.focus,
        };
        let mut level = self.levels.get(&self.focus).copied().unwrap_or(Level::Off);
        // What the filter writes: a release or repeat takes its press's level and context
        // (the newest press, if a key is pressed twice); one whose press was never fed goes
        // by focus.
        let mut written = e;
        if kind == EV_KEY && keys::is_keyboard_code(code) {
            let key = (device, code);
            let press = match value {
                1 => {
                    self.down.insert(key, (level, self.focus));
                    None
                }
                0 => Some(self.down.remove(&key)),
                2 => Some(self.down.get(&key).copied()),
                // Not a key value the kernel sends: the filter decides it by focus alone.
                _ => None,
            };
            if let Some(Some((l, focus))) = press {
                level = l;
                written.focus = focus;
            }
        }
        self.ins.insert(
            self.t,
            In {
                e: written,
                level,
                secret: self.secret,
            },
        );
        self.filter.push_record(Record::Event(e), &mut self.out);
    }

    fn key(&mut self, device: u32, code: u16, value: i32, scan: bool) {
        if scan {
            self.ev(device, EV_MSC, MSC_SCAN, 0x70000 + i32::from(code));
        }
        self.ev(device, EV_KEY, code, value);
        self.ev(device, EV_SYN, 0, 0);
    }

    fn tap(&mut self, device: u32, code: u16) {
        self.key(device, code, 1, true);
        self.key(device, code, 0, true);
    }

    fn type_char(&mut self, device: u32, c: char) {
        let Some((code, shift)) = key_for(c) else {
            return;
        };
        if shift {
            let secret = std::mem::replace(&mut self.secret, false);
            self.key(device, keys::KEY_LEFTSHIFT, 1, false);
            self.secret = secret;
        }
        self.tap(device, code);
        if shift {
            let secret = std::mem::replace(&mut self.secret, false);
            self.key(device, keys::KEY_LEFTSHIFT, 0, false);
            self.secret = secret;
        }
    }

    fn focus(&mut self, seq: u64, exe: usize, unknown: bool) {
        let (exe, level) = EXES[exe % EXES.len()];
        self.levels.insert(
            seq,
            if unknown || seq == 0 {
                Level::Off
            } else {
                level
            },
        );
        let f = FocusInfo {
            seq,
            exe: exe.into(),
            uid: 1000,
            unknown,
            tracker: "fuzz".into(),
            ..Default::default()
        };
        self.filter
            .push_record(Record::Focus(Box::new(f)), &mut self.out);
    }

    /// Decodes one op; false at the end of the input.
    fn op(&mut self) -> bool {
        let Some(b) = self.byte() else {
            return false;
        };
        let device = 1 + u32::from((b >> 4) & 1);
        let arg = self.byte().unwrap_or(0);
        match b & 0x0f {
            0..=4 => {
                let c = match arg {
                    b'\n' => '\n',
                    0x20..=0x7e => arg as char,
                    _ => (0x20 + arg % 0x5f) as char,
                };
                if c == '\n' {
                    self.tap(device, keys::KEY_ENTER);
                } else {
                    self.type_char(device, c);
                }
            }
            5 => {
                let code = KEYS[usize::from(arg) % KEYS.len()];
                match b >> 5 {
                    0 | 1 => self.key(device, code, 1, b & 0x80 != 0),
                    2 | 3 => self.key(device, code, 0, b & 0x80 != 0),
                    4 => self.key(device, code, 2, false),
                    _ => self.tap(device, code),
                }
            }
            6 => {
                let hi = self.byte().unwrap_or(0);
                let code = u16::from_le_bytes([arg, hi & 0x03]);
                self.ev(device, EV_KEY, code, i32::from(b >> 5) - 1);
            }
            7 => {
                let seq = u64::from(arg % 5);
                self.focus(seq, usize::from(arg / 5), b & 0x80 != 0);
                if b & 0x40 == 0 {
                    self.focus = seq;
                }
            }
            8 => self.focus = u64::from(arg % 5),
            9 => self.t += u64::from(arg) * 50_000_000,
            10 => {
                let canary = CANARIES[usize::from(arg) % CANARIES.len()];
                self.tap(CANARY_DEVICE, keys::KEY_SPACE);
                self.secret = true;
                for c in canary.chars() {
                    self.type_char(CANARY_DEVICE, c);
                }
                self.secret = false;
                self.tap(CANARY_DEVICE, keys::KEY_SPACE);
            }
            11 => self.ev(device, EV_SYN, 0, 0),
            12 => {
                self.ev(
                    device,
                    EV_REL,
                    u16::from(arg & 0x0f),
                    i32::from(arg >> 4) - 8,
                );
                self.ev(device, EV_SYN, 0, 0);
            }
            13 => {
                let (m, k) = match arg % 3 {
                    0 => (keys::KEY_LEFTCTRL, keys::KEY_V),
                    1 => (keys::KEY_LEFTSHIFT, keys::KEY_INSERT),
                    _ => (keys::KEY_RIGHTCTRL, keys::KEY_V),
                };
                self.key(device, m, 1, true);
                self.tap(device, k);
                self.key(device, m, 0, true);
            }
            14 => self.ev(device, EV_MSC, MSC_SCAN, i32::from(arg)),
            _ => self.t += u64::from(arg) * 1_000_000,
        }
        true
    }
}

/// What a [`text_rebuild`] run wrote, for tests that want more than "no invariant broke".
#[derive(Debug, Default)]
pub struct Summary {
    /// Key presses (and repeats) replaced by redaction records.
    pub redacted: u64,
    /// Key presses (and repeats) written.
    pub written: u64,
    pub late_matches: u64,
}

/// `text_rebuild`: bytes decoded into key events, focus changes and SYN frames, through
/// [`Filter`] (contexts at `full`, `timing`, `counts` and `off`; redaction on unless the
/// variant turns it off), then checks that the output accounts for the input.
pub fn text_rebuild(data: &[u8]) -> Summary {
    let Some((&first, data)) = data.split_first() else {
        return Summary::default();
    };
    let variant = usize::from(first) % VARIANTS.len();
    let policy = rebuild_policies()[variant].clone();
    let redact = policy.settings().redact;
    let mut s = Stream {
        data,
        pos: 0,
        filter: Filter::new(policy),
        out: Vec::new(),
        t: 1_000_000_000,
        focus: 1,
        levels: HashMap::new(),
        down: Default::default(),
        ins: BTreeMap::new(),
        secret: false,
    };
    s.focus(1, 0, false);
    while s.op() {}
    let Stream {
        mut filter,
        mut out,
        ins,
        ..
    } = s;
    filter.flush(&mut out);
    assert!(!filter.holding(), "nothing is held after flush");
    assert_eq!(filter.oldest_held_seq(), None);
    check_output(&ins, &out, &filter, redact)
}

fn check_output(ins: &BTreeMap<u64, In>, out: &[Record], filter: &Filter, redact: bool) -> Summary {
    let stats = &filter.stats;
    let mut last_t = 0;
    let (mut presses_out, mut syn_out, mut redacted, mut counted_keys) = (0u64, 0u64, 0u64, 0u64);
    let mut secret_out = Vec::new();
    for r in out {
        match r {
            Record::Event(o) => {
                assert!(o.mono_ns > last_t, "written events keep their order: {o:?}");
                last_t = o.mono_ns;
                let i = ins
                    .get(&o.mono_ns)
                    .unwrap_or_else(|| panic!("written event {o:?} was never input"));
                let e = i.e;
                assert_eq!(
                    (o.device, o.kind, o.value, o.focus),
                    (e.device, e.kind, e.value, e.focus),
                    "only the key code may change"
                );
                if o.kind == EV_SYN {
                    syn_out += 1;
                    continue;
                }
                assert!(i.level >= Level::Timing, "{e:?} written at {:?}", i.level);
                if o.code != e.code {
                    // Masking: at `timing`, or a release or repeat of a key pressed there.
                    assert!(
                        o.code == KEY_A
                            && o.kind == EV_KEY
                            && keys::is_keyboard_code(e.code)
                            && keys::is_printable_key(e.code)
                            && (i.level == Level::Timing || e.value != 1),
                        "{e:?} written as {o:?}"
                    );
                }
                if i.level == Level::Timing {
                    assert!(!(e.kind == EV_MSC && e.code == MSC_SCAN), "scan at timing");
                    if e.kind == EV_KEY && keys::is_keyboard_code(e.code) {
                        assert!(!keys::is_printable_key(o.code) || o.code == KEY_A);
                    }
                }
                if o.kind == EV_KEY && o.value != 0 {
                    presses_out += 1;
                }
                if i.secret && i.level == Level::Full {
                    secret_out.push(*o);
                }
            }
            Record::Redaction(r) => {
                assert_ne!(r.rule, "unknown", "a redaction lost its group: {r:?}");
                assert_eq!(r.placeholder, format!("[{}]", r.rule));
                assert_eq!(r.count as usize, r.key_times_ns.len(), "{r:?}");
                assert!(r.from_ns <= r.to_ns, "{r:?}");
                assert!(
                    r.key_times_ns
                        .iter()
                        .all(|t| (r.from_ns..=r.to_ns).contains(t)),
                    "{r:?}"
                );
                assert!(redact, "a redaction with redaction off: {r:?}");
                redacted += u64::from(r.count);
            }
            Record::Counts(c) => {
                assert!(c.from_ns <= c.to_ns, "{c:?}");
                counted_keys += u64::from(c.keys);
            }
            Record::Focus(f) => {
                let level = EXES
                    .iter()
                    .find(|(exe, _)| *exe == f.exe)
                    .map_or(Level::Off, |(_, l)| *l);
                assert!(
                    !f.unknown && f.seq != 0 && level > Level::Off,
                    "focus record of an out-of-scope context: {f:?}"
                );
            }
            _ => {}
        }
    }
    let admitted = |i: &&In| i.level >= Level::Timing && i.e.kind != EV_SYN;
    let presses_in = ins
        .values()
        .filter(admitted)
        .filter(|i| i.e.kind == EV_KEY && i.e.value != 0)
        .count() as u64;
    assert_eq!(
        presses_in,
        presses_out + redacted,
        "every admitted key press (or repeat) is written or redacted"
    );
    assert_eq!(
        stats.redacted.values().sum::<u64>(),
        redacted,
        "the redaction stats match the records"
    );
    let counts_in: Vec<&In> = ins
        .values()
        .filter(|i| i.level == Level::Counts && i.e.kind != EV_SYN)
        .collect();
    assert_eq!(stats.counted, counts_in.len() as u64);
    assert_eq!(
        counted_keys,
        counts_in
            .iter()
            .filter(|i| i.e.kind == EV_KEY && i.e.value == 1 && keys::is_keyboard_code(i.e.code))
            .count() as u64,
        "counts records count every key press"
    );
    let off = ins
        .values()
        .filter(|i| i.level == Level::Off && i.e.kind != EV_SYN)
        .count() as u64;
    let syn_in = ins.values().filter(|i| i.e.kind == EV_SYN).count() as u64;
    assert_eq!(
        stats.dropped_policy,
        off + (syn_in - syn_out),
        "every event not written at `off` is counted as dropped"
    );
    // A canary typed whole at `full` with redaction on is never written, unless a match came
    // too late (the holdback released part of it first), which the stats then say.
    if redact && stats.late_matches == 0 {
        let m = Modifiers::default();
        let keys: String = secret_out
            .iter()
            .filter(|e| e.kind == EV_KEY && e.value == 1)
            .filter_map(|e| keys::us_char(e.code, &m))
            .collect();
        assert!(
            secret_out.is_empty(),
            "a typed secret was written: {} events, keys {keys:?}",
            secret_out.len()
        );
    }
    Summary {
        redacted,
        written: presses_out,
        late_matches: stats.late_matches,
    }
}

/// A packet on the collector's session socket (from any local user: untrusted). Decoding must
/// never panic, and whatever decodes must survive a re-encode unchanged.
pub fn session_message(data: &[u8]) -> bool {
    use imprint_record::wire::{decode_message, encode_message};
    match decode_message(data) {
        Ok(m) => {
            let again = decode_message(&encode_message(&m)).expect("a re-encoded message decodes");
            assert_eq!(again, m, "a message changed across encode/decode");
            true
        }
        Err(_) => false,
    }
}
