//! Process identity against the real kernel: the proc connector keeps the table current
//! through exec and exit, and a pid reused by a new process (forced with
//! `/proc/sys/kernel/ns_last_pid`) is never confused with the process that had it before.

mod common;

use common::wait_until;
use imprint_procs::{ProcIdentity, ProcTable};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// A table kept current by the proc connector on a background runtime.
fn live_table() -> Arc<ProcTable> {
    let table = ProcTable::new(true);
    let t = table.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let err = rt.block_on(t.track());
        panic!("proc connector failed: {err}");
    });
    wait_until("the proc connector", T, || table.is_live().then_some(()));
    table
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn exec_and_exit_are_tracked() {
    let table = live_table();
    let mut child = Command::new("sh")
        .args(["-c", "read x; exec sleep 30"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    // spawn returns once the child has forked, not once it has exec'd sh: look it up only
    // when /proc shows the shell's command line (a CI run looked in between).
    wait_until("the shell to have started", T, || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .filter(|c| c.windows(6).any(|w| w == b"read x"))
    });
    let before = table.lookup(pid).expect("identify the shell");
    assert!(
        before.exe.ends_with("sh") || before.exe.ends_with("dash"),
        "{before:?}"
    );
    assert!(before.cmdline.contains("read x"), "{before:?}");
    // The shell replaces itself with sleep: the exec event refreshes the entry, without any
    // lookup reading /proc.
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write");
    let after = wait_until("the exec to reach the table", T, || {
        table.peek(pid).filter(|id| id.exe.ends_with("/sleep"))
    });
    assert_eq!(
        after.start_time, before.start_time,
        "exec keeps the process"
    );
    assert_eq!(after.cmdline, "sleep 30");
    // Exit removes it.
    kill(&mut child);
    wait_until("the exit to reach the table", T, || {
        table.peek(pid).is_none().then_some(())
    });
    // (Another test may already have been handed the pid again: compare identities.)
    assert!(
        !table.is_current(pid, before.start_time),
        "a dead process has no identity"
    );
}

/// Spawns `cmd` so that it gets `pid`, by setting the last allocated pid just below it.
/// Other processes may fork in between, so this retries.
fn spawn_with_pid(pid: u32, cmd: &[&str]) -> Child {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("write ns_last_pid (needs root in the initial pid namespace)");
        let mut c = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn");
        if c.id() == pid {
            return c;
        }
        kill(&mut c);
    }
    panic!("could not get pid {pid} back");
}

fn reuse(table: &ProcTable) {
    let mut a = Command::new("sleep").arg("30").spawn().expect("spawn a");
    let pid = a.id();
    let old: Arc<ProcIdentity> = table.lookup(pid).expect("identify a");
    assert!(old.exe.ends_with("/sleep"), "{old:?}");
    // Live long enough for the start time (clock ticks) to differ from the successor's.
    std::thread::sleep(Duration::from_millis(50));
    kill(&mut a);
    let mut b = spawn_with_pid(pid, &["cat"]);
    let new = table.lookup(pid).expect("identify b");
    assert_eq!(new.pid, old.pid, "the pid was reused");
    assert!(
        new.exe.ends_with("/cat"),
        "the new process is not the old one: {new:?}"
    );
    assert!(
        new.start_time > old.start_time,
        "start times tell them apart: {} vs {}",
        new.start_time,
        old.start_time
    );
    assert!(
        !table.is_current(pid, old.start_time),
        "the old identity is gone"
    );
    assert!(table.is_current(pid, new.start_time));
    kill(&mut b);
}

#[test]
fn reused_pid_is_not_confused_with_tracking() {
    let table = live_table();
    reuse(&table);
}

#[test]
fn reused_pid_is_not_confused_without_tracking() {
    // No event source: every lookup checks the start time against /proc.
    let table = ProcTable::new(false);
    assert!(!table.is_live());
    reuse(&table);
}
