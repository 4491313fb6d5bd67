//! Scope: what the agent may write, decided before anything reaches disk.
//!
//! - [`rules`]: `[[rule]]` entries, matching and precedence (most specific wins; on a tie
//!   the most restrictive level, so `off` beats everything).
//! - [`keys`]: which keys print (masked at `timing`) and the built-in US layout.
//! - [`xkb`]: key events → characters with the session's xkb keymap (dead keys, compose).
//! - [`text`]: the text typed per focus context, with its cursor.
//! - [`motion`]: pointer motion coalescing.
//! - [`secure`]: password managers, lock screens, secure titles, terminals with echo off:
//!   never above `timing`.
//! - [`detect`]: secret and PII detectors over rebuilt text.
//! - [`filter`]: the per-event application of all of it in the agent: levels, counts,
//!   text rebuild, the holdback window and redaction records.
//!
//! The default is `off`, and unknown focus is `off`. An empty policy captures nothing.

pub mod detect;
pub mod filter;
pub mod keys;
pub mod motion;
pub mod rules;
pub mod secure;
pub mod text;
pub mod token;
pub mod xkb;

use detect::{CustomDetector, Detectors};
use imprint_record::{FocusInfo, PolicyStamp};
use rules::{DeviceClass, Rule, RuleConfig, RuleError, Subject};
use secure::SecureSet;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How much of an application's input is kept. Ordered from least to most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing is captured or written.
    #[default]
    Off,
    /// Per-interval counts of keys, clicks and motion only.
    Counts,
    /// Every event's timing; printable keys masked to one placeholder code.
    Timing,
    /// Every event, with typed secrets redacted.
    Full,
}

impl Level {
    /// The name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Counts => "counts",
            Level::Timing => "timing",
            Level::Full => "full",
        }
    }
}

/// `[policy]`: defaults, secure input lists and redaction settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// An operator-chosen version, written in every batch's policy stamp.
    pub version: u64,
    /// Level when no rule matches a known focus [default: `capture.default_level`, i.e. off].
    pub default: Option<Level>,
    /// Level while focus is unknown [default: `capture.default_level`, i.e. off].
    pub unknown_focus: Option<Level>,
    /// Added to the built-in password manager list (exe file name, app id or window class).
    pub password_managers: Vec<String>,
    /// Added to the built-in lock screen and greeter list.
    pub lock_screens: Vec<String>,
    /// Regexes added to the built-in secure title patterns (used when titles are recorded).
    pub secure_titles: Vec<String>,
    /// Treat terminal programs reading with echo off as secure input.
    pub terminal_echo: bool,
    /// Redact secrets and PII from typed text at level `full`.
    pub redact: bool,
    /// Key presses held back before release, so a secret is seen whole before it is written.
    pub holdback_keys: u32,
    /// Longest time (of event time) a key is held back.
    pub holdback_ms: u64,
    /// Interval of `counts` records.
    pub counts_interval_ms: u64,
    /// Operator-supplied detectors: `detectors = [{ name = "ticket", regex = "T-[0-9]+" }]`.
    pub detectors: Vec<CustomDetector>,
    /// The xkb keymap typed text is rebuilt with: `keymap = { layout = "de", variant = "",
    /// model = "", options = "" }` [default: the system's, from `/etc/default/keyboard`, else
    /// `us`].
    pub keymap: Option<xkb::KeymapNames>,
    /// The locale whose compose table turns dead keys and compose sequences into characters.
    pub compose_locale: String,
    /// Relative pointer motion is summed and written at most once per this many ms, at levels
    /// `timing` and `full` (0: off).
    pub motion_interval_ms: u64,
    /// Summed pointer motion is also written once it is this far from where it was last
    /// written, in device units (0: off).
    pub motion_distance: u32,
    /// Longest pause a person may ask for with `imprint status --pause`, in minutes
    /// (0: people cannot pause capture themselves).
    pub user_pause_max_minutes: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            version: 1,
            default: None,
            unknown_focus: None,
            password_managers: Vec::new(),
            lock_screens: Vec::new(),
            secure_titles: Vec::new(),
            terminal_echo: true,
            redact: true,
            holdback_keys: 96,
            holdback_ms: 5000,
            counts_interval_ms: 1000,
            detectors: Vec::new(),
            user_pause_max_minutes: 0,
            keymap: None,
            compose_locale: xkb::DEFAULT_COMPOSE_LOCALE.into(),
            motion_interval_ms: 0,
            motion_distance: 0,
        }
    }
}

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("policy.{key}: {message}")]
    Setting { key: &'static str, message: String },
}

