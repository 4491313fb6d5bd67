//! Replaying the bundled recording (made with the real `libinput record` in the real-kernel
//! VM) through the whole pipeline: collector → ring → agent → spool → dump.

mod common;

use common::{events, recording, Env};
use std::os::unix::fs::PermissionsExt;

/// (device name, mono_ns, type, code, value) for every non-SYN_REPORT event, read from the
/// recording's YAML lines and the driver's ground-truth log, independently of imprint's parser.
fn expected_events() -> Vec<(String, u64, String, String, i64)> {
    let yaml = std::fs::read_to_string(recording()).expect("read recording");
    let mut timed: Vec<(String, u64, i64, i64, i64)> = Vec::new();
    let mut device = String::new();
    for line in yaml.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("name: ") {
            device = name.trim_matches('"').to_owned();
        } else if let Some(rest) = t.strip_prefix("- [") {
            let nums: Vec<i64> = rest
                .split(']')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|n| n.trim().parse().expect("number"))
                .collect();
            if nums[2] == 0 && nums[3] == 0 {
                continue; // SYN_REPORT
            }
            timed.push((
                device.clone(),
                (nums[0] * 1_000_000_000 + nums[1] * 1000) as u64,
                nums[2],
                nums[3],
                nums[4],
            ));
        }
    }
    timed.sort_by_key(|e| e.1);
    let sent = std::fs::read_to_string(recording().with_file_name("keyboard-mouse.sent.jsonl"))
        .expect("read sent");
    let sent: Vec<serde_json::Value> = sent
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(timed.len(), sent.len(), "recording and driver log disagree");
    timed
        .into_iter()
        .zip(sent)
        .map(|((dev, t, _, _, value), s)| {
            assert_eq!(s["device"], dev.as_str());
            assert_eq!(s["value"].as_i64(), Some(value));
            (
                dev,
                t,
                s["type"].as_str().unwrap_or("").to_owned(),
                s["code"].as_str().unwrap_or("").to_owned(),
                value,
            )
        })
        .collect()
}

#[test]
fn dump_prints_exactly_the_recorded_events_in_order_with_timestamps() {
    let env = Env::new("full", "");
    let rec = recording();
    let out = env.replay(&rec);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wrote 178 events"),
        "run should say what it wrote: {stdout}"
    );

    let dump = env.dump();
    let devices: std::collections::HashMap<u64, String> = dump
        .iter()
        .filter(|v| v["kind"] == "device")
        .map(|v| {
            (
                v["device"].as_u64().expect("index"),
                v["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    let mut names: Vec<_> = devices.values().cloned().collect();
    names.sort();
    assert_eq!(names, ["imprint-test-keyboard", "imprint-test-mouse"]);
    let got: Vec<(String, u64, String, String, i64)> = events(&dump)
        .iter()
        .map(|v| {
            (
                devices[&v["device"].as_u64().expect("device")].clone(),
                v["mono_ns"].as_u64().expect("mono_ns"),
                v["type"].as_str().expect("type").to_owned(),
                v["code"].as_str().expect("code").to_owned(),
                v["value"].as_i64().expect("value"),
            )
        })
        .collect();
    let want = expected_events();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert!(
        dump.iter().all(|v| v["code"] != "SYN_REPORT"),
        "SYN_REPORT is not printed as an event"
    );
    // Each event line has exactly the documented shape.
    let first = events(&dump)[0].as_object().expect("object");
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["kind", "mono_ns", "device", "type", "code", "value", "focus"]
    );

    let (code, text) = env.verify();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("178 events"), "{text}");
}

#[test]
fn spool_is_private() {
    let env = Env::new("full", "");
    env.replay(&recording());
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&env.data), 0o700);
    assert_eq!(mode(&env.spool_dir()), 0o700);
    let files: Vec<_> = std::fs::read_dir(env.spool_dir())
        .expect("list")
        .flatten()
        .collect();
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
    }
    assert_eq!(mode(&env.run_dir().join("ring.cursor")), 0o640);
    assert_eq!(mode(&env.run_dir().join("ring")), 0o640);
}

#[test]
fn empty_policy_writes_nothing() {
    let env = Env::new("full", "");
    std::fs::write(&env.config, "").expect("empty config");
    let out = env.replay(&recording());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing is captured"));
    let dump = env.dump();
    assert!(
        dump.is_empty(),
        "an empty policy must write nothing: {dump:?}"
    );
    let written: u64 = std::fs::read_dir(env.spool_dir())
        .map(|d| {
            d.flatten()
                .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(written, 0, "no spool bytes at all");
}

#[test]
fn malformed_config_is_refused_naming_line_and_key() {
    let env = Env::new("full", "");
    std::fs::write(&env.config, "[capture]\ndefault_level = \"everything\"\n").expect("write");
    let out = env.run(&[
        "run",
        "--replay",
        recording().to_str().expect("utf-8"),
        "--speed",
        "max",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2, key `default_level`"), "{err}");
    assert!(err.contains("everything"), "{err}");
    assert!(
        !env.spool_dir().exists(),
        "nothing is created for a refused config"
    );

    std::fs::write(
        &env.config,
        "[capture]\ndefault_level = \"full\"\n[spool]\nfsync_every = 3\n",
    )
    .expect("write");
    let out = env.run(&["dump"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 4, key `fsync_every`"));
}

#[test]
fn bad_recording_is_a_clear_error() {
    let env = Env::new("full", "");
    let bad = env.dir.path().join("bad.yml");
    std::fs::write(&bad, "version: 7\ndevices: []\n").expect("write");
    let out = env.run(&["run", "--replay", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 7 is not supported"));
}
