//! X11: `_NET_ACTIVE_WINDOW` on the root window, watched with PropertyNotify. The pid comes
//! from the X-Resource extension (`XResQueryClientIds` with `LOCAL_CLIENT_PID`: the server
//! read it from the client's socket credentials); `_NET_WM_PID` is the client's own claim and
//! is only used, marked unverified, when the server cannot say (remote clients, no XRes).

use super::session::Session;
use super::{send, FocusConfig, FocusError, Report, ReportTx, WindowReport};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::errors::ReplyError;
use x11rb::protocol::res::{self, ClientIdMask, ClientIdSpec};
use x11rb::protocol::xkb;
use x11rb::protocol::xproto::{
    self, Atom, AtomEnum, ChangeWindowAttributesAux, ConnectionExt as _, EventMask, Window,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::{DefaultStream, RustConnection};

const TRACKER: &str = "x11";

fn xerr(e: impl std::fmt::Display) -> FocusError {
    FocusError::X11(e.to_string())
}

/// One `MIT-MAGIC-COOKIE-1` entry of an Xauthority file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XauthEntry {
    pub family: u16,
    pub address: Vec<u8>,
    pub display: String,
    pub name: String,
    pub data: Vec<u8>,
}

/// Parses an Xauthority file (big-endian u16 lengths: family, address, number, name, data).
pub fn parse_xauthority(mut b: &[u8]) -> Vec<XauthEntry> {
    fn field<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
        let v = b.get(2..2 + len)?;
        *b = &b[2 + len..];
        Some(v)
    }
    let mut out = Vec::new();
    while b.len() >= 2 {
        let family = u16::from_be_bytes([b[0], b[1]]);
        b = &b[2..];
        let (Some(address), Some(number), Some(name), Some(data)) =
            (field(&mut b), field(&mut b), field(&mut b), field(&mut b))
        else {
            break;
        };
        out.push(XauthEntry {
            family,
            address: address.to_vec(),
            display: String::from_utf8_lossy(number).into_owned(),
            name: String::from_utf8_lossy(name).into_owned(),
            data: data.to_vec(),
        });
    }
    out
}

/// The cookie for local display `display` (FamilyLocal 256 or FamilyWild 65535).
fn cookie_for(entries: &[XauthEntry], display: u16) -> Option<(Vec<u8>, Vec<u8>)> {
    let want = display.to_string();
    entries
        .iter()
        .filter(|e| e.name == "MIT-MAGIC-COOKIE-1")
        .filter(|e| e.family == 256 || e.family == 65535)
        .find(|e| e.display.is_empty() || e.display == want)
        .map(|e| (e.name.clone().into_bytes(), e.data.clone()))
}

/// Where a session's Xauthority may live, most specific first.
fn xauthority_candidates(cfg: &FocusConfig, session: Option<&Session>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = &cfg.x11_xauthority {
        v.push(p.clone());
    }
    if let Some(s) = session {
        v.push(PathBuf::from(format!("/run/user/{}/gdm/Xauthority", s.uid)));
        if let Some(home) = &s.home {
            v.push(home.join(".Xauthority"));
        }
    }
    v
}

/// Connects to `display`, authenticating with the first cookie found.
/// Negotiates X-Resource 1.2 (QueryClientIds, which vouches for a client's pid) when the
/// server has it; false when it does not.
pub(crate) fn negotiate_xres(conn: &RustConnection) -> Result<bool, ReplyError> {
    if conn
        .extension_information(res::X11_EXTENSION_NAME)?
        .is_none()
    {
        return Ok(false);
    }
    res::query_version(conn, 1, 2)?.reply()?;
    Ok(true)
}

