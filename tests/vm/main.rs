//! Real-kernel tests: Debian's kernel under QEMU, uinput devices driven by `imprint-vm-guest`.
//!
//! Run with `cargo test -p imprint-tests --test vm`; see `tests/vm/README.md`.

mod dataset;
mod ebpf;
mod harness;
mod kernels;
mod overhead;
mod policy;
mod scope;
mod systemd;
mod xorg;

use std::path::{Path, PathBuf};

use harness::{shell_quote, Vm, VmRun};
use serde_json::Value;

/// The keyboard the guest driver creates (its name is the contract with the capture side).
const KEYBOARD: &str = "imprint-test-keyboard";

/// One event as (type, code, value), the way `imprint dump` and the guest driver name them.
type Ev = (String, String, i64);

/// Press and release of each character of `text`, which must be lowercase letters, digits and
/// spaces (so no shift is involved). Independent of the guest's own keymap on purpose.
fn expected_keys(text: &str) -> Vec<Ev> {
    let mut out = Vec::new();
    for c in text.chars() {
        let code = match c {
            'a'..='z' | '0'..='9' => format!("KEY_{}", c.to_ascii_uppercase()),
            ' ' => "KEY_SPACE".to_owned(),
            _ => panic!("expected_keys handles [a-z0-9 ] only, not {c:?}"),
        };
        for value in [1, 0] {
            out.push(("EV_KEY".to_owned(), code.clone(), value));
        }
    }
    out
}

/// Parses every non-empty line of section `name` as JSON.
#[track_caller]
fn json_lines(run: &VmRun, name: &str) -> Vec<Value> {
    run.section(name)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str(line) {
            Ok(value) => value,
            Err(err) => run.fail(&format!("section {name}: not JSON ({err}): {line}")),
        })
        .collect()
}

#[track_caller]
fn ev_of(run: &VmRun, value: &Value) -> Ev {
    let field = |key: &str| value.get(key);
    match (
        field("type").and_then(Value::as_str),
        field("code").and_then(Value::as_str),
        field("value").and_then(Value::as_i64),
    ) {
        (Some(t), Some(c), Some(v)) => (t.to_owned(), c.to_owned(), v),
        _ => run.fail(&format!("event line lacks type/code/value: {value}")),
    }
}

#[track_caller]
fn check_eq<T: PartialEq + std::fmt::Debug>(run: &VmRun, what: &str, got: &T, want: &T) {
    if got != want {
        run.fail(&format!("{what}:\n   got: {got:?}\n  want: {want:?}"));
    }
}

