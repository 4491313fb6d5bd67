//! Lock state: is a screen locker up in this session? Input typed while it is (the password
//! that unlocks it, above all) is secure input and is capped like any other password.
//!
//! Two event-driven watchers send a [`LockState`] when the state changes (and once at start):
//!
//! - [`watch_x11`] watches the X display itself. Many X lockers (i3lock, xsecurelock, slock,
//!   xtrlock) never take EWMH focus: they map an override-redirect window over the screen and
//!   grab the keyboard, so `_NET_ACTIVE_WINDOW` keeps naming the window that had focus before
//!   and the focus tracker alone would attribute the password to it.
//! - [`watch_logind`] follows logind's `LockedHint` of the session, which desktop environments
//!   (GNOME, KDE, light-locker, `xss-lock --transfer-sleep-lock` setups) set when they lock.
//!
//! # The X11 rule
//! The display is locked while at least one top-level window (a child of a root window) is
//!
//! 1. **mapped** and **override-redirect**: lockers bypass the window manager so that it can
//!    neither move them nor put anything above them; ordinary application windows are not
//!    override-redirect;
//! 2. **covering the root**: its rectangle (border included) covers at least 90% of the root
//!    window's area. Not all of it: xsecurelock's "obscurer" window is deliberately inset by
//!    one pixel on each side (so that compositors do not unredirect it), and draws its real
//!    windows into the Composite overlay window, which is not part of the window tree;
//! 3. **owned by a known locker** (`lockers`, [`DEFAULT_LOCKERS`] by default), compared
//!    case-insensitively with: the basename of `/proc/PID/exe` and `/proc/PID/comm` (15
//!    characters at most, so compared with the name's first 15) of the owning client, whose
//!    pid the X server reports through the X-Resource extension (`LOCAL_CLIENT_PID`, taken
//!    from the client's socket credentials); and either part of the window's `WM_CLASS`.
//!
//! `WM_CLASS` is the client's own claim, and is accepted anyway: the only thing a lie can do
//! is make the session look locked, which caps more input, never less (fail closed, DESIGN.md
//! principle 6). It is needed because the pid the server knows is that of the process that
//! *connected*: a locker that forks into the background afterwards (i3lock without `-n`)
//! shows a pid that has exited, and X servers without X-Resource show none.
//!
//! Not used:
//! - **A keyboard grab on its own.** Core X has no request that says who holds a grab; the
//!   only way to see one is to try `GrabKeyboard` and get `AlreadyGrabbed`, which, when it
//!   succeeds, steals the keyboard from the user for a moment. And grabs are common without
//!   any lock: open menus, drag and drop, xdotool, games, remote-desktop viewers. It would
//!   be a guess that disturbs the user, at the cost of a poll.
//! - **Any covering override-redirect window.** Fullscreen video players, presentation tools
//!   and screen savers that do not lock map those too; calling them locks would cap input
//!   the user has asked to record. A locker missing from the list is logged (at info level,
//!   with its pid and exe) when it maps such a window, so it can be added to `lockers`.
//!
//! Wayland lockers (swaylock, gtklock, hyprlock, waylock) use the compositor's session-lock
//! protocol and are invisible here; their names are in [`DEFAULT_LOCKERS`] for detectors that
//! look at processes. light-locker switches to the greeter's VT, which logind reports.
//!
//! Events: `SubstructureNotify` on every root (Map/Unmap/Destroy/Configure/ReparentNotify of
//! top-level windows, override-redirect ones included) and `StructureNotify` (the root
//! resized by RandR). The window tree is scanned once at start, after selecting the events,
//! so a locker already up is seen and none mapped meanwhile is missed. Nothing polls.
//!
//! # Errors
//! Either watcher returns `Ok(())` when the receiver of `tx` is dropped, and an error when its
//! connection fails; it does not reconnect. Until a watcher runs again, the caller must treat
//! the lock state as unknown, which (principle 6) records less, not more.

use crate::x11::{client_pid, connect, negotiate_xres, BorrowedFd};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use x11rb::connection::Connection;
use x11rb::errors::ReplyError;
use x11rb::protocol::xproto::{
    AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, GetWindowAttributesReply,
    MapState, Window,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use zbus::export::futures_core::Stream;
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection as BusConnection, Message, MessageStream};

