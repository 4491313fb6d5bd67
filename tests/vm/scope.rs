//! The scope gate in the real kernel: while the focused program is out of scope, the eBPF
//! programs submit nothing to the ring buffer; while it is in scope, they do.
//!
//! alice's shell on tty1 is followed by the `tty` tracker (as in `tests/vm/policy.rs`). The
//! policy has one rule, `cat` → `full`, and nothing else matches (`default` and `unknown_focus`
//! are `off`), so the agent's verdict for the shell admits nothing and the collector closes
//! the in-kernel gate; for `cat` it opens it. One keyboard types into the shell, then into
//! `cat`, then into the shell again; between phases the guest script waits (by polling
//! `imprint status --json`) for the verdict and for the programs' counters, and keeps each
//! snapshot for the host to compare. See `tests/vm/README.md`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Vm, VmRun};
use crate::{check_eq, ev_of, json_lines, Ev};

const KEYBOARD: &str = "imprint-scope-keyboard";
const SHELL: &str = "/bin/busybox";
const CAT: &str = "/usr/bin/cat";

const POLICY: &str = r#"[policy]
default = "off"
unknown_focus = "off"

[[rule]]
name = "cat"
exe = "/usr/bin/cat"
level = "full"
"#;

/// Typed into the shell (out of scope): the command line that starts `cat`, without its Enter.
const SHELL_TEXT: &str = "/usr/bin/cat > /tmp/scope/cat.txt";
/// Typed into `cat` (in scope); nothing in it is a redaction canary.
const CAT_TEXT: &str = "in scope 42\n";
/// Typed into the shell again (out of scope); a builtin, so the shell keeps the terminal.
const BACK_TEXT: &str = "echo gated again > /tmp/scope/back.txt\n";
/// Ctrl+D: end of input for `cat`.
const EOF: &str = "\u{4}";

/// The typed steps: label and text.
const TEXTS: [(&str, &str); 5] = [
    ("shell", SHELL_TEXT),
    ("enter", "\n"),
    ("cat", CAT_TEXT),
    ("eof", EOF),
    ("back", BACK_TEXT),
];

/// The guest driver's steps. `touch` tells the script that what came before is done, `file`
/// waits for the script's go-ahead (it has taken its snapshot).
const STEPS: &str = "\
fg /bin/busybox
touch /tmp/scope/sync/shell-focused
file /tmp/scope/sync/go-shell
type shell /scope/shell.txt
touch /tmp/scope/sync/shell-typed
file /tmp/scope/sync/go-enter
type enter /scope/enter.txt
fg /usr/bin/cat
touch /tmp/scope/sync/cat-focused
file /tmp/scope/sync/go-cat
type cat /scope/cat.txt
touch /tmp/scope/sync/cat-typed
file /tmp/scope/sync/go-eof
type eof /scope/eof.txt
fg /bin/busybox
touch /tmp/scope/sync/back-focused
file /tmp/scope/sync/go-back
type back /scope/back.txt
touch /tmp/scope/sync/back-typed
file /tmp/scope/sync/done
";

/// How long the script waits for a verdict, and for the counters to show the typing.
const VERDICT_WAIT_S: u32 = 60;
const COUNTER_WAIT_S: u32 = 15;

/// Snapshots, in order: (name, what it is taken after).
const SNAPSHOTS: [(&str, &str); 6] = [
    (
        "a0",
        "the verdict for the shell (gate closed), before typing into it",
    ),
    ("a1", "typing into the shell"),
    (
        "b0",
        "the verdict for cat (gate open), before typing into it",
    ),
    ("b1", "typing into cat"),
    (
        "c0",
        "the verdict for the shell again (gate closed), before typing into it",
    ),
    ("c1", "typing into the shell again"),
];

const SCRIPT: &str = r#"
hostname imprint-vm
mkdir -p /home/alice /tmp/scope/sync /tmp/snap /data /run/systemd/sessions /run/systemd/seats
chown 1000:1000 /home/alice
chmod 1777 /tmp/scope
# alice logs in on tty1 (see tests/vm/policy.rs): an interactive shell leading a session whose
# controlling terminal is tty1, described to imprint the way logind would.
setsid -c su alice -s /bin/sh -c 'echo $$ > /tmp/scope/leader; cd; exec /bin/sh -i' \
    < /dev/tty1 > /dev/tty1 2>&1 &
