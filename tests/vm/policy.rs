//! Scope and redaction in the real kernel, with real programs on a real virtual terminal.
//!
//! alice (uid 1000) has an interactive shell on tty1, described to imprint the way logind
//! would (`/run/systemd/sessions/1`, `/run/systemd/seats/seat0`), so imprint's `auto` focus
//! follows seat0 to the `tty` tracker: the active VT's session leader, followed to its
//! foreground process group. A uinput keyboard then types into that VT (the kernel's keyboard
//! handler feeds the active VT's line discipline), so the shell and the programs it starts
//! really read the keys: commands into the shell (no rule), canaries into `cat` (`full`), a
//! password into a real `sudo` prompt (`full`, but echo is off), a text into `tac` (`timing`)
//! and one into `sort` (no rule). See `tests/vm/README.md`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Vm, VmRun};
use crate::{check_eq, ev_of, json_lines, Ev};

const KEYBOARD: &str = "imprint-vt-keyboard";
const USER_UID: u64 = 1000;
/// alice's password; the hash in /etc/shadow is `openssl passwd -6 -salt imprintvm Hunter2pw`.
const PASSWORD: &str = "Hunter2pw";
const PASSWORD_HASH: &str =
    "$6$imprintvm$Qa3ADl87mNjgzE3Tmbpf8w8MLVb5J8xTtOxVjvtAjuA.8JEoUxFvy7Zwiy.V.60PHgcRt7MNDxjMZaaxD03.Z/";
/// The same canaries and rules as `tests/policy.rs`, which replays them on the host.
const CANARIES: [(&str, &str); 5] = [
    ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "github_token"),
    ("4111 1111 1111 1111", "card_number"),
    ("alice.smith@example.org", "email"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "private_key",
    ),
];
const TIMING_TEXT: &str = "Secret Words 42!\n";
const OFF_TEXT: &str = "nothing to see here\n";
/// Ctrl+D at the start of a line: end of input for a program reading the terminal.
const EOF: &str = "\u{4}";
const SHELL: &str = "/bin/busybox";

const POLICY: &str = r#"[policy]
default = "off"
unknown_focus = "off"
terminal_echo = true
redact = true

[[rule]]
name = "cat"
exe = "/usr/bin/cat"
level = "full"

[[rule]]
name = "sudo"
exe = "/usr/bin/sudo"
level = "full"

[[rule]]
name = "tac"
exe = "/usr/bin/tac"
level = "timing"
"#;

/// Host programs copied into the guest with their libraries, each at its host path: libpam
/// and sudo find their modules and plugin at paths compiled into them.
const HOST_PROGRAMS: [&str; 7] = [
    "/usr/bin/cat",
    "/usr/bin/tac",
    "/usr/bin/sort",
    "/usr/bin/sudo",
    "/usr/libexec/sudo/sudoers.so",
    "/lib/x86_64-linux-gnu/security/pam_unix.so",
    "/lib/x86_64-linux-gnu/security/pam_permit.so",
];

/// The canaries, each followed by text that must survive.
fn canary_text() -> String {
    let mut text = String::from("hi ");
    for (c, _) in CANARIES {
        text.push_str(c);
        text.push_str(" ok\n");
    }
    text
}