/// Executable names of screen lockers, matched as described in the [module docs](self).
pub const DEFAULT_LOCKERS: &[&str] = &[
    "i3lock",
    "xsecurelock",
    "slock",
    "xtrlock",
    "xscreensaver",
    "light-locker",
    "swaylock",
    "gtklock",
    "hyprlock",
    "waylock",
];

/// Whether the session is locked, and who says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockState {
    pub locked: bool,
    /// What says so: `"x11:i3lock"` (the locker found on the display), `"x11"` (no locker on
    /// the display), `"logind"`.
    pub by: String,
}

/// Why a lock watcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("no X display: none given and DISPLAY is unset")]
    NoDisplay,
    #[error("x11 display {display}: {source}")]
    Connect {
        display: String,
        #[source]
        source: crate::FocusError,
    },
    #[error("x11: {0}")]
    X11(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("system bus: {what}: {source}")]
    Bus {
        what: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("logind ({LOGIN1}) is not on the system bus")]
    NoLogind,
    #[error("logind left or restarted on the system bus")]
    LogindGone,
    #[error("logind session {0} was removed")]
    SessionRemoved(String),
    #[error("the system bus closed the connection")]
    BusClosed,
}

fn xerr(e: impl std::fmt::Display) -> LockError {
    LockError::X11(e.to_string())
}

// ---------------------------------------------------------------------------------------
// X11
// ---------------------------------------------------------------------------------------

/// A root window and its size (which RandR may change).
#[derive(Clone, Copy, Debug)]
struct Root {
    window: Window,
    width: u16,
    height: u16,
}

/// Does the rectangle `x, y, width, height` (outer size: border included) cover at least 90%
/// of a `root_w` × `root_h` root window?
pub fn covers_root(root_w: u16, root_h: u16, x: i16, y: i16, width: u32, height: u32) -> bool {
    let (rw, rh) = (i64::from(root_w), i64::from(root_h));
    if rw == 0 || rh == 0 {
        return false;
    }
    let (x0, y0) = (i64::from(x), i64::from(y));
    let (x1, y1) = (x0 + i64::from(width), y0 + i64::from(height));
    let w = (x1.min(rw) - x0.max(0)).max(0);
    let h = (y1.min(rh) - y0.max(0)).max(0);
    w * h * 10 >= rw * rh * 9
}

/// Which of `lockers` owns a window, and how that was seen (`"exe"`, `"comm"`,
/// `"wm_class"`): `exe` is the owner's executable basename, `comm` its `/proc/PID/comm`,
/// `wm_class` the raw `WM_CLASS` property (`instance\0class\0`).
pub fn match_locker(
    lockers: &[String],
    exe: Option<&str>,
    comm: Option<&str>,
    wm_class: &[u8],
) -> Option<(String, &'static str)> {
    let find = |name: &str, comm: bool| {
        lockers.iter().find(|l| {
            if comm {
                // The kernel keeps the first 15 bytes of the name.
                let short: String = l.chars().take(15).collect();
                !name.is_empty() && name.eq_ignore_ascii_case(&short)
            } else {
                !name.is_empty() && name.eq_ignore_ascii_case(l)
            }
        })
    };
    if let Some(l) = exe.and_then(|e| find(e, false)) {
        return Some((l.clone(), "exe"));
    }
    if let Some(l) = comm.and_then(|c| find(c.trim_end(), true)) {
        return Some((l.clone(), "comm"));
    }
    wm_class
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .find_map(|p| find(&String::from_utf8_lossy(p), false))
        .map(|l| (l.clone(), "wm_class"))
}

/// The basename of `/proc/PID/exe` (without the ` (deleted)` of a replaced binary).
fn exe_name(pid: u32) -> Option<String> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = p.file_name()?.to_string_lossy().into_owned();
    Some(name.strip_suffix(" (deleted)").unwrap_or(&name).to_owned())
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// The Xauthority files to try: the given one, else `$XAUTHORITY`, else `~/.Xauthority`.
pub(crate) fn xauthority_files(given: Option<PathBuf>) -> Vec<PathBuf> {
    if let Some(p) = given {
        return vec![p];
    }
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("XAUTHORITY").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(home).join(".Xauthority"));
    }
    v
}