i=0
while [ ! -s /tmp/scope/leader ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
leader=$(cat /tmp/scope/leader)
cat > /run/systemd/sessions/1 <<EOF
UID=1000
USER=alice
ACTIVE=1
STATE=active
REMOTE=0
TYPE=tty
CLASS=user
SEAT=seat0
TTY=tty1
VTNR=1
LEADER=$leader
EOF
printf 'ACTIVE=1\nACTIVE_UID=1000\nSESSIONS=1\nUIDS=1000\n' > /run/systemd/seats/seat0

CFG="--config /etc/imprint/imprint.toml --data-dir /data"
S=/tmp/scope/sync
now_cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }
# snap NAME: imprint status --json into /tmp/snap/NAME.json.
snap() { imprint status --json $CFG > /tmp/snap/$1.json 2>&1; }
# num KEY NAME: the first integer field KEY of snapshot NAME.
num() { sed -n "s/.*\"$1\": \([0-9][0-9]*\).*/\1/p" /tmp/snap/$2.json | head -n 1; }
has() { grep -q "$1" /tmp/snap/$2.json; }
# await FILE: wait (at most 180 s) for the driver to reach a point of its steps.
await() {
    i=0
    while [ ! -e $S/$1 ] && [ $i -lt 1800 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e $S/$1 ] || echo "$1 never came" >> /tmp/polls.txt
}
# poll NAME SECONDS CHECK: snapshot NAME until `CHECK NAME` holds or SECONDS pass; logs the
# outcome and how long it took (centiseconds) to /tmp/polls.txt.
poll() {
    name=$1; limit=$(($2 * 100)); check=$3
    t0=$(now_cs)
    while :; do
        snap $name
        el=$(($(now_cs) - t0))
        if $check $name; then echo "$name ok $el" >> /tmp/polls.txt; return 0; fi
        if [ $el -ge $limit ]; then echo "$name timeout $el" >> /tmp/polls.txt; return 1; fi
        sleep 0.1
    done
}
# The verdicts: focus on the program, and the collector's gate as the agent said (the JSON
# shows scope_closed more than once: every copy must agree).
closed_for_shell() {
    has '"exe": "/bin/busybox"' $1 && has '"scope_closed": true' $1 \
        && ! has '"scope_closed": false' $1 && [ "$(num verdicts $1)" -gt "$V" ]
}
open_for_cat() {
    has '"exe": "/usr/bin/cat"' $1 && has '"level": "full"' $1 \
        && has '"scope_closed": false' $1 && ! has '"scope_closed": true' $1 \
        && [ "$(num verdicts $1)" -gt "$V" ]
}
# The programs' counters, once the typing shows in them.
gated_grew() { [ "$(num gated_off $1)" -ge $((G + WANT)) ]; }
submitted_grew() { [ "$(num submitted $1)" -ge $((B + WANT)) ]; }

export NO_COLOR=1
IMPRINT_LOG=${IMPRINT_LOG:-info} imprint run $CFG > /tmp/imprint.log 2>&1 &
pid=$!
i=0
while [ $i -lt 120 ]; do
    imprint status $CFG 2>/dev/null | grep -q -e 'source: evdev' -e 'source: ebpf' && break
    sleep 0.5
    i=$((i + 1))
done
imprint-vm-guest drive --name imprint-scope-keyboard --steps /scope/steps --step-ms 15 \
    --settle-ms 1000 --linger-ms 500 --timeout-s 240 --sent /tmp/sent.jsonl \
    --marks /tmp/marks.jsonl 2> /tmp/drive.log &
drive=$!

