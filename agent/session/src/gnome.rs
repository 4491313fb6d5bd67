//! GNOME Shell (and, through the same protocol, KWin: see [`super::kde`]): the compositor
//! reports focus to the collector over the user's session bus.
//!
//! # Protocol
//! The collector owns the well-known name [`BUS_NAME`] (`org.imprint.Focus`) on the session
//! bus and answers one method, [`INTERFACE`]`.`[`REPORT`] at [`OBJECT_PATH`]:
//!
//! ```text
//! org.imprint.Focus1.Report(a{sv} window) -> (b titles_wanted)
//! ```
//!
//! `window` holds `pid` (any integer type, or a whole double: KWin's `callDBus` marshals
//! JavaScript numbers as it sees fit; `0` means no window has focus), and optionally
//! `wm_class`, `app_id`, `title` (strings), `x11` (a boolean: an Xwayland window) and
//! `reporter` (a free-form version string); unknown keys are ignored. The reply tells the reporter whether to include titles from now
//! on: it sends none until the collector has said yes once, and the collector drops any it
//! was not asked for.
//!
//! The packaged Shell extension (`packaging/gnome-shell-extension/`) calls `Report` on
//! `global.display`'s `notify::focus-window`, and again whenever [`BUS_NAME`] gets a new owner
//! (the collector started or reconnected), so the current focus is known at once.
//!
//! # Trust
//! The pid comes from the compositor, which knows a Wayland client's pid from its socket
//! credentials: a client cannot fake it, and the record says `pid_verified`. For an
//! Xwayland window (`x11`) the compositor may only have the client's own `_NET_WM_PID`
//! claim, so those records are marked unverified. What the collector must
//! check is that the *caller* is the compositor: every message's sender is the unique name
//! the bus daemon stamped on it, and a report is accepted only when that sender is the
//! current owner of `org.gnome.Shell` (`org.kde.KWin` for KDE), which the collector tracks
//! with `GetNameOwner` and `NameOwnerChanged`. Any other caller gets
//! `org.freedesktop.DBus.Error.AccessDenied`. The bus, the compositor and every other
//! client on it run as the session's user, so a program of that user could still mislead
//! the collector about *which of that user's applications* has focus (as it could by
//! ptrace-ing the compositor); it can never make input be attributed to another user's
//! process, because the resolver checks the pid's uid against the session's.
//!
//! # Reaching the session bus
//! The collector runs as a system service; the bus is the session's, at
//! `unix:path=$XDG_RUNTIME_DIR/bus` (`focus.dbus_address` overrides it). It connects with
//! its own uid (EXTERNAL authentication), which the session bus only admits when its policy
//! allows that user: `packaging/FOCUS.md` gives the `session.d` snippet to install.

use super::session::Session;
use super::{send, FocusConfig, FocusError, Report, ReportTx, WindowReport};
use std::collections::HashMap;
use std::time::Duration;
use zbus::export::futures_core::Stream;
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, Message, MessageStream};

/// The name the collector owns on the session bus.
pub const BUS_NAME: &str = "org.imprint.Focus";
/// Where the collector answers.
pub const OBJECT_PATH: &str = "/org/imprint/Focus1";
/// The interface reporters call.
pub const INTERFACE: &str = "org.imprint.Focus1";
/// The one method.
pub const REPORT: &str = "Report";
/// Longest string field kept (titles can be long; a focus record need not be).
pub const MAX_FIELD: usize = 4096;

/// How long without a report before the collector logs a hint.
const SILENCE_HINT: Duration = Duration::from_secs(30);

const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";

/// A compositor that reports focus over D-Bus: the tracker's name and the well-known bus
/// name the compositor owns (whose owner is the only caller trusted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compositor {
    pub tracker: &'static str,
    pub bus_name: &'static str,
}

/// GNOME Shell.
pub const GNOME_SHELL: Compositor = Compositor {
    tracker: "gnome",
    bus_name: "org.gnome.Shell",
};

