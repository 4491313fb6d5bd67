//! Scope and redaction policy, through the real binary: replays typed into a focus context
//! (`[replay] focus_exe`), then `imprint dump`; `imprint policy check/explain`; SIGHUP reload.

mod common;

use common::{events, Env};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const SHIFT: u16 = 42;

/// US key code and shift for `c`.
fn key_for(c: char) -> (u16, bool) {
    const ROWS: &[(u16, &str, &str)] = &[
        (2, "1234567890-=", "!@#$%^&*()_+"),
        (16, "qwertyuiop[]", "QWERTYUIOP{}"),
        (30, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
        (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    ];
    if c == ' ' {
        return (57, false);
    }
    if c == '\n' {
        return (28, false);
    }
    for (base, plain, shifted) in ROWS {
        if let Some(i) = plain.chars().position(|x| x == c) {
            return (base + i as u16, false);
        }
        if let Some(i) = shifted.chars().position(|x| x == c) {
            return (base + i as u16, true);
        }
    }
    panic!("no US key for {c:?}")
}

/// A libinput recording of one keyboard typing `text` (with scan codes), 20 ms per event.
fn typing_recording(path: &Path, text: &str) {
    let mut s = String::from(
        "version: 1\nndevices: 1\nlibinput:\n  version: \"1.22.1\"\n  git: \"unknown\"\ndevices:\n- node: /dev/input/event9\n  evdev:\n    name: \"synthetic-keyboard\"\n    id: [3, 4617, 9, 1]\n  events:\n",
    );
    let mut t = 0u64;
    let mut frame = |s: &mut String, evs: &[(u16, u16, i32)]| {
        t += 20_000;
        let (sec, usec) = (t / 1_000_000, t % 1_000_000);
        s.push_str("  - evdev:\n");
        for (ty, code, value) in evs {
            s.push_str(&format!("    - [{sec}, {usec}, {ty}, {code}, {value}]\n"));
        }
        s.push_str(&format!("    - [{sec}, {usec}, 0, 0, 0]\n"));
    };
    for c in text.chars() {
        let (code, shift) = key_for(c);
        if shift {
            frame(&mut s, &[(1, SHIFT, 1)]);
        }
        let scan = 0x70000 + i32::from(code);
        frame(&mut s, &[(4, 4, scan), (1, code, 1)]);
        frame(&mut s, &[(4, 4, scan), (1, code, 0)]);
        if shift {
            frame(&mut s, &[(1, SHIFT, 0)]);
        }
    }
    std::fs::write(path, s).expect("write recording");
}

/// An environment with exactly `config` (plus private paths).
fn env_with(config: &str) -> Env {
    let env = Env::new("off", "");
    std::fs::write(&env.config, config).expect("write config");
    env
}

fn replay(env: &Env, text: &str) -> Vec<Value> {
    let rec = env.dir.path().join("typing.yml");
    typing_recording(&rec, text);
    let out = env.run(&[
        "run",
        "--replay",
        rec.to_str().expect("utf-8"),
        "--speed",
        "max",
    ]);
    assert!(
        out.status.success(),
        "run failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    env.dump()
}

/// The text the written key presses still spell (US layout).
fn spelled(dump: &[Value]) -> String {
    let mut shift = false;
    let mut out = String::new();
    for e in events(dump) {
        if e["type"] != "EV_KEY" {
            continue;
        }
        let code = e["code"].as_str().unwrap_or("");
        let v = e["value"].as_i64().unwrap_or(0);
        if code == "KEY_LEFTSHIFT" {
            shift = v != 0;
            continue;
        }
        if v != 1 {
            continue;
        }
        for c in (' '..='~').chain(['\n']) {
            let (k, s) = key_for(c);
            if s == shift && code_name(k) == code {
                out.push(c);
                break;
            }
        }
    }
    out
}

fn code_name(code: u16) -> String {
    imprint::record::names::code_name(1, code).to_string()
}

fn kinds<'a>(dump: &'a [Value], kind: &str) -> Vec<&'a Value> {
    dump.iter().filter(|v| v["kind"] == kind).collect()
}

const APP_FULL: &str = "[replay]\nfocus_exe = \"/usr/bin/app\"\nfocus_uid = 1000\n\n[[rule]]\nname = \"app\"\nexe = \"/usr/bin/app\"\nlevel = \"full\"\n";

#[test]
fn empty_policy_writes_no_input_events() {
    let env = env_with("[replay]\nfocus_exe = \"/usr/bin/app\"\n");
    let dump = replay(&env, "hello world");
    assert!(events(&dump).is_empty(), "{dump:?}");
    // Not even a legacy blank `full` for unknown focus: an empty file writes nothing either.
    let env = env_with("");
    let dump = replay(&env, "hello");
    assert!(events(&dump).is_empty(), "{dump:?}");
}

#[test]
fn app_without_matching_rule_writes_nothing() {
    let env = env_with(
        "[replay]\nfocus_exe = \"/usr/bin/other\"\n\n[[rule]]\nexe = \"/usr/bin/app\"\nlevel = \"full\"\n",
    );
    let dump = replay(&env, "hello world");
    assert!(events(&dump).is_empty(), "{dump:?}");
    assert!(
        kinds(&dump, "focus").is_empty(),
        "an out-of-scope focus is not written"
    );
}

#[test]
fn timing_keeps_every_key_time_but_no_printable_identity() {
    let env = env_with(&APP_FULL.replace("\"full\"", "\"timing\""));
    let text = "Secret Words 42!";
    let dump = replay(&env, text);
    let keys: Vec<&Value> = events(&dump)
        .into_iter()
        .filter(|e| e["type"] == "EV_KEY")
        .collect();
    let shifts = text.chars().filter(|c| key_for(*c).1).count();
    assert_eq!(keys.len(), 2 * text.len() + 2 * shifts, "{keys:?}");
    for k in &keys {
        let code = k["code"].as_str().unwrap_or("");
        assert!(code == "KEY_A" || code == "KEY_LEFTSHIFT", "{k}");
    }
    // Each press keeps its own time: 2 events (press, release) per key, 20 ms apart.
    let times: Vec<u64> = keys.iter().filter_map(|k| k["mono_ns"].as_u64()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(
        events(&dump).iter().all(|e| e["type"] != "EV_MSC"),
        "scan codes name keys"
    );
    assert_eq!(kinds(&dump, "focus").len(), 1);
}

#[test]
fn canaries_in_a_full_app_are_redacted_with_their_timing() {
    let env = env_with(APP_FULL);
    let canaries = [
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "github_token"),
        ("4111 1111 1111 1111", "card_number"),
        ("alice.smith@example.org", "email"),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
            "private_key",
        ),
    ];
    let mut text = String::from("hi ");
    for (c, _) in &canaries {
        text.push_str(c);
        text.push_str(" ok\n");
    }
    let dump = replay(&env, &text);
    let left = spelled(&dump);
    for (c, rule) in &canaries {
        let first = c.lines().next().unwrap_or(c);
        assert!(!left.contains(first), "{rule} canary written: {left:?}");
        let r: Vec<&Value> = kinds(&dump, "redaction")
            .into_iter()
            .filter(|r| r["rule"] == *rule)
            .collect();
        assert!(!r.is_empty(), "no {rule} redaction: {dump:?}");
        let count: u64 = r.iter().filter_map(|r| r["count"].as_u64()).sum();
        assert!(count > 10, "{rule}: {r:?}");
        for red in r {
            let times = red["key_times_ns"].as_array().expect("times");
            assert_eq!(times.len() as u64, red["count"].as_u64().unwrap_or(0));
            assert!(red["from_ns"].as_u64() <= red["to_ns"].as_u64());
        }
    }
    assert!(left.starts_with("hi "), "{left:?}");
    assert_eq!(left.matches(" ok\n").count(), canaries.len(), "{left:?}");
    // No scan code of any redacted key is left either.
    let scans = events(&dump)
        .iter()
        .filter(|e| e["type"] == "EV_MSC")
        .count();
    let kept_presses = left.chars().count();
    assert_eq!(scans, 2 * kept_presses, "{left:?}");

    // Transparency: `imprint status` says what was decided and what was redacted.
    let out = env.run(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let st: Value = serde_json::from_slice(&out.stdout).expect("status json");
    let p = &st["policy"];
    assert_eq!(p["current"]["exe"], "/usr/bin/app", "{st}");
    assert_eq!(p["current"]["level"], "full", "{st}");
    assert_eq!(p["current"]["rule"], "app", "{st}");
    for (_, rule) in &canaries {
        assert!(
            p["filter"]["redacted"][rule].as_u64().unwrap_or(0) > 0,
            "{rule}: {st}"
        );
    }
    let out = env.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("redacted: "), "{text}");
    let out = env.run(&["status", "--prometheus"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("imprint_events_redacted_total{rule=\"aws_access_key\"}"),
        "{text}"
    );
}

#[test]
fn password_manager_is_capped_at_timing() {
    let env = env_with(
        &APP_FULL
            .replace(
                "/usr/bin/app\"\nfocus_uid",
                "/usr/bin/keepassxc\"\nfocus_uid",
            )
            .replace("exe = \"/usr/bin/app\"", "exe = \"/usr/bin/*\""),
    );
    let dump = replay(&env, "hunter2");
    let keys: Vec<&Value> = events(&dump)
        .into_iter()
        .filter(|e| e["type"] == "EV_KEY")
        .collect();
    assert_eq!(keys.len(), 14);
    assert!(keys.iter().all(|k| k["code"] == "KEY_A"), "{keys:?}");
}

#[test]
fn batches_carry_the_policy_stamp() {
    let env = env_with(APP_FULL);
    let dump = replay(&env, "abc");
    let p = kinds(&dump, "policy");
    assert_eq!(p.len(), 1, "{dump:?}");
    assert_eq!(p[0]["rules"], 1);
    assert_eq!(p[0]["hash"].as_str().map(str::len), Some(16));
    let check = env.run(&["policy", "check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains(p[0]["hash"].as_str().unwrap_or("?")),
        "check and the stamp agree: {out}"
    );
}

#[test]
fn policy_check_explains_errors_with_line_and_key() {
    let env = env_with(APP_FULL);
    let out = env.run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok:"));

    let bad = env.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[policy]\ndefault = \"off\"\n\n[[rule]]\nexe = \"/usr/bin/a\"\nlevel = \"full\"\n\n[[rule]]\nexe = \"/usr/bin/b\"\nlevel = \"loud\"\n",
    )
    .expect("write");
    let out = env.run(&["policy", "check", bad.to_str().expect("utf-8")]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("line 10, key `level`"), "{msg}");

    std::fs::write(
        &bad,
        "[[rule]]\nexe = \"/usr/bin/a\"\nlevel = \"full\"\n\n[[rule]]\nname = \"banking\"\ntitle = \"Bank\"\nlevel = \"off\"\n",
    )
    .expect("write");
    let out = env.run(&["policy", "check", bad.to_str().expect("utf-8")]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("line 5, key `rule.title`") && msg.contains("titles = true"),
        "{msg}"
    );

    // conf.d/ beside the file adds rules, with its own file and line in errors.
    let dir = env.dir.path().join("etc");
    std::fs::create_dir_all(dir.join("conf.d")).expect("mkdir");
    let main = dir.join("imprint.toml");
    std::fs::write(&main, "[policy]\ndefault = \"off\"\n").expect("write");
    std::fs::write(
        dir.join("conf.d/10-editors.toml"),
        "[[rule]]\nname = \"editors\"\nexe = \"/usr/bin/gedit\"\nlevel = \"full\"\n",
    )
    .expect("write");
    let out = env.run(&["policy", "check", main.to_str().expect("utf-8")]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(msg.contains("1 rules"), "{msg}");
    std::fs::write(
        dir.join("conf.d/20-bad.toml"),
        "\n[[rule]]\nexe = \"relative\"\nlevel = \"full\"\n",
    )
    .expect("write");
    let out = env.run(&["policy", "check", main.to_str().expect("utf-8")]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("20-bad.toml: line 2, key `rule.exe`"), "{msg}");
}

#[test]
fn policy_explain_names_level_and_rule() {
    let env = env_with(
        "[policy]\ndefault = \"off\"\n\n[[rule]]\nname = \"all-bin\"\nexe = \"/usr/bin/*\"\nlevel = \"full\"\n\n[[rule]]\nname = \"no-term\"\nexe = \"/usr/bin/xterm\"\nlevel = \"off\"\n\n[[rule]]\nname = \"term-timing\"\nexe = \"/usr/bin/xterm\"\nlevel = \"timing\"\n",
    );
    let explain = |args: &[&str]| -> Value {
        let mut a = vec!["policy", "explain", "--json"];
        a.extend_from_slice(args);
        let out = env.run(&a);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let v = explain(&["--exe", "/usr/bin/gedit"]);
    assert_eq!(
        (v["level"].as_str(), v["rule"].as_str()),
        (Some("full"), Some("all-bin"))
    );
    let v = explain(&["--exe", "/usr/bin/xterm"]);
    assert_eq!(
        (v["level"].as_str(), v["rule"].as_str()),
        (Some("off"), Some("no-term")),
        "off wins a tie"
    );
    let v = explain(&["--exe", "/opt/x/bin/x"]);
    assert_eq!(
        (v["level"].as_str(), v["rule"].as_str()),
        (Some("off"), Some("policy.default"))
    );
    let v = explain(&["--exe", "/usr/bin/keepassxc"]);
    assert_eq!(
        (v["level"].as_str(), v["secure"].as_str()),
        (Some("timing"), Some("password_manager"))
    );
    let v = explain(&["--exe", "/usr/bin/gedit", "--user", "0"]);
    assert_eq!(v["level"], "full");
    let out = env.run(&["policy", "explain", "--exe", "/usr/bin/gedit"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("level: full") && text.contains("all-bin"),
        "{text}"
    );
}

#[test]
fn sighup_reload_refuses_a_bad_policy_and_applies_a_good_one() {
    let env = env_with(APP_FULL);
    let mut child = env.spawn(&["agent"]);
    let status = env.run_dir().join("policy.status.json");
    let read = || -> Option<Value> { serde_json::from_slice(&std::fs::read(&status).ok()?).ok() };
    let hup = |pid: u32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
    };
    let wait = |pred: &dyn Fn(&Value) -> bool| -> Value {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = read() {
                if pred(&v) {
                    return v;
                }
            }
            assert!(
                Instant::now() < until,
                "timed out; last status {:?}",
                read()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Give the agent a moment to install its handler.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        &env.config,
        "[[rule]]\nexe = \"/usr/bin/x\"\nlevel = \"everything\"\n",
    )
    .expect("write");
    hup(child.id());
    let v = wait(&|v| v["reload"]["failures"] == 1);
    assert_eq!(v["reload"]["reloads"], 0);
    assert!(
        v["reload"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("line 3"),
        "{v}"
    );
    let old = v["stamp"]["hash"].clone();
    assert_eq!(v["stamp"]["rules"], 1, "the old policy stays in force: {v}");

    std::fs::write(
        &env.config,
        format!("{APP_FULL}\n[[rule]]\nexe = \"/usr/bin/b\"\nlevel = \"timing\"\n"),
    )
    .expect("write");
    hup(child.id());
    let v = wait(&|v| v["reload"]["reloads"] == 1);
    assert_ne!(v["stamp"]["hash"], old);
    assert_eq!(v["stamp"]["rules"], 2);
    let _ = child.kill();
    let _ = child.wait();
}