# 1. The shell has focus: out of scope, the gate closes.
await shell-focused
V=0
poll a0 @VERDICT_WAIT@ closed_for_shell
touch $S/go-shell
await shell-typed
G=$(num gated_off a0); WANT=@E_SHELL@
poll a1 @COUNTER_WAIT@ gated_grew
touch $S/go-enter
# 2. cat has focus: in scope, the gate opens.
await cat-focused
V=$(num verdicts a1)
poll b0 @VERDICT_WAIT@ open_for_cat
touch $S/go-cat
await cat-typed
B=$(num submitted b0); WANT=@E_CAT@
poll b1 @COUNTER_WAIT@ submitted_grew
touch $S/go-eof
# 3. cat has exited: the shell again, the gate closes again.
await back-focused
V=$(num verdicts b1)
poll c0 @VERDICT_WAIT@ closed_for_shell
touch $S/go-back
await back-typed
G=$(num gated_off c0); WANT=@E_BACK@
poll c1 @COUNTER_WAIT@ gated_grew
touch $S/done
wait $drive
drive_rc=$?

# Diagnostics only (no assertion uses it): a pause makes the source re-read the programs'
# counters, so a failure can tell "status did not show them" from "the gate let events by".
imprint pause $CFG
i=0
while [ $i -lt 100 ]; do snap fresh; has '"paused": true' fresh && break; sleep 0.1; i=$((i + 1)); done
imprint resume $CFG

kill -TERM $pid 2>/dev/null
( sleep 20; kill -KILL $pid 2>/dev/null ) &
watchdog=$!
wait $pid
echo $? > /tmp/rc
kill $watchdog 2>/dev/null
imprint dump --data-dir /data > /tmp/dump.jsonl 2> /tmp/dump.err
echo $? >> /tmp/rc
for f in cat.txt back.txt; do echo "== $f"; cat /tmp/scope/$f 2>/dev/null; done > /tmp/outputs.txt
for s in a0 a1 b0 b1 c0 c1 fresh; do section snap-$s /tmp/snap/$s.json; done
section polls /tmp/polls.txt
section marks /tmp/marks.jsonl
section sent /tmp/sent.jsonl
section outputs /tmp/outputs.txt
section rc /tmp/rc
section dump /tmp/dump.jsonl
section dump-stderr /tmp/dump.err
section imprint-log /tmp/imprint.log
section drive-log /tmp/drive.log
exit $drive_rc
"#;

/// Non-SYN events the guest driver sends to type `text` on its US layout: press and release
/// of each key, and of Shift or Ctrl around a character that needs it (rebuilt here
/// independently of the driver; the marks say what it really sent).
fn key_events(text: &str) -> u64 {
    const SHIFTED: &str = "~!@#$%^&*()_+{}|:\"<>?";
    text.chars()
        .map(|c| {
            let modifier = c.is_ascii_uppercase()
                || SHIFTED.contains(c)
                || (('\u{1}'..='\u{1a}').contains(&c) && c != '\n' && c != '\t');
            if modifier {
                4
            } else {
                2
            }
        })
        .sum()
}

/// Events the kernel sees for `text`: each report the driver writes ends with SYN_REPORT.
fn kernel_events(text: &str) -> u64 {
    2 * key_events(text)
}

/// The counters of one snapshot that the assertions use.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    seen: u64,
    submitted: u64,
    gated_off: u64,
    /// Events the collector took from eBPF, and dropped as out of scope.
    events_ebpf: u64,
    scope_dropped: u64,
    scope_closed: bool,
    verdicts: u64,
}

struct Snap {
    name: &'static str,
    after: &'static str,
    json: Value,
    c: Counters,
}

impl Snap {
    fn focus(&self) -> String {
        let cur = &self.json["policy"]["current"];
        format!(
            "{} at {}",
            cur["exe"].as_str().unwrap_or("?"),
            cur["level"].as_str().unwrap_or("?")
        )
    }
}

fn counters(run: &VmRun, name: &str, v: &Value) -> Counters {
    let num = |path: &str| {
        v.pointer(path).and_then(Value::as_u64).unwrap_or_else(|| {
            run.fail(&format!(
                "snapshot {name}: no integer at {path} in `imprint status --json`:\n{v:#}"
            ))
        })
    };
    Counters {
        seen: num("/ebpf/kernel/seen"),
        submitted: num("/ebpf/kernel/submitted"),
        gated_off: num("/ebpf/kernel/gated_off"),
        events_ebpf: num("/ring/events_ebpf"),
        scope_dropped: num("/ring/scope_dropped"),
        scope_closed: v
            .pointer("/ring/scope_closed")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| run.fail(&format!("snapshot {name}: no ring.scope_closed"))),
        verdicts: num("/ring/verdicts"),
    }
}

