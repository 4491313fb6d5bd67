//! Process identity: who a pid is, read from `/proc`, and a table of the processes the focus
//! tracker cares about, kept current by the kernel's exec/exit events (the netlink proc
//! connector, see [`connector`]) instead of rescanning `/proc`.
//!
//! A pid alone is not an identity: pids are reused. Every [`ProcIdentity`] carries the
//! process start time (field 22 of `/proc/PID/stat`, clock ticks since boot), and
//! `(pid, start_time)` names one process for the life of the machine.

pub mod cgroup;
pub mod connector;
pub mod logind;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// A process could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process is gone (or never existed).
    #[error("process {0} does not exist")]
    Gone(u32),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unexpected format")]
    Format { path: PathBuf },
    #[error("proc connector: {0}")]
    Connector(#[source] std::io::Error),
}

/// The fields of `/proc/PID/stat` that identity and terminal attribution need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// `comm`, at most 15 bytes, as the kernel keeps it.
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    /// The controlling terminal's device number (0: none).
    pub tty_nr: u32,
    /// The foreground process group of the controlling terminal (-1 as 0: none).
    pub tpgid: u32,
    /// Clock ticks since boot.
    pub start_time: u64,
}

/// Who a process is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcIdentity {
    pub pid: u32,
    pub start_time: u64,
    pub ppid: u32,
    pub comm: String,
    /// The executable's path (" (deleted)" kept when the file was replaced).
    pub exe: String,
    /// Real uid.
    pub uid: u32,
    /// The unified (v2) cgroup path, or the systemd v1 hierarchy's path.
    pub cgroup: String,
    /// The systemd unit (service or scope) the process lives in.
    pub unit: String,
    /// Flatpak, snap or desktop application id, where one is known.
    pub app_id: String,
    /// NUL-separated arguments joined with spaces; empty unless enabled.
    pub cmdline: String,
    pub tty_nr: u32,
    pub tpgid: u32,
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

fn read_proc(pid: u32, file: &str) -> Result<String, ProcError> {
    let path = proc_path(pid, file);
    std::fs::read(&path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|source| io_err(pid, path, source))
}

fn io_err(pid: u32, path: PathBuf, source: std::io::Error) -> ProcError {
    // ESRCH shows up when the process exits between open and read.
    if source.kind() == std::io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
        ProcError::Gone(pid)
    } else {
        ProcError::Io { path, source }
    }
}

/// Parses the text of `/proc/PID/stat`. `comm` may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|s| s.parse::<i64>().ok());
    Some(Stat {
        pid,
        comm,
        state: field(3)?.chars().next()?,
        ppid: u32::try_from(num(4)?).ok()?,
        pgrp: u32::try_from(num(5)?).ok()?,
        session: u32::try_from(num(6)?).ok()?,
        tty_nr: u32::try_from(num(7)?).unwrap_or(0),
        tpgid: u32::try_from(num(8)?).unwrap_or(0),
        start_time: u64::try_from(num(22)?).ok()?,
    })
}

/// Reads `/proc/PID/stat`.
pub fn read_stat(pid: u32) -> Result<Stat, ProcError> {
    let text = read_proc(pid, "stat")?;
    parse_stat(&text).ok_or(ProcError::Format {
        path: proc_path(pid, "stat"),
    })
}

/// The real uid from `/proc/PID/status`.
fn read_uid(pid: u32) -> Result<u32, ProcError> {
    let text = read_proc(pid, "status")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or(ProcError::Format {
            path: proc_path(pid, "status"),
        })
}

/// The application id a flatpak sandbox declares in `/.flatpak-info` (`[Application] name=`).
pub fn parse_flatpak_info(text: &str) -> Option<String> {
    let mut in_app = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_app = line == "[Application]";
        } else if in_app {
            if let Some(v) = line.strip_prefix("name=") {
                return Some(v.trim().to_owned());
            }
        }
    }
    None
}

