//! `imprint.toml` plus `conf.d/*.toml` beside it: where things live, how big they may grow,
//! and the scope policy (`[policy]` and `[[rule]]`, see [`crate::policy`]). Unknown keys are
//! refused, and every error names the file, line and key.
//!
//! `conf.d/*.toml` files are read in name order and may only add: `[[rule]]` entries and the
//! `[policy]` lists (`password_managers`, `lock_screens`, `secure_titles`, `detectors`).
//!
//! `capture.default_level` is still accepted: it is the default for both `policy.default`
//! and `policy.unknown_focus`, so an old configuration means what it meant.

pub mod focus;
pub mod metrics;
pub mod ship;

use imprint_policy::detect::CustomDetector;
use imprint_policy::rules::{Origin, RuleConfig};
use imprint_policy::{Level, Policy, PolicyConfig, PolicyError, PolicySpec, ReplayFocus};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/imprint/imprint.toml";

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub capture: CaptureConfig,
    pub paths: PathsConfig,
    pub ring: RingConfig,
    pub spool: SpoolConfig,
    /// Focus tracking (`[focus]`): which tracker, titles and command lines (both off).
    pub focus: focus::FocusConfig,
    /// Scope policy settings (`[policy]`).
    pub policy: PolicyConfig,
    /// Scope rules (`[[rule]]`).
    pub rule: Vec<RuleConfig>,
    /// Replays (`[replay]`): the identity replayed input is attributed to.
    pub replay: ReplayFocus,
    /// The collector's session socket (`[session]`): whose reports it trusts.
    pub session: SessionConfig,
    /// The organisation's notice to the people at this machine (`[notice]`): shown by
    /// `imprint status` and, once per version, by imprint-session at login.
    pub notice: NoticeConfig,
    /// Shipping sealed segments to object storage (`[ship]`): off unless `enabled`.
    pub ship: ship::ShipConfig,
    /// Serving metrics (`[metrics]`): a local Unix socket, and a loopback address if set.
    pub metrics: metrics::MetricsConfig,
}

/// `[notice]`: what the people using this machine have been told. Empty (the default)
/// means no notice is configured.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NoticeConfig {
    /// The text, as the organisation wrote it.
    pub text: String,
    /// Raised whenever the text changes, so that it is shown again.
    pub version: u32,
}

/// Who may report focus to the collector, and who may send it verdicts.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Trust this uid as the owner of the seat (machines without logind); by default the
    /// owner of the seat's active logind session.
    pub owner_uid: Option<u32>,
    /// The agent's user (a name or a uid): its verdicts are accepted.
    pub agent_user: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            owner_uid: None,
            agent_user: "imprint".into(),
        }
    }
}

/// What a `conf.d/*.toml` file may hold.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct Fragment {
    policy: FragmentPolicy,
    rule: Vec<RuleConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct FragmentPolicy {
    password_managers: Vec<String>,
    lock_screens: Vec<String>,
    secure_titles: Vec<String>,
    detectors: Vec<CustomDetector>,
}

/// What is captured.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Compatibility: the default of `policy.default` and `policy.unknown_focus`; `off` (the
    /// default) captures and writes nothing.
    pub default_level: Level,
}

/// Where state lives.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// The collector's directory: the ring lives here.
    pub run_dir: PathBuf,
    /// The agent's runtime directory: its ring cursor and status snapshot.
    pub agent_run_dir: PathBuf,
    /// The agent's durable state: `spool/` lives here.
    pub data_dir: PathBuf,
    /// Where the agent's control socket lives: a directory every local user may enter, so
    /// that anyone can ask what is captured about them (`imprint status`).
    pub status_dir: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            run_dir: "/run/imprint".into(),
            agent_run_dir: "/run/imprint-agent".into(),
            data_dir: "/var/lib/imprint".into(),
            status_dir: "/run/imprint-status".into(),
        }
    }
}

/// The collector→agent ring.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RingConfig {
    /// Bytes of frame space; a power of two.
    pub capacity_bytes: u64,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            capacity_bytes: 4 << 20,
        }
    }
}

