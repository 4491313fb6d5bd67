//! AT-SPI: is the focused accessible a password field?
//!
//! A password field is secure input (policy caps it at `timing`), and only the session can
//! tell: toolkits expose their widgets to assistive technology over the *accessibility bus*,
//! a private bus of the session whose address the session bus hands out.
//!
//! # Protocol
//! 1. On the session bus, `org.a11y.Bus` at `/org/a11y/bus` (the `at-spi-bus-launcher`,
//!    started by D-Bus activation) answers `org.a11y.Bus.GetAddress() -> s` with the
//!    accessibility bus address; asking starts that bus if it was not running.
//! 2. `org.a11y.Status.IsEnabled` on the same object is set to `true` when it is not yet:
//!    GTK 3 exposes itself whenever the bus exists, but Qt (and other toolkits) only when
//!    that property says assistive technology is in use. The launcher persists it in the
//!    user's `org.gnome.desktop.interface toolkit-accessibility` setting, which is logged.
//! 3. On the accessibility bus the watcher adds a match for
//!    `org.a11y.atspi.Event.Object.StateChanged` with `arg0='focused'`, whose body is
//!    `(s detail, i detail1, i detail2, v any_data, a{sv} properties)`: `detail1` is 1 when
//!    the sender's object at the signal's path gained focus, 0 when it lost it.
//! 4. It calls `org.a11y.atspi.Registry.RegisterEvent("object:state-changed:focused", [], "")`
//!    on `org.a11y.atspi.Registry` at `/org/a11y/atspi/registry` (older registries take only
//!    the event name, which is tried next). This is not optional: the toolkit bridges only
//!    emit the events some listener has registered for. The registry drops the registration
//!    when this connection closes, and forgets it when it restarts, so the watcher registers
//!    again whenever the registry's name gets a new owner.
//! 5. For each focus gained it asks the object (`org.a11y.atspi.Accessible` at the event's
//!    sender and path) for `GetRole() -> u` and `GetRoleName() -> s`, and its application's
//!    root (`GetApplication() -> (so)`) for its `Name`, and sends an [`AccessibleFocus`].
//!
//! Nothing polls: the watcher sleeps on the bus socket between events.
//!
//! # What is not seen
//! A toolkit bridge (GTK's atk-bridge) connects its ATK listeners only once the registry
//! has embedded the application and answered its `GetRegisteredEvents`, asynchronously
//! after start-up: a focus change made before that (a password dialog that is focused the
//! moment it starts) is never sent, and nothing is reported until the next change. Focus
//! held when the watcher starts is not reported either.
//!
//! # Failing closed
//! When the focused object cannot be asked for its role (it died at once, the application
//! hangs), the report says role [`ROLE_INVALID`] with `password: true`: input whose nature
//! is unknown is treated as secure until the next focus change says otherwise.
//!
//! # Trust
//! Every client of the accessibility bus runs as the session's user and can emit any event;
//! what the watcher learns is what that user's applications claim about themselves. That is
//! enough to *restrict* capture (a password field), never to widen it.

use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use zbus::export::futures_core::Stream;
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Structure, Value};
use zbus::{Connection, Message, MessageStream};

/// `ATSPI_ROLE_INVALID`: the role could not be read.
pub const ROLE_INVALID: u32 = 0;
/// `ATSPI_ROLE_PASSWORD_TEXT`: a text field whose content is hidden.
pub const ROLE_PASSWORD_TEXT: u32 = 40;

/// The launcher's name, object and interfaces on the session bus.
pub const A11Y_BUS_NAME: &str = "org.a11y.Bus";
pub const A11Y_BUS_PATH: &str = "/org/a11y/bus";
pub const A11Y_BUS_INTERFACE: &str = "org.a11y.Bus";
pub const A11Y_STATUS_INTERFACE: &str = "org.a11y.Status";
/// The registry on the accessibility bus.
pub const REGISTRY_NAME: &str = "org.a11y.atspi.Registry";
pub const REGISTRY_PATH: &str = "/org/a11y/atspi/registry";
pub const REGISTRY_INTERFACE: &str = "org.a11y.atspi.Registry";
/// The event registered for, in the registry's notation.
pub const FOCUS_EVENT: &str = "object:state-changed:focused";
/// Where object events come from.
pub const EVENT_OBJECT_INTERFACE: &str = "org.a11y.atspi.Event.Object";
pub const ACCESSIBLE_INTERFACE: &str = "org.a11y.atspi.Accessible";