/// Watches X display `display` (by default `$DISPLAY`) for a screen locker (see the
/// [module docs](self) for the rule and why), authenticating with `xauthority` (by default
/// `$XAUTHORITY`, then `~/.Xauthority`). `lockers` are executable names; empty means
/// [`DEFAULT_LOCKERS`].
///
/// Sends the state found at start, then every change. Returns `Ok(())` when the receiver is
/// dropped, an error when the display cannot be reached or the connection fails.
pub async fn watch_x11(
    display: Option<String>,
    xauthority: Option<PathBuf>,
    lockers: Vec<String>,
    tx: mpsc::Sender<LockState>,
) -> Result<(), LockError> {
    let dpy = display
        .or_else(|| std::env::var("DISPLAY").ok())
        .filter(|d| !d.is_empty())
        .ok_or(LockError::NoDisplay)?;
    let lockers = if lockers.is_empty() {
        DEFAULT_LOCKERS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        lockers
    };
    let (conn, _screen) =
        connect(&dpy, &xauthority_files(xauthority)).map_err(|source| LockError::Connect {
            display: dpy.clone(),
            source,
        })?;
    let roots: Vec<Root> = conn
        .setup()
        .roots
        .iter()
        .map(|s| Root {
            window: s.root,
            width: s.width_in_pixels,
            height: s.height_in_pixels,
        })
        .collect();
    let has_res = negotiate_xres(&conn).map_err(xerr)?;
    if !has_res {
        tracing::warn!(
            display = %dpy,
            "X server lacks X-Resource: lockers are recognised by WM_CLASS only"
        );
    }
    // Events first, then the scan: a locker mapped in between is reported by an event.
    for r in &roots {
        conn.change_window_attributes(
            r.window,
            &ChangeWindowAttributesAux::new()
                .event_mask(EventMask::SUBSTRUCTURE_NOTIFY | EventMask::STRUCTURE_NOTIFY),
        )
        .map_err(xerr)?
        .check()
        .map_err(xerr)?;
    }
    tracing::info!(display = %dpy, xres = has_res, screens = roots.len(), lockers = ?lockers, "x11 lock watcher connected");

    // SAFETY: the connection (and so its socket) outlives `afd`, which is dropped first at
    // the end of this function; the fd number does not change while it is open.
    let afd = unsafe {
        AsyncFd::register_with_interest(BorrowedFd(conn.stream().as_raw_fd()), Interest::READABLE)
    }
    .map_err(|e| LockError::Io {
        what: "x11 socket".into(),
        source: e.into(),
    })?;

    let mut w = Watcher {
        conn: &conn,
        display: &dpy,
        roots,
        has_res,
        lockers,
        windows: BTreeMap::new(),
        sent: None,
    };
    let result = async {
        w.scan()?;
        loop {
            // Drain everything already read (replies to our requests may have buffered
            // events), then report once.
            loop {
                match conn.poll_for_event() {
                    Ok(Some(ev)) => w.on_event(ev)?,
                    Ok(None) => break,
                    Err(e) => return Err(xerr(e)),
                }
            }
            if !w.report(&tx).await {
                return Ok(());
            }
            conn.flush().map_err(xerr)?;
            tokio::select! {
                r = afd.readable() => match r {
                    Ok(mut g) => g.clear_ready(),
                    Err(e) => return Err(LockError::Io { what: "x11 socket".into(), source: e }),
                },
                () = tx.closed() => return Ok(()),
            }
        }
    }
    .await;
    drop(afd);
    if let Err(e) = &result {
        tracing::warn!(display = %dpy, error = %e, "x11 lock watcher lost its display");
    }
    result
}

struct Watcher<'a> {
    conn: &'a RustConnection,
    display: &'a str,
    roots: Vec<Root>,
    has_res: bool,
    lockers: Vec<String>,
    /// Mapped locker windows and the locker owning each.
    windows: BTreeMap<Window, String>,
    sent: Option<LockState>,
}