/// The on-disk spool.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// How often appended batches are fsynced (and the ring position committed).
    pub fsync_interval_ms: u64,
    pub segment_max_bytes: u64,
    pub retention_max_bytes: u64,
    pub retention_max_age_hours: u64,
    /// Operators' age X25519 public keys (`age1…`): with any, everything the spool writes
    /// is encrypted to them and this machine cannot read it back.
    pub recipients: Vec<String>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            fsync_interval_ms: 1000,
            segment_max_bytes: 16 << 20,
            retention_max_bytes: 1 << 30,
            retention_max_age_hours: 24 * 7,
            recipients: Vec::new(),
        }
    }
}

impl SpoolConfig {
    /// The fsync interval as a duration.
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}, key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Value { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path` and the `conf.d/*.toml` beside it; a missing file at the default path
    /// means "all defaults" (capture off).
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Config::default(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let dir = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("conf.d");
        for file in conf_d_files(&dir)? {
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            let mut frag: Fragment =
                toml::from_str(&text).map_err(|e| toml_error(&e, &text, &file))?;
            set_origins(&mut frag.rule, &text, &file);
            cfg.rule.append(&mut frag.rule);
            let p = &mut cfg.policy;
            p.password_managers
                .append(&mut frag.policy.password_managers);
            p.lock_screens.append(&mut frag.policy.lock_screens);
            p.secure_titles.append(&mut frag.policy.secure_titles);
            p.detectors.append(&mut frag.policy.detectors);
        }
        cfg.compile_policy(path)?;
        Ok(cfg)
    }

    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| toml_error(&e, text, path))?;
        set_origins(&mut cfg.rule, text, path);
        cfg.validate(path)?;
        cfg.compile_policy(path)?;
        Ok(cfg)
    }

    /// What goes into the policy.
    pub fn policy_spec(&self) -> PolicySpec {
        PolicySpec {
            policy: self.policy.clone(),
            rules: self.rule.clone(),
            legacy_default: self.capture.default_level,
            titles_enabled: self.focus.titles,
            replay_focus: (!self.replay.focus_exe.is_empty()).then(|| self.replay.clone()),
        }
    }

    /// The compiled policy (errors name the file, line and key).
    pub fn compile_policy(&self, path: &Path) -> Result<Policy, ConfigError> {
        Policy::compile(self.policy_spec()).map_err(|e| match e {
            PolicyError::Rule(r) => ConfigError::Invalid {
                path: r.origin.file.clone(),
                line: r.origin.line,
                key: format!("rule.{}", r.key),
                message: format!("rule `{}`: {}", r.label, r.message),
            },
            PolicyError::Setting { key, message } => ConfigError::Invalid {
                path: path.to_owned(),
                line: std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| line_of_key(&t, key))
                    .unwrap_or(0),
                key: format!("policy.{key}"),
                message,
            },
        })
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Value {
                path: path.to_owned(),
                message,
            })
        };
        let cap = self.ring.capacity_bytes;
        if !cap.is_power_of_two() || !(4096..=1 << 30).contains(&cap) {
            return bad(format!(
                "ring.capacity_bytes = {cap}: must be a power of two from 4096 to 1073741824"
            ));
        }
        if let Err(e) = self.metrics.listen_addr() {
            return bad(format!("metrics.listen: {e}"));
        }
        if self.spool.fsync_interval_ms == 0 || self.spool.fsync_interval_ms > 60_000 {
            return bad("spool.fsync_interval_ms must be between 1 and 60000".into());
        }
        if let Some(r) = self.spool.recipients.iter().find(|r| {
            let r = r.trim();
            !r.starts_with("age1") || r.len() < 50 || r.chars().any(|c| !c.is_ascii_alphanumeric())
        }) {
            return bad(format!(
                "spool.recipients: {r:?} is not an age X25519 public key (age1…)"
            ));
        }
        if self.spool.segment_max_bytes < 4096 {
            return bad("spool.segment_max_bytes must be at least 4096".into());
        }
        self.ship.validate().or_else(bad)?;
        Ok(())
    }
}

/// A TOML error as file, line and key.
fn toml_error(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let start = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let key = line_text
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(['[', ']'])
        .to_owned();
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        key,
        message: e.message().to_owned(),
    }
}

/// Gives each rule the file and line of its `[[rule]]` header.
fn set_origins(rules: &mut [RuleConfig], text: &str, path: &Path) {
    let mut headers = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[rule]]"))
        .map(|(i, _)| i + 1);
    for r in rules {
        r.origin = Origin {
            file: path.to_owned(),
            line: headers.next().unwrap_or(0),
        };
    }
}

fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
}

/// `conf.d/*.toml`, in name order (none when the directory does not exist).
fn conf_d_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_captures_nothing() {
        let cfg = Config::parse("", Path::new("x.toml")).expect("parse");
        assert_eq!(cfg.capture.default_level, Level::Off);
        assert_eq!(cfg, Config::default());
        assert!(!cfg.focus.titles && !cfg.focus.cmdline);
        assert_eq!(cfg.focus.tracker, crate::focus::TrackerKind::Auto);
    }

    #[test]
    fn focus_section_parses() {
        let cfg = Config::parse(
            "[focus]\ntracker = \"sway\"\ntitles = true\nsway_socket = \"/run/user/1000/sway-ipc.sock\"\n",
            Path::new("x.toml"),
        )
        .expect("parse");
        assert_eq!(cfg.focus.tracker, crate::focus::TrackerKind::Sway);
        assert!(cfg.focus.titles && !cfg.focus.cmdline);
        let err = Config::parse("[focus]\ntracker = \"wayland\"\n", Path::new("x.toml"))
            .expect_err("unknown tracker");
        assert!(err.to_string().contains("tracker"), "{err}");
    }

    #[test]
    fn notice_section_parses() {
        let cfg = Config::parse(
            "[notice]\ntext = \"Input on this machine is recorded.\"\nversion = 3\n",
            Path::new("x.toml"),
        )
        .expect("parse");
        assert_eq!(
            cfg.notice,
            NoticeConfig {
                text: "Input on this machine is recorded.".into(),
                version: 3
            }
        );
        let err = Config::parse("[notice]\ntitle = \"x\"\n", Path::new("x.toml"))
            .expect_err("unknown key");
        assert!(err.to_string().contains("title"), "{err}");
    }

    #[test]
    fn full_level_parses() {
        let cfg = Config::parse("[capture]\ndefault_level = \"full\"\n", Path::new("x.toml"))
            .expect("parse");
        assert_eq!(cfg.capture.default_level, Level::Full);
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = "[capture]\n\ndefault_level = \"ful\"\n";
        let err =
            Config::parse(text, Path::new("/etc/imprint/imprint.toml")).expect_err("bad level");
        let msg = err.to_string();
        assert!(
            msg.contains("/etc/imprint/imprint.toml: line 3, key `default_level`"),
            "{msg}"
        );
        assert!(msg.contains("ful"), "{msg}");

        let err = Config::parse("[spool]\nfsync_interval = 5\n", Path::new("c.toml"))
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(
            msg.contains("line 2, key `fsync_interval`") && msg.contains("unknown field"),
            "{msg}"
        );

        let err = Config::parse("[capture\n", Path::new("c.toml")).expect_err("syntax");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let err =
            Config::parse("[ring]\ncapacity_bytes = 5000\n", Path::new("c.toml")).expect_err("cap");
        assert!(err.to_string().contains("ring.capacity_bytes"), "{err}");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The policy parser never panics, whatever the text (a stand-in for the cargo-fuzz
        /// target until one exists).
        #[test]
        fn parser_never_panics(text in "(\\[\\[rule\\]\\]\n|\\[policy\\]\n|exe = \"[/a-z*?]{0,12}\"\n|level = \"(full|off|timing|counts|x)\"\n|title = \"[(a-z\\[]{0,6}\"\n|default = \"(full|off)\"\n|holdback_keys = [0-9]{1,6}\n|[ -~]{0,20}\n){0,12}") {
            let _ = Config::parse(&text, Path::new("p.toml"));
        }

        #[test]
        fn globs_never_panic(p in "[/a-z*?]{0,16}", t in "[/a-z]{0,24}") {
            let _ = imprint_policy::rules::Glob::new(&p).matches(&t);
        }
    }
}