/// Why a message is not an acceptable focus report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("not a method call but a {0}")]
    NotACall(String),
    #[error("no method {member} on {interface} at {path}")]
    UnknownMethod {
        path: String,
        interface: String,
        member: String,
    },
    #[error("the call carries no sender")]
    NoSender,
    #[error("caller {sender} is not {expected} (owned by {owner}): report refused")]
    Untrusted {
        sender: String,
        expected: &'static str,
        owner: String,
    },
    #[error("Report takes one a{{sv}} argument, got {0:?}")]
    Signature(String),
    #[error("malformed Report body: {0}")]
    Body(String),
    #[error("Report lacks the {0:?} field")]
    Missing(&'static str),
    #[error("field {field:?} must be {want}, got a value of type {got}")]
    Type {
        field: String,
        want: &'static str,
        got: String,
    },
    #[error("pid {0} is not a valid process id")]
    Pid(String),
}

impl ReportError {
    /// The D-Bus error name the caller is answered with.
    pub fn dbus_name(&self) -> &'static str {
        match self {
            ReportError::NotACall(_) => "org.freedesktop.DBus.Error.Failed",
            ReportError::UnknownMethod { .. } => "org.freedesktop.DBus.Error.UnknownMethod",
            ReportError::NoSender | ReportError::Untrusted { .. } => {
                "org.freedesktop.DBus.Error.AccessDenied"
            }
            _ => "org.freedesktop.DBus.Error.InvalidArgs",
        }
    }
}

/// Checks one incoming message and turns it into a focus report.
///
/// `owner` is the unique name currently owning `compositor.bus_name` (None: nobody owns
/// it); only its calls are accepted. Titles are kept only when `titles` is set.
pub fn parse_report(
    msg: &Message,
    compositor: &Compositor,
    owner: Option<&str>,
    titles: bool,
) -> Result<Report, ReportError> {
    let hdr = msg.header();
    if hdr.message_type() != MessageType::MethodCall {
        return Err(ReportError::NotACall(format!("{:?}", hdr.message_type())));
    }
    let path = hdr.path().map(|p| p.as_str()).unwrap_or_default();
    let interface = hdr.interface().map(|i| i.as_str()).unwrap_or_default();
    let member = hdr.member().map(|m| m.as_str()).unwrap_or_default();
    // A missing interface is allowed by the spec; the member then decides.
    if path != OBJECT_PATH || !(interface == INTERFACE || interface.is_empty()) || member != REPORT
    {
        return Err(ReportError::UnknownMethod {
            path: path.to_owned(),
            interface: interface.to_owned(),
            member: member.to_owned(),
        });
    }
    let sender = hdr.sender().ok_or(ReportError::NoSender)?;
    if owner != Some(sender.as_str()) {
        return Err(ReportError::Untrusted {
            sender: sender.to_string(),
            expected: compositor.bus_name,
            owner: owner.unwrap_or("nobody").to_owned(),
        });
    }
    let body = msg.body();
    let sig = body.signature().to_string();
    if sig != "a{sv}" {
        return Err(ReportError::Signature(sig));
    }
    let fields: HashMap<String, OwnedValue> = body
        .deserialize()
        .map_err(|e| ReportError::Body(e.to_string()))?;
    window_from_fields(&fields, compositor, titles)
}

/// The report a parsed `a{sv}` describes.
pub fn window_from_fields(
    fields: &HashMap<String, OwnedValue>,
    compositor: &Compositor,
    titles: bool,
) -> Result<Report, ReportError> {
    let pid = fields.get("pid").ok_or(ReportError::Missing("pid"))?;
    let pid = pid_of(pid)?;
    let s = |k: &str| -> Result<String, ReportError> {
        match fields.get(k).map(|v| &**v) {
            None => Ok(String::new()),
            Some(Value::Str(s)) => Ok(truncated(s.as_str())),
            Some(v) => Err(ReportError::Type {
                field: k.to_owned(),
                want: "a string",
                got: v.value_signature().to_string(),
            }),
        }
    };
    let wm_class = s("wm_class")?;
    let app_id = s("app_id")?;
    let title = s("title")?;
    s("reporter")?;
    let x11 = match fields.get("x11").map(|v| &**v) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ReportError::Type {
                field: "x11".into(),
                want: "a boolean",
                got: v.value_signature().to_string(),
            })
        }
    };
    if pid == 0 {
        return Ok(Report::NoWindow {
            tracker: compositor.tracker,
        });
    }
    Ok(Report::Window(WindowReport {
        tracker: compositor.tracker,
        pid,
        // The compositor knows a Wayland client's pid from its socket; an X11 client's
        // may be the client's own claim. See the module docs.
        pid_verified: !x11,
        app_id: strip_desktop(app_id),
        wm_class,
        title: if titles { title } else { String::new() },
        // The extension and the script do not send the frame rectangle (yet).
        rect: Default::default(),
    }))
}