const DBUS_NAME: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// How long one call may take: a hung application must not stall the watcher for long.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Application names remembered (by bus name) before the cache is cleared.
const APP_CACHE: usize = 256;
/// Longest string kept from an application.
const MAX_FIELD: usize = 256;

/// What the focused accessible is, as far as secure input is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessibleFocus {
    /// The AT-SPI role (`AtspiRole`); [`ROLE_INVALID`] when it could not be read.
    pub role: u32,
    /// The toolkit's name for the role (`password text`, `text`, …).
    pub role_name: String,
    /// The focused object is a password field, or could not be identified (fail closed).
    pub password: bool,
    /// The application's accessible name (usually its program name); empty if unknown.
    pub app: String,
}

/// Why the watcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum AtspiError {
    #[error("no session bus address: DBUS_SESSION_BUS_ADDRESS is not set")]
    NoSessionBus,
    #[error("session bus {address}: {source}")]
    SessionBus {
        address: String,
        #[source]
        source: zbus::Error,
    },
    #[error("no accessibility bus: {A11Y_BUS_NAME}.GetAddress failed: {0}")]
    NoA11yBus(#[source] zbus::Error),
    #[error("accessibility bus {address}: {source}")]
    A11yBus {
        address: String,
        #[source]
        source: zbus::Error,
    },
    #[error("accessibility bus: {what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: zbus::Error,
    },
    #[error("lost the accessibility bus: {0}")]
    Lost(String),
}

/// Is `role` a password field?
pub fn is_password_role(role: u32) -> bool {
    role == ROLE_PASSWORD_TEXT
}

/// A focus change carried by one signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FocusEvent {
    /// The application's unique name on the accessibility bus.
    pub sender: String,
    /// The object's path within it.
    pub path: String,
    /// Gained (true) or lost (false).
    pub gained: bool,
}

/// Is `msg` an `object:state-changed:focused` event? Other messages give `None`.
pub fn focus_event(msg: &Message) -> Option<FocusEvent> {
    let hdr = msg.header();
    if hdr.message_type() != MessageType::Signal
        || hdr.interface().map(|i| i.as_str()) != Some(EVENT_OBJECT_INTERFACE)
        || hdr.member().map(|m| m.as_str()) != Some("StateChanged")
    {
        return None;
    }
    let sender = hdr.sender()?.to_string();
    let path = hdr.path()?.to_string();
    let body = msg.body();
    // Only the leading (s detail, i detail1) matter; the tail differs between versions.
    let st: Structure<'_> = body.deserialize().ok()?;
    let fields = st.fields();
    let detail = match fields.first() {
        Some(Value::Str(s)) => s.as_str(),
        _ => return None,
    };
    if detail != "focused" {
        return None;
    }
    let gained = match fields.get(1) {
        Some(Value::I32(v)) => *v != 0,
        Some(Value::U32(v)) => *v != 0,
        _ => return None,
    };
    Some(FocusEvent {
        sender,
        path,
        gained,
    })
}