/// The rule name of decisions made because no session helper reported focus.
pub const NO_HELPER_RULE: &str = "session.no_helper";

/// The decision for one focus and device class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The level applied (after the secure-input cap).
    pub level: Level,
    /// The level the rules gave.
    pub rule_level: Level,
    /// The rule that decided, or `policy.default` / `policy.unknown_focus`.
    pub rule: String,
    /// Why the context is secure input, when it is.
    pub secure: Option<&'static str>,
}

/// Everything that goes into a policy (the input of [`Policy::compile`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PolicySpec {
    pub policy: PolicyConfig,
    pub rules: Vec<RuleConfig>,
    /// `capture.default_level` (compatibility: the default for `policy.default` and
    /// `policy.unknown_focus`).
    pub legacy_default: Level,
    pub titles_enabled: bool,
    /// The identity replayed input (from devices whose source is a replay, with unknown
    /// focus) is attributed to; never applies to live devices.
    pub replay_focus: Option<ReplayFocus>,
}

/// `[replay]`: replays carry no focus; this gives them one (tests, demonstrations).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayFocus {
    pub focus_exe: String,
    pub focus_app_id: String,
    pub focus_wm_class: String,
    pub focus_uid: u32,
    /// The terminal emulator, when the replayed program is to run in one.
    pub focus_terminal_exe: String,
}

/// The policy in force (compiled).
#[derive(Clone)]
pub struct Policy {
    spec: Arc<PolicySpec>,
    rules: Arc<Vec<Rule>>,
    default_level: Level,
    unknown_level: Level,
    secure: Arc<SecureSet>,
    /// Compiled on first use: only a `full` context needs them, and compiling them costs more
    /// than every other part of a policy (each `imprint` command loads the policy).
    detectors: Arc<std::sync::OnceLock<Detectors>>,
    stamp: PolicyStamp,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules.len())
            .field("stamp", &self.stamp)
            .finish()
    }
}

impl Policy {
    /// A policy with one level for everything and no rules (tests, tools).
    pub fn new(default_level: Level) -> Self {
        let spec = PolicySpec {
            legacy_default: default_level,
            ..Default::default()
        };
        // Built-in detectors and lists always compile; if they ever did not, capture nothing.
        Policy::compile(spec).unwrap_or_else(|e| {
            tracing::error!(error = %e, "built-in policy does not compile; capturing nothing");
            Policy::nothing()
        })
    }

    fn nothing() -> Policy {
        Policy {
            spec: Arc::new(PolicySpec::default()),
            rules: Arc::new(Vec::new()),
            default_level: Level::Off,
            unknown_level: Level::Off,
            secure: Arc::new(SecureSet::empty()),
            detectors: Arc::new(std::sync::OnceLock::from(Detectors::empty())),
            stamp: PolicyStamp {
                version: 0,
                hash: "0000000000000000".into(),
                default_level: "off".into(),
                rules: 0,
            },
        }
    }

    /// Checks and compiles a policy.
    pub fn compile(spec: PolicySpec) -> Result<Policy, PolicyError> {
        let p = &spec.policy;
        let setting = |key: &'static str, message: String| PolicyError::Setting { key, message };
        if p.holdback_keys > 4096 {
            return Err(setting("holdback_keys", "must be at most 4096".into()));
        }
        if p.user_pause_max_minutes > 24 * 60 {
            return Err(setting(
                "user_pause_max_minutes",
                "must be at most 1440 (a day)".into(),
            ));
        }
        if p.holdback_ms > 60_000 {
            return Err(setting("holdback_ms", "must be at most 60000".into()));
        }
        if !(10..=3_600_000).contains(&p.counts_interval_ms) {
            return Err(setting(
                "counts_interval_ms",
                "must be between 10 and 3600000".into(),
            ));
        }
        let mut rules = Vec::with_capacity(spec.rules.len());
        for rc in &spec.rules {
            rules.push(Rule::compile(rc, spec.titles_enabled)?);
        }
        let secure = SecureSet::new(
            &p.password_managers,
            &p.lock_screens,
            &p.secure_titles,
            p.terminal_echo,
        )
        .map_err(|m| setting("secure_titles", m))?;
        Detectors::check_custom(&p.detectors).map_err(|m| setting("detectors", m))?;
        if p.motion_interval_ms > 60_000 {
            return Err(setting(
                "motion_interval_ms",
                "must be at most 60000".into(),
            ));
        }
        if p.motion_distance > 100_000 {
            return Err(setting("motion_distance", "must be at most 100000".into()));
        }
        check_keymap(p).map_err(|(key, m)| setting(key, m))?;
        let default_level = p.default.unwrap_or(spec.legacy_default);
        let unknown_level = p.unknown_focus.unwrap_or(spec.legacy_default);
        // The hash covers everything that decides scope, in a canonical form (rule origins
        // excluded: moving a rule between files changes nothing).
        let canonical = format!(
            "imprint-policy-v2\n{}\ndefault={}\nunknown={}\n",
            serde_json::to_string(&spec).unwrap_or_default(),
            default_level.as_str(),
            unknown_level.as_str()
        );
        let h1 = crc32c::crc32c(canonical.as_bytes());
        let h2 = crc32c::crc32c_append(0x9e37_79b9, canonical.as_bytes());
        let stamp = PolicyStamp {
            version: p.version,
            hash: format!("{h1:08x}{h2:08x}"),
            default_level: default_level.as_str().into(),
            rules: u32::try_from(rules.len()).unwrap_or(u32::MAX),
        };
        Ok(Policy {
            rules: Arc::new(rules),
            default_level,
            unknown_level,
            secure: Arc::new(secure),
            detectors: Arc::new(std::sync::OnceLock::new()),
            stamp,
            spec: Arc::new(spec),
        })
    }