fn pid_of(v: &Value<'_>) -> Result<u32, ReportError> {
    let wrong = || ReportError::Type {
        field: "pid".into(),
        want: "an integer",
        got: v.value_signature().to_string(),
    };
    let n: i128 = match v {
        Value::U8(n) => (*n).into(),
        Value::U16(n) => (*n).into(),
        Value::U32(n) => (*n).into(),
        Value::U64(n) => (*n).into(),
        Value::I16(n) => (*n).into(),
        Value::I32(n) => (*n).into(),
        Value::I64(n) => (*n).into(),
        Value::F64(f) => {
            // KWin's callDBus may send a JavaScript number as a double.
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > f64::from(u32::MAX) {
                return Err(ReportError::Pid(f.to_string()));
            }
            *f as i128
        }
        _ => return Err(wrong()),
    };
    // Linux pids are at most 2^22; anything negative or beyond i32 is not one.
    u32::try_from(n)
        .ok()
        .filter(|p| i32::try_from(*p).is_ok())
        .ok_or_else(|| ReportError::Pid(n.to_string()))
}

fn truncated(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Shell and KWin report desktop file ids with or without `.desktop`; records carry the id.
fn strip_desktop(id: String) -> String {
    match id.strip_suffix(".desktop") {
        Some(s) => s.to_owned(),
        None => id,
    }
}

/// The session bus address: `focus.dbus_address`, else `$XDG_RUNTIME_DIR/bus` of the session.
pub fn bus_address(cfg: &FocusConfig, session: Option<&Session>) -> Result<String, FocusError> {
    if let Some(a) = &cfg.dbus_address {
        return Ok(a.clone());
    }
    let dir = cfg
        .runtime_dir
        .clone()
        .or_else(|| session.map(|s| s.runtime_dir.clone()))
        .ok_or(FocusError::NotFound("session bus (no runtime dir)"))?;
    let path = dir.join("bus");
    if !path.exists() {
        return Err(FocusError::NotFound("session bus"));
    }
    Ok(format!(
        "unix:path={}",
        escape_address(&path.to_string_lossy())
    ))
}

/// Escapes a value for a D-Bus address (`%XX` for anything but `[-0-9A-Za-z_/.\*]`).
fn escape_address(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_/.\\*".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn bus_err(what: &str, e: zbus::Error) -> FocusError {
    FocusError::Protocol(format!("session bus: {what}: {e}"))
}

/// A connection to the session bus that owns [`BUS_NAME`], with a stream of everything
/// that arrives on it, and the compositor's current unique name.
pub struct Served {
    pub conn: Connection,
    stream: MessageStream,
    owner: Option<String>,
    compositor: Compositor,
}

/// Connects, subscribes to the compositor's name changes, and takes [`BUS_NAME`].
/// Fails (to be retried) when the compositor is not on the bus or the name is taken.
pub async fn connect(
    compositor: Compositor,
    cfg: &FocusConfig,
    session: Option<&Session>,
) -> Result<Served, FocusError> {
    let addr = bus_address(cfg, session)?;
    let conn = zbus::connection::Builder::address(addr.as_str())
        .map_err(|e| bus_err(&addr, e))?
        .method_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| bus_err(&addr, e))?;
    // The stream first: nothing sent to us from here on can be missed.
    let stream = MessageStream::from(&conn);
    let rule = format!(
        "type='signal',sender='{DBUS_NAME}',interface='{DBUS_NAME}',member='NameOwnerChanged',arg0='{}'",
        compositor.bus_name
    );
    dbus_call::<_, ()>(&conn, "AddMatch", &(rule.as_str(),)).await?;
    let owner = name_owner(&conn, compositor.bus_name).await?;
    let Some(owner) = owner else {
        return Err(FocusError::NotFound(match compositor.tracker {
            "kde" => "KWin on the session bus",
            _ => "gnome-shell on the session bus",
        }));
    };
    let reply = conn
        .request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DoNotQueue.into())
        .await
        .map_err(|e| bus_err(&format!("RequestName {BUS_NAME}"), e))?;
    match reply {
        zbus::fdo::RequestNameReply::PrimaryOwner | zbus::fdo::RequestNameReply::AlreadyOwner => {}
        other => {
            return Err(FocusError::Protocol(format!(
                "{BUS_NAME} is held by another connection ({other:?})"
            )));
        }
    }
    tracing::info!(bus = %addr, compositor = compositor.bus_name, %owner, "{} focus tracker connected", compositor.tracker);
    Ok(Served {
        conn,
        stream,
        owner: Some(owner),
        compositor,
    })
}

