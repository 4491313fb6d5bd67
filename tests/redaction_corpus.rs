//! Redaction measured the way it fails in use: real secrets and PII from public test corpora
//! (`tests/corpus/secrets.tsv`, each row naming its source) typed by a person-like typist
//! (`common::typist`: human timing, Shift roll-over, pauses longer than any timer, typos fixed
//! with Backspace, characters put back with the cursor keys, Caps Lock, secrets glued to the
//! next word, private keys typed over several lines with Enter), replayed through `imprint
//! run --replay` into an application at `full`. Nothing of 8 or more consecutive characters of any secret may be
//! left in the text rebuilt from the spool, and every key that was not written must be in a
//! redaction record whose count, from and to agree with its key times. Prose and code with
//! no secrets (`tests/corpus/clean.txt`) typed the same way keep at least 99% of their keys.

mod common;

use common::typist::{rebuilt, Typist};
use common::Env;
use serde_json::Value;
use std::path::PathBuf;

const APP_FULL: &str = "[replay]\nfocus_exe = \"/usr/bin/app\"\nfocus_uid = 1000\n\n[[rule]]\nname = \"app\"\nexe = \"/usr/bin/app\"\nlevel = \"full\"\n";

/// Shortest run of a secret that may not survive.
const RUN: usize = 8;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// `\n`, `\t` and `\\` escapes, as the TSV writes multi-line values.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

struct Row {
    category: String,
    context: String,
    secret: String,
}

fn secrets() -> Vec<Row> {
    let path = corpus("secrets.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .skip_while(|l| l.starts_with("category\t"))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let [category, _source, context, secret] = cols[..] else {
                panic!("{}: want 4 tab-separated columns: {l:?}", path.display())
            };
            let (context, secret) = (unescape(context), unescape(secret));
            assert!(
                context.contains(&secret),
                "{}: the context must contain the secret: {l:?}",
                path.display()
            );
            Row {
                category: category.to_owned(),
                context,
                secret,
            }
        })
        .collect()
}

/// `s` without PEM/PGP armor lines (`-----BEGIN … KEY-----`): a public marker, not secret.
fn without_armor(s: &str) -> String {
    let mut out = s.to_owned();
    for marker in ["-----BEGIN", "-----END"] {
        while let Some(a) = out.find(marker) {
            let close = out[a + marker.len()..]
                .find("-----")
                .map_or(out.len(), |i| a + marker.len() + i + 5);
            out.replace_range(a..close, "\n");
        }
    }
    out
}

/// Replays `typist`'s recording into the app at `full`; the dump.
fn replay(typist: &Typist) -> (Env, Vec<Value>) {
    let env = Env::new("off", "");
    std::fs::write(&env.config, APP_FULL).expect("write config");
    let rec = env.dir.path().join("typed.yml");
    typist.write(&rec);
    env.replay(&rec);
    let dump = env.dump();
    (env, dump)
}