/// Follows AT-SPI focus on the session's accessibility bus and sends every change.
/// `session_bus`: the session bus address (None: from DBUS_SESSION_BUS_ADDRESS).
///
/// Returns `Ok(())` when `tx` closes, and an error when a bus cannot be reached or is lost
/// (the caller reconnects).
pub async fn watch(
    session_bus: Option<String>,
    tx: mpsc::Sender<AccessibleFocus>,
) -> Result<(), AtspiError> {
    let address = match session_bus {
        Some(a) => a,
        None => std::env::var("DBUS_SESSION_BUS_ADDRESS").map_err(|_| AtspiError::NoSessionBus)?,
    };
    let a11y_address = {
        let session = connect(&address)
            .await
            .map_err(|source| AtspiError::SessionBus {
                address: address.clone(),
                source,
            })?;
        let a11y = a11y_address(&session).await?;
        enable(&session).await;
        a11y
        // The session bus is not needed any more.
    };
    let conn = connect(&a11y_address)
        .await
        .map_err(|source| AtspiError::A11yBus {
            address: a11y_address.clone(),
            source,
        })?;
    // The stream first, then the matches: nothing sent from here on can be missed.
    let mut stream = MessageStream::from(&conn);
    add_match(
        &conn,
        &format!(
            "type='signal',interface='{EVENT_OBJECT_INTERFACE}',member='StateChanged',arg0='focused'"
        ),
    )
    .await?;
    add_match(
        &conn,
        &format!(
            "type='signal',sender='{DBUS_NAME}',interface='{DBUS_NAME}',member='NameOwnerChanged',arg0='{REGISTRY_NAME}'"
        ),
    )
    .await?;
    register(&conn).await?;
    tracing::info!(bus = %a11y_address, event = FOCUS_EVENT, "watching accessibility focus");

    let mut watcher = Watcher {
        conn: &conn,
        apps: HashMap::new(),
        focused: None,
    };
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
        let msg = tokio::select! {
            m = next => m,
            () = tx.closed() => return Ok(()),
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(AtspiError::Lost(e.to_string())),
            None => return Err(AtspiError::Lost("the bus closed the connection".into())),
        };
        if let Some(owner) = registry_owner_change(&msg) {
            if owner.is_empty() {
                tracing::warn!("the AT-SPI registry left the accessibility bus");
            } else {
                tracing::info!(%owner, "the AT-SPI registry restarted: registering again");
                register(&conn).await?;
            }
            continue;
        }
        let Some(ev) = focus_event(&msg) else {
            continue;
        };
        if let Some(focus) = watcher.handle(ev).await {
            tracing::debug!(role = focus.role, role_name = %focus.role_name, password = focus.password,
                app = %focus.app, "accessible focus");
            if tx.send(focus).await.is_err() {
                return Ok(());
            }
        }
    }
}

struct Watcher<'c> {
    conn: &'c Connection,
    /// Application names by unique bus name.
    apps: HashMap<String, String>,
    /// The object that last gained focus (and has not lost it since).
    focused: Option<(String, String)>,
}

impl Watcher<'_> {
    /// The report for one event, if it is a change.
    async fn handle(&mut self, ev: FocusEvent) -> Option<AccessibleFocus> {
        let key = (ev.sender, ev.path);
        if !ev.gained {
            if self.focused.as_ref() == Some(&key) {
                self.focused = None;
            }
            return None;
        }
        // Toolkits repeat a gain (GTK sends two); that is no change.
        if self.focused.as_ref() == Some(&key) {
            return None;
        }
        let (sender, path) = &key;
        let focus = self.describe(sender, path).await;
        self.focused = Some(key);
        Some(focus)
    }

    async fn describe(&mut self, sender: &str, path: &str) -> AccessibleFocus {
        let role = call::<_, u32>(
            self.conn,
            sender,
            path,
            ACCESSIBLE_INTERFACE,
            "GetRole",
            &(),
        )
        .await;
        let app = self.app_name(sender, path).await;
        let role = match role {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%sender, %path, error = %e,
                    "focused accessible did not tell its role: treated as a password field");
                return AccessibleFocus {
                    role: ROLE_INVALID,
                    role_name: String::new(),
                    password: true,
                    app,
                };
            }
        };
        let role_name = match call::<_, String>(
            self.conn,
            sender,
            path,
            ACCESSIBLE_INTERFACE,
            "GetRoleName",
            &(),
        )
        .await
        {
            Ok(n) => truncated(&n),
            Err(e) => {
                tracing::debug!(%sender, %path, error = %e, "GetRoleName failed");
                String::new()
            }
        };
        AccessibleFocus {
            role,
            password: is_password_role(role),
            role_name,
            app,
        }
    }

    /// The name of the application `sender` (its root accessible's `Name`), cached.
    async fn app_name(&mut self, sender: &str, path: &str) -> String {
        if let Some(n) = self.apps.get(sender) {
            return n.clone();
        }
        let name = async {
            let (app_bus, app_path) = call::<_, (String, OwnedObjectPath)>(
                self.conn,
                sender,
                path,
                ACCESSIBLE_INTERFACE,
                "GetApplication",
                &(),
            )
            .await?;
            let v = call::<_, OwnedValue>(
                self.conn,
                &app_bus,
                app_path.as_str(),
                PROPERTIES,
                "Get",
                &(ACCESSIBLE_INTERFACE, "Name"),
            )
            .await?;
            match &*v {
                Value::Str(s) => Ok(truncated(s.as_str())),
                other => Err(zbus::Error::Failure(format!(
                    "Name is a {}, not a string",
                    other.value_signature()
                ))),
            }
        }
        .await;
        match name {
            Ok(n) => {
                if self.apps.len() >= APP_CACHE {
                    self.apps.clear();
                }
                self.apps.insert(sender.to_owned(), n.clone());
                n
            }
            Err(e) => {
                tracing::debug!(%sender, error = %e, "application name unknown");
                String::new()
            }
        }
    }
}