async fn dbus_call<B, R>(conn: &Connection, method: &str, body: &B) -> Result<R, FocusError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
{
    let reply = conn
        .call_method(Some(DBUS_NAME), DBUS_PATH, Some(DBUS_NAME), method, body)
        .await
        .map_err(|e| bus_err(method, e))?;
    reply
        .body()
        .deserialize::<R>()
        .map_err(|e| bus_err(method, e))
}

/// The unique name owning `name`, None when nobody does.
async fn name_owner(conn: &Connection, name: &str) -> Result<Option<String>, FocusError> {
    match conn
        .call_method(
            Some(DBUS_NAME),
            DBUS_PATH,
            Some(DBUS_NAME),
            "GetNameOwner",
            &(name,),
        )
        .await
    {
        Ok(reply) => reply
            .body()
            .deserialize::<String>()
            .map(Some)
            .map_err(|e| bus_err("GetNameOwner", e)),
        Err(zbus::Error::MethodError(err, _, _))
            if err.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            Ok(None)
        }
        Err(e) => Err(bus_err("GetNameOwner", e)),
    }
}

/// Is `msg` the bus saying `bus_name` changed hands? `Some(new owner)` if so (`""`: it has
/// none now).
pub fn owner_change(msg: &Message, bus_name: &str) -> Option<String> {
    let hdr = msg.header();
    if hdr.message_type() != MessageType::Signal
        || hdr.member().map(|m| m.as_str()) != Some("NameOwnerChanged")
        || hdr.interface().map(|i| i.as_str()) != Some(DBUS_NAME)
        || hdr.sender().map(|s| s.as_str()) != Some(DBUS_NAME)
    {
        return None;
    }
    let (name, _old, new): (String, String, String) = msg.body().deserialize().ok()?;
    (name == bus_name).then_some(new)
}

impl Served {
    /// Answers reports until the bus connection closes or the compositor leaves the bus.
    pub async fn serve(mut self, titles: bool, tx: &ReportTx) -> Result<(), FocusError> {
        // A hint for the administrator when the extension or script never reports.
        let hint = tokio::time::sleep(SILENCE_HINT);
        tokio::pin!(hint);
        let mut heard = false;
        loop {
            let next =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut self.stream).poll_next(cx));
            let msg = tokio::select! {
                m = next => m,
                () = &mut hint, if !heard => {
                    heard = true;
                    tracing::warn!(compositor = self.compositor.bus_name, waited_s = SILENCE_HINT.as_secs(),
                        "no focus report yet: is the imprint-focus extension / KWin script installed and enabled, \
                         and may the collector's user reach the session bus? (packaging/FOCUS.md)");
                    continue;
                }
                () = tx.closed() => return Err(FocusError::Closed),
            };
            let msg = match msg {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(bus_err("receive", e)),
                None => {
                    return Err(FocusError::Protocol(
                        "the session bus closed the connection".into(),
                    ))
                }
            };
            if let Some(new) = owner_change(&msg, self.compositor.bus_name) {
                if new.is_empty() {
                    return Err(FocusError::Protocol(format!(
                        "{} left the session bus",
                        self.compositor.bus_name
                    )));
                }
                tracing::info!(compositor = self.compositor.bus_name, owner = %new, "compositor's bus name changed owner");
                self.owner = Some(new);
                continue;
            }
            if msg.header().message_type() != MessageType::MethodCall {
                continue;
            }
            heard |= self.answer(&msg, titles, tx).await?;
        }
    }

    /// Answers one call; `Ok(true)` when it was an accepted report.
    async fn answer(&self, msg: &Message, titles: bool, tx: &ReportTx) -> Result<bool, FocusError> {
        let hdr = msg.header();
        let no_reply = hdr
            .primary()
            .flags()
            .contains(zbus::message::Flags::NoReplyExpected);
        match parse_report(msg, &self.compositor, self.owner.as_deref(), titles) {
            Ok(report) => {
                if !no_reply {
                    if let Err(e) = self.conn.reply(&hdr, &titles).await {
                        tracing::debug!(error = %e, "could not answer a focus report");
                    }
                }
                send(tx, report).await.map(|()| true)
            }
            Err(e) => {
                let sender = hdr.sender().map(|s| s.as_str());
                match e {
                    // Introspection, pings and the like: not reports.
                    ReportError::UnknownMethod { .. } => {
                        tracing::debug!(?sender, error = %e, "call refused")
                    }
                    _ => tracing::warn!(?sender, error = %e, "focus report refused"),
                }
                if !no_reply {
                    if let Err(e) = self
                        .conn
                        .reply_error(&hdr, e.dbus_name(), &e.to_string())
                        .await
                    {
                        tracing::debug!(error = %e, "could not answer a refused focus report");
                    }
                }
                Ok(false)
            }
        }
    }
}