/// Reads everything about `pid`. `with_cmdline` adds the command line (it can hold
/// secrets, so it is off unless configured). Reads are racy by nature: the result is
/// checked against the start time read first, so a pid reused mid-read is reported gone.
pub fn identify(pid: u32, with_cmdline: bool) -> Result<ProcIdentity, ProcError> {
    let stat = read_stat(pid)?;
    let exe = match std::fs::read_link(proc_path(pid, "exe")) {
        Ok(p) => p.to_string_lossy().into_owned(),
        // Kernel threads and zombies have no exe; that is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(pid, proc_path(pid, "exe"), e)),
    };
    let uid = read_uid(pid)?;
    let cg = cgroup::parse_proc_cgroup(&read_proc(pid, "cgroup").unwrap_or_default());
    let info = cgroup::classify(&cg);
    let mut app_id = info.app_id;
    if info.flatpak || app_id.is_empty() {
        // The sandbox's own declaration is authoritative for flatpak apps.
        if let Ok(text) = std::fs::read_to_string(proc_path(pid, "root/.flatpak-info")) {
            if let Some(id) = parse_flatpak_info(&text) {
                app_id = id;
            }
        }
    }
    let cmdline = if with_cmdline {
        read_proc(pid, "cmdline")
            .unwrap_or_default()
            .trim_end_matches('\0')
            .replace('\0', " ")
    } else {
        String::new()
    };
    // The pid must still name the process whose stat we read first.
    let again = read_stat(pid)?;
    if again.start_time != stat.start_time {
        return Err(ProcError::Gone(pid));
    }
    Ok(ProcIdentity {
        pid,
        start_time: stat.start_time,
        ppid: again.ppid,
        comm: again.comm,
        exe,
        uid,
        cgroup: cg,
        unit: info.unit,
        app_id,
        cmdline,
        tty_nr: again.tty_nr,
        tpgid: again.tpgid,
    })
}

/// A kernel process event (from the proc connector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new process (not a thread): `child` was forked by `parent`.
    Fork { parent: u32, child: u32 },
    /// `pid` replaced its program.
    Exec { pid: u32 },
    /// `pid` (a whole process, not a thread) exited.
    Exit { pid: u32 },
    /// `pid` changed its uid (setuid).
    Uid { pid: u32 },
    /// `pid` started a new session (setsid).
    Sid { pid: u32 },
    /// The kernel dropped events (socket buffer overrun): cached identities may be stale.
    Lost,
}

/// Identities of the processes that focus reports named, kept current by [`ProcEvent`]s.
///
/// The table is a cache, not a census: an entry is added the first time a pid is looked up,
/// refreshed on that pid's exec and removed on its exit, so a hit costs one read of
/// `/proc/PID/stat` (to see that the pid was not reused) and nothing ever rescans `/proc`.
/// While no event source is live, every lookup reads `/proc` again.
pub struct ProcTable {
    entries: Mutex<HashMap<u32, Arc<ProcIdentity>>>,
    with_cmdline: bool,
    live: AtomicBool,
    events: broadcast::Sender<ProcEvent>,
}