/// The pid of the client owning `win`, as the X server knows it (X-Resource); `None` when
/// it does not say, or the window is gone (BadWindow and friends).
pub(crate) fn client_pid(conn: &RustConnection, win: Window) -> Result<Option<u32>, ReplyError> {
    let spec = ClientIdSpec {
        client: win,
        mask: ClientIdMask::LOCAL_CLIENT_PID,
    };
    let reply = match res::query_client_ids(conn, &[spec])?.reply() {
        Ok(r) => r,
        Err(ReplyError::X11Error(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(reply
        .ids
        .iter()
        .filter(|id| id.spec.mask.contains(ClientIdMask::LOCAL_CLIENT_PID))
        .find_map(|id| id.value.first().copied())
        .filter(|&p| p != 0))
}

/// `win`'s rectangle on `root`: its size from GetGeometry, its origin from TranslateCoordinates
/// (GetGeometry's x/y are relative to a reparenting WM's frame). All zero if the window is gone.
pub(crate) fn window_rect(
    conn: &RustConnection,
    root: Window,
    win: Window,
) -> Result<imprint_record::WindowRect, FocusError> {
    let gone = imprint_record::WindowRect::default();
    let geo = match conn.get_geometry(win).map_err(xerr)?.reply() {
        Ok(g) => g,
        Err(ReplyError::X11Error(_)) => return Ok(gone),
        Err(e) => return Err(xerr(e)),
    };
    let at = match conn
        .translate_coordinates(win, root, 0, 0)
        .map_err(xerr)?
        .reply()
    {
        Ok(t) => t,
        Err(ReplyError::X11Error(_)) => return Ok(gone),
        Err(e) => return Err(xerr(e)),
    };
    Ok(imprint_record::WindowRect {
        x: at.dst_x.into(),
        y: at.dst_y.into(),
        width: geo.width.into(),
        height: geo.height.into(),
    })
}

pub(crate) fn connect(
    display: &str,
    xauth: &[PathBuf],
) -> Result<(RustConnection, usize), FocusError> {
    let parsed = x11rb::reexports::x11rb_protocol::parse_display::parse_display(Some(display))
        .map_err(xerr)?;
    let screen = usize::from(parsed.screen);
    let (name, data) = xauth
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find_map(|b| cookie_for(&parse_xauthority(&b), parsed.display))
        .unwrap_or_default();
    let mut last = None;
    for addr in parsed.connect_instruction() {
        match DefaultStream::connect(&addr) {
            Ok((stream, _peer)) => {
                let conn = RustConnection::connect_to_stream_with_auth_info(
                    stream,
                    screen,
                    name.clone(),
                    data.clone(),
                )
                .map_err(xerr)?;
                return Ok((conn, screen));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => FocusError::io(format!("x11 display {display}"), e),
        None => FocusError::NotFound("X11"),
    })
}

struct Atoms {
    active: Atom,
    xkb_rules: Atom,
    wm_pid: Atom,
    net_wm_name: Atom,
    utf8: Atom,
}

fn intern(conn: &RustConnection, name: &str) -> Result<Atom, FocusError> {
    Ok(conn
        .intern_atom(false, name.as_bytes())
        .map_err(xerr)?
        .reply()
        .map_err(xerr)?
        .atom)
}

/// The raw fd of the connection, borrowed for readiness only.
pub(crate) struct BorrowedFd(pub(crate) RawFd);
impl AsRawFd for BorrowedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Tracks the active window of one X display until the connection fails.
pub async fn run(
    cfg: &FocusConfig,
    session: Option<&Session>,
    tx: &ReportTx,
) -> Result<(), FocusError> {
    let dpy = cfg
        .x11_display
        .clone()
        .or_else(|| session.and_then(|s| s.display.clone()))
        .ok_or(FocusError::NotFound("X11 display"))?;
    let xauth = xauthority_candidates(cfg, session);
    let (conn, screen) = connect(&dpy, &xauth)?;
    let root = conn
        .setup()
        .roots
        .get(screen)
        .ok_or_else(|| FocusError::X11(format!("no screen {screen}")))?
        .root;
    let atoms = Atoms {
        active: intern(&conn, "_NET_ACTIVE_WINDOW")?,
        xkb_rules: intern(&conn, "_XKB_RULES_NAMES")?,
        wm_pid: intern(&conn, "_NET_WM_PID")?,
        net_wm_name: intern(&conn, "_NET_WM_NAME")?,
        utf8: intern(&conn, "UTF8_STRING")?,
    };
    let has_res = negotiate_xres(&conn).map_err(xerr)?;
    if !has_res {
        tracing::warn!(
            display = %dpy,
            "X server lacks X-Resource: pids come from _NET_WM_PID, unverified"
        );
    }
    conn.change_window_attributes(
        root,
        &ChangeWindowAttributesAux::new().event_mask(EventMask::PROPERTY_CHANGE),
    )
    .map_err(xerr)?
    .check()
    .map_err(xerr)?;
    // The keyboard group (the active layout) changes without any property change: follow it
    // with XKB state events. A server without XKB just reports no group.
    let has_xkb = xkb::use_extension(&conn, 1, 0)
        .ok()
        .and_then(|c| c.reply().ok())
        .is_some_and(|r| r.supported);
    if has_xkb {
        let _ = xkb::select_events(
            &conn,
            xkb::ID::USE_CORE_KBD.into(),
            // clear and select-all: none; the details select group changes of the state.
            xkb::EventType::from(0u16),
            xkb::EventType::from(0u16),
            xkb::MapPart::from(0u16),
            xkb::MapPart::from(0u16),
            &xkb::SelectEventsAux::new().state_notify(xkb::SelectEventsAuxStateNotify {
                affect_state: xkb::StatePart::GROUP_STATE,
                state_details: xkb::StatePart::GROUP_STATE,
            }),
        );
    }
    tracing::info!(display = %dpy, xres = has_res, xkb = has_xkb, "x11 focus tracker connected");

    // SAFETY: the connection (and so its socket) outlives `afd`, which is dropped first at
    // the end of this function; the fd number does not change while it is open.
    let afd = unsafe {
        AsyncFd::register_with_interest(BorrowedFd(conn.stream().as_raw_fd()), Interest::READABLE)
    }
    .map_err(|e| FocusError::io("x11 socket", e.into()))?;

    let mut tracker = Tracker {
        conn: &conn,
        atoms,
        root,
        has_res,
        titles: cfg.titles,
        current: None,
    };
    tracker.report_keymap(tx).await?;
    tracker.report_active(tx).await?;
    let result = loop {
        // Drain everything already read (replies to our requests may have buffered events).
        loop {
            match conn.poll_for_event() {
                Ok(Some(ev)) => {
                    tracker.on_event(ev, tx).await?;
                }
                Ok(None) => break,
                Err(e) => return Err(xerr(e)),
            }
        }
        if let Err(e) = conn.flush() {
            break Err(xerr(e));
        }
        match afd.readable().await {
            Ok(mut g) => g.clear_ready(),
            Err(e) => break Err(FocusError::io("x11 socket", e)),
        }
    };
    drop(afd);
    result
}

struct Tracker<'a> {
    conn: &'a RustConnection,
    atoms: Atoms,
    root: Window,
    has_res: bool,
    titles: bool,
    current: Option<Window>,
}

impl Tracker<'_> {
    async fn on_event(&mut self, ev: Event, tx: &ReportTx) -> Result<(), FocusError> {
        match ev {
            Event::PropertyNotify(p) if p.window == self.root && p.atom == self.atoms.active => {
                self.report_active(tx).await
            }
            Event::PropertyNotify(p) if p.window == self.root && p.atom == self.atoms.xkb_rules => {
                self.report_keymap(tx).await
            }
            Event::XkbStateNotify(_) => self.report_keymap(tx).await,
            Event::PropertyNotify(p)
                if self.titles
                    && Some(p.window) == self.current
                    && (p.atom == self.atoms.net_wm_name
                        || p.atom == u32::from(AtomEnum::WM_NAME)) =>
            {
                self.report_window(p.window, tx).await
            }
            Event::Error(e) => {
                // A window vanishing between notify and query is normal.
                tracing::debug!(error = ?e, "x11 error event");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The active layout: `_XKB_RULES_NAMES` (rules, model, layouts, variants, options) and
    /// the XKB group that selects one of the comma-separated layouts.
    async fn report_keymap(&mut self, tx: &ReportTx) -> Result<(), FocusError> {
        let reply = self
            .conn
            .get_property(
                false,
                self.root,
                self.atoms.xkb_rules,
                AtomEnum::STRING,
                0,
                1024,
            )
            .map_err(xerr)?
            .reply()
            .map_err(xerr)?;
        let group = xkb::get_state(self.conn, xkb::ID::USE_CORE_KBD.into())
            .ok()
            .and_then(|c| c.reply().ok())
            .map(|s| u8::from(s.group) as usize)
            .unwrap_or(0);
        let keymap = active_layout(&reply.value, group);
        send(tx, Report::Keymap(keymap)).await
    }

    async fn report_active(&mut self, tx: &ReportTx) -> Result<(), FocusError> {
        let reply = self
            .conn
            // Any type: EWMH says WINDOW, but some tools set CARDINAL; both are 32-bit ids.
            .get_property(false, self.root, self.atoms.active, AtomEnum::ANY, 0, 1)
            .map_err(xerr)?
            .reply()
            .map_err(xerr)?;
        let win = reply.value32().and_then(|mut v| v.next()).unwrap_or(0);
        if win == 0 {
            self.current = None;
            return send(tx, Report::NoWindow { tracker: TRACKER }).await;
        }
        if self.titles && self.current != Some(win) {
            // Title changes of the active window; errors (window gone) are harmless.
            let _ = self.conn.change_window_attributes(
                win,
                &ChangeWindowAttributesAux::new().event_mask(EventMask::PROPERTY_CHANGE),
            );
        }
        self.current = Some(win);
        self.report_window(win, tx).await
    }

    async fn report_window(&mut self, win: Window, tx: &ReportTx) -> Result<(), FocusError> {
        let mut w = WindowReport {
            tracker: TRACKER,
            ..WindowReport::default()
        };
        if self.has_res {
            if let Some(pid) = self.xres_pid(win)? {
                w.pid = pid;
                w.pid_verified = true;
            }
        }
        if w.pid == 0 {
            if let Some(pid) = self.card32(win, self.atoms.wm_pid)? {
                w.pid = pid;
                w.pid_verified = false;
            }
        }
        w.wm_class = self.wm_class(win)?;
        w.rect = self.rect(win)?;
        if self.titles {
            w.title = self.title(win)?;
        }
        send(tx, Report::Window(w)).await
    }

    fn rect(&self, win: Window) -> Result<imprint_record::WindowRect, FocusError> {
        window_rect(self.conn, self.root, win)
    }

    fn xres_pid(&self, win: Window) -> Result<Option<u32>, FocusError> {
        client_pid(self.conn, win).map_err(xerr)
    }

    fn property(
        &self,
        win: Window,
        atom: Atom,
        ty: impl Into<Atom>,
    ) -> Result<Option<xproto::GetPropertyReply>, FocusError> {
        match self
            .conn
            .get_property(false, win, atom, ty, 0, 1024)
            .map_err(xerr)?
            .reply()
        {
            Ok(r) => Ok(Some(r)),
            Err(x11rb::errors::ReplyError::X11Error(_)) => Ok(None),
            Err(e) => Err(xerr(e)),
        }
    }

    fn card32(&self, win: Window, atom: Atom) -> Result<Option<u32>, FocusError> {
        Ok(self
            .property(win, atom, AtomEnum::CARDINAL)?
            .and_then(|r| r.value32().and_then(|mut v| v.next()))
            .filter(|&p| p != 0))
    }

    fn wm_class(&self, win: Window) -> Result<String, FocusError> {
        let Some(r) = self.property(win, AtomEnum::WM_CLASS.into(), AtomEnum::STRING)? else {
            return Ok(String::new());
        };
        Ok(parse_wm_class(&r.value))
    }

    fn title(&self, win: Window) -> Result<String, FocusError> {
        if let Some(r) = self.property(win, self.atoms.net_wm_name, self.atoms.utf8)? {
            if !r.value.is_empty() {
                return Ok(String::from_utf8_lossy(&r.value).into_owned());
            }
        }
        Ok(self
            .property(win, AtomEnum::WM_NAME.into(), AtomEnum::ANY)?
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .unwrap_or_default())
    }
}

/// `WM_CLASS` is `instance\0class\0`; the class names the application ("XTerm").
pub fn parse_wm_class(value: &[u8]) -> String {
    let mut parts = value.split(|&b| b == 0).filter(|p| !p.is_empty());
    let instance = parts.next();
    let class = parts.next().or(instance);
    class
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

/// Whether an X display's socket exists (for discovery).
pub fn display_socket(display: &str) -> Option<PathBuf> {
    let n = display.strip_prefix(':')?.split('.').next()?;
    let p = Path::new("/tmp/.X11-unix").join(format!("X{n}"));
    p.exists().then_some(p)
}

/// The layout (with its variant, `de(nodeadkeys)`) that XKB group `group` selects from a
/// `_XKB_RULES_NAMES` value; empty when the server does not say.
pub fn active_layout(rules_names: &[u8], group: usize) -> String {
    let fields: Vec<&str> = rules_names
        .split(|b| *b == 0)
        .map(|f| std::str::from_utf8(f).unwrap_or(""))
        .collect();
    let pick = |i: usize| -> &str {
        fields
            .get(i)
            .and_then(|f| f.split(',').nth(group))
            .map(str::trim)
            .unwrap_or("")
    };
    let (layout, variant) = (pick(2), pick(3));
    match (layout, variant) {
        ("", _) => String::new(),
        (l, "") => l.to_owned(),
        (l, v) => format!("{l}({v})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_active_layout_is_picked_by_group() {
        let names = b"evdev\0pc105\0us,de\0,nodeadkeys\0grp:alt_shift_toggle\0";
        assert_eq!(active_layout(names, 0), "us");
        assert_eq!(active_layout(names, 1), "de(nodeadkeys)");
        assert_eq!(active_layout(names, 2), "");
        assert_eq!(active_layout(b"", 0), "");
    }

    #[test]
    fn wm_class_parts() {
        assert_eq!(parse_wm_class(b"xterm\0XTerm\0"), "XTerm");
        assert_eq!(parse_wm_class(b"solo\0"), "solo");
        assert_eq!(parse_wm_class(b""), "");
    }

    #[test]
    fn xauthority_entries() {
        let mut f = Vec::new();
        let mut push = |family: u16, fields: [&[u8]; 4]| {
            f.extend_from_slice(&family.to_be_bytes());
            for x in fields {
                f.extend_from_slice(&(x.len() as u16).to_be_bytes());
                f.extend_from_slice(x);
            }
        };
        push(256, [b"host", b"1", b"MIT-MAGIC-COOKIE-1", &[1, 2, 3]]);
        push(256, [b"host", b"0", b"MIT-MAGIC-COOKIE-1", &[4, 5, 6]]);
        let e = parse_xauthority(&f);
        assert_eq!(e.len(), 2);
        assert_eq!(
            cookie_for(&e, 0),
            Some((b"MIT-MAGIC-COOKIE-1".to_vec(), vec![4, 5, 6]))
        );
        assert_eq!(cookie_for(&e, 7), None);
        // Truncated trailing entry is ignored.
        assert_eq!(parse_xauthority(&f[..f.len() - 2]).len(), 1);
    }
}
