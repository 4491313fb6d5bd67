//! What the agent publishes about itself and its policy: read by `imprint status` and the
//! control socket.

use imprint_policy::filter::{CurrentFocus, FilterStats};
use imprint_record::PolicyStamp;
use serde::{Deserialize, Serialize};

/// Policy reload outcomes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadStats {
    pub reloads: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// What `imprint status` shows about scope: written beside the agent's status snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStatus {
    pub stamp: PolicyStampView,
    pub default_level: String,
    pub unknown_focus_level: String,
    pub current: Option<CurrentFocus>,
    pub filter: FilterStats,
    pub reload: ReloadStats,
}

/// The policy stamp, as JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyStampView {
    pub version: u64,
    pub hash: String,
    pub rules: u32,
}

impl From<&PolicyStamp> for PolicyStampView {
    fn from(p: &PolicyStamp) -> Self {
        PolicyStampView {
            version: p.version,
            hash: p.hash.clone(),
            rules: p.rules,
        }
    }
}