/// What the guest types, step by step: the texts (as files) and the steps file for
/// `imprint-vm-guest drive`. Between texts it waits until the program that should read the
/// next one is in tty1's foreground, then leaves the focus tracker a moment to see it.
fn scenario() -> (Vec<(String, String)>, String) {
    const SETTLE: &str = "sleep 1500";
    let texts: Vec<(&str, String)> = vec![
        ("shell-cat", "/usr/bin/cat > /tmp/vt/full.txt\n".into()),
        ("canaries", canary_text()),
        ("cat-eof", EOF.into()),
        (
            "shell-sudo",
            "/usr/bin/sudo -k /bin/true && echo SUDO_OK > /tmp/vt/sudo-ok\n".into(),
        ),
        ("password", format!("{PASSWORD}\n")),
        ("shell-tac", "/usr/bin/tac > /tmp/vt/timing.txt\n".into()),
        ("timing", TIMING_TEXT.into()),
        ("tac-eof", EOF.into()),
        ("shell-sort", "/usr/bin/sort > /tmp/vt/off.txt\n".into()),
        ("off", OFF_TEXT.into()),
        ("sort-eof", EOF.into()),
    ];
    let ty = |label: &str| format!("type {label} /vt/{label}.txt");
    let steps = [
        format!("fg {SHELL}"),
        SETTLE.into(),
        ty("shell-cat"),
        "fg /usr/bin/cat".into(),
        SETTLE.into(),
        ty("canaries"),
        ty("cat-eof"),
        format!("fg {SHELL}"),
        SETTLE.into(),
        ty("shell-sudo"),
        "fg /usr/bin/sudo".into(),
        // sudo turns echo off before it prints its prompt.
        "echo off".into(),
        SETTLE.into(),
        ty("password"),
        // Written by the shell only if sudo accepted the password.
        "file /tmp/vt/sudo-ok".into(),
        format!("fg {SHELL}"),
        SETTLE.into(),
        ty("shell-tac"),
        "fg /usr/bin/tac".into(),
        SETTLE.into(),
        ty("timing"),
        ty("tac-eof"),
        format!("fg {SHELL}"),
        SETTLE.into(),
        ty("shell-sort"),
        "fg /usr/bin/sort".into(),
        SETTLE.into(),
        ty("off"),
        ty("sort-eof"),
        format!("fg {SHELL}"),
    ]
    .join("\n");
    (
        texts
            .into_iter()
            .map(|(label, text)| (format!("/vt/{label}.txt"), text))
            .collect(),
        steps + "\n",
    )
}

const SCRIPT: &str = r#"
hostname imprint-vm
mkdir -p /home/alice /tmp/vt /data /run/systemd/sessions /run/systemd/seats
chown 1000:1000 /home/alice
chmod 1777 /tmp/vt
# alice logs in on tty1: her interactive shell leads a new session whose controlling terminal
# is tty1 (so it runs job control and hands tty1's foreground to each command it starts).
setsid -c su alice -s /bin/sh -c 'echo $$ > /tmp/vt/leader; cd; exec /bin/sh -i' \
    < /dev/tty1 > /dev/tty1 2>&1 &
i=0
while [ ! -s /tmp/vt/leader ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
leader=$(cat /tmp/vt/leader)
# What logind would record for that login (imprint reads these files, never logind itself).
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
echo "leader=$leader active=$(cat /sys/class/tty/tty0/active)" > /tmp/session.txt

export NO_COLOR=1
imprint run --config /etc/imprint/imprint.toml --data-dir /data > /tmp/imprint.log 2>&1 &
pid=$!
i=0
while [ $i -lt 120 ]; do
    imprint status --config /etc/imprint/imprint.toml --data-dir /data 2>/dev/null \
        | grep -q -e 'source: evdev' -e 'source: ebpf' && break
    sleep 0.5
    i=$((i + 1))
done
imprint-vm-guest drive --name imprint-vt-keyboard --steps /vt/steps --step-ms 15 \
    --settle-ms 1000 --linger-ms 500 --sent /tmp/sent.jsonl --marks /tmp/marks.jsonl \
    2> /tmp/drive.log
drive_rc=$?
# The agent writes its status after each fsync (every second).
sleep 2
imprint status --json --config /etc/imprint/imprint.toml --data-dir /data > /tmp/status.json 2>&1
kill -TERM $pid 2>/dev/null
( sleep 20; kill -KILL $pid 2>/dev/null ) &
watchdog=$!
wait $pid
echo $? > /tmp/rc
kill $watchdog 2>/dev/null
imprint dump --data-dir /data > /tmp/dump.jsonl 2> /tmp/dump.err
echo $? >> /tmp/rc
# What tty1 shows: the programs' echo, sudo's prompt.
fold -w 80 /dev/vcs1 | sed 's/ *$//' | grep -v '^$' > /tmp/screen.txt
for f in full.txt sudo-ok timing.txt off.txt; do
    echo "== $f"; cat /tmp/vt/$f 2>/dev/null
done > /tmp/outputs.txt
section session /tmp/session.txt
section marks /tmp/marks.jsonl
section sent /tmp/sent.jsonl
section dump /tmp/dump.jsonl
section dump-stderr /tmp/dump.err
section rc /tmp/rc
section status /tmp/status.json
section outputs /tmp/outputs.txt
section screen /tmp/screen.txt
section imprint-log /tmp/imprint.log
section drive-log /tmp/drive.log
exit $drive_rc
"#;

/// One typed step, as `imprint-vm-guest drive` logged it.
#[derive(Debug, Clone)]
struct Mark {
    from_ns: u64,
    to_ns: u64,
    /// Its events in the sent log.
    first: usize,
    count: usize,
}

/// The dump, indexed for the questions below.
struct Capture<'a> {
    run: &'a VmRun,
    dump: Vec<Value>,
    marks: BTreeMap<String, Mark>,
    sent: Vec<Ev>,
    keyboard: i64,
}