    /// The level applied when no rule matches.
    pub fn default_level(&self) -> Level {
        self.default_level
    }

    /// The level applied while focus is unknown.
    pub fn unknown_focus_level(&self) -> Level {
        self.unknown_level
    }

    /// True when nothing at all may be captured (the collector then opens no device).
    pub fn captures_nothing(&self) -> bool {
        self.default_level == Level::Off
            && self.unknown_level == Level::Off
            && self.rules.iter().all(|r| r.level == Level::Off)
    }

    /// The stamp written with every batch.
    pub fn stamp(&self) -> &PolicyStamp {
        &self.stamp
    }

    /// The settings in force.
    pub fn settings(&self) -> &PolicyConfig {
        &self.spec.policy
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The focus replayed input is attributed to.
    pub fn replay_focus(&self) -> Option<FocusInfo> {
        self.spec.replay_focus.as_ref().map(|r| FocusInfo {
            seq: REPLAY_FOCUS_SEQ,
            exe: r.focus_exe.clone(),
            app_id: r.focus_app_id.clone(),
            wm_class: r.focus_wm_class.clone(),
            uid: r.focus_uid,
            terminal_exe: r.focus_terminal_exe.clone(),
            tracker: "replay".into(),
            ..Default::default()
        })
    }

    /// The layout typed text is rebuilt with (compiled once per process), and why it is the
    /// built-in US table when it had to fall back.
    pub fn layout(&self) -> (xkb::Layout, Option<xkb::XkbError>) {
        let p = &self.spec.policy;
        let names = p.keymap.clone().unwrap_or_else(xkb::KeymapNames::system);
        xkb::Layout::load(&names, &p.compose_locale)
    }

    /// The secure-input lists.
    pub fn secure(&self) -> &SecureSet {
        &self.secure
    }

    /// The detectors.
    pub fn detectors(&self) -> &Detectors {
        self.detectors.get_or_init(|| {
            Detectors::new(&self.spec.policy.detectors).unwrap_or_else(|e| {
                // Custom detectors were checked when the policy was compiled, and the
                // built-in ones are covered by tests: this is not expected.
                tracing::error!(error = %e, "detectors do not compile; using none");
                Detectors::empty()
            })
        })
    }

    /// Warnings worth showing an operator (rules that can never match on this host, a keymap
    /// that cannot be loaded here).
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.rules.iter().flat_map(|r| r.warnings()).collect();
        if let (xkb::Layout::Us, Some(e)) = self.layout() {
            w.push(format!(
                "policy.keymap: typed text is rebuilt with the built-in US layout ({e})"
            ));
        }
        w
    }

    /// The rules' decision for `s` (no secure-input cap): level and deciding rule.
    pub fn decide_rules(&self, s: &Subject<'_>) -> (Level, String) {
        let mut best: Option<(u32, Level, &Rule)> = None;
        for r in self.rules.iter().filter(|r| r.matches(s)) {
            let spec = r.specificity();
            let better = match best {
                None => true,
                Some((bs, bl, _)) => spec > bs || (spec == bs && r.level < bl),
            };
            if better {
                best = Some((spec, r.level, r));
            }
        }
        match best {
            Some((_, level, r)) => (level, r.label.clone()),
            None => (self.default_level, "policy.default".into()),
        }
    }

