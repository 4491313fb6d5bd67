//! The privilege split, checked on the crate graph: the collector (CAP_BPF, CAP_PERFMON) links
//! no policy, regex, compression, configuration, keymap, X11 or D-Bus code.

use std::collections::BTreeSet;
use std::process::Command;

fn normal_deps(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-p", package, "-e", "normal", "--prefix", "none", "--format",
            "{p}",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Crates that must never be in the privileged process.
const FORBIDDEN: &[&str] = &[
    "regex",
    "regex-automata",
    "regex-syntax",
    "zstd",
    "zstd-sys",
    "toml",
    "serde_norway",
    "xkbcommon-dl",
    "x11rb",
    "x11rb-protocol",
    "zbus",
    "imprint-policy",
    "imprint-config",
    "imprint-session",
    "imprint-spool",
    "imprint-export",
    "parquet",
    "arrow-array",
];

#[test]
fn the_collector_links_no_policy_regex_compression_x11_or_dbus() {
    let deps = normal_deps("imprint-collector");
    // The graph is really the collector's: its own capture and ring crates are in it.
    for needed in [
        "imprint-source",
        "imprint-ring",
        "imprint-record",
        "aya",
        "evdev",
        "capnp",
    ] {
        assert!(
            deps.contains(needed),
            "{needed} missing from the collector's graph: {deps:?}"
        );
    }
    let bad: Vec<&&str> = FORBIDDEN.iter().filter(|c| deps.contains(**c)).collect();
    assert!(
        bad.is_empty(),
        "the collector's dependency tree holds {bad:?}"
    );
}

#[test]
fn the_agent_and_the_session_helper_stay_out_of_each_others_way() {
    // The agent parses policy and writes disk; it talks to no display server.
    let agent = normal_deps("imprint-agent");
    for c in ["x11rb", "zbus", "aya", "imprint-source", "imprint-session"] {
        assert!(!agent.contains(c), "the agent's tree holds {c}");
    }
    assert!(agent.contains("imprint-policy") && agent.contains("zstd"));
    // The helper talks to display servers; it neither loads BPF nor reads input devices.
    let session = normal_deps("imprint-session");
    for c in ["aya", "imprint-source", "imprint-spool", "zstd"] {
        assert!(!session.contains(c), "the session helper's tree holds {c}");
    }
    assert!(session.contains("x11rb") && session.contains("zbus"));
}