/// `Some(new owner)` when `msg` says the registry changed hands (`""`: it left).
fn registry_owner_change(msg: &Message) -> Option<String> {
    let hdr = msg.header();
    if hdr.message_type() != MessageType::Signal
        || hdr.member().map(|m| m.as_str()) != Some("NameOwnerChanged")
        || hdr.interface().map(|i| i.as_str()) != Some(DBUS_NAME)
        || hdr.sender().map(|s| s.as_str()) != Some(DBUS_NAME)
    {
        return None;
    }
    let (name, _old, new): (String, String, String) = msg.body().deserialize().ok()?;
    (name == REGISTRY_NAME).then_some(new)
}

async fn connect(address: &str) -> Result<Connection, zbus::Error> {
    zbus::connection::Builder::address(address)?
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
}

/// The accessibility bus address, from the launcher (which D-Bus activates if needed).
async fn a11y_address(session: &Connection) -> Result<String, AtspiError> {
    let reply = session
        .call_method(
            Some(A11Y_BUS_NAME),
            A11Y_BUS_PATH,
            Some(A11Y_BUS_INTERFACE),
            "GetAddress",
            &(),
        )
        .await
        .map_err(AtspiError::NoA11yBus)?;
    let address: String = reply.body().deserialize().map_err(AtspiError::NoA11yBus)?;
    if address.is_empty() {
        return Err(AtspiError::NoA11yBus(zbus::Error::Failure(
            "the launcher returned an empty address".into(),
        )));
    }
    Ok(address)
}

/// Sets `org.a11y.Status.IsEnabled` when it is off, so every toolkit exposes itself.
/// A failure is logged, not fatal: GTK exposes itself regardless.
async fn enable(session: &Connection) {
    let get = session
        .call_method(
            Some(A11Y_BUS_NAME),
            A11Y_BUS_PATH,
            Some(PROPERTIES),
            "Get",
            &(A11Y_STATUS_INTERFACE, "IsEnabled"),
        )
        .await
        .and_then(|r| r.body().deserialize::<OwnedValue>());
    if let Ok(v) = &get {
        if matches!(&**v, Value::Bool(true)) {
            return;
        }
    }
    let set = session
        .call_method(
            Some(A11Y_BUS_NAME),
            A11Y_BUS_PATH,
            Some(PROPERTIES),
            "Set",
            &(A11Y_STATUS_INTERFACE, "IsEnabled", Value::from(true)),
        )
        .await;
    match set {
        Ok(_) => tracing::info!(
            "set org.a11y.Status.IsEnabled: toolkits expose their widgets over AT-SPI \
             (the launcher keeps this in the toolkit-accessibility setting)"
        ),
        Err(e) => tracing::warn!(error = %e,
            "could not set org.a11y.Status.IsEnabled: toolkits that wait for it (Qt) may not report password fields"),
    }
}

async fn add_match(conn: &Connection, rule: &str) -> Result<(), AtspiError> {
    conn.call_method(
        Some(DBUS_NAME),
        DBUS_PATH,
        Some(DBUS_NAME),
        "AddMatch",
        &(rule,),
    )
    .await
    .map(|_| ())
    .map_err(|source| AtspiError::Call {
        what: "AddMatch",
        source,
    })
}

