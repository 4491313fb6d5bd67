//! `imprint policy check FILE` and `imprint policy explain`: what the policy would decide,
//! without running anything.

use super::Locations;
use imprint_config::Config;
use imprint_policy::rules::{resolve_user, DeviceClass, Subject};
use imprint_policy::Policy;
use std::path::{Path, PathBuf};

/// `imprint policy …`
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate a configuration (and the conf.d/ beside it); explain every error.
    Check {
        /// The file to check [default: --config, or /etc/imprint/imprint.toml]
        file: Option<PathBuf>,
    },
    /// Print the level that would apply to an application, and the rule that decides it.
    Explain {
        /// Executable path of the focused program.
        #[arg(long)]
        exe: String,
        /// Desktop, flatpak or snap app id.
        #[arg(long)]
        app_id: Option<String>,
        /// User name or uid.
        #[arg(long)]
        user: Option<String>,
        /// systemd unit.
        #[arg(long)]
        unit: Option<String>,
        /// Window class.
        #[arg(long)]
        wm_class: Option<String>,
        /// Window title (used only when titles are enabled).
        #[arg(long)]
        title: Option<String>,
        /// Terminal emulator executable, when the program runs in one.
        #[arg(long)]
        terminal_exe: Option<String>,
        /// Device class: keyboard, pointer, touchpad, tablet, virtual.
        #[arg(long)]
        device: Option<String>,
        /// Machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(loc: &Locations, cmd: PolicyCommand) -> anyhow::Result<i32> {
    match cmd {
        PolicyCommand::Check { file } => check(loc, file.as_deref()),
        PolicyCommand::Explain {
            exe,
            app_id,
            user,
            unit,
            wm_class,
            title,
            terminal_exe,
            device,
            json,
        } => {
            let (path, must_exist) = loc.config_source();
            let cfg = Config::load(&path, must_exist)?;
            let policy = cfg.compile_policy(&path)?;
            let device = match device.as_deref() {
                None => None,
                Some(d) => Some(DeviceClass::parse(d).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--device {d}: expected keyboard, pointer, touchpad, tablet or virtual"
                    )
                })?),
            };
            let uid = match user.as_deref() {
                None => None,
                Some(u) => Some(resolve_user(u).ok_or_else(|| {
                    anyhow::anyhow!("--user {u}: no such user on this host (give a uid)")
                })?),
            };
            let s = Subject {
                exe: &exe,
                terminal_exe: terminal_exe.as_deref().unwrap_or(""),
                app_id: app_id.as_deref().unwrap_or(""),
                unit: unit.as_deref().unwrap_or(""),
                wm_class: wm_class.as_deref().unwrap_or(""),
                title: if cfg.focus.titles {
                    title.as_deref().unwrap_or("")
                } else {
                    ""
                },
                uid,
                device,
            };
            explain(&policy, &s, json);
            Ok(0)
        }
    }
}

fn check(loc: &Locations, file: Option<&Path>) -> anyhow::Result<i32> {
    let (path, must_exist) = match file {
        Some(f) => (f.to_owned(), true),
        None => loc.config_source(),
    };
    let cfg = match Config::load(&path, must_exist) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("policy check: {e}");
            println!("invalid: {e}");
            return Ok(1);
        }
    };
    let policy = match cfg.compile_policy(&path) {
        Ok(p) => p,
        Err(e) => {
            println!("invalid: {e}");
            return Ok(1);
        }
    };
    let st = policy.stamp();
    println!(
        "ok: {} ({} rules; default {}, unknown focus {}; version {}, hash {})",
        path.display(),
        st.rules,
        policy.default_level().as_str(),
        policy.unknown_focus_level().as_str(),
        st.version,
        st.hash
    );
    if policy.captures_nothing() {
        println!("note: this policy captures nothing");
    }
    for w in policy.warnings() {
        println!("warning: {w}");
    }
    Ok(0)
}

fn explain(policy: &Policy, s: &Subject<'_>, json: bool) {
    let d = policy.explain(s);
    if json {
        let v = serde_json::json!({
            "level": d.level.as_str(),
            "rule_level": d.rule_level.as_str(),
            "rule": d.rule,
            "secure": d.secure,
            "policy_hash": policy.stamp().hash,
        });
        println!("{v}");
        return;
    }
    println!("level: {}", d.level.as_str());
    println!("rule:  {} (gives {})", d.rule, d.rule_level.as_str());
    if let Some(why) = d.secure {
        println!("secure input ({why}): capped at timing");
    }
    if !s.terminal_exe.is_empty() && policy.secure().terminal_echo {
        println!(
            "note:  while the program reads with echo off (a password prompt), it is capped at timing"
        );
    }
}
