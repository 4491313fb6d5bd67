//! `imprint.toml`: where things live, how big they may grow, and (for now) the one scope
//! setting. Unknown keys are refused, and every error names the file, line and key.

use crate::policy::Level;
use serde::Deserialize;
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
    pub focus: crate::focus::FocusConfig,
}

/// What is captured.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Level for everything; `off` (the default) captures and writes nothing.
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
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            run_dir: "/run/imprint".into(),
            agent_run_dir: "/run/imprint-agent".into(),
            data_dir: "/var/lib/imprint".into(),
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
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            fsync_interval_ms: 1000,
            segment_max_bytes: 16 << 20,
            retention_max_bytes: 1 << 30,
            retention_max_age_hours: 24 * 7,
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
    /// Loads `path`; a missing file at the default path means "all defaults" (capture off).
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
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
        })?;
        cfg.validate(path)?;
        Ok(cfg)
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
        if self.spool.fsync_interval_ms == 0 || self.spool.fsync_interval_ms > 60_000 {
            return bad("spool.fsync_interval_ms must be between 1 and 60000".into());
        }
        if self.spool.segment_max_bytes < 4096 {
            return bad("spool.segment_max_bytes must be at least 4096".into());
        }
        Ok(())
    }
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