impl Watcher<'_> {
    fn root(&self, w: Window) -> Option<Root> {
        self.roots.iter().copied().find(|r| r.window == w)
    }

    fn state(&self) -> LockState {
        match self.windows.values().next() {
            Some(l) => LockState {
                locked: true,
                by: format!("x11:{l}"),
            },
            None => LockState {
                locked: false,
                by: "x11".into(),
            },
        }
    }

    /// Sends the state if it changed; false when the receiver is gone.
    async fn report(&mut self, tx: &mpsc::Sender<LockState>) -> bool {
        let now = self.state();
        if self.sent.as_ref() == Some(&now) {
            return true;
        }
        tracing::info!(display = %self.display, locked = now.locked, by = %now.by, "lock state");
        self.sent = Some(now.clone());
        tx.send(now).await.is_ok()
    }

    /// Every top-level window of every root (the attribute requests pipelined).
    fn scan(&mut self) -> Result<(), LockError> {
        self.windows.clear();
        for root in self.roots.clone() {
            let children = self
                .conn
                .query_tree(root.window)
                .map_err(xerr)?
                .reply()
                .map_err(xerr)?
                .children;
            let cookies = children
                .iter()
                .map(|&c| self.conn.get_window_attributes(c).map(|k| (c, k)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(xerr)?;
            for (win, cookie) in cookies {
                match cookie.reply() {
                    Ok(a) => self.check_attrs(win, &a)?,
                    Err(ReplyError::X11Error(_)) => {} // gone meanwhile
                    Err(e) => return Err(xerr(e)),
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event) -> Result<(), LockError> {
        match ev {
            Event::MapNotify(e) if self.root(e.event).is_some() => {
                if e.override_redirect {
                    self.check(e.window)?;
                } else {
                    self.forget(e.window);
                }
            }
            Event::UnmapNotify(e) if self.root(e.event).is_some() => self.forget(e.window),
            Event::DestroyNotify(e) if self.root(e.event).is_some() => self.forget(e.window),
            Event::ReparentNotify(e) if self.root(e.event).is_some() => {
                if self.root(e.parent).is_some() {
                    self.check(e.window)?;
                } else {
                    self.forget(e.window);
                }
            }
            Event::ConfigureNotify(e) if e.event == e.window => {
                // The root itself (StructureNotify): RandR changed its size.
                if let Some(r) = self.roots.iter_mut().find(|r| r.window == e.window) {
                    r.width = e.width;
                    r.height = e.height;
                    tracing::debug!(
                        root = e.window,
                        width = e.width,
                        height = e.height,
                        "root resized"
                    );
                    self.scan()?;
                }
            }
            Event::ConfigureNotify(e) => {
                let Some(root) = self.root(e.event) else {
                    return Ok(());
                };
                let bw = 2 * u32::from(e.border_width);
                let covering = covers_root(
                    root.width,
                    root.height,
                    e.x,
                    e.y,
                    u32::from(e.width) + bw,
                    u32::from(e.height) + bw,
                );
                if e.override_redirect && covering {
                    if !self.windows.contains_key(&e.window) {
                        self.check(e.window)?;
                    }
                } else {
                    self.forget(e.window);
                }
            }
            Event::Error(e) => {
                // A window vanishing between notify and query is normal.
                tracing::debug!(error = ?e, "x11 error event");
            }
            _ => {}
        }
        Ok(())
    }

    fn forget(&mut self, win: Window) {
        if let Some(l) = self.windows.remove(&win) {
            tracing::debug!(window = win, locker = %l, "locker window gone");
        }
    }

    /// Re-evaluates `win` from its current attributes.
    fn check(&mut self, win: Window) -> Result<(), LockError> {
        match self.conn.get_window_attributes(win).map_err(xerr)?.reply() {
            Ok(a) => self.check_attrs(win, &a),
            Err(ReplyError::X11Error(_)) => {
                self.forget(win);
                Ok(())
            }
            Err(e) => Err(xerr(e)),
        }
    }

    fn check_attrs(&mut self, win: Window, a: &GetWindowAttributesReply) -> Result<(), LockError> {
        if !a.override_redirect || a.map_state != MapState::VIEWABLE {
            self.forget(win);
            return Ok(());
        }
        let g = match self.conn.get_geometry(win).map_err(xerr)?.reply() {
            Ok(g) => g,
            Err(ReplyError::X11Error(_)) => {
                self.forget(win);
                return Ok(());
            }
            Err(e) => return Err(xerr(e)),
        };
        let Some(root) = self.root(g.root) else {
            self.forget(win);
            return Ok(());
        };
        let bw = 2 * u32::from(g.border_width);
        if !covers_root(
            root.width,
            root.height,
            g.x,
            g.y,
            u32::from(g.width) + bw,
            u32::from(g.height) + bw,
        ) {
            self.forget(win);
            return Ok(());
        }
        let pid = if self.has_res {
            self.xres_pid(win)?
        } else {
            None
        };
        let exe = pid.and_then(exe_name);
        let comm = pid.and_then(comm);
        let wm_class = self.wm_class(win)?;
        match match_locker(&self.lockers, exe.as_deref(), comm.as_deref(), &wm_class) {
            Some((locker, seen_by)) => {
                tracing::info!(window = win, pid = pid.unwrap_or(0), exe = exe.as_deref().unwrap_or(""),
                    locker = %locker, seen_by, "screen locker window mapped");
                self.windows.insert(win, locker);
            }
            None => {
                tracing::info!(window = win, pid = pid.unwrap_or(0), exe = exe.as_deref().unwrap_or(""),
                    wm_class = %String::from_utf8_lossy(&wm_class).replace('\0', " ").trim_end(),
                    "override-redirect window covers the screen but its owner is no known locker: not a lock (add it to lockers if it is one)");
                self.forget(win);
            }
        }
        Ok(())
    }

    /// The pid of the client owning `win`, as the X server knows it.
    fn xres_pid(&self, win: Window) -> Result<Option<u32>, LockError> {
        client_pid(self.conn, win).map_err(xerr)
    }

    fn wm_class(&self, win: Window) -> Result<Vec<u8>, LockError> {
        match self
            .conn
            .get_property(false, win, AtomEnum::WM_CLASS, AtomEnum::STRING, 0, 256)
            .map_err(xerr)?
            .reply()
        {
            Ok(r) => Ok(r.value),
            Err(ReplyError::X11Error(_)) => Ok(Vec::new()),
            Err(e) => Err(xerr(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// logind
// ---------------------------------------------------------------------------------------

const LOGIN1: &str = "org.freedesktop.login1";
const LOGIN1_PATH: &str = "/org/freedesktop/login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";
const SESSION_IFACE: &str = "org.freedesktop.login1.Session";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
const LOCKED_HINT: &str = "LockedHint";

/// What a message on the system bus means for the watched session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogindEvent {
    /// `LockedHint` changed to this value.
    LockedHint(bool),
    /// `LockedHint` was invalidated: read it again.
    Invalidated,
    /// `org.freedesktop.login1` changed owner (logind restarted or left).
    LogindGone,
    /// The session was removed.
    SessionRemoved,
}

/// Classifies one message: a `PropertiesChanged` of the session at `session_path`, the
/// manager's `SessionRemoved` for it, or `org.freedesktop.login1` changing hands. Signals
/// about the session count only when their sender is `logind` (logind's unique name, which
/// the bus daemon stamps and no other client can use); anything else is `None`.
pub fn classify_logind(msg: &Message, logind: &str, session_path: &str) -> Option<LogindEvent> {
    let hdr = msg.header();
    if hdr.message_type() != MessageType::Signal {
        return None;
    }
    let sender = hdr.sender().map(|s| s.as_str());
    let path = hdr.path().map(|p| p.as_str());
    let iface = hdr.interface().map(|i| i.as_str());
    let member = hdr.member().map(|m| m.as_str());
    if sender == Some(DBUS_NAME) && iface == Some(DBUS_NAME) && member == Some("NameOwnerChanged") {
        let (name, _old, new): (String, String, String) = msg.body().deserialize().ok()?;
        return (name == LOGIN1 && new != logind).then_some(LogindEvent::LogindGone);
    }
    if sender != Some(logind) {
        return None;
    }
    match (path, iface, member) {
        (Some(p), Some(PROPERTIES), Some("PropertiesChanged")) if p == session_path => {
            let (iface, changed, invalidated): (String, HashMap<String, OwnedValue>, Vec<String>) =
                msg.body().deserialize().ok()?;
            if iface != SESSION_IFACE {
                return None;
            }
            if let Some(v) = changed.get(LOCKED_HINT) {
                return match &**v {
                    Value::Bool(b) => Some(LogindEvent::LockedHint(*b)),
                    _ => Some(LogindEvent::Invalidated),
                };
            }
            invalidated
                .iter()
                .any(|p| p == LOCKED_HINT)
                .then_some(LogindEvent::Invalidated)
        }
        (Some(LOGIN1_PATH), Some(MANAGER), Some("SessionRemoved")) => {
            let (_id, path): (String, OwnedObjectPath) = msg.body().deserialize().ok()?;
            (path.as_str() == session_path).then_some(LogindEvent::SessionRemoved)
        }
        _ => None,
    }
}

/// The boolean in a `Properties.Get` reply (body `v`).
pub fn parse_bool_variant(msg: &Message) -> Option<bool> {
    let v: OwnedValue = msg.body().deserialize().ok()?;
    match &*v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn bus(what: &str) -> impl FnOnce(zbus::Error) -> LockError + '_ {
    move |source| LockError::Bus {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

async fn call<B>(
    conn: &BusConnection,
    dest: &str,
    path: &str,
    iface: &str,
    method: &str,
    body: &B,
) -> Result<Message, LockError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(dest), path, Some(iface), method, body)
        .await
        .map_err(bus(method))
}

async fn locked_hint(conn: &BusConnection, path: &str) -> Result<bool, LockError> {
    let reply = call(
        conn,
        LOGIN1,
        path,
        PROPERTIES,
        "Get",
        &(SESSION_IFACE, LOCKED_HINT),
    )
    .await?;
    parse_bool_variant(&reply).ok_or_else(|| LockError::Bus {
        what: "Get LockedHint".into(),
        source: Box::new(zbus::Error::Failure("LockedHint is not a boolean".into())),
    })
}

/// Watches logind's `LockedHint` of session `session_id` (an id such as `"2"`, or `"auto"`:
/// the caller's own session) on the system bus, sending it at start and on every
/// `PropertiesChanged`. Returns `Ok(())` when the receiver is dropped, an error when logind
/// is not there, restarts (resubscribe by calling again), the session is removed or the
/// bus connection fails.
///
/// Only the message parsing is unit-tested; this has not run against a real logind.
pub async fn watch_logind(
    session_id: String,
    tx: mpsc::Sender<LockState>,
) -> Result<(), LockError> {
    let conn = zbus::connection::Builder::system()
        .map_err(bus("connect"))?
        .method_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(bus("connect"))?;
    // The stream first: nothing sent to us from here on can be missed.
    let mut stream = MessageStream::from(&conn);
    let owner_rule = format!(
        "type='signal',sender='{DBUS_NAME}',interface='{DBUS_NAME}',member='NameOwnerChanged',arg0='{LOGIN1}'"
    );
    call(
        &conn,
        DBUS_NAME,
        DBUS_PATH,
        DBUS_NAME,
        "AddMatch",
        &(owner_rule.as_str(),),
    )
    .await?;
    let logind = match conn
        .call_method(
            Some(DBUS_NAME),
            DBUS_PATH,
            Some(DBUS_NAME),
            "GetNameOwner",
            &(LOGIN1,),
        )
        .await
    {
        Ok(r) => r
            .body()
            .deserialize::<String>()
            .map_err(bus("GetNameOwner"))?,
        Err(zbus::Error::MethodError(name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            return Err(LockError::NoLogind)
        }
        Err(e) => return Err(bus("GetNameOwner")(e)),
    };
    let path: OwnedObjectPath = call(
        &conn,
        LOGIN1,
        LOGIN1_PATH,
        MANAGER,
        "GetSession",
        &(session_id.as_str(),),
    )
    .await?
    .body()
    .deserialize()
    .map_err(bus("GetSession"))?;
    let path = path.as_str().to_owned();
    let props_rule = format!(
        "type='signal',sender='{LOGIN1}',path='{path}',interface='{PROPERTIES}',member='PropertiesChanged',arg0='{SESSION_IFACE}'"
    );
    let removed_rule = format!(
        "type='signal',sender='{LOGIN1}',path='{LOGIN1_PATH}',interface='{MANAGER}',member='SessionRemoved'"
    );
    for rule in [&props_rule, &removed_rule] {
        call(
            &conn,
            DBUS_NAME,
            DBUS_PATH,
            DBUS_NAME,
            "AddMatch",
            &(rule.as_str(),),
        )
        .await?;
    }
    tracing::info!(session = %session_id, %path, %logind, "logind lock watcher connected");

    let mut current = locked_hint(&conn, &path).await?;
    let state = |locked| LockState {
        locked,
        by: "logind".into(),
    };
    tracing::info!(session = %session_id, locked = current, by = "logind", "lock state");
    if tx.send(state(current)).await.is_err() {
        return Ok(());
    }
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
        let msg = tokio::select! {
            m = next => m,
            () = tx.closed() => return Ok(()),
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(bus("receive")(e)),
            None => return Err(LockError::BusClosed),
        };
        let locked = match classify_logind(&msg, &logind, &path) {
            None => continue,
            Some(LogindEvent::LockedHint(b)) => b,
            Some(LogindEvent::Invalidated) => locked_hint(&conn, &path).await?,
            Some(LogindEvent::LogindGone) => return Err(LockError::LogindGone),
            Some(LogindEvent::SessionRemoved) => return Err(LockError::SessionRemoved(session_id)),
        };
        if locked != current {
            current = locked;
            tracing::info!(session = %session_id, locked, by = "logind", "lock state");
            if tx.send(state(locked)).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn coverage() {
        assert!(covers_root(640, 480, 0, 0, 640, 480));
        // xsecurelock's obscurer: inset by one pixel.
        assert!(covers_root(640, 480, 1, 1, 638, 478));
        // Larger than the root, or spread over several monitors.
        assert!(covers_root(1920, 1080, -10, -10, 4000, 2000));
        assert!(!covers_root(640, 480, 0, 0, 484, 316));
        assert!(!covers_root(640, 480, 320, 0, 640, 480), "half off screen");
        assert!(!covers_root(640, 480, 700, 0, 640, 480));
        assert!(!covers_root(0, 0, 0, 0, 10, 10));
    }

    #[test]
    fn lockers_by_exe_comm_and_class() {
        let l = names(DEFAULT_LOCKERS);
        assert_eq!(
            match_locker(&l, Some("i3lock"), Some("i3lock"), b""),
            Some(("i3lock".into(), "exe"))
        );
        // A forked-away owner: only WM_CLASS is left.
        assert_eq!(
            match_locker(&l, None, None, b"obscurer\0xsecurelock\0"),
            Some(("xsecurelock".into(), "wm_class"))
        );
        assert_eq!(
            match_locker(&l, None, None, b"xscreensaver\0XScreenSaver\0"),
            Some(("xscreensaver".into(), "wm_class"))
        );
        assert_eq!(
            match_locker(&l, Some("xterm"), Some("xterm"), b"xterm\0XTerm\0"),
            None
        );
        assert_eq!(
            match_locker(&l, Some("i3lockx"), None, b""),
            None,
            "whole names only"
        );
        // comm keeps 15 bytes.
        let long = names(&["very-long-locker-name"]);
        assert_eq!(
            match_locker(&long, Some("other"), Some("very-long-locke\n"), b""),
            Some(("very-long-locker-name".into(), "comm"))
        );
        assert_eq!(match_locker(&l, Some(""), Some(""), b"\0\0"), None);
    }

    const PATH: &str = "/org/freedesktop/login1/session/_32";
    const LOGIND: &str = ":1.4";

    fn props_changed(
        sender: &str,
        path: &str,
        iface: &str,
        changed: HashMap<&str, Value<'_>>,
        invalidated: Vec<&str>,
    ) -> Message {
        Message::signal(path, PROPERTIES, "PropertiesChanged")
            .and_then(|b| b.sender(sender))
            .and_then(|b| b.build(&(iface, changed, invalidated)))
            .expect("build PropertiesChanged")
    }

    #[test]
    fn logind_properties_changed() {
        let hint = |b: bool| HashMap::from([(LOCKED_HINT, Value::from(b))]);
        let m = props_changed(LOGIND, PATH, SESSION_IFACE, hint(true), vec![]);
        assert_eq!(
            classify_logind(&m, LOGIND, PATH),
            Some(LogindEvent::LockedHint(true))
        );
        let m = props_changed(LOGIND, PATH, SESSION_IFACE, hint(false), vec![]);
        assert_eq!(
            classify_logind(&m, LOGIND, PATH),
            Some(LogindEvent::LockedHint(false))
        );
        // Another client claiming an unlock is ignored.
        let m = props_changed(":1.99", PATH, SESSION_IFACE, hint(false), vec![]);
        assert_eq!(classify_logind(&m, LOGIND, PATH), None);
        // Another session, another interface, another property.
        let m = props_changed(
            LOGIND,
            "/org/freedesktop/login1/session/c1",
            SESSION_IFACE,
            hint(true),
            vec![],
        );
        assert_eq!(classify_logind(&m, LOGIND, PATH), None);
        let m = props_changed(LOGIND, PATH, "org.example.Other", hint(true), vec![]);
        assert_eq!(classify_logind(&m, LOGIND, PATH), None);
        let idle = HashMap::from([("IdleHint", Value::from(true))]);
        let m = props_changed(LOGIND, PATH, SESSION_IFACE, idle, vec![]);
        assert_eq!(classify_logind(&m, LOGIND, PATH), None);
        // Invalidated, or of an unexpected type: read again.
        let m = props_changed(
            LOGIND,
            PATH,
            SESSION_IFACE,
            HashMap::new(),
            vec!["LockedHint"],
        );
        assert_eq!(
            classify_logind(&m, LOGIND, PATH),
            Some(LogindEvent::Invalidated)
        );
        let odd = HashMap::from([(LOCKED_HINT, Value::from(1u32))]);
        let m = props_changed(LOGIND, PATH, SESSION_IFACE, odd, vec![]);
        assert_eq!(
            classify_logind(&m, LOGIND, PATH),
            Some(LogindEvent::Invalidated)
        );
    }

    #[test]
    fn logind_owner_and_session_removal() {
        let owner = |new: &str| {
            Message::signal(DBUS_PATH, DBUS_NAME, "NameOwnerChanged")
                .and_then(|b| b.sender(DBUS_NAME))
                .and_then(|b| b.build(&(LOGIN1, LOGIND, new)))
                .expect("build NameOwnerChanged")
        };
        assert_eq!(
            classify_logind(&owner(""), LOGIND, PATH),
            Some(LogindEvent::LogindGone)
        );
        assert_eq!(
            classify_logind(&owner(":1.50"), LOGIND, PATH),
            Some(LogindEvent::LogindGone)
        );
        let removed = |sender: &str, path: &str| {
            let p = zbus::zvariant::ObjectPath::try_from(path).expect("object path");
            Message::signal(LOGIN1_PATH, MANAGER, "SessionRemoved")
                .and_then(|b| b.sender(sender))
                .and_then(|b| b.build(&("2", p)))
                .expect("build SessionRemoved")
        };
        assert_eq!(
            classify_logind(&removed(LOGIND, PATH), LOGIND, PATH),
            Some(LogindEvent::SessionRemoved)
        );
        assert_eq!(
            classify_logind(
                &removed(LOGIND, "/org/freedesktop/login1/session/c1"),
                LOGIND,
                PATH
            ),
            None
        );
        assert_eq!(classify_logind(&removed(":1.99", PATH), LOGIND, PATH), None);
    }

    #[test]
    fn get_reply_variant() {
        // A Properties.Get reply carries one variant; a signal with the same body stands in.
        let m = |v: Value<'_>| {
            Message::signal(PATH, PROPERTIES, "X")
                .and_then(|b| b.build(&(v,)))
                .expect("build")
        };
        assert_eq!(parse_bool_variant(&m(Value::from(true))), Some(true));
        assert_eq!(parse_bool_variant(&m(Value::from(false))), Some(false));
        assert_eq!(parse_bool_variant(&m(Value::from("yes"))), None);
    }
}
