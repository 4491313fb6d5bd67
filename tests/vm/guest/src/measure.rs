//! The overhead bench's measurement (`imprint-vm-guest measure`): what a capture tool's
//! processes cost while the load of `load.rs` runs, read from `/proc` by this one process so
//! that the measuring itself starts no process while a window is open (imprint follows
//! process starts, so a shell's `$(…)` or `sleep` would wake it and be counted against it).
//!
//! - CPU: `/proc/PID/task/*/schedstat`'s first field (on-CPU time, user and system) over
//!   every thread, plus the run time of every BPF program the process holds
//!   (`run_time_ns` in `/proc/PID/fdinfo/*`, kept while `kernel.bpf_stats_enabled` is 1).
//! - Wake-ups: voluntary and involuntary context switches of every thread.
//! - Peak RSS: `VmHWM`, summed over the processes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One reading of a set of processes.
#[derive(Clone, Copy, Default)]
struct Stat {
    cpu_ns: u64,
    bpf_ns: u64,
    wakeups: u64,
    hwm_kb: u64,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(key))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn stat(pids: &[u32]) -> Result<Stat> {
    let mut s = Stat::default();
    for pid in pids {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let status = read(&proc_dir.join("status"))?;
        s.hwm_kb += field(&status, "VmHWM:");
        let tasks = proc_dir.join("task");
        for task in std::fs::read_dir(&tasks).with_context(|| format!("{}", tasks.display()))? {
            let task = task?.path();
            // A thread can end between the listing and the read: it took its time with it.
            let Ok(sched) = std::fs::read_to_string(task.join("schedstat")) else {
                continue;
            };
            s.cpu_ns += sched
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if let Ok(st) = std::fs::read_to_string(task.join("status")) {
                s.wakeups += field(&st, "voluntary_ctxt_switches:")
                    + field(&st, "nonvoluntary_ctxt_switches:");
            }
        }
        let fds = proc_dir.join("fdinfo");
        for fd in std::fs::read_dir(&fds).with_context(|| format!("{}", fds.display()))? {
            if let Ok(info) = std::fs::read_to_string(fd?.path()) {
                s.bpf_ns += field(&info, "run_time_ns:");
            }
        }
    }
    Ok(s)
}

fn sizes(dir: &Path, suffix: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += sizes(&path, suffix);
        } else if path.to_string_lossy().ends_with(suffix) {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

/// Runs `phase` of the load in `load_dir` and waits for it to finish (10 minutes at most).
fn phase(load_dir: &Path, name: &str) -> Result<String> {
    let done = load_dir.join(format!("done-{name}"));
    let _ = std::fs::remove_file(&done);
    std::fs::write(load_dir.join(format!("go-{name}")), b"")
        .with_context(|| format!("starting phase {name}"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(text) = std::fs::read_to_string(&done) {
            if !text.is_empty() {
                return Ok(text.trim().to_owned());
            }
        }
        if Instant::now() > deadline {
            bail!("phase {name} did not finish within 10 minutes");
        }
        sleep(Duration::from_millis(50));
    }
}

/// What `measure` is told.
pub struct Plan {
    pub pids: Vec<u32>,
    pub load_dir: PathBuf,
    pub spool: Option<PathBuf>,
    pub idle: Duration,
    pub execs: u32,
    pub drain: Duration,
}

/// Settles, measures idle and process-start wake-ups, then the paced and the flood phases;
/// returns one line of `key=value`.
pub fn run(plan: &Plan) -> Result<String> {
    let pids = &plan.pids;
    let mut out = String::new();
    // Let what started the tool (and this process) be handled before any window opens.
    sleep(Duration::from_secs(2));
    let a = stat(pids)?;
    sleep(plan.idle);
    let b = stat(pids)?;
    let _ = write!(
        out,
        "idle_ms={} idle_wakeups={} idle_cpu_ns={}",
        plan.idle.as_millis(),
        b.wakeups - a.wakeups,
        (b.cpu_ns + b.bpf_ns) - (a.cpu_ns + a.bpf_ns)
    );
    // Process starts elsewhere, spread over the same window length.
    let gap = plan.idle / plan.execs.max(1);
    for _ in 0..plan.execs {
        let status = Command::new("/bin/busybox")
            .arg("true")
            .status()
            .context("starting /bin/busybox true")?;
        if !status.success() {
            bail!("busybox true failed: {status}");
        }
        sleep(gap);
    }
    let c = stat(pids)?;
    let _ = write!(
        out,
        " execs={} exec_wakeups={}",
        plan.execs,
        c.wakeups - b.wakeups
    );
    for name in ["paced", "flood"] {
        let before = stat(pids)?;
        let started = Instant::now();
        let done = phase(&plan.load_dir, name)?;
        let took = started.elapsed();
        sleep(plan.drain);
        let after = stat(pids)?;
        let _ = write!(
            out,
            " {name}_{} {name}_ms={} {name}_cpu_ns={} {name}_bpf_ns={} {name}_wakeups={}",
            done,
            took.as_millis(),
            after.cpu_ns - before.cpu_ns,
            after.bpf_ns - before.bpf_ns,
            after.wakeups - before.wakeups
        );
        if let Some(spool) = &plan.spool {
            let _ = write!(
                out,
                " {name}_open_bytes={} {name}_sealed_bytes={}",
                sizes(spool, ".open"),
                sizes(spool, ".sealed")
            );
        }
    }
    let end = stat(pids)?;
    let _ = write!(out, " hwm_kb={}", end.hwm_kb);
    Ok(out)
}
