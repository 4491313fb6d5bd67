//! `imprint export` on a replay of the bundled recording (made with the real `libinput
//! record`): both formats, their privacy (0700 / 0600, a private key), the manifest, positions
//! null with a reason, and the Python loader (pandas, Hugging Face `datasets`, `json`).

mod common;

use common::{recording, Env};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv `tests/setup.sh` makes, with pandas, pyarrow and datasets.
fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/setup.sh` (it creates the venv with pandas, pyarrow and \
         datasets that the export loader test needs)",
        p.display()
    );
    p
}

/// What the recording holds, read from the driver's ground-truth log.
struct Truth {
    events: usize,
    key_presses: usize,
    wheel: i64,
}

fn truth() -> Truth {
    let sent = std::fs::read_to_string(recording().with_file_name("keyboard-mouse.sent.jsonl"))
        .expect("read sent");
    let lines: Vec<serde_json::Value> = sent
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let key_presses = lines
        .iter()
        .filter(|v| {
            let code = v["code"].as_str().unwrap_or("");
            v["value"] == 1 && code.starts_with("KEY_") && !code.contains("SHIFT")
        })
        .count();
    let wheel = lines
        .iter()
        .filter(|v| v["code"] == "REL_WHEEL")
        .map(|v| v["value"].as_i64().unwrap_or(0))
        .sum();
    Truth {
        events: lines.len(),
        key_presses,
        wheel,
    }
}

fn key_file(env: &Env, mode: u32) -> PathBuf {
    let p = env.dir.path().join(format!("key-{mode:o}"));
    std::fs::write(&p, (0u8..32).collect::<Vec<u8>>()).expect("write key");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

fn export(env: &Env, format: &str, out: &Path, key: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "export",
        "--format",
        format,
        "--out",
        out.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn a_replay_exports_as_parquet_and_jsonl_that_pandas_and_datasets_load() {
    let py = python();
    let env = Env::new("full", "");
    env.replay(&recording());
    let key = key_file(&env, 0o600);
    let pq = env.dir.path().join("out-parquet");
    let js = env.dir.path().join("out-jsonl");
    let said = ok(export(&env, "parquet", &pq, &key, &[]), "export parquet");
    ok(export(&env, "jsonl", &js, &key, &[]), "export jsonl");
    let truth = truth();
    assert!(
        said.contains(&format!("{} events", truth.events)),
        "export says what it wrote: {said}"
    );

    for (dir, ext) in [(&pq, "parquet"), (&js, "jsonl")] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        for t in ["sessions", "actions", "events"] {
            let f = dir.join(format!("{t}.{ext}"));
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&dir.join("manifest.json")), 0o600);
    }

    // The actions, from the JSONL: exactly what the recording did.
    let actions = jsonl(&js.join("actions.jsonl"));
    let kinds: Vec<&str> = actions.iter().filter_map(|a| a["type"].as_str()).collect();
    assert_eq!(kinds, vec!["type", "click", "right_click", "scroll"]);
    let typed = &actions[0];
    // "Hello, world!" then Backspace.
    assert_eq!(typed["text"], "Hello, world");
    assert_eq!(
        typed["key_times_ms"].as_array().map(|a| a.len()),
        Some(truth.key_presses)
    );
    assert_eq!(typed["pyautogui"], "pyautogui.write('Hello, world')");
    assert_eq!(
        typed["level"], "full",
        "the policy that wrote the spool tells the level"
    );
    for a in &actions[1..] {
        // A replay has no display server: no position, and the reason.
        assert!(
            a["x"].is_null() && a["y"].is_null() && a["x_norm"].is_null(),
            "{a}"
        );
        assert_eq!(a["position_unavailable"], "no_pointer_source", "{a}");
    }
    assert!(
        actions[1]["pyautogui"].is_null(),
        "a click at an unknown place has no call"
    );
    assert_eq!(actions[3]["scroll_detents"], truth.wheel);
    assert_eq!(
        actions[3]["pyautogui"],
        format!("pyautogui.scroll({})", truth.wheel)
    );

    let events = jsonl(&js.join("events.jsonl"));
    assert_eq!(events.len(), truth.events);
    // Raw-event ranges point into the events table: the click's are its button events.
    let first = actions[1]["event_first"].as_u64().expect("event_first") as usize;
    let last = actions[1]["event_last"].as_u64().expect("event_last") as usize;
    assert_eq!(events[first]["code"], "BTN_LEFT");
    assert_eq!(events[first]["value"], 1);
    assert_eq!(events[last]["code"], "BTN_LEFT");
    assert_eq!(events[last]["value"], 0);
    assert_eq!(events[first]["device_name"], "imprint-test-mouse");
    assert!(events[first]["unix_ms"]
        .as_i64()
        .is_some_and(|t| t > 1_600_000_000_000));

    let sessions = jsonl(&js.join("sessions.jsonl"));
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s["pointer_available"], false);
    assert_eq!(s["pointer_unavailable_reason"], "no_pointer_source");
    assert_eq!(s["session_id"], actions[0]["session_id"]);
    assert_eq!(s["machine_id"].as_str().map(str::len), Some(32));
    assert!(s["boot_id"].as_str().is_some_and(|b| !b.is_empty()));

    // The manifests: counts match the files, checksums are the files'.
    for (dir, ext) in [(&pq, "parquet"), (&js, "jsonl")] {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("m"))
                .expect("manifest json");
        assert_eq!(m["schema"], "imprint.actions/v1");
        assert_eq!(m["format"], ext);
        assert_eq!(m["rows"]["actions"], actions.len());
        assert_eq!(m["rows"]["events"], truth.events);
        assert_eq!(m["rows"]["sessions"], 1);
        let files = m["files"].as_array().expect("files");
        assert_eq!(files.len(), 3);
        for f in files {
            let p = dir.join(f["name"].as_str().expect("name"));
            assert_eq!(f["bytes"], std::fs::metadata(&p).expect("stat").len());
            assert_eq!(f["sha256"].as_str().map(str::len), Some(64));
        }
        let key_id = m["pseudonym_key_id"].as_str().expect("key id");
        let raw: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
        assert!(
            !raw.contains(key_id) && key_id.len() == 16,
            "a hash, not the key"
        );
    }
    let parquet_magic = std::fs::read(pq.join("actions.parquet")).expect("read");
    assert_eq!(&parquet_magic[..4], b"PAR1");

    // The Python loader, with the values the Rust side expects.
    let expect = env.dir.path().join("expect.json");
    std::fs::write(
        &expect,
        serde_json::json!({
            "sessions": 1,
            "actions": actions.len(),
            "events": truth.events,
            "types": ["type", "click", "right_click", "scroll"],
            "text": "Hello, world",
            "type_keys": truth.key_presses,
            "type_pyautogui": "pyautogui.write('Hello, world')",
            "position_unavailable": "no_pointer_source",
            "scroll_detents": truth.wheel,
            "session_id": s["session_id"],
        })
        .to_string(),
    )
    .expect("write expect");
    let out = Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/load_export.py"))
        .arg("--parquet")
        .arg(&pq)
        .arg("--jsonl")
        .arg(&js)
        .arg("--expect")
        .arg(&expect)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", env.dir.path().join("hf"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "load_export.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("load_export: ok"));
}

#[test]
fn export_refuses_without_a_private_key_and_into_a_full_directory() {
    let env = Env::new("full", "");
    env.replay(&recording());
    let out_dir = env.dir.path().join("out");
    let o = env.run(&[
        "export",
        "--format",
        "jsonl",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("head -c32 /dev/urandom"),
        "says how to make a key: {err}"
    );
    assert!(!out_dir.exists(), "nothing is written without a key");

    let open_key = key_file(&env, 0o644);
    let o = export(&env, "jsonl", &out_dir, &open_key, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("chmod 600"), "{err}");

    let key = key_file(&env, 0o600);
    ok(export(&env, "jsonl", &out_dir, &key, &[]), "first export");
    let o = export(&env, "jsonl", &out_dir, &key, &[]);
    assert!(
        !o.status.success(),
        "a second export into the same directory is refused"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    ok(
        export(&env, "jsonl", &out_dir, &key, &["--force"]),
        "--force",
    );
}

#[test]
fn filters_by_time_and_application() {
    let env = Env::new("full", "");
    env.replay(&recording());
    let key = key_file(&env, 0o600);
    let count = |name: &str, extra: &[&str]| -> (usize, usize) {
        let dir = env.dir.path().join(name);
        ok(export(&env, "jsonl", &dir, &key, extra), name);
        (
            jsonl(&dir.join("actions.jsonl")).len(),
            jsonl(&dir.join("events.jsonl")).len(),
        )
    };
    let (all_actions, all_events) = count("all", &[]);
    assert!(all_actions == 4 && all_events == truth().events);
    // The replay was just made: nothing is from before 2001 or after 2200.
    assert_eq!(count("since", &["--since", "2200-01-01T00:00:00Z"]), (0, 0));
    assert_eq!(count("until", &["--until", "1000000000"]), (0, 0));
    assert_eq!(
        count(
            "window",
            &["--since", "1000000000", "--until", "2200-01-01T00:00:00Z"]
        ),
        (all_actions, all_events)
    );
    // A replay has no focus: no application matches.
    assert_eq!(count("app", &["--app", "firefox*"]), (0, 0));
}