/// Tells the registry (and through it every toolkit bridge) that focus events are wanted.
async fn register(conn: &Connection) -> Result<(), AtspiError> {
    let current = conn
        .call_method(
            Some(REGISTRY_NAME),
            REGISTRY_PATH,
            Some(REGISTRY_INTERFACE),
            "RegisterEvent",
            &(FOCUS_EVENT, Vec::<&str>::new(), ""),
        )
        .await;
    match current {
        Ok(_) => Ok(()),
        // Registries before at-spi2-core 2.42 take the event name alone.
        Err(zbus::Error::MethodError(name, _, _))
            if matches!(
                name.as_str(),
                "org.freedesktop.DBus.Error.InvalidArgs"
                    | "org.freedesktop.DBus.Error.UnknownMethod"
            ) =>
        {
            conn.call_method(
                Some(REGISTRY_NAME),
                REGISTRY_PATH,
                Some(REGISTRY_INTERFACE),
                "RegisterEvent",
                &(FOCUS_EVENT,),
            )
            .await
            .map(|_| ())
            .map_err(|source| AtspiError::Call {
                what: "RegisterEvent",
                source,
            })
        }
        Err(source) => Err(AtspiError::Call {
            what: "RegisterEvent",
            source,
        }),
    }
}

async fn call<B, R>(
    conn: &Connection,
    dest: &str,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> Result<R, zbus::Error>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
{
    conn.call_method(Some(dest), path, Some(interface), method, body)
        .await?
        .body()
        .deserialize::<R>()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state_changed(detail: &str, gained: i32) -> Message {
        let props: HashMap<&str, Value<'_>> = HashMap::new();
        Message::signal(
            "/org/a11y/atspi/accessible/4",
            EVENT_OBJECT_INTERFACE,
            "StateChanged",
        )
        .unwrap()
        .sender(":1.7")
        .unwrap()
        .build(&(detail, gained, 0i32, Value::from(0i32), props))
        .unwrap()
    }

    #[test]
    fn parses_focus_gained_and_lost() {
        assert_eq!(
            focus_event(&state_changed("focused", 1)),
            Some(FocusEvent {
                sender: ":1.7".into(),
                path: "/org/a11y/atspi/accessible/4".into(),
                gained: true
            })
        );
        assert_eq!(
            focus_event(&state_changed("focused", 0)).map(|e| e.gained),
            Some(false)
        );
        assert_eq!(focus_event(&state_changed("selected", 1)), None);
    }

    #[test]
    fn parses_the_old_body_with_an_application_reference() {
        let msg = Message::signal(
            "/org/a11y/atspi/accessible/9",
            EVENT_OBJECT_INTERFACE,
            "StateChanged",
        )
        .unwrap()
        .sender(":1.9")
        .unwrap()
        .build(&(
            "focused",
            1i32,
            0i32,
            Value::from(0i32),
            (
                ":1.9",
                zbus::zvariant::ObjectPath::try_from("/org/a11y/atspi/accessible/root").unwrap(),
            ),
        ))
        .unwrap();
        assert_eq!(focus_event(&msg).map(|e| e.gained), Some(true));
    }

    #[test]
    fn ignores_other_signals() {
        let msg = Message::signal(
            "/org/a11y/atspi/accessible/4",
            EVENT_OBJECT_INTERFACE,
            "PropertyChange",
        )
        .unwrap()
        .sender(":1.7")
        .unwrap()
        .build(&(
            "focused",
            1i32,
            0i32,
            Value::from(0i32),
            HashMap::<&str, Value<'_>>::new(),
        ))
        .unwrap();
        assert_eq!(focus_event(&msg), None);
    }

    #[test]
    fn only_password_text_is_a_password_role() {
        assert!(is_password_role(40));
        assert!(!is_password_role(61));
        assert!(!is_password_role(ROLE_INVALID));
    }

    #[test]
    fn truncates_on_char_boundaries() {
        let s = "é".repeat(200);
        let t = truncated(&s);
        assert!(t.len() <= MAX_FIELD && s.starts_with(&t));
    }
}
