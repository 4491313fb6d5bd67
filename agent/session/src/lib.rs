//! Focus tracking: which application has the keyboard right now, so that every input event
//! can be attributed to a process.
//!
//! # Shape
//! A *tracker* talks to one display server and reports the focused window as a raw
//! [`WindowReport`] (a pid, whether the server vouches for it, app id / WM_CLASS / title):
//! [`x11`] (`_NET_ACTIVE_WINDOW` + X-Resource), [`sway`] (i3/sway IPC), [`hyprland`]
//! (event socket + `j/activewindow`), [`terminal`] (VTs), [`gnome`] and [`kde`] (a Shell
//! extension / KWin script reporting over the session bus). The *resolver*
//! in [`run`] turns reports into [`FocusInfo`] records: it looks the pid up in the process
//! table ([`crate::procs`]), follows a terminal emulator to the foreground program of its
//! pty ([`terminal`]), checks the process belongs to the session's user ([`session`]), drops
//! repeats, and sends each [`FocusInfo`] on a [`FocusTx`].
//!
//! Trackers are event-driven (PropertyNotify, IPC subscriptions, socket events): nothing
//! polls while the server can push changes. When a display server goes away the tracker
//! logs it, an `unknown` focus is sent (so no event is attributed to a window that may no
//! longer exist) and it reconnects with a capped exponential backoff; focus records resume
//! once the server is back.
//!
//! # Process model: a system service finding user sessions
//! The collector runs as a system service; display servers belong to user sessions. With
//! `tracker = "auto"` the collector follows logind: `/run/systemd/seats/<seat>` names the
//! seat's active session, `/run/systemd/sessions/<id>` gives its `UID`, `TYPE`
//! (x11/wayland/tty), `DISPLAY`, `DESKTOP`, `VTNR` and `LEADER`. From those:
//! - **X11**: connect to the session's `DISPLAY` (`/tmp/.X11-unix/X<n>`), authenticating
//!   with the MIT cookie from the user's Xauthority file: `focus.x11_xauthority` if set,
//!   else the first of `/run/user/UID/gdm/Xauthority`, `~USER/.Xauthority` that exists
//!   (root may read them; the collector needs no capability for it).
//! - **sway**: `focus.sway_socket` if set, else the newest `sway-ipc.UID.*.sock` in the
//!   session's runtime dir (`/run/user/UID`, or `focus.runtime_dir`), re-discovered on every
//!   reconnect because a restarted sway gets a new socket name (`SWAYSOCK`).
//! - **Hyprland**: `$XDG_RUNTIME_DIR/hypr/<HYPRLAND_INSTANCE_SIGNATURE>/.socket2.sock`
//!   (and `/tmp/hypr/…` for old versions); the signature is `focus.hyprland_signature` or
//!   the newest directory there.
//! - **GNOME / KDE**: a Shell extension / KWin script calls `org.imprint.Focus1.Report` on
//!   the collector, which owns `org.imprint.Focus` on the session's bus
//!   (`RUNTIME_DIR/bus`, or `focus.dbus_address`) and accepts reports only from the owner
//!   of `org.gnome.Shell` / `org.kde.KWin` (see [`gnome`], [`kde`]).
//! - **tty**: the active VT's session leader, followed to its foreground process group.
//!
//! When the seat's active session changes (fast user switching) the trackers are restarted
//! for the new session and an `unknown` focus is sent in between. For tests and unusual
//! setups the connection can be given explicitly in [`FocusConfig`].

pub mod atspi;
pub mod gnome;
pub mod hyprland;
pub mod kde;
pub mod lock;
pub mod notice;
pub mod pointer;
pub mod reporter;
pub mod session;
pub mod settings;
pub mod sway;
pub mod terminal;
pub mod tty;
pub mod x11;

