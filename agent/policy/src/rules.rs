//! `[[rule]]` entries: what they match, and which one decides.
//!
//! Precedence: every rule whose conditions all hold is a candidate. The candidate with the
//! most conditions (the most specific) wins; on a tie the most restrictive level wins, so `off`
//! beats everything. Rule order in the files never matters. No candidate: `policy.default`.

use super::Level;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The class of device an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Keyboard,
    Pointer,
    Touchpad,
    Tablet,
    /// uinput or otherwise injected input (of any kind).
    Virtual,
}

impl DeviceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Keyboard => "keyboard",
            DeviceClass::Pointer => "pointer",
            DeviceClass::Touchpad => "touchpad",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Virtual => "virtual",
        }
    }

    /// Parses a class name (for `imprint policy explain --device`).
    pub fn parse(s: &str) -> Option<DeviceClass> {
        Some(match s {
            "keyboard" => DeviceClass::Keyboard,
            "pointer" => DeviceClass::Pointer,
            "touchpad" => DeviceClass::Touchpad,
            "tablet" => DeviceClass::Tablet,
            "virtual" => DeviceClass::Virtual,
            _ => return None,
        })
    }
}

/// One `[[rule]]` as written.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Shown by `imprint policy explain` and in logs; defaults to `FILE:LINE`.
    #[serde(default)]
    pub name: Option<String>,
    /// Glob on the focused program's executable path (or its terminal emulator's): `*` within
    /// a path component, `**` across components, `?` one character.
    #[serde(default)]
    pub exe: Option<String>,
    /// Desktop, flatpak or snap application id (exact).
    #[serde(default)]
    pub app_id: Option<String>,
    /// systemd unit (glob).
    #[serde(default)]
    pub unit: Option<String>,
    /// Window class (exact, case-insensitive).
    #[serde(default)]
    pub wm_class: Option<String>,
    /// Regular expression on the window title; only allowed when `[focus] titles = true`.
    #[serde(default)]
    pub title: Option<String>,
    /// User name or numeric uid.
    #[serde(default)]
    pub user: Option<String>,
    /// Group name or numeric gid (the focused process's user must be a member).
    #[serde(default)]
    pub group: Option<String>,
    /// Device class.
    #[serde(default)]
    pub device: Option<DeviceClass>,
    pub level: Level,
    /// Where the rule was written (not part of the policy hash).
    #[serde(skip)]
    pub origin: Origin,
}

/// File and line of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The identity a decision is made about.
#[derive(Clone, Debug, Default)]
pub struct Subject<'a> {
    pub exe: &'a str,
    pub terminal_exe: &'a str,
    pub app_id: &'a str,
    pub unit: &'a str,
    pub wm_class: &'a str,
    pub title: &'a str,
    pub uid: Option<u32>,
    pub device: Option<DeviceClass>,
}

/// A rule ready to match.
#[derive(Clone, Debug)]
pub struct Rule {
    pub label: String,
    pub level: Level,
    exe: Option<Glob>,
    app_id: Option<String>,
    unit: Option<Glob>,
    wm_class: Option<String>,
    title: Option<Regex>,
    uid: Option<Option<u32>>,
    gid: Option<Option<u32>>,
    device: Option<DeviceClass>,
}

/// Why a rule cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: rule `{label}`, key `{key}`: {message}")]
pub struct RuleError {
    pub origin: Origin,
    pub label: String,
    pub key: &'static str,
    pub message: String,
}