/// Tracks GNOME Shell focus until the bus connection or gnome-shell goes away.
pub async fn run(
    cfg: &FocusConfig,
    session: Option<&Session>,
    tx: &ReportTx,
) -> Result<(), FocusError> {
    let served = connect(GNOME_SHELL, cfg, session).await?;
    // The extension reports the current focus as soon as it sees BUS_NAME appear.
    served.serve(cfg.titles, tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(kv: &[(&str, Value<'static>)]) -> HashMap<String, OwnedValue> {
        kv.iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    OwnedValue::try_from(v.clone()).expect("owned"),
                )
            })
            .collect()
    }

    #[test]
    fn fields_to_reports() {
        let f = fields(&[
            ("pid", Value::U32(42)),
            ("app_id", Value::from("org.gnome.Nautilus.desktop")),
            ("title", Value::from("secret")),
            ("future_key", Value::Bool(true)),
        ]);
        let Ok(Report::Window(w)) = window_from_fields(&f, &GNOME_SHELL, false) else {
            panic!("window")
        };
        assert_eq!(
            (w.pid, w.app_id.as_str(), w.title.as_str()),
            (42, "org.gnome.Nautilus", "")
        );
        assert!(w.pid_verified);
        assert_eq!(
            window_from_fields(&fields(&[("pid", Value::U32(0))]), &GNOME_SHELL, false),
            Ok(Report::NoWindow { tracker: "gnome" })
        );
        assert_eq!(
            window_from_fields(&fields(&[("pid", Value::F64(1e12))]), &GNOME_SHELL, false),
            Err(ReportError::Pid("1000000000000".into()))
        );
        assert_eq!(
            window_from_fields(
                &fields(&[("pid", Value::U64(1 << 40))]),
                &GNOME_SHELL,
                false
            ),
            Err(ReportError::Pid((1u64 << 40).to_string()))
        );
        let long = "x".repeat(MAX_FIELD + 10);
        let Ok(Report::Window(w)) = window_from_fields(
            &fields(&[("pid", Value::I32(1)), ("title", Value::from(long))]),
            &GNOME_SHELL,
            true,
        ) else {
            panic!("window")
        };
        assert_eq!(w.title.len(), MAX_FIELD);
        let Ok(Report::Window(w)) = window_from_fields(
            &fields(&[("pid", Value::U32(9)), ("x11", Value::Bool(true))]),
            &GNOME_SHELL,
            false,
        ) else {
            panic!("window")
        };
        assert!(
            !w.pid_verified,
            "an Xwayland window's pid may be its own claim"
        );
        assert!(matches!(
            window_from_fields(
                &fields(&[("pid", Value::U32(9)), ("x11", Value::U32(1))]),
                &GNOME_SHELL,
                false
            ),
            Err(ReportError::Type { .. })
        ));
    }

    #[test]
    fn addresses() {
        assert_eq!(escape_address("/run/user/1000/bus"), "/run/user/1000/bus");
        assert_eq!(escape_address("/tmp/a b,c"), "/tmp/a%20b%2cc");
        let cfg = FocusConfig {
            dbus_address: Some("unix:path=/x".into()),
            ..FocusConfig::default()
        };
        assert_eq!(
            bus_address(&cfg, None).ok().as_deref(),
            Some("unix:path=/x")
        );
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = FocusConfig {
            runtime_dir: Some(dir.path().into()),
            ..FocusConfig::default()
        };
        assert!(matches!(
            bus_address(&cfg, None),
            Err(FocusError::NotFound(_))
        ));
    }
}