use imprint_procs::{ProcEvent, ProcIdentity, ProcTable};
use imprint_record::monotonic_now_ns;
use imprint_record::{FocusInfo, TtyMode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Where resolved focus changes go (the collector, or the session socket client).
pub type FocusTx = mpsc::Sender<Box<FocusInfo>>;

pub use imprint_config::focus::{FocusConfig, TrackerKind};

/// Why a tracker lost (or could not reach) its display server.
#[derive(Debug, thiserror::Error)]
pub enum FocusError {
    #[error("no {0} server found")]
    NotFound(&'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("x11: {0}")]
    X11(String),
    #[error("the collector stopped listening")]
    Closed,
}

impl FocusError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> FocusError {
        FocusError::Io {
            what: what.into(),
            source,
        }
    }
}

/// What a display server says has focus, before process identity is resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowReport {
    pub tracker: &'static str,
    /// 0 when the server does not know the client's pid.
    pub pid: u32,
    /// The server vouches for the pid (X-Resource, the compositor's socket credentials),
    /// rather than the client claiming it (`_NET_WM_PID`).
    pub pid_verified: bool,
    /// Wayland app id / desktop file id, as the server reports it.
    pub app_id: String,
    /// X11 WM_CLASS (`instance.class`) or the compositor's class.
    pub wm_class: String,
    /// Only filled when titles are enabled.
    pub title: String,
    /// The window's rectangle in screen coordinates, when the server tells it.
    pub rect: imprint_record::WindowRect,
}

/// A tracker's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// This window has focus.
    Window(WindowReport),
    /// Nothing has focus (an empty workspace, the desktop).
    NoWindow { tracker: &'static str },
    /// The session whose input this is from now on (its uid is enforced); `None` when
    /// trackers were configured explicitly.
    Session(Option<session::Session>),
    /// The session's active keyboard layout changed (`de`, `us(intl)`; empty: not known).
    Keymap(String),
    /// The display server went away or could not be reached.
    Lost {
        tracker: &'static str,
        reason: String,
    },
}

/// Where trackers send reports.
pub type ReportTx = mpsc::Sender<Report>;

/// Sends `report`; `Err(Closed)` when the resolver has gone.
pub(crate) async fn send(tx: &ReportTx, report: Report) -> Result<(), FocusError> {
    tx.send(report).await.map_err(|_| FocusError::Closed)
}

/// Runs focus tracking until the collector drops its receiver. Never fails: a missing or
/// lost display server is logged, reported as an `unknown` focus, and retried with backoff.
///
/// Call it as `tokio::spawn(imprint::focus::run(cfg.focus.clone(), tx.clone()))`.
pub async fn run(cfg: FocusConfig, tx: FocusTx) {
    if cfg.tracker == TrackerKind::None {
        tracing::info!("focus tracking is off: events carry focus 0 (unknown)");
        return;
    }
    let table = ProcTable::new(cfg.cmdline);
    let procs_task = table.spawn_tracking();
    let (rtx, rrx) = mpsc::channel(64);
    let sup = tokio::spawn(session::supervise(cfg.clone(), rtx));
    Resolver::new(cfg, table.clone(), tx).run(rrx).await;
    sup.abort();
    procs_task.abort();
}