/// Compares event sequences and, on a mismatch, shows both compactly and where they first differ.
#[track_caller]
fn check_events(run: &VmRun, what: &str, got: &[Ev], want: &[Ev]) {
    if got == want {
        return;
    }
    let show = |evs: &[Ev]| {
        evs.iter()
            .map(|(t, c, v)| format!("{}{c}:{v}", if t == "EV_KEY" { "" } else { "?" }))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    run.fail(&format!(
        "{what}: {} events, want {}; first difference at index {at} (got {:?}, want {:?})\n   got: {}\n  want: {}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at),
        show(got),
        show(want)
    ));
}

/// Harness self-check, independent of imprint: the guest types on a uinput keyboard and reads
/// the same events back from that keyboard's /dev/input/eventN. If this fails, the VM, the
/// kernel modules or the guest driver are broken, not imprint.
#[test]
fn uinput_roundtrip_in_guest() {
    let text = "imprint 123";
    let run = Vm::new("uinput_roundtrip_in_guest")
        .script(&format!(
            r#"set -e
imprint-vm-guest type --name {KEYBOARD} --text {} --step-ms 5 --settle-ms 0 --linger-ms 100 \
    --sent /tmp/sent.jsonl --readback /tmp/readback.jsonl
section sent /tmp/sent.jsonl
section readback /tmp/readback.jsonl
"#,
            shell_quote(text)
        ))
        .run()
        .unwrap_or_else(|err| panic!("{err:#}"));
    run.assert_success();

    let want = expected_keys(text);
    let sent: Vec<Ev> = json_lines(&run, "sent")
        .iter()
        .map(|v| ev_of(&run, v))
        .collect();
    check_events(&run, "events the guest sent", &sent, &want);
    let readback = json_lines(&run, "readback");
    for line in &readback {
        check_eq(
            &run,
            "device of a read-back event",
            &line.get("device").and_then(Value::as_str),
            &Some(KEYBOARD),
        );
    }
    let readback: Vec<Ev> = readback.iter().map(|v| ev_of(&run, v)).collect();
    check_events(
        &run,
        "events read back from the evdev node",
        &readback,
        &want,
    );
}

/// The evdev source end to end: imprint runs with no `--replay`, so it enumerates
/// /dev/input/event* and follows hotplug; the test keyboard appears after it started and types a
/// known sequence; `imprint dump` must show the device and exactly that sequence, in order.
#[test]
fn evdev_captures_typed_sequence() {
    let text = "imprint 123";
    let rust_log = std::env::var("IMPRINT_VM_RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let run = Vm::new("evdev_captures_typed_sequence")
        .with_imprint()
        .file(
            "/etc/imprint/imprint.toml",
            "[capture]\ndefault_level = \"full\"\n",
            0o644,
        )
        .script(&format!(
            r#"mkdir -p /data
# IMPRINT_EBPF=off: this test is about the evdev source (tests/vm/ebpf.rs covers eBPF).
export IMPRINT_LOG={rust_log} NO_COLOR=1 IMPRINT_EBPF=off
imprint run --config /etc/imprint/imprint.toml --data-dir /data > /tmp/imprint.log 2>&1 &
pid=$!
# Polls, not sleeps: the source is up, the keyboard is open in it before the typing, and the
# collector took every event (SYN reports included) before it is stopped.
i=0
until imprint status --config /etc/imprint/imprint.toml --data-dir /data 2>/dev/null \
    | grep -q 'source: evdev'; do
    [ $i -lt 240 ] || {{ echo "imprint status named no evdev source within 60 s" >&2; break; }}
    sleep 0.25; i=$((i + 1))
done
imprint-vm-guest type --name {KEYBOARD} --text {text} --step-ms 20 --await-readers 1 \
    --settle-ms 200 --linger-ms 300 --sent /tmp/sent.jsonl
guest_rc=$?
i=0
until [ "$(imprint status --json --config /etc/imprint/imprint.toml --data-dir /data 2>/dev/null \
    | sed -n 's/.*"events_evdev": \([0-9]*\).*/\1/p' | head -n 1)" -ge {events} ] 2>/dev/null; do
    [ $i -lt 240 ] || {{ echo "the collector did not take {events} events within 60 s" >&2; break; }}
    sleep 0.25; i=$((i + 1))
done
# Was imprint still running when the typing ended? (A zombie or a missing pid means it died.)
state=$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)
if [ -n "$state" ] && [ "$state" != Z ]; then alive=yes; else alive=no; fi
kill -TERM $pid 2>/dev/null
( sleep 20; kill -KILL $pid 2>/dev/null ) &
watchdog=$!
wait $pid
imprint_rc=$?
kill $watchdog 2>/dev/null
echo "alive=$alive exit=$imprint_rc" > /tmp/imprint-status
imprint dump --data-dir /data > /tmp/dump.jsonl 2> /tmp/dump.err
echo $? > /tmp/dump-status
# imprint's own log last, so it is in the tail that a failure message shows.
section sent /tmp/sent.jsonl
section dump /tmp/dump.jsonl
section dump-stderr /tmp/dump.err
section dump-status /tmp/dump-status
section imprint-status /tmp/imprint-status
section imprint-log /tmp/imprint.log
exit $guest_rc
"#,
            text = shell_quote(text),
            // Each character: press and release, each followed by a SYN_REPORT.
            events = 4 * text.len()
        ))
        .run()
        .unwrap_or_else(|err| panic!("{err:#}"));
    run.assert_success();

    let want = expected_keys(text);
    let sent: Vec<Ev> = json_lines(&run, "sent")
        .iter()
        .map(|v| ev_of(&run, v))
        .collect();
    check_events(
        &run,
        "events the guest sent (a harness bug if wrong)",
        &sent,
        &want,
    );

    check_eq(
        &run,
        "imprint's state when typing ended, and its exit status after SIGTERM \
         (exit=137: still running 20 s after SIGTERM, so the guest killed it; \
         exit=143: SIGTERM was not handled)",
        &run.section("imprint-status").trim(),
        &"alive=yes exit=0",
    );
    check_eq(
        &run,
        "exit status of `imprint dump`",
        &run.section("dump-status").trim(),
        &"0",
    );

    let dump = json_lines(&run, "dump");
    let mut indices: Vec<i64> = dump
        .iter()
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("device"))
        .filter(|v| v.get("name").and_then(Value::as_str) == Some(KEYBOARD))
        .map(|v| match v.get("device").and_then(Value::as_i64) {
            Some(index) => index,
            None => run.fail(&format!("device line without an integer \"device\": {v}")),
        })
        .collect();
    indices.dedup();
    let device = match indices.as_slice() {
        [index] => *index,
        [] => run.fail(&format!(
            "`imprint dump` has no {{\"kind\":\"device\",\"name\":\"{KEYBOARD}\"}} line"
        )),
        _ => run.fail(&format!(
            "{KEYBOARD} appears under several indices: {indices:?}"
        )),
    };

    let events: Vec<&Value> = dump
        .iter()
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("event"))
        .filter(|v| v.get("device").and_then(Value::as_i64) == Some(device))
        .collect();
    let got: Vec<Ev> = events.iter().map(|v| ev_of(&run, v)).collect();
    check_events(
        &run,
        &format!("events of device {device} ({KEYBOARD}) in `imprint dump`"),
        &got,
        &want,
    );

    // Timestamps: CLOCK_MONOTONIC of a guest that booted seconds ago, one report per 20 ms.
    let stamps: Vec<u64> = events
        .iter()
        .map(|v| match v.get("mono_ns").and_then(Value::as_u64) {
            Some(ns) => ns,
            None => run.fail(&format!("event line without an integer mono_ns: {v}")),
        })
        .collect();
    if let Some(bad) = stamps.windows(2).find(|w| w[1] <= w[0]) {
        run.fail(&format!(
            "mono_ns not strictly increasing ({} then {}): {stamps:?}",
            bad[0], bad[1]
        ));
    }
    let max_uptime_ns = 600 * 1_000_000_000;
    if stamps.iter().any(|&ns| ns == 0 || ns > max_uptime_ns) {
        run.fail(&format!(
            "mono_ns outside the guest's uptime (is it CLOCK_MONOTONIC?): {stamps:?}"
        ));
    }
}