    /// The decision for focus `f` (None: focus unknown) and device class `device`.
    pub fn decide(&self, f: Option<&FocusInfo>, device: Option<DeviceClass>) -> Decision {
        // No session helper said what has focus (none ran, or it died): fail closed, whatever
        // `unknown_focus` says, since nothing could have seen a prompt or a lock screen.
        if f.is_some_and(|f| {
            f.unknown
                && matches!(
                    f.unknown_reason.as_str(),
                    "no_session_helper" | "helper_exited"
                )
        }) {
            return Decision {
                level: Level::Off,
                rule_level: Level::Off,
                rule: NO_HELPER_RULE.into(),
                secure: None,
            };
        }
        let Some(f) = f.filter(|f| !f.unknown && f.seq != 0) else {
            return Decision {
                level: self.unknown_level,
                rule_level: self.unknown_level,
                rule: "policy.unknown_focus".into(),
                secure: None,
            };
        };
        let s = Subject {
            exe: &f.exe,
            terminal_exe: &f.terminal_exe,
            app_id: &f.app_id,
            unit: &f.unit,
            wm_class: &f.wm_class,
            title: &f.title,
            uid: Some(f.uid),
            device,
        };
        let (rule_level, rule) = self.decide_rules(&s);
        let secure = self.secure.focus_reason(f);
        Decision {
            level: cap(rule_level, secure.is_some()),
            rule_level,
            rule,
            secure,
        }
    }

    /// The decision for an identity given by hand (`imprint policy explain`).
    pub fn explain(&self, s: &Subject<'_>) -> Decision {
        let (rule_level, rule) = self.decide_rules(s);
        let secure = self
            .secure
            .static_reason(s.exe, s.app_id, s.wm_class, s.title);
        Decision {
            level: cap(rule_level, secure.is_some()),
            rule_level,
            rule,
            secure,
        }
    }
}

/// Checks `keymap` and `compose_locale`: (key, message) of the first error.
fn check_keymap(p: &PolicyConfig) -> Result<(), (&'static str, String)> {
    let locale_ok = !p.compose_locale.is_empty()
        && p.compose_locale
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
    if !locale_ok {
        return Err((
            "compose_locale",
            format!("{:?} is not a locale name", p.compose_locale),
        ));
    }
    // Only a keymap set here is checked: the system's is read where the agent runs, and a bad
    // one there falls back to the US layout with a warning.
    let Some(k) = &p.keymap else {
        return Ok(());
    };
    match xkb::Layout::check(k, &p.compose_locale) {
        Ok(()) => Ok(()),
        Err(e @ xkb::XkbError::Compose(_)) => Err(("compose_locale", e.to_string())),
        Err(e) => Err(("keymap", e.to_string())),
    }
}

/// The focus seq of [`Policy::replay_focus`].
pub const REPLAY_FOCUS_SEQ: u64 = u64::MAX - 1;