/// Runs one explicitly chosen tracker (no logind), reporting into `tx`, reconnecting with
/// backoff until `tx` closes. Used by [`session::supervise`] and by tests.
pub async fn run_tracker(
    kind: TrackerKind,
    cfg: FocusConfig,
    session: Option<session::Session>,
    tx: ReportTx,
) {
    let tracker = kind.as_str();
    let max = Duration::from_millis(cfg.max_backoff_ms.max(100));
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        let res = match kind {
            TrackerKind::X11 => x11::run(&cfg, session.as_ref(), &tx).await,
            TrackerKind::Sway => sway::run(&cfg, session.as_ref(), &tx).await,
            TrackerKind::Hyprland => hyprland::run(&cfg, session.as_ref(), &tx).await,
            TrackerKind::Tty => terminal::run_vt(&cfg, session.as_ref(), &tx).await,
            TrackerKind::Gnome => gnome::run(&cfg, session.as_ref(), &tx).await,
            TrackerKind::Kde => kde::run(&cfg, session.as_ref(), &tx).await,
            TrackerKind::Auto | TrackerKind::None => return,
        };
        let err = match res {
            Ok(()) | Err(FocusError::Closed) => return,
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(5) {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!(tracker, error = %err, retry_ms = backoff.as_millis() as u64, "focus tracker lost its display server");
        if send(
            &tx,
            Report::Lost {
                tracker,
                reason: err.to_string(),
            },
        )
        .await
        .is_err()
        {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max);
    }
}

/// The terminal currently focused, so its foreground program can be re-checked when
/// processes come and go.
struct FocusedTerminal {
    report: WindowReport,
    terminal: Arc<ProcIdentity>,
    foreground: u32,
}

/// Turns reports into focus records.
pub struct Resolver {
    cfg: FocusConfig,
    table: Arc<ProcTable>,
    tx: FocusTx,
    last: Option<FocusInfo>,
    terminal: Option<FocusedTerminal>,
    session: Option<session::Session>,
    /// The active keyboard layout, as the display server last said.
    keymap: String,
}

impl Resolver {
    pub fn new(cfg: FocusConfig, table: Arc<ProcTable>, tx: FocusTx) -> Resolver {
        Resolver {
            cfg,
            table,
            tx,
            last: None,
            terminal: None,
            session: None,
            keymap: String::new(),
        }
    }

    /// Consumes reports until either side closes.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Report>) {
        let mut procs = self.table.subscribe();
        // A one-shot re-check after a foreground program exits: its shell takes the
        // terminal back only after it has reaped the child.
        let mut recheck: Option<tokio::time::Instant> = None;
        let poll = Duration::from_millis(self.cfg.tty_poll_ms.max(10));
        loop {
            let sleep_until = recheck
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(24 * 3600));
            let on_terminal = self.last.as_ref().is_some_and(is_terminal_program);
            tokio::select! {
                () = tokio::time::sleep(poll), if on_terminal => {
                    if self.poll_terminal().await.is_err() {
                        return;
                    }
                }
                r = rx.recv() => match r {
                    Some(r) => {
                        if self.handle(r).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                ev = procs.recv(), if self.terminal.is_some() => {
                    let interesting = match ev {
                        Ok(ProcEvent::Exec { .. }) | Ok(ProcEvent::Exit { .. }) | Ok(ProcEvent::Sid { .. }) => true,
                        Ok(_) => false,
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => {
                            procs = self.table.subscribe();
                            false
                        }
                    };
                    if interesting {
                        if self.recheck_terminal().await.is_err() {
                            return;
                        }
                        recheck = Some(tokio::time::Instant::now() + Duration::from_millis(50));
                    }
                }
                () = tokio::time::sleep_until(sleep_until), if recheck.is_some() => {
                    recheck = None;
                    if self.recheck_terminal().await.is_err() {
                        return;
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }

    /// The session whose input this is (its uid is enforced).
    pub fn set_session(&mut self, s: Option<session::Session>) {
        self.session = s;
    }

    async fn handle(&mut self, r: Report) -> Result<(), FocusError> {
        match r {
            Report::Window(w) => {
                let info = self.resolve(&w);
                self.emit(info).await
            }
            Report::NoWindow { tracker } => {
                self.terminal = None;
                self.emit(self.unknown(tracker)).await
            }
            Report::Lost { tracker, .. } => {
                self.terminal = None;
                self.emit(self.unknown(tracker)).await
            }
            Report::Session(s) => {
                self.session = s;
                Ok(())
            }
            Report::Keymap(k) => {
                self.keymap = k;
                match self.last.clone() {
                    // The same focus, typed with another layout: a new context for policy.
                    Some(last) if !last.unknown => self.emit(last).await,
                    _ => Ok(()),
                }
            }
        }
    }

    fn unknown(&self, tracker: &str) -> FocusInfo {
        FocusInfo {
            tracker: tracker.to_owned(),
            unknown: true,
            session: self.session_id(),
            seat: self.seat(),
            ..FocusInfo::default()
        }
    }

    fn session_id(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.id.clone())
            .unwrap_or_default()
    }

    fn seat(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.seat.clone())
            .unwrap_or_default()
    }

    /// Builds the record for a window report.
    pub fn resolve(&mut self, w: &WindowReport) -> FocusInfo {
        self.terminal = None;
        let mut info = FocusInfo {
            tracker: w.tracker.to_owned(),
            pid: w.pid,
            pid_verified: w.pid_verified,
            wm_class: w.wm_class.clone(),
            app_id: w.app_id.clone(),
            title: if self.cfg.titles {
                w.title.clone()
            } else {
                String::new()
            },
            session: self.session_id(),
            seat: self.seat(),
            window: w.rect,
            ..FocusInfo::default()
        };
        let id = match self.table.lookup(w.pid) {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(pid = w.pid, error = %e, "focused process not identified");
                return info;
            }
        };
        // Never attribute one user's input to another user's application.
        if let Some(s) = &self.session {
            if id.uid != s.uid {
                tracing::warn!(pid = w.pid, uid = id.uid, session = %s.id, session_uid = s.uid,
                    "focused window belongs to another user: focus recorded as unknown");
                return self.unknown(w.tracker);
            }
        }
        fill_identity(&mut info, &id);
        if self.cfg.follow_terminals && terminal::is_terminal(&id, &self.cfg.terminals) {
            // With no shell yet (a terminal focused as it starts), process events will
            // trigger a re-check once one has the pty.
            let fg = terminal::foreground_of(&id);
            if let Some(fg) = fg {
                self.attribute_to_foreground(&mut info, &id, fg);
            }
            self.terminal = Some(FocusedTerminal {
                report: w.clone(),
                terminal: id,
                foreground: fg.unwrap_or(0),
            });
        }
        info
    }

    fn attribute_to_foreground(&self, info: &mut FocusInfo, term: &ProcIdentity, fg: u32) {
        if fg == term.pid {
            return;
        }
        if let Ok(p) = self.table.lookup(fg) {
            info.terminal_pid = term.pid;
            info.terminal_exe = term.exe.clone();
            fill_identity(info, &p);
            // The program runs as whoever it runs as (sudo …); the pid is the kernel's.
            info.pid_verified = true;
        }
    }

    async fn recheck_terminal(&mut self) -> Result<(), FocusError> {
        let Some(t) = &self.terminal else {
            return Ok(());
        };
        if !self.table.is_current(t.terminal.pid, t.terminal.start_time) {
            return Ok(());
        }
        let fg = terminal::foreground_of(&t.terminal);
        if fg.is_none() || fg == Some(t.foreground) {
            return Ok(());
        }
        let report = t.report.clone();
        let info = self.resolve(&report);
        self.emit(info).await
    }

    /// Re-reads the focused terminal: its foreground program, then its tty mode.
    async fn poll_terminal(&mut self) -> Result<(), FocusError> {
        self.recheck_terminal().await?;
        let Some(last) = &self.last else {
            return Ok(());
        };
        let mode = tty::tty_mode(last.pid);
        if mode != last.tty {
            let mut info = last.clone();
            info.tty = mode;
            tracing::debug!(pid = info.pid, tty = mode.as_str(), "terminal mode changed");
            self.emit(info).await?;
        }
        Ok(())
    }

    async fn emit(&mut self, mut info: FocusInfo) -> Result<(), FocusError> {
        if !info.unknown {
            info.keymap = self.keymap.clone();
        }
        if is_terminal_program(&info) && info.tty == TtyMode::None {
            info.tty = tty::tty_mode(info.pid);
        }
        if let Some(last) = &self.last {
            if same_focus(last, &info) {
                return Ok(());
            }
        }
        info.mono_ns = monotonic_now_ns();
        self.last = Some(info.clone());
        tracing::debug!(tracker = %info.tracker, pid = info.pid, exe = %info.exe, unknown = info.unknown, "focus");
        self.tx
            .send(Box::new(info))
            .await
            .map_err(|_| FocusError::Closed)
    }
}

fn fill_identity(info: &mut FocusInfo, id: &ProcIdentity) {
    info.pid = id.pid;
    info.start_time = id.start_time;
    info.exe = id.exe.clone();
    info.uid = id.uid;
    info.unit = id.unit.clone();
    info.cgroup = id.cgroup.clone();
    info.cmdline = id.cmdline.clone();
    // The sandbox's or launcher's id is the kernel's word; the server's is the client's.
    if !id.app_id.is_empty() {
        info.app_id = id.app_id.clone();
    }
}

/// Programs in a terminal emulator, and on a text console.
fn is_terminal_program(f: &FocusInfo) -> bool {
    !f.unknown && (f.terminal_pid != 0 || f.tracker == "tty")
}

fn same_focus(a: &FocusInfo, b: &FocusInfo) -> bool {
    let mut a = a.clone();
    a.mono_ns = b.mono_ns;
    a.seq = b.seq;
    a == *b
}
