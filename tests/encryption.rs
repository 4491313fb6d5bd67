//! Encryption at rest, as the shipped binary does it: with `[spool] recipients`, nothing the
//! spool holds is readable on this machine (no device name, no batch, not even between
//! fsyncs or after a SIGKILL), `dump`/`verify`/`export` refuse to show it without the
//! operator's identity, and with it they show exactly what a plaintext spool holds.

mod common;

use common::{events, operator_key, recording, synthetic_recording, Env};
use std::path::{Path, PathBuf};

fn encrypted_env(level: &str, recipients: &[&str]) -> Env {
    let list = recipients
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Env::new(level, &format!("[spool]\nrecipients = [{list}]\n"))
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What identifies the recording's content in a plaintext spool.
const NEEDLES: &[&[u8]] = &[b"imprint-test-keyboard", b"imprint-test-mouse"];

fn event_tuples(dump: &[serde_json::Value]) -> Vec<String> {
    events(dump)
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["mono_ns"], e["type"], e["code"], e["value"]
            )
        })
        .collect()
}

fn dump_with(env: &Env, identity: Option<&Path>) -> (i32, Vec<serde_json::Value>, String) {
    let mut args = vec!["dump"];
    if let Some(p) = identity {
        args.extend(["--identity", p.to_str().expect("utf-8")]);
    }
    let out = env.run(&args);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("dump line is JSON"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_machine_cannot_read_its_spool_and_the_operator_reads_all_of_it() {
    // The same recording through a plaintext spool first: the positive control.
    let plain = Env::new("full", "");
    plain.replay(&recording());
    let want = event_tuples(&plain.dump());
    assert!(want.len() > 100, "{} events", want.len());
    let (_, plain_verify) = plain.verify();
    let counts = |v: &str| {
        v.split_once(": ")
            .map(|x| x.1.lines().next().unwrap_or("").to_owned())
    };
    let want_counts = counts(&plain_verify);
    // The needles are in the plaintext spool's frames (sealed segments are zstd: look at
    // what they decompress to), so their absence below means something.
    let mut plain_payloads = Vec::new();
    for seg in imprint_spool::list_segments(&plain.spool_dir()).expect("list") {
        imprint_spool::read_segment(&seg, None, |item| {
            if let imprint_spool::Item::Frame { payload, .. } = item {
                plain_payloads.extend(payload);
            }
        })
        .expect("read");
    }
    for n in NEEDLES {
        assert!(
            contains(&plain_payloads, n),
            "the plaintext spool names the device"
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = operator_key(dir.path(), "operator.key");
    let enc = encrypted_env("full", &[&recipient]);
    enc.replay(&recording());
    for f in files(&enc.spool_dir()) {
        let bytes = std::fs::read(&f).expect("read");
        for n in NEEDLES {
            assert!(
                !contains(&bytes, n),
                "{} holds {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    // Without the identity: nothing shown, and a clear word why.
    let (code, lines, stderr) = dump_with(&enc, None);
    assert_eq!(code, 2, "{stderr}");
    assert!(events(&lines).is_empty());
    assert!(stderr.contains("--identity"), "{stderr}");
    let out = enc.run(&[
        "export",
        "--format",
        "jsonl",
        "--out",
        dir.path().join("x").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    // With it: exactly the plaintext spool's events.
    let (code, lines, stderr) = dump_with(&enc, Some(&identity));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(event_tuples(&lines), want);
    let (code, out) = enc.verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("encrypted"), "{out}");
    let out = enc.run(&["verify", "--identity", identity.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(counts(&text), want_counts, "{text}");
    let status = enc.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("encryption: on, to 1 operator key"), "{text}");
    let status = plain.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("encryption: OFF"), "{text}");
    let prom = enc.run(&["status", "--prometheus"]);
    assert!(String::from_utf8_lossy(&prom.stdout).contains("imprint_spool_encrypted 1"));
}

#[test]
fn a_killed_agent_leaves_only_ciphertext_and_the_next_start_seals_it_readably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = operator_key(dir.path(), "operator.key");
    let rec = dir.path().join("long.yml");
    let n = synthetic_recording(&rec, 20000, 2000);
    let enc = encrypted_env("full", &[&recipient]);
    let mut child = enc.spawn(&[
        "run",
        "--replay",
        rec.to_str().expect("utf-8"),
        "--speed",
        "1",
    ]);
    // Wait for encrypted frames in the open segment, then kill mid-run.
    common::wait_until(
        "an open segment with frames",
        std::time::Duration::from_secs(30),
        || {
            files(&enc.spool_dir()).into_iter().find(|p| {
                p.extension().is_some_and(|x| x == "open")
                    && std::fs::metadata(p).is_ok_and(|m| m.len() > 2000)
            })
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let _ = child.wait();
    for f in files(&enc.spool_dir()) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(!contains(&bytes, b"synthetic-keyboard"), "{}", f.display());
    }
    // The next run recovers the open segment (it cannot decrypt it, so it seals it as is).
    enc.replay(&recording());
    assert!(files(&enc.spool_dir())
        .iter()
        .all(|p| p.extension().is_none_or(|x| x != "open")));
    let (code, lines, stderr) = dump_with(&enc, Some(&identity));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("damaged"), "{stderr}");
    let got = events(&lines).len();
    assert!(
        got > 100 && got < n + 2000,
        "{got} events of {n} + the recording's"
    );
    let out = enc.run(&["verify", "--identity", identity.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn key_rotation_keeps_old_segments_readable_with_the_old_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old_id, old_r) = operator_key(dir.path(), "old.key");
    let (new_id, new_r) = operator_key(dir.path(), "new.key");
    let env = encrypted_env("full", &[&old_r]);
    env.replay(&recording());
    let first = event_tuples(&dump_with(&env, Some(&old_id)).1).len();
    std::fs::write(
        &env.config,
        format!("[capture]\ndefault_level = \"full\"\n[spool]\nrecipients = [\"{new_r}\"]\n"),
    )
    .expect("rotate");
    env.replay(&recording());
    // The new key alone reads only what came after the rotation.
    let (code, lines, _) = dump_with(&env, Some(&new_id));
    assert_eq!(code, 2, "old segments stay locked to the new key");
    assert_eq!(event_tuples(&lines).len(), first);
    let both = dir.path().join("both.key");
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&old_id).expect("old"),
        std::fs::read_to_string(&new_id).expect("new")
    );
    std::fs::write(&both, text).expect("both");
    let (code, lines, stderr) = dump_with(&env, Some(&both));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(event_tuples(&lines).len(), 2 * first);
}

#[test]
fn a_malformed_recipient_stops_the_agent_instead_of_writing_plaintext() {
    let env = encrypted_env("full", &["age1notakey"]);
    let out = env.run(&[
        "run",
        "--replay",
        recording().to_str().expect("utf-8"),
        "--speed",
        "max",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recipients"), "{err}");
    assert!(files(&env.spool_dir()).is_empty());
}
