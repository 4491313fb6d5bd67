//! Scope: what the agent may write. For now one setting, `capture.default_level`; the rule
//! engine (per-application levels, secure input, redaction) builds on [`Level`] and
//! [`Policy::admit`].

use crate::record::{PolicyStamp, Record};
use serde::{Deserialize, Serialize};

/// How much of an application's input is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing is captured or written.
    #[default]
    Off,
    /// Every event, as delivered.
    Full,
}

impl Level {
    /// The name used in configuration and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Full => "full",
        }
    }
}

/// The policy in force.
#[derive(Clone, Debug)]
pub struct Policy {
    default_level: Level,
    stamp: PolicyStamp,
}

impl Policy {
    /// A policy with one level for everything.
    pub fn new(default_level: Level) -> Self {
        // The hash identifies the effective policy; it covers everything that decides scope.
        let canonical = format!(
            "imprint-policy-v1\ndefault_level={}\n",
            default_level.as_str()
        );
        let hash = format!("{:08x}", crc32c::crc32c(canonical.as_bytes()));
        Policy {
            default_level,
            stamp: PolicyStamp {
                version: 1,
                hash,
                default_level: default_level.as_str().into(),
            },
        }
    }

    /// The level applied when no rule matches.
    pub fn default_level(&self) -> Level {
        self.default_level
    }

    /// True when nothing at all may be captured.
    pub fn captures_nothing(&self) -> bool {
        self.default_level == Level::Off
    }

    /// The stamp written with every batch.
    pub fn stamp(&self) -> &PolicyStamp {
        &self.stamp
    }

    /// Whether `rec` may be written. Gaps are always kept: losses are never silent.
    pub fn admit(&self, rec: &Record) -> bool {
        match rec {
            Record::Gap(_) => true,
            Record::Event(_)
            | Record::Device(_)
            | Record::Focus(_)
            | Record::Policy(_)
            | Record::Other => self.default_level == Level::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Gap, InputEvent};

    #[test]
    fn off_admits_no_input_but_keeps_gaps() {
        let p = Policy::new(Level::Off);
        assert!(!p.admit(&Record::Event(InputEvent::default())));
        assert!(p.admit(&Record::Gap(Gap::default())));
        assert!(Policy::new(Level::Full).admit(&Record::Event(InputEvent::default())));
        assert_ne!(
            Policy::new(Level::Off).stamp().hash,
            Policy::new(Level::Full).stamp().hash
        );
    }
}
