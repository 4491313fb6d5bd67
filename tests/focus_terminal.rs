//! Terminal attribution with a real pty: `script` plays the terminal emulator (it owns the
//! pty master and forwards our bytes as keystrokes), an interactive bash with job control
//! runs on the slave. When the terminal has focus, the record must name the foreground
//! program (not the shell), keep the terminal beside it, and follow the foreground as
//! programs start and end, driven by the kernel's process events.

mod common;

use common::{spawn_focus, wait_until};
use imprint_procs::{read_stat, ProcTable};
use imprint_session::{FocusConfig, Report, Resolver, WindowReport};
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Every process below `pid`: `script` runs its command through `$SHELL -c`, and whether
/// that shell execs or forks the interactive bash depends on which shell it is.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = children(pid);
    let mut i = 0;
    while i < out.len() {
        let more = children(out[i]);
        out.extend(more);
        i += 1;
    }
    out
}

fn type_keys(stdin: &mut ChildStdin, s: &[u8]) {
    stdin.write_all(s).expect("type");
    stdin.flush().expect("flush");
}

/// The pid in the pty's foreground whose comm is `comm`.
fn foreground(shell: u32, comm: &str) -> Option<u32> {
    let s = read_stat(shell).ok()?;
    let fg = read_stat(s.tpgid).ok()?;
    (fg.comm == comm).then_some(fg.pid)
}

#[test]
fn terminal_input_is_attributed_to_the_foreground_program() {
    let mut term = Kill(
        Command::new("script")
            .args(["-q", "-c", "bash --norc --noprofile -i", "/dev/null"])
            .env("TERM", "dumb")
            .env("PS1", "$ ")
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn script (util-linux)"),
    );
    let term_pid = term.0.id();
    let mut keys = term.0.stdin.take().expect("stdin");
    let shell = wait_until("the shell", T, || {
        descendants(term_pid)
            .into_iter()
            .find(|&c| read_stat(c).is_ok_and(|s| s.comm == "bash" && s.tpgid == c))
    });

    let table = ProcTable::new(false);
    let cfg = FocusConfig {
        terminals: vec!["script".into()],
        ..FocusConfig::default()
    };
    let (rtx, rrx) = tokio::sync::mpsc::channel(8);
    let t = table.clone();
    let focus = spawn_focus(move |tx| async move {
        let tracking = tokio::spawn(t.clone().track());
        Resolver::new(cfg, t, tx).run(rrx).await;
        tracking.abort();
    });
    wait_until("the proc connector", T, || table.is_live().then_some(()));

    // A foreground program: sleep, in its own process group, owning the pty.
    type_keys(&mut keys, b"sleep 60\n");
    let sleep = wait_until("sleep in the foreground", T, || foreground(shell, "sleep"));
    rtx.blocking_send(Report::Window(WindowReport {
        tracker: "test",
        pid: term_pid,
        pid_verified: true,
        ..WindowReport::default()
    }))
    .expect("report");
    let f = focus.wait_for("the terminal's focus", T, |f| f.terminal_pid == term_pid);
    assert_eq!(f.pid, sleep, "the foreground program, not the shell: {f:?}");
    assert!(f.exe.ends_with("/sleep"), "{f:?}");
    assert!(f.terminal_exe.ends_with("/script"), "{f:?}");

    // ^C ends it; the shell takes the terminal back: the record follows, with no new report.
    type_keys(&mut keys, b"\x03");
    let f = focus.wait_for("the shell back in the foreground", T, |f| f.pid == shell);
    assert!(f.exe.ends_with("/bash"), "{f:?}");
    assert_eq!(f.terminal_pid, term_pid);

    // A new program starts (fork, setpgid, tcsetpgrp, exec): the record follows again.
    type_keys(&mut keys, b"cat\n");
    let cat = wait_until("cat in the foreground", T, || foreground(shell, "cat"));
    let f = focus.wait_for("cat", T, |f| f.pid == cat);
    assert!(f.exe.ends_with("/cat"), "{f:?}");
    assert_eq!(f.terminal_pid, term_pid);
    type_keys(&mut keys, b"\x04exit\n");
}