impl Capture<'_> {
    #[track_caller]
    fn mark(&self, label: &str) -> &Mark {
        self.marks
            .get(label)
            .unwrap_or_else(|| self.run.fail(&format!("no mark for typed step {label}")))
    }

    fn kind(&self, kind: &str) -> impl Iterator<Item = &Value> {
        let kind = kind.to_owned();
        self.dump.iter().filter(move |v| v["kind"] == kind.as_str())
    }

    /// The focus seqs written for programs running `exe`.
    fn foci(&self, exe: &str) -> Vec<u64> {
        self.kind("focus")
            .filter(|f| f["exe"] == exe)
            .filter_map(|f| f["seq"].as_u64())
            .collect()
    }

    /// The keyboard's events stamped while step `label` was typed.
    #[track_caller]
    fn typed_during(&self, label: &str) -> Vec<&Value> {
        let m = self.mark(label);
        self.kind("event")
            .filter(|e| e["device"].as_i64() == Some(self.keyboard))
            .filter(|e| {
                e["mono_ns"]
                    .as_u64()
                    .is_some_and(|t| (m.from_ns..=m.to_ns).contains(&t))
            })
            .collect()
    }

    /// What the guest sent for step `label`.
    fn sent_for(&self, label: &str) -> &[Ev] {
        let m = self.mark(label);
        &self.sent[m.first..m.first + m.count]
    }

    /// Redaction records made while step `label` was typed.
    fn redactions_during(&self, label: &str) -> Vec<&Value> {
        let m = self.mark(label);
        self.kind("redaction")
            .filter(|r| {
                r["from_ns"].as_u64().is_some_and(|t| t >= m.from_ns)
                    && r["to_ns"].as_u64().is_some_and(|t| t <= m.to_ns)
            })
            .collect()
    }

    /// Fails unless every event of `events` is attributed to one of `foci`.
    #[track_caller]
    fn all_attributed(&self, what: &str, events: &[&Value], foci: &[u64]) {
        if let Some(e) = events
            .iter()
            .find(|e| !e["focus"].as_u64().is_some_and(|f| foci.contains(&f)))
        {
            self.run.fail(&format!(
                "{what}: an event is attributed to focus {} rather than {foci:?}: {e}\nfocus records: {:?}",
                e["focus"],
                self.kind("focus").collect::<Vec<_>>()
            ));
        }
    }
}

