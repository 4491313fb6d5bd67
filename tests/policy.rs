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
    common::typist::key_for(c).unwrap_or_else(|| panic!("no US key for {c:?}"))
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

/// One key press: the modifiers held around it and its evdev code.
type Stroke = (&'static [u16], u16);

const ALTGR: u16 = 100;

/// A libinput recording of one keyboard typing `strokes` (with scan codes), 20 ms per event.
fn strokes_recording(path: &Path, strokes: &[Stroke]) {
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
    for (mods, code) in strokes {
        for m in *mods {
            frame(&mut s, &[(1, *m, 1)]);
        }
        let scan = 0x70000 + i32::from(*code);
        frame(&mut s, &[(4, 4, scan), (1, *code, 1)]);
        frame(&mut s, &[(4, 4, scan), (1, *code, 0)]);
        for m in mods.iter().rev() {
            frame(&mut s, &[(1, *m, 0)]);
        }
    }
    std::fs::write(path, s).expect("write recording");
}

/// The strokes typing `text` on layout `layout` ("de" or "fr"; letters, digits, ' ', '.',
/// '@'), as a person with that keyboard would type it.
fn strokes(layout: &str, text: &str) -> Vec<Stroke> {
    const NONE: &[u16] = &[];
    const SHIFTED: &[u16] = &[SHIFT];
    const ALT_GR: &[u16] = &[ALTGR];
    text.chars()
        .map(|c| {
            let us = || key_for(c);
            let (mods, code) = match (layout, c) {
                ("de", '@') => (ALT_GR, 16),
                ("de", 'z') => (NONE, 21),
                ("de", 'y') => (NONE, 44),
                ("fr", '@') => (ALT_GR, 11),
                ("fr", 'a') => (NONE, 16),
                ("fr", 'q') => (NONE, 30),
                ("fr", 'z') => (NONE, 17),
                ("fr", 'w') => (NONE, 44),
                ("fr", 'm') => (NONE, 39),
                ("fr", '.') => (SHIFTED, 51),
                ("fr", '0'..='9') => (SHIFTED, us().0),
                _ => {
                    let (code, shift) = us();
                    (if shift { SHIFTED } else { NONE }, code)
                }
            };
            (mods, code)
        })
        .collect()
}

fn replay_strokes(env: &Env, strokes: &[Stroke]) -> Vec<Value> {
    let rec = env.dir.path().join("strokes.yml");
    strokes_recording(&rec, strokes);
    env.replay(&rec);
    env.dump()
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
    env.replay(&rec);
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
    imprint_record::names::code_name(1, code).to_string()
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

/// With `keymap.layout` set, text is rebuilt with that layout: an email typed on a German or
/// French keyboard (AltGr for `@`, the layout's own letter keys) is redacted, while the same
/// key codes read as US keys spell no email. libxkbcommon0, xkb-data and libx11-data are test
/// dependencies (tests/setup.sh): without them this fails.
#[test]
fn text_is_rebuilt_with_the_configured_layout() {
    for (layout, email) in [
        ("de", "max.zeller@example.de"),
        ("fr", "amelie.quiz@example.fr"),
    ] {
        let mut typed = strokes(layout, "hi ");
        let secret = strokes(layout, email);
        typed.extend(secret.iter().copied());
        typed.extend(strokes(layout, " ok"));
        let at_key = secret
            .iter()
            .find(|(m, _)| m.contains(&ALTGR))
            .map(|(_, c)| code_name(*c))
            .expect("@ is typed with AltGr");
        for keymap in [layout, "us"] {
            let env = env_with(&format!(
                "[policy]\nkeymap = {{ layout = \"{keymap}\" }}\n\n{APP_FULL}"
            ));
            let dump = replay_strokes(&env, &typed);
            let emails: Vec<&Value> = kinds(&dump, "redaction")
                .into_iter()
                .filter(|r| r["rule"] == "email")
                .collect();
            let presses: Vec<String> = events(&dump)
                .iter()
                .filter(|e| e["type"] == "EV_KEY" && e["value"] == 1)
                .filter_map(|e| e["code"].as_str().map(str::to_owned))
                .collect();
            let st = env.run(&["status", "--json"]);
            let st: Value = serde_json::from_slice(&st.stdout).expect("status json");
            let f = &st["policy"]["filter"];
            assert_eq!(f["keymap"], keymap, "{layout}: {f}");
            assert_eq!(f["keymap_fallback"], false, "{layout}: {f}");
            if keymap == layout {
                assert_eq!(emails.len(), 1, "{layout}: {dump:?}");
                // Every key press that typed the email, and no other.
                assert_eq!(emails[0]["count"].as_u64(), Some(email.len() as u64));
                assert!(!presses.contains(&at_key), "{layout}: {presses:?}");
                assert!(
                    presses.contains(&code_name(ALTGR)),
                    "AltGr itself is kept: {presses:?}"
                );
                let kept = presses
                    .iter()
                    .filter(|c| !["KEY_RIGHTALT", "KEY_LEFTSHIFT"].contains(&c.as_str()))
                    .count();
                assert_eq!(kept, "hi  ok".len(), "{layout}: {presses:?}");
            } else {
                assert!(emails.is_empty(), "{layout} keys read as us: {emails:?}");
                assert!(presses.contains(&at_key), "{layout}: {presses:?}");
            }
        }
    }
}

#[test]
fn policy_check_rejects_an_unknown_keymap() {
    let env = env_with(&format!(
        "[policy]\nkeymap = {{ layout = \"de\", variant = \"nodeadkeys\" }}\ncompose_locale = \"de_DE.UTF-8\"\n\n{APP_FULL}"
    ));
    let out = env.run(&["policy", "check"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("warning"), "{text}");

    std::fs::write(
        &env.config,
        format!("{APP_FULL}\n[policy]\nkeymap = {{ layout = \"qq\" }}\n"),
    )
    .expect("write");
    let out = env.run(&["policy", "check"]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("line 11, key `policy.keymap`") && msg.contains("`qq`"),
        "{msg}"
    );

    std::fs::write(
        &env.config,
        format!("[policy]\ncompose_locale = \"xx_NOWHERE.UTF-8\"\nkeymap = {{ layout = \"us\" }}\n\n{APP_FULL}"),
    )
    .expect("write");
    let out = env.run(&["policy", "check"]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("key `policy.compose_locale`"), "{msg}");
}

/// Transparency end to end: a running agent's control socket answers `imprint status` about
/// the caller (identified by the kernel), and grants, bounds and ends the caller's pause.
#[test]
fn status_lets_a_user_pause_their_own_capture_within_the_policys_bound() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("off", "[policy]\nuser_pause_max_minutes = 5\n");
    let mut agent = common::daemon::Daemon::start(&env, &["agent"]);
    let socket = env.data.join("control.sock");
    common::wait_until("the control socket", Duration::from_secs(20), || {
        socket.exists().then_some(())
    });
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o666,
        "every local user may ask about themselves"
    );
    let stdout = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let too_long = env.run(&["status", "--pause", "10"]);
    assert_eq!(too_long.status.code(), Some(1), "{too_long:?}");
    assert!(
        stdout(&too_long).contains("refused:   a pause lasts 1 to 5 minutes"),
        "{}",
        stdout(&too_long)
    );

    let ok = env.run(&["status", "--pause", "3"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        stdout(&ok).contains("paused:    yes, by you"),
        "{}",
        stdout(&ok)
    );
    let json = env.run(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("status json");
    let you = &v["you"]["Ok"];
    assert_eq!(
        you["uid"].as_u64(),
        Some(u64::from(nix::unistd::getuid().as_raw()))
    );
    let left = you["paused_for_s"].as_u64().expect("paused");
    assert!((170..=180).contains(&left), "{you}");
    assert_eq!(you["pause_max_minutes"].as_u64(), Some(5));

    let resumed = env.run(&["status", "--resume"]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(
        stdout(&resumed).contains("paused:    no (you may pause for up to 5 minutes"),
        "{}",
        stdout(&resumed)
    );
    // The agent's own view of the seat stays private.
    let status = env.run_dir().join("policy.status.json");
    common::wait_until("the policy status file", Duration::from_secs(10), || {
        status.exists().then_some(())
    });
    let mode = std::fs::metadata(&status)
        .expect("status")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(agent.alive(), "{}", agent.log());
}

#[test]
fn status_refuses_a_pause_when_the_policy_offers_none() {
    let env = Env::new("off", "");
    let mut agent = common::daemon::Daemon::start(&env, &["agent"]);
    let socket = env.data.join("control.sock");
    common::wait_until("the control socket", Duration::from_secs(20), || {
        socket.exists().then_some(())
    });
    let out = env.run(&["status", "--pause", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("does not let people pause capture"), "{text}");
    assert!(agent.alive(), "{}", agent.log());
}