/// The snapshots as a table, for every failure message and the log.
fn table(snaps: &[Snap], fresh: Option<&Counters>) -> String {
    let mut out = String::from(
        "snapshot  seen  submitted  gated_off  events_ebpf  scope_dropped  scope_closed  verdicts  focus\n",
    );
    let row = |name: &str, c: &Counters, focus: &str, after: &str| {
        format!(
            "{name:<8} {:>5} {:>10} {:>10} {:>12} {:>14} {:>13} {:>9}  {focus} (after {after})\n",
            c.seen,
            c.submitted,
            c.gated_off,
            c.events_ebpf,
            c.scope_dropped,
            c.scope_closed,
            c.verdicts
        )
    };
    for s in snaps {
        out.push_str(&row(s.name, &s.c, &s.focus(), s.after));
    }
    if let Some(c) = fresh {
        out.push_str(&row(
            "fresh",
            c,
            "-",
            "a pause at the end, which re-reads the counters; diagnostics only",
        ));
    }
    out
}

#[track_caller]
fn fail_with(run: &VmRun, context: &str, msg: &str) -> ! {
    run.fail(&format!("{msg}\n\n{context}"))
}

#[test]
fn bpf_submits_nothing_while_focus_is_out_of_scope() {
    let e_shell = kernel_events(SHELL_TEXT);
    let e_cat = kernel_events(CAT_TEXT);
    let e_back = kernel_events(BACK_TEXT);
    let script = SCRIPT
        .replace("@VERDICT_WAIT@", &VERDICT_WAIT_S.to_string())
        .replace("@COUNTER_WAIT@", &COUNTER_WAIT_S.to_string())
        .replace("@E_SHELL@", &e_shell.to_string())
        .replace("@E_CAT@", &e_cat.to_string())
        .replace("@E_BACK@", &e_back.to_string());
    let mut vm = Vm::new("bpf_submits_nothing_while_focus_is_out_of_scope")
        .with_imprint()
        .timeout(Duration::from_secs(420))
        .file("/etc/imprint/imprint.toml", POLICY, 0o644)
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n",
            0o644,
        )
        .file("/etc/group", "root:x:0:\nalice:x:1000:\n", 0o644)
        .file("/scope/steps", STEPS, 0o644)
        .script(&script);
    for (label, text) in TEXTS {
        vm = vm.file(&format!("/scope/{label}.txt"), text, 0o644);
    }
    vm.initramfs()
        .copy_dynamic(Path::new(CAT))
        .unwrap_or_else(|err| panic!("putting {CAT} into the initramfs: {err:#}"));
    let run = vm.run().unwrap_or_else(|err| panic!("{err:#}"));
    if run.exit.is_none() {
        run.assert_success();
    }

    let snaps: Vec<Snap> = SNAPSHOTS
        .iter()
        .map(|&(name, after)| {
            let text = run.section(&format!("snap-{name}"));
            let json: Value = serde_json::from_str(text).unwrap_or_else(|e| {
                run.fail(&format!(
                    "snapshot {name} (after {after}) is not JSON ({e}):\n{text}"
                ))
            });
            let c = counters(&run, name, &json);
            Snap {
                name,
                after,
                json,
                c,
            }
        })
        .collect();
    if let Some(first) = snaps.first() {
        crate::ebpf::require_ebpf_live(&run, &first.json, "the scope gate in the kernel");
    }
    let fresh = serde_json::from_str::<Value>(run.section("snap-fresh"))
        .ok()
        .map(|v| counters(&run, "fresh", &v));
    let polls = run.section("polls").to_owned();
    let table = table(&snaps, fresh.as_ref());
    eprintln!("scope gate, `imprint status --json` between phases:\n{table}polls (name, outcome, centiseconds):\n{polls}");
    let context = format!(
        "counters (ebpf.kernel.*, ring.*):\n{table}\npolls (name, outcome, centiseconds):\n{polls}"
    );
    if run.exit != Some(0) {
        fail_with(
            &run,
            &context,
            &format!(
                "the guest test script exited with status {:?} (section drive-log says why)",
                run.exit
            ),
        );
    }
    check_eq(
        &run,
        "imprint run and imprint dump exit statuses",
        &run.section("rc").split_whitespace().collect::<Vec<_>>(),
        &vec!["0", "0"],
    );

    // The programs really read what was typed: the shell started cat, cat wrote its input,
    // and the shell ran the last command.
    check_eq(
        &run,
        "what cat and the shell wrote",
        &run.section("outputs"),
        &format!("== cat.txt\n{CAT_TEXT}== back.txt\ngated again\n").as_str(),
    );

    // What the driver sent matches the counts the script waited for.
    let marks: Vec<Value> = json_lines(&run, "marks");
    for (label, text) in TEXTS {
        let m = marks
            .iter()
            .find(|m| m["label"] == label)
            .unwrap_or_else(|| {
                fail_with(&run, &context, &format!("no mark for typed step {label}"))
            });
        check_eq(
            &run,
            &format!("non-SYN events sent for step {label} (a harness bug if wrong)"),
            &m["count"].as_u64(),
            &Some(key_events(text)),
        );
    }

    // The verdicts arrived and the collector applied them (ring.scope_closed).
    let [a0, a1, b0, b1, c0, c1] = [0, 1, 2, 3, 4, 5].map(|i| &snaps[i]);
    for (s, exe, closed) in [(a0, SHELL, true), (b0, CAT, false), (c0, SHELL, true)] {
        let got_exe = s.json["policy"]["current"]["exe"].as_str();
        if got_exe != Some(exe) || s.c.scope_closed != closed {
            fail_with(&run, &context, &format!(
                "snapshot {} (after {}): want focus on {exe} with ring.scope_closed {closed}, got {} with {} (poll outcome above)",
                s.name,
                s.after,
                s.focus(),
                s.c.scope_closed
            ));
        }
    }

    // The collector's side, read live: out of scope, no event reached it at all (not even to
    // be dropped there as out of scope), so they stopped in the kernel; in scope, they did.
    for (from, to, what) in [(a0, a1, "the shell"), (c0, c1, "the shell again")] {
        let d = |f: fn(&Counters) -> u64| f(&to.c) as i64 - f(&from.c) as i64;
        if d(|c| c.events_ebpf) != 0 || d(|c| c.scope_dropped) != 0 {
            fail_with(&run, &context, &format!(
                "while typing into {what} (out of scope), events reached the collector: ring.events_ebpf +{}, ring.scope_dropped +{} ({}→{}); want 0",
                d(|c| c.events_ebpf),
                d(|c| c.scope_dropped),
                from.name,
                to.name
            ));
        }
    }
    let collected = b1.c.events_ebpf as i64 - b0.c.events_ebpf as i64;
    if collected < e_cat as i64 {
        fail_with(&run, &context, &format!(
            "while typing into cat (in scope), the collector took {collected} events from eBPF (ring.events_ebpf, b0→b1), want at least the {e_cat} typed"
        ));
    }

    // The spool: exactly what was typed into cat (full), nothing typed
    // into the shell.
    let dump = json_lines(&run, "dump");
    let keyboard = dump
        .iter()
        .find(|v| v["kind"] == "device" && v["name"] == KEYBOARD)
        .and_then(|v| v["device"].as_i64())
        .unwrap_or_else(|| {
            fail_with(
                &run,
                &context,
                &format!("`imprint dump` has no device line for {KEYBOARD}"),
            )
        });
    let sent: Vec<Ev> = json_lines(&run, "sent")
        .iter()
        .map(|v| ev_of(&run, v))
        .collect();
    let interval = |label: &str| {
        let m = marks
            .iter()
            .find(|m| m["label"] == label)
            .unwrap_or_else(|| fail_with(&run, &context, &format!("no mark for {label}")));
        let n = |k: &str| m[k].as_u64().unwrap_or_default();
        (
            n("from_ns"),
            n("to_ns"),
            n("first") as usize,
            n("count") as usize,
        )
    };
    let events: Vec<&Value> = dump
        .iter()
        .filter(|v| v["kind"] == "event" && v["device"].as_i64() == Some(keyboard))
        .collect();
    let during = |label: &str| -> Vec<Ev> {
        let (from, to, _, _) = interval(label);
        events
            .iter()
            .filter(|e| {
                e["mono_ns"]
                    .as_u64()
                    .is_some_and(|t| (from..=to).contains(&t))
            })
            .map(|e| ev_of(&run, e))
            .collect()
    };
    let (_, _, first, count) = interval("cat");
    crate::check_events(
        &run,
        "keyboard events written while typing into cat",
        &during("cat"),
        &sent[first..first + count],
    );
    for label in ["shell", "enter", "back"] {
        check_eq(
            &run,
            &format!("keyboard events written while typing {label} into the shell"),
            &during(label),
            &vec![],
        );
    }
    let (cat_from, _, _, _) = interval("cat");
    let (_, eof_to, _, _) = interval("eof");
    if let Some(e) = events.iter().find(|e| {
        !e["mono_ns"]
            .as_u64()
            .is_some_and(|t| (cat_from..=eof_to).contains(&t))
    }) {
        fail_with(
            &run,
            &context,
            &format!("a keyboard event was written outside the time cat had focus: {e}"),
        );
    }

    // The programs' own counters (the point of the test): out of scope they submitted nothing
    // and gated every event typed; in scope they submitted at least what was typed.
    // `fresh` shows whether a shortfall is the gate's or only `imprint status`'s.
    let stale = |what: &str, shown: u64, fresh: Option<u64>| match fresh {
        Some(f) if f > shown => format!(
            "\nThe programs' {what} counter, re-read at the pause after the test, is {f} (status \
             showed {shown} at the snapshot): the kernel counted the events, but `imprint status` \
             did not show them. The eBPF source republishes the programs' counters only when it \
             drains the ring buffer (at most every 250 ms) and at pause transitions; a closed \
             gate causes no wake-up, a scope transition no refresh, and the end of a burst is \
             never published until the next wake-up (agent/source/src/ebpf/mod.rs, the reader's \
             select loop)."
        ),
        _ => String::new(),
    };
    for (from, to, what, typed) in [
        (a0, a1, "the shell", e_shell),
        (c0, c1, "the shell again", e_back),
    ] {
        let d = |f: fn(&Counters) -> u64| f(&to.c) as i64 - f(&from.c) as i64;
        if d(|c| c.submitted) != 0 {
            fail_with(&run, &context, &format!(
                "while typing into {what} (out of scope), the BPF programs submitted {} records ({}→{}); want 0",
                d(|c| c.submitted),
                from.name,
                to.name
            ));
        }
        if d(|c| c.gated_off) != typed as i64 {
            fail_with(&run, &context, &format!(
                "while typing into {what} (out of scope): ebpf.kernel.gated_off grew by {} ({}→{}), want {typed} (the events typed, SYN reports included){}",
                d(|c| c.gated_off),
                from.name,
                to.name,
                stale("gated_off", to.c.gated_off, fresh.map(|f| f.gated_off))
            ));
        }
    }
    let submitted = b1.c.submitted as i64 - b0.c.submitted as i64;
    if submitted < e_cat as i64 {
        fail_with(&run, &context, &format!(
            "while typing into cat (in scope), the BPF programs submitted {submitted} records (b0→b1), want at least the {e_cat} events typed{}",
            stale("submitted", b1.c.submitted, fresh.map(|f| f.submitted))
        ));
    }
    check_eq(
        &run,
        "events gated in the kernel while typing into cat (b0→b1)",
        &(b1.c.gated_off as i64 - b0.c.gated_off as i64),
        &0,
    );
    eprintln!(
        "scope gate: shell {e_shell} events gated, cat {submitted} submitted for {e_cat} typed, \
         shell again {e_back} gated; {} keyboard events in the spool",
        events.len()
    );
}