/// US key code name and shift for `c` (the layout the guest types with, rebuilt here
/// independently of it).
fn us_key(c: char) -> Option<(String, bool)> {
    const ROWS: [(u16, &str, &str); 4] = [
        (2, "1234567890-=", "!@#$%^&*()_+"),
        (16, "qwertyuiop[]", "QWERTYUIOP{}"),
        (30, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
        (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
    ];
    let name = |code: u16| imprint_record::names::code_name(1, code).to_string();
    match c {
        ' ' => return Some((name(57), false)),
        '\n' => return Some((name(28), false)),
        _ => {}
    }
    ROWS.iter().find_map(|(first, plain, shifted)| {
        if let Some(i) = plain.chars().position(|k| k == c) {
            return Some((name(first + i as u16), false));
        }
        shifted
            .chars()
            .position(|k| k == c)
            .map(|i| (name(first + i as u16), true))
    })
}

/// The text that written key presses still spell on a US layout (Ctrl chords spell nothing).
fn spelled(events: &[&Value]) -> String {
    let (mut shift, mut ctrl) = (false, false);
    let mut out = String::new();
    for e in events.iter().filter(|e| e["type"] == "EV_KEY") {
        let code = e["code"].as_str().unwrap_or("");
        let down = e["value"].as_i64().unwrap_or(0) != 0;
        match code {
            "KEY_LEFTSHIFT" | "KEY_RIGHTSHIFT" => shift = down,
            "KEY_LEFTCTRL" | "KEY_RIGHTCTRL" => ctrl = down,
            _ if e["value"] == 1 && !ctrl => {
                if let Some(c) = (' '..='~')
                    .chain(['\n'])
                    .find(|c| us_key(*c).is_some_and(|(k, s)| k == code && s == shift))
                {
                    out.push(c);
                }
            }
            _ => {}
        }
    }
    out
}

fn presses<'a>(events: impl IntoIterator<Item = &'a Value>) -> usize {
    events
        .into_iter()
        .filter(|e| e["type"] == "EV_KEY" && e["value"] == 1)
        .count()
}

/// The kept identities at `timing`: the placeholder and keys that print nothing.
const TIMING_CODES: [&str; 4] = ["KEY_A", "KEY_LEFTSHIFT", "KEY_ENTER", "KEY_LEFTCTRL"];

#[test]
fn vt_programs_get_their_policy_levels() {
    let (texts, steps) = scenario();
    let mut vm = Vm::new("vt_programs_get_their_policy_levels")
        .with_imprint()
        .timeout(Duration::from_secs(420))
        .file("/etc/imprint/imprint.toml", POLICY, 0o644)
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n",
            0o644,
        )
        .file("/etc/group", "root:x:0:\nalice:x:1000:\n", 0o644)
        .file(
            "/etc/shadow",
            format!("root:*:19000:0:99999:7:::\nalice:{PASSWORD_HASH}:19000:0:99999:7:::\n"),
            0o640,
        )
        .file(
            "/etc/nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
            0o644,
        )
        .file("/etc/hosts", "127.0.0.1 localhost imprint-vm\n", 0o644)
        // No `use_pty`: sudo must prompt on tty1 itself (the guest has no /dev/pts either).
        .file(
            "/etc/sudoers",
            "Defaults lecture=never\nroot ALL=(ALL:ALL) ALL\nalice ALL=(ALL:ALL) ALL\n",
            0o440,
        )
        .file(
            "/etc/pam.d/sudo",
            "auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n",
            0o644,
        )
        .file("/vt/steps", steps, 0o644)
        .script(SCRIPT);
    for (path, text) in texts {
        vm = vm.file(&path, text, 0o644);
    }
    let fs = vm.initramfs();
    for program in HOST_PROGRAMS {
        fs.copy_dynamic(Path::new(program)).unwrap_or_else(|err| {
            panic!(
                "putting {program} into the initramfs: {err:#} \
                 (sudo comes from tests/setup.sh; coreutils and libpam-modules from Debian)"
            )
        });
    }
    let run = vm.run().unwrap_or_else(|err| panic!("{err:#}"));
    run.assert_success();
    check_eq(
        &run,
        "imprint run and imprint dump exit statuses",
        &run.section("rc").split_whitespace().collect::<Vec<_>>(),
        &vec!["0", "0"],
    );

    // The programs really read what was typed: the keys went to tty1, and sudo accepted the
    // password (the shell wrote SUDO_OK only after `sudo -k /bin/true` succeeded).
    let canary_text = canary_text();
    let outputs = run.section("outputs");
    let want_outputs = format!(
        "== full.txt\n{canary_text}== sudo-ok\nSUDO_OK\n== timing.txt\n{TIMING_TEXT}== off.txt\n{OFF_TEXT}"
    );
    check_eq(
        &run,
        "what cat, the shell after sudo, tac and sort wrote",
        &outputs,
        &want_outputs.as_str(),
    );

    let dump = json_lines(&run, "dump");
    let keyboard = dump
        .iter()
        .find(|v| v["kind"] == "device" && v["name"] == KEYBOARD)
        .and_then(|v| v["device"].as_i64())
        .unwrap_or_else(|| run.fail(&format!("`imprint dump` has no device line for {KEYBOARD}")));
    let marks = json_lines(&run, "marks")
        .into_iter()
        .map(|m| {
            let num = |k: &str| {
                m[k].as_u64()
                    .unwrap_or_else(|| run.fail(&format!("mark without {k}: {m}")))
            };
            (
                m["label"].as_str().unwrap_or_default().to_owned(),
                Mark {
                    from_ns: num("from_ns"),
                    to_ns: num("to_ns"),
                    first: num("first") as usize,
                    count: num("count") as usize,
                },
            )
        })
        .collect();
    let sent = json_lines(&run, "sent")
        .iter()
        .map(|v| ev_of(&run, v))
        .collect();
    let cap = Capture {
        run: &run,
        dump,
        marks,
        sent,
        keyboard,
    };

    // Focus: the tty tracker named each program in scope, as alice's, in session 1 on seat0;
    // out-of-scope programs (the shell, sort) left not even a focus record.
    for f in cap.kind("focus").filter(|f| f["unknown"] != true) {
        for (key, want) in [
            ("tracker", Value::from("tty")),
            ("uid", Value::from(USER_UID)),
            ("session", Value::from("1")),
            ("seat", Value::from("seat0")),
        ] {
            check_eq(&run, &format!("focus record's {key}: {f}"), &f[key], &want);
        }
    }
    let cat = cap.foci("/usr/bin/cat");
    let sudo = cap.foci("/usr/bin/sudo");
    let tac = cap.foci("/usr/bin/tac");
    for (exe, seqs) in [
        ("/usr/bin/cat", &cat),
        ("/usr/bin/sudo", &sudo),
        ("/usr/bin/tac", &tac),
    ] {
        if seqs.is_empty() {
            run.fail(&format!(
                "no focus record for {exe}: the tty tracker did not follow tty1's foreground"
            ));
        }
    }
    for exe in [SHELL, "/usr/bin/sort"] {
        check_eq(
            &run,
            &format!("focus records for out-of-scope {exe}"),
            &cap.foci(exe),
            &vec![],
        );
    }

    // 1. cat (`full`): the canaries are gone, as text and as keys, and their keys' timing is
    // in redaction records; the keys around them are kept.
    let typed = cap.typed_during("canaries");
    cap.all_attributed("keys typed into cat", &typed, &cat);
    let left = spelled(&typed);
    for (c, rule) in CANARIES {
        for line in c.lines() {
            if left.contains(line) {
                run.fail(&format!("{rule} canary written as keys: {left:?}"));
            }
        }
        let first_line = c.lines().next().unwrap_or(c);
        if cap.dump.iter().any(|v| v.to_string().contains(first_line)) {
            run.fail(&format!("{rule} canary appears as text in the dump"));
        }
    }
    if !left.starts_with("hi ") || left.matches(" ok\n").count() != CANARIES.len() {
        run.fail(&format!(
            "the keys typed around the canaries should be kept (\"hi \", then \" ok\\n\" after each): {left:?}"
        ));
    }
    let redactions = cap.redactions_during("canaries");
    let mut redacted_presses = 0;
    for (_, rule) in CANARIES {
        let recs: Vec<&&Value> = redactions.iter().filter(|r| r["rule"] == rule).collect();
        if recs.is_empty() {
            run.fail(&format!(
                "no {rule} redaction record while the canaries were typed; redactions: {:?}",
                cap.kind("redaction").collect::<Vec<_>>()
            ));
        }
        for r in recs {
            let count = r["count"].as_u64().unwrap_or(0);
            let times: Vec<u64> = r["key_times_ns"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let (from, to) = (r["from_ns"].as_u64(), r["to_ns"].as_u64());
            if count <= 10
                || times.len() as u64 != count
                || from > to
                || times.windows(2).any(|w| w[0] >= w[1])
                || times.first().map(|t| Some(*t) < from).unwrap_or(true)
                || times.last().map(|t| Some(*t) > to).unwrap_or(true)
                || !r["focus"].as_u64().is_some_and(|f| cat.contains(&f))
            {
                run.fail(&format!(
                    "{rule}: want > 10 keys, one increasing time each within [from_ns, to_ns], attributed to cat: {r}"
                ));
            }
            redacted_presses += count as usize;
        }
    }
    // Every press typed is either written or in a redaction record: none vanished.
    let sent_presses = cap
        .sent_for("canaries")
        .iter()
        .filter(|(kind, _, value)| kind == "EV_KEY" && *value == 1)
        .count();
    check_eq(
        &run,
        "key presses typed into cat = written + redacted",
        &sent_presses,
        &(presses(typed.iter().copied()) + redacted_presses),
    );

    // 2. sudo's password prompt (echo off): capped at `timing`. Every key's timing is there,
    // no printable identity, no scan code.
    let typed = cap.typed_during("password");
    cap.all_attributed("keys typed at sudo's prompt", &typed, &sudo);
    check_eq(
        &run,
        "key events written while the password was typed (one per key sent)",
        &typed.len(),
        &cap.mark("password").count,
    );
    let status: Value = serde_json::from_str(run.section("status"))
        .unwrap_or_else(|e| run.fail(&format!("status is not JSON: {e}")));
    let echo_off_keys = status
        .pointer("/policy/filter/echo_off_keys")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| run.fail(&format!("no policy.filter.echo_off_keys in {status}")));
    let codes: Vec<&str> = typed
        .iter()
        .map(|e| e["code"].as_str().unwrap_or("?"))
        .collect();
    if let Some(bad) = typed.iter().find(|e| {
        e["type"] != "EV_KEY" || !TIMING_CODES.contains(&e["code"].as_str().unwrap_or("?"))
    }) {
        let hint = if echo_off_keys == 0 {
            "\nThe filter never found echo off (policy.filter.echo_off_keys is 0). It asks only \
             for foci with a terminal_pid, i.e. programs in a terminal emulator, and a VT focus \
             has none: agent/policy/src/filter.rs must also ask for foci of the `tty` tracker."
        } else {
            ""
        };
        run.fail(&format!(
            "a key identity (or scan code) survived at sudo's prompt: {bad}\nall: {codes:?}{hint}"
        ));
    }
    let masked = codes.iter().filter(|c| **c == "KEY_A").count();
    check_eq(
        &run,
        "password keys masked to KEY_A (press and release of each character)",
        &masked,
        &(2 * PASSWORD.chars().count()),
    );
    let stamps: Vec<u64> = typed.iter().filter_map(|e| e["mono_ns"].as_u64()).collect();
    if stamps.windows(2).any(|w| w[0] >= w[1]) {
        run.fail(&format!(
            "password key times not strictly increasing: {stamps:?}"
        ));
    }
    // The agent reads the echo flag when it handles a press, a moment after it was typed: by
    // then sudo may have read the line and turned echo back on, so Enter (which prints
    // nothing, so is kept anyway) may escape the count; no printable key may.
    let pressed = presses(typed.iter().copied());
    if !(PASSWORD.chars().count() as u64..=pressed as u64).contains(&echo_off_keys) {
        run.fail(&format!(
            "imprint status counts {echo_off_keys} presses capped because tty1 had echo off; \
             want the {} password characters at least, at most the {pressed} presses typed",
            PASSWORD.chars().count()
        ));
    }

    // 3. tac (`timing`): every key's timing, no printable identity.
    let typed = cap.typed_during("timing");
    cap.all_attributed("keys typed into tac", &typed, &tac);
    check_eq(
        &run,
        "key events written while typing into tac (one per key sent)",
        &typed.len(),
        &cap.mark("timing").count,
    );
    if let Some(bad) = typed.iter().find(|e| {
        e["type"] != "EV_KEY" || !TIMING_CODES.contains(&e["code"].as_str().unwrap_or("?"))
    }) {
        run.fail(&format!("a key identity survived at `timing`: {bad}"));
    }
    let masked_tac = typed.iter().filter(|e| e["code"] == "KEY_A").count();

    // 4. Nothing typed into the shell or sort (no rule) was written, nor anything outside the
    // steps typed into programs in scope: not even the release of the Enter that starts a
    // program, which can reach imprint after focus moved to that program (a release follows
    // the decision made for its press).
    for label in [
        "shell-cat",
        "shell-sudo",
        "shell-tac",
        "shell-sort",
        "off",
        "sort-eof",
    ] {
        check_eq(
            &run,
            &format!("events written while typing {label} (no rule matches)"),
            &cap.typed_during(label),
            &vec![],
        );
    }
    let all: Vec<&Value> = cap
        .kind("event")
        .filter(|e| e["device"].as_i64() == Some(keyboard))
        .collect();
    let in_scope = ["canaries", "cat-eof", "password", "timing", "tac-eof"];
    let inside: usize = in_scope.iter().map(|l| cap.typed_during(l).len()).sum();
    check_eq(
        &run,
        "keyboard events written outside the steps typed into cat, sudo and tac",
        &(all.len() - inside),
        &0,
    );
    let everything = spelled(&all);
    for secret in [PASSWORD, "nothing", "sudo", "Secret"] {
        if everything.contains(secret) {
            run.fail(&format!(
                "{secret:?} can be read off the written keys: {everything:?}"
            ));
        }
    }
    eprintln!(
        "vt policy: {} key events written; cat: {} redaction records over {redacted_presses} presses; \
         sudo: {} events, {masked} masked, echo_off_keys {echo_off_keys}; tac: {} events, {masked_tac} masked",
        all.len(),
        redactions.len(),
        cap.typed_during("password").len(),
        cap.typed_during("timing").len(),
    );
}