/// Regenerates `tests/data/keyboard-mouse.yml` with the real `libinput record` (see
/// `tests/data/README.md`). Ignored by default; `tests/vm/record.sh` runs it with
/// IMPRINT_VM_RECORD_DIR=tests/data. Without that variable it writes under target/vm/record.
#[test]
#[ignore = "regenerates a fixture; run through tests/vm/record.sh"]
fn record_keyboard_mouse_fixture() {
    let recorder = Path::new("/usr/libexec/libinput/libinput-record");
    assert!(
        recorder.exists(),
        "{} is missing: apt-get install libinput-tools",
        recorder.display()
    );
    let mut vm = Vm::new("record_keyboard_mouse_fixture")
        .timeout(std::time::Duration::from_secs(180))
        .script(
            r#"set -e
imprint-vm-guest record --recorder /usr/libexec/libinput/libinput-record --out /tmp/rec.yml \
    --sent /tmp/sent.jsonl
section recording /tmp/rec.yml
section sent /tmp/sent.jsonl
"#,
        );
    let fs = vm.initramfs();
    let setup = (|| -> anyhow::Result<()> {
        fs.copy_dynamic(recorder)?;
        fs.copy_tree(Path::new("/usr/share/libinput"))?;
        fs.copy_tree(Path::new("/usr/share/libwacom"))?;
        fs.copy(Path::new("/etc/os-release"), "/etc/os-release")?;
        Ok(())
    })();
    setup.unwrap_or_else(|err| panic!("putting libinput-record into the initramfs: {err:#}"));
    let run = vm.run().unwrap_or_else(|err| panic!("{err:#}"));
    run.assert_success();

    let recording = run.section("recording");
    for needle in [
        "ndevices: 2",
        "name: \"imprint-test-keyboard\"",
        "name: \"imprint-test-mouse\"",
    ] {
        if !recording.contains(needle) {
            run.fail(&format!("the recording lacks {needle:?}"));
        }
    }
    // Every non-SYN event line, in file order, must be what the guest sent, in the same order
    // (the keyboard is recorded first and acts first). Lines look like
    // `    - [  0, 534191,   1,  42,       1] # EV_KEY / KEY_LEFTSHIFT             1`.
    let recorded: Vec<Ev> = recording
        .lines()
        .filter(|line| line.trim_start().starts_with("- ["))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_once('#')?.1.split_whitespace().collect();
            match words.as_slice() {
                [kind, "/", code, value] if *kind != "EV_SYN" => {
                    Some((kind.to_string(), code.to_string(), value.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect();
    let sent: Vec<Ev> = json_lines(&run, "sent")
        .iter()
        .map(|v| ev_of(&run, v))
        .collect();
    check_events(
        &run,
        "non-SYN events in the recording vs. sent",
        &recorded,
        &sent,
    );

    let out_dir = std::env::var_os("IMPRINT_VM_RECORD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness::vm_dir().join("record"));
    std::fs::create_dir_all(&out_dir).expect("creating the output directory");
    let yml = out_dir.join("keyboard-mouse.yml");
    let jsonl = out_dir.join("keyboard-mouse.sent.jsonl");
    std::fs::write(&yml, recording).expect("writing the recording");
    std::fs::write(&jsonl, run.section("sent")).expect("writing the sent log");
    eprintln!("wrote {} and {}", yml.display(), jsonl.display());
}