impl ProcTable {
    /// An empty table; `with_cmdline` adds command lines to identities.
    pub fn new(with_cmdline: bool) -> Arc<ProcTable> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(ProcTable {
            entries: Mutex::new(HashMap::new()),
            with_cmdline,
            live: AtomicBool::new(false),
            events,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<ProcIdentity>>> {
        // A poisoned lock only means a panic elsewhere; the map itself is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether exec/exit events are keeping the table current.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// The identity of `pid` now: from the table when events keep it current, else from
    /// `/proc` (and then remembered for when events flow).
    pub fn lookup(&self, pid: u32) -> Result<Arc<ProcIdentity>, ProcError> {
        if pid == 0 {
            return Err(ProcError::Gone(0));
        }
        if self.is_live() {
            if let Some(id) = self.peek(pid) {
                // Events arrive after the fact: the exit of the old holder of a reused pid can
                // still be queued. One stat read tells the two apart (found by CI).
                match read_stat(pid) {
                    Ok(stat) if stat.start_time == id.start_time => return Ok(id),
                    Ok(_) => {}
                    Err(e) => {
                        self.map().remove(&pid);
                        return Err(e);
                    }
                }
            }
        }
        // No events (or not cached): read /proc. Without events a cached entry could miss an
        // exec (same pid and start time, new program), so it is never trusted.
        let id = Arc::new(identify(pid, self.with_cmdline)?);
        self.map().insert(pid, id.clone());
        Ok(id)
    }

    /// The table's entry for `pid`, without reading `/proc`.
    pub fn peek(&self, pid: u32) -> Option<Arc<ProcIdentity>> {
        self.map().get(&pid).cloned()
    }

    /// Whether the process `(pid, start_time)` is still the one running under `pid`.
    pub fn is_current(&self, pid: u32, start_time: u64) -> bool {
        match self.lookup(pid) {
            Ok(id) => id.start_time == start_time,
            Err(_) => false,
        }
    }

    /// How many identities the table holds.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscribes to the events the table applies (for terminal foreground re-checks).
    pub fn subscribe(&self) -> broadcast::Receiver<ProcEvent> {
        self.events.subscribe()
    }

    /// Applies one kernel event.
    pub fn apply(&self, ev: ProcEvent) {
        match ev {
            ProcEvent::Exec { pid } | ProcEvent::Uid { pid } | ProcEvent::Sid { pid } => {
                let known = self.map().contains_key(&pid);
                if known {
                    match identify(pid, self.with_cmdline) {
                        Ok(id) => {
                            self.map().insert(pid, Arc::new(id));
                        }
                        Err(_) => {
                            self.map().remove(&pid);
                        }
                    }
                }
            }
            ProcEvent::Exit { pid } => {
                self.map().remove(&pid);
            }
            ProcEvent::Lost => {
                tracing::warn!("proc connector lost events: process table cleared");
                self.map().clear();
            }
            ProcEvent::Fork { .. } => {}
        }
        // Nobody listening is fine.
        let _ = self.events.send(ev);
    }

    /// Keeps the table current from the proc connector until the connector fails; then the
    /// table falls back to checking start times on every lookup. Returns the error.
    pub async fn track(self: Arc<Self>) -> ProcError {
        let mut conn = match connector::ProcConnector::open() {
            Ok(c) => c,
            Err(e) => return e,
        };
        // Entries cached before events flowed may be stale.
        self.map().clear();
        self.live.store(true, Ordering::Relaxed);
        tracing::info!("process table kept current by the proc connector");
        let mut batch = Vec::with_capacity(64);
        let err = loop {
            batch.clear();
            if let Err(e) = conn.recv(&mut batch).await {
                break e;
            }
            for ev in batch.drain(..) {
                self.apply(ev);
            }
        };
        self.live.store(false, Ordering::Relaxed);
        tracing::warn!(error = %err, "proc connector stopped: falling back to start-time checks");
        err
    }

    /// Starts [`ProcTable::track`] on the current tokio runtime.
    pub fn spawn_tracking(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let table = self.clone();
        tokio::spawn(async move {
            let _ = table.track().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let text = "4242 (a) b (c)) S 1 4242 4242 34817 4250 4194304 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n";
        let s = parse_stat(text).expect("parse");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.tty_nr, 34817);
        assert_eq!(s.tpgid, 4250);
        assert_eq!(s.start_time, 987654);
        let none = "7 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 3 0 0\n";
        assert_eq!(parse_stat(none).expect("parse").tpgid, 0);
    }

    #[test]
    fn flatpak_info() {
        let text = "[Application]\nname=org.mozilla.firefox\nruntime=runtime/org.freedesktop.Platform/x86_64/23.08\n\n[Instance]\ninstance-id=1\n";
        assert_eq!(
            parse_flatpak_info(text).as_deref(),
            Some("org.mozilla.firefox")
        );
        assert_eq!(parse_flatpak_info("[Instance]\nname=x\n"), None);
    }

    #[test]
    fn identify_self() {
        let me = std::process::id();
        let id = identify(me, true).expect("identify self");
        assert_eq!(id.pid, me);
        assert!(id.start_time > 0);
        assert!(!id.exe.is_empty());
        assert!(!id.cmdline.is_empty());
        assert!(identify(me, false).expect("again").cmdline.is_empty());
        assert!(matches!(
            identify(0x3fff_fff0, false),
            Err(ProcError::Gone(_))
        ));
    }
}