/// Secure input is never above `timing`.
pub fn cap(level: Level, secure: bool) -> Level {
    if secure {
        level.min(Level::Timing)
    } else {
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn no_session_helper_is_off_whatever_unknown_focus_says() {
        // An operator who records unknown focus at `full` still gets nothing without a helper.
        let p = Policy::new(Level::Full);
        for reason in ["no_session_helper", "helper_exited"] {
            let f = FocusInfo {
                seq: 3,
                unknown: true,
                unknown_reason: reason.into(),
                ..FocusInfo::default()
            };
            let d = p.decide(Some(&f), Some(DeviceClass::Keyboard));
            assert_eq!(
                (d.level, d.rule.as_str()),
                (Level::Off, NO_HELPER_RULE),
                "{reason}"
            );
        }
        let lost = FocusInfo {
            seq: 4,
            unknown: true,
            unknown_reason: "tracker_lost".into(),
            ..FocusInfo::default()
        };
        assert_eq!(p.decide(Some(&lost), None).rule, "policy.unknown_focus");
    }

    fn rule(name: &str, exe: Option<&str>, app: Option<&str>, level: Level) -> RuleConfig {
        RuleConfig {
            name: Some(name.into()),
            exe: exe.map(Into::into),
            app_id: app.map(Into::into),
            level,
            origin: rules::Origin {
                file: PathBuf::from("t.toml"),
                line: 1,
            },
            ..Default::default()
        }
    }

    fn focus(exe: &str, app: &str) -> FocusInfo {
        FocusInfo {
            seq: 1,
            exe: exe.into(),
            app_id: app.into(),
            uid: 1000,
            ..Default::default()
        }
    }

    fn compile(rules: Vec<RuleConfig>) -> Policy {
        Policy::compile(PolicySpec {
            rules,
            ..Default::default()
        })
        .expect("compile")
    }

    #[test]
    fn empty_policy_captures_nothing() {
        let p = compile(vec![]);
        assert!(p.captures_nothing());
        let d = p.decide(Some(&focus("/usr/bin/gedit", "")), None);
        assert_eq!((d.level, d.rule.as_str()), (Level::Off, "policy.default"));
        assert_eq!(p.decide(None, None).level, Level::Off);
    }

    #[test]
    fn most_specific_wins_and_off_wins_ties() {
        let p = compile(vec![
            rule("all-bin", Some("/usr/bin/*"), None, Level::Full),
            rule("term-off", Some("/usr/bin/xterm"), None, Level::Off),
            rule("term-timing", Some("/usr/bin/xterm"), None, Level::Timing),
            rule(
                "term-app",
                Some("/usr/bin/xterm"),
                Some("org.xterm"),
                Level::Full,
            ),
        ]);
        let d = p.decide(Some(&focus("/usr/bin/gedit", "")), None);
        assert_eq!((d.level, d.rule.as_str()), (Level::Full, "all-bin"));
        let d = p.decide(Some(&focus("/usr/bin/xterm", "")), None);
        assert_eq!((d.level, d.rule.as_str()), (Level::Off, "term-off"));
        let d = p.decide(Some(&focus("/usr/bin/xterm", "org.xterm")), None);
        assert_eq!((d.level, d.rule.as_str()), (Level::Full, "term-app"));
        // Unknown focus is off whatever the rules say.
        assert_eq!(p.decide(None, None).level, Level::Off);
        assert!(!p.captures_nothing());
    }

    #[test]
    fn secure_input_is_capped_at_timing() {
        let p = compile(vec![rule("all", Some("/**"), None, Level::Full)]);
        let d = p.decide(Some(&focus("/usr/bin/keepassxc", "")), None);
        assert_eq!(d.level, Level::Timing);
        assert_eq!(d.rule_level, Level::Full);
        assert_eq!(d.secure, Some("password_manager"));
        let d = p.decide(Some(&focus("/usr/bin/swaylock", "")), None);
        assert_eq!(d.secure, Some("lock_screen"));
    }

    #[test]
    fn device_class_rules() {
        let mut kb = rule("kb", Some("/**"), None, Level::Off);
        kb.device = Some(DeviceClass::Keyboard);
        let p = compile(vec![rule("all", Some("/**"), None, Level::Full), kb]);
        let f = focus("/usr/bin/gimp", "");
        assert_eq!(
            p.decide(Some(&f), Some(DeviceClass::Keyboard)).level,
            Level::Off
        );
        assert_eq!(
            p.decide(Some(&f), Some(DeviceClass::Pointer)).level,
            Level::Full
        );
    }

    #[test]
    fn title_rules_need_titles() {
        let mut r = rule("t", None, None, Level::Off);
        r.title = Some("Bank".into());
        let err = Policy::compile(PolicySpec {
            rules: vec![r.clone()],
            ..Default::default()
        })
        .expect_err("titles off");
        assert!(err.to_string().contains("titles = true"), "{err}");
        assert!(Policy::compile(PolicySpec {
            rules: vec![r],
            titles_enabled: true,
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn keymap_settings_are_checked() {
        let with = |keymap: Option<xkb::KeymapNames>, locale: &str| {
            Policy::compile(PolicySpec {
                policy: PolicyConfig {
                    keymap,
                    compose_locale: locale.into(),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let named = |layout: &str| {
            Some(xkb::KeymapNames {
                layout: layout.into(),
                ..Default::default()
            })
        };
        assert!(with(named("de"), "en_US.UTF-8").is_ok());
        let key = |r: Result<Policy, PolicyError>| match r {
            Err(PolicyError::Setting { key, message }) => (key, message),
            other => panic!("{other:?}"),
        };
        let (k, m) = key(with(named("qq"), "en_US.UTF-8"));
        assert_eq!(k, "keymap");
        assert!(m.contains("`qq`"), "{m}");
        assert_eq!(key(with(named(""), "en_US.UTF-8")).0, "keymap");
        assert_eq!(key(with(None, "en US")).0, "compose_locale");
    }

    #[test]
    fn stamp_changes_with_policy() {
        let a = compile(vec![]);
        let b = compile(vec![rule("x", Some("/usr/bin/x"), None, Level::Full)]);
        assert_ne!(a.stamp().hash, b.stamp().hash);
        assert_eq!(a.stamp().hash.len(), 16);
        assert_eq!(b.stamp().rules, 1);
        assert_ne!(
            Policy::new(Level::Off).stamp().hash,
            Policy::new(Level::Full).stamp().hash
        );
    }
}