impl Rule {
    /// Checks and compiles one rule.
    pub fn compile(rc: &RuleConfig, titles_enabled: bool) -> Result<Rule, RuleError> {
        let label = rc.name.clone().unwrap_or_else(|| format!("{}", rc.origin));
        let err = |key: &'static str, message: String| RuleError {
            origin: rc.origin.clone(),
            label: label.clone(),
            key,
            message,
        };
        let conditions = [
            rc.exe.is_some(),
            rc.app_id.is_some(),
            rc.unit.is_some(),
            rc.wm_class.is_some(),
            rc.title.is_some(),
            rc.user.is_some(),
            rc.group.is_some(),
            rc.device.is_some(),
        ];
        if !conditions.iter().any(|c| *c) {
            return Err(err(
                "level",
                "a rule needs at least one condition (exe, app_id, unit, wm_class, title, user, group, device); use `policy.default` for everything else".into(),
            ));
        }
        for (key, v) in [
            ("exe", &rc.exe),
            ("app_id", &rc.app_id),
            ("unit", &rc.unit),
            ("wm_class", &rc.wm_class),
            ("user", &rc.user),
            ("group", &rc.group),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(err(key, "must not be empty".into()));
            }
        }
        if let Some(exe) = &rc.exe {
            if !exe.starts_with('/') && !exe.starts_with('*') {
                return Err(err(
                    "exe",
                    format!(
                        "`{exe}` must be an absolute path or start with `*` (e.g. \"**/firefox\")"
                    ),
                ));
            }
        }
        let title = match &rc.title {
            None => None,
            Some(_) if !titles_enabled => {
                return Err(err(
                    "title",
                    "matching on titles needs `[focus] titles = true` (titles are not recorded otherwise)".into(),
                ))
            }
            Some(t) => Some(Regex::new(t).map_err(|e| err("title", e.to_string()))?),
        };
        Ok(Rule {
            label: label.clone(),
            level: rc.level,
            exe: rc.exe.as_deref().map(Glob::new),
            app_id: rc.app_id.clone(),
            unit: rc.unit.as_deref().map(Glob::new),
            wm_class: rc.wm_class.as_ref().map(|s| s.to_lowercase()),
            title,
            uid: rc.user.as_deref().map(resolve_user),
            gid: rc.group.as_deref().map(resolve_group),
            device: rc.device,
        })
    }

    /// Number of conditions: the rule's specificity.
    pub fn specificity(&self) -> u32 {
        [
            self.exe.is_some(),
            self.app_id.is_some(),
            self.unit.is_some(),
            self.wm_class.is_some(),
            self.title.is_some(),
            self.uid.is_some(),
            self.gid.is_some(),
            self.device.is_some(),
        ]
        .iter()
        .filter(|c| **c)
        .count() as u32
    }

    /// True when every condition holds for `s`.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        if let Some(g) = &self.exe {
            let hit = (!s.exe.is_empty() && g.matches(s.exe))
                || (!s.terminal_exe.is_empty() && g.matches(s.terminal_exe));
            if !hit {
                return false;
            }
        }
        if let Some(a) = &self.app_id {
            if s.app_id.is_empty() || a != s.app_id {
                return false;
            }
        }
        if let Some(u) = &self.unit {
            if s.unit.is_empty() || !u.matches(s.unit) {
                return false;
            }
        }
        if let Some(w) = &self.wm_class {
            if s.wm_class.is_empty() || *w != s.wm_class.to_lowercase() {
                return false;
            }
        }
        if let Some(t) = &self.title {
            if s.title.is_empty() || !t.is_match(s.title) {
                return false;
            }
        }
        if let Some(uid) = self.uid {
            if uid.is_none() || uid != s.uid {
                return false;
            }
        }
        if let Some(gid) = self.gid {
            match (gid, s.uid) {
                (Some(gid), Some(uid)) if user_in_group(uid, gid) => {}
                _ => return false,
            }
        }
        if let Some(d) = self.device {
            if s.device != Some(d) {
                return false;
            }
        }
        true
    }

    /// Warnings about conditions that can never hold on this host (unknown user or group).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.uid == Some(None) {
            w.push(format!(
                "rule `{}`: user is not known on this host; the rule never matches here",
                self.label
            ));
        }
        if self.gid == Some(None) {
            w.push(format!(
                "rule `{}`: group is not known on this host; the rule never matches here",
                self.label
            ));
        }
        w
    }
}

/// A user name or uid → uid (None: unknown here).
pub fn resolve_user(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::User::from_name(s)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn resolve_group(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::Group::from_name(s)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

fn user_in_group(uid: u32, gid: u32) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == gid {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|gs| gs.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false)
}

/// A shell-style glob: `*` (not `/`), `**` (anything), `?` (one character but `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    pub fn new(p: &str) -> Glob {
        Glob {
            pattern: p.chars().collect(),
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        glob_at(&self.pattern, &t)
    }
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    // Iterative with memo-free backtracking bounded by pattern length: patterns are short.
    match p.first() {
        None => t.is_empty(),
        Some('*') => {
            let deep = p.get(1) == Some(&'*');
            let rest = if deep { &p[2..] } else { &p[1..] };
            for i in 0..=t.len() {
                if glob_at(rest, &t[i..]) {
                    return true;
                }
                if i < t.len() && !deep && t[i] == '/' {
                    return false;
                }
            }
            false
        }
        Some('?') => !t.is_empty() && t[0] != '/' && glob_at(&p[1..], &t[1..]),
        Some(c) => !t.is_empty() && t[0] == *c && glob_at(&p[1..], &t[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Glob::new("/usr/bin/*").matches("/usr/bin/vim"));
        assert!(!Glob::new("/usr/bin/*").matches("/usr/bin/x/vim"));
        assert!(Glob::new("/usr/**").matches("/usr/lib/firefox/firefox"));
        assert!(Glob::new("**/firefox").matches("/usr/lib/firefox/firefox"));
        assert!(!Glob::new("*/firefox").matches("/usr/lib/firefox/firefox"));
        assert!(Glob::new("/usr/bin/vi?").matches("/usr/bin/vim"));
        assert!(!Glob::new("/usr/bin/vi?").matches("/usr/bin/vi"));
        assert!(Glob::new("app-*.scope").matches("app-gnome-firefox-123.scope"));
    }
}