/// Key presses (not Shift) in the dump, and the keys redaction records account for. Every
/// record must account exactly: a time per key, from and to its first and last.
fn key_accounting(dump: &[Value]) -> (u64, u64) {
    let kept = dump
        .iter()
        .filter(|v| v["kind"] == "event" && v["type"] == "EV_KEY" && v["value"] == 1)
        .filter(|v| v["code"] != "KEY_LEFTSHIFT")
        .count() as u64;
    let mut redacted = 0;
    for r in dump.iter().filter(|v| v["kind"] == "redaction") {
        let times: Vec<u64> = r["key_times_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let count = r["count"].as_u64().unwrap_or(0);
        assert!(count > 0, "a redaction of no key: {r}");
        assert_eq!(count, times.len() as u64, "count vs key times: {r}");
        assert_eq!(r["from_ns"].as_u64(), times.iter().min().copied(), "{r}");
        assert_eq!(r["to_ns"].as_u64(), times.iter().max().copied(), "{r}");
        redacted += count;
    }
    (kept, redacted)
}

#[test]
fn secrets_typed_like_a_person_never_reach_the_spool() {
    let rows: Vec<Row> = secrets()
        .into_iter()
        .map(|mut r| {
            if r.secret.contains("-----BEGIN") {
                // Typed as keys are written: armor and body on lines of their own, with Enter.
                let lines = r
                    .secret
                    .replace("----- ", "-----\n")
                    .replace(" -----END", "\n-----END");
                r.context = r.context.replacen(&r.secret, &lines, 1);
                r.secret = lines;
            }
            r
        })
        .collect();
    let categories: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.category.as_str()).collect();
    assert!(
        rows.len() >= 150 && categories.len() >= 12,
        "the corpus has {} secrets in {} categories",
        rows.len(),
        categories.len()
    );
    let mut t = Typist::new(9);
    let mut variants = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let at = row.context.find(&row.secret).unwrap_or(0);
        let (before, after) = (&row.context[..at], &row.context[at + row.secret.len()..]);
        t.text(before);
        let variant = match i % 7 {
            0 => {
                t.text(&row.secret);
                "plain"
            }
            1 => {
                // Longer than any holdback timer, and on every fourth such row longer than
                // a token may stay open.
                t.with_pause(&row.secret, if i % 4 == 1 { 65_000 } else { 8_000 });
                "pause"
            }
            2 => {
                t.with_typo(&row.secret);
                "typo"
            }
            3 => {
                t.with_cursor_fix(&row.secret);
                "cursor"
            }
            4 if row.secret.chars().any(|c| c.is_ascii_uppercase()) => {
                t.caps_lock();
                t.text(&row.secret);
                t.caps_lock();
                "caps"
            }
            5 if after.is_empty() => {
                t.text(&row.secret);
                t.text("thanks");
                "glued"
            }
            _ => {
                t.text(&row.secret);
                "plain"
            }
        };
        variants.push(variant);
        t.text(after);
        t.text("\n");
        let gap = t.between(500, 3000);
        t.pause_ms(gap);
    }
    let (_env, dump) = replay(&t);
    let left = rebuilt(&dump);

    // What was typed around the secrets: a run found there too proves nothing.
    let outside: String = rows
        .iter()
        .map(|r| r.context.replacen(&r.secret, "\u{0}", 1) + "\u{0}thanks\n")
        .collect();
    let mut leaks = Vec::new();
    for (row, variant) in rows.iter().zip(&variants) {
        let chars: Vec<char> = without_armor(&row.secret).chars().collect();
        let leaked = chars
            .windows(RUN)
            .map(|w| w.iter().collect::<String>())
            .find(|w| {
                !w.trim().is_empty() && !outside.contains(w.as_str()) && left.contains(w.as_str())
            });
        if let Some(w) = leaked {
            leaks.push(format!(
                "{} ({variant}): {:?} left of {:?}",
                row.category, w, row.secret
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} of {} secrets left {RUN}+ characters in the spool:\n{}",
        leaks.len(),
        rows.len(),
        leaks.join("\n")
    );

    let (kept, redacted) = key_accounting(&dump);
    let typed = t.presses();
    assert_eq!(
        kept + redacted,
        typed,
        "every key press is written or in a redaction record"
    );
}

#[test]
fn prose_and_code_typed_like_a_person_are_kept() {
    let path = corpus("clean.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t = Typist::new(11);
    for (i, line) in text.lines().enumerate() {
        match i % 9 {
            4 => t.with_typo(line),
            7 => t.with_pause(line, 8_000),
            _ => t.text(line),
        }
        t.text("\n");
    }
    let (_env, dump) = replay(&t);
    let (kept, redacted) = key_accounting(&dump);
    let typed = t.presses();
    assert_eq!(kept + redacted, typed, "every key press is accounted for");
    let share = kept as f64 / typed as f64;
    let rules: Vec<String> = dump
        .iter()
        .filter(|v| v["kind"] == "redaction")
        .map(|v| format!("{} ({})", v["rule"], v["count"]))
        .collect();
    eprintln!(
        "clean corpus: {kept} of {typed} key presses kept ({:.2}%); redactions: {rules:?}",
        share * 100.0
    );
    assert!(
        share >= 0.99,
        "only {:.2}% of the clean corpus's keys were kept; redactions: {rules:?}",
        share * 100.0
    );
}
