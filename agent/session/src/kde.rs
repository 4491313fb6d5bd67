//! KDE Plasma 5 and 6 (KWin): a KWin script reports activations to the collector with
//! `callDBus(…, "org.imprint.Focus1", "Report", {pid, wm_class, app_id, title})`, the same
//! protocol, trust check and session-bus connection as GNOME (see [`super::gnome`]); the
//! trusted caller is the owner of `org.kde.KWin`.
//!
//! The script (`packaging/kwin-script/imprint-focus/`) connects to
//! `workspace.windowActivated` (Plasma 6) or `workspace.clientActivated` (Plasma 5) and
//! reports the active window once when it starts. On every connection the collector
//! (re)loads it over D-Bus (`org.kde.kwin.Scripting.loadScript(path, "imprint-focus")`, then
//! `start`), unloading a running copy first, so that this first report tells the collector
//! the current focus. Without a script file to load, an installed and enabled copy (see
//! `packaging/FOCUS.md`) still reports, from the next activation on.

use super::gnome::{connect, Compositor};
use super::session::Session;
use super::{FocusConfig, FocusError, ReportTx};
use std::path::{Path, PathBuf};
use zbus::Connection;

/// KWin.
pub const KWIN: Compositor = Compositor {
    tracker: "kde",
    bus_name: "org.kde.KWin",
};

/// The script's plugin id (its `metadata.json` `KPlugin.Id`).
pub const SCRIPT_NAME: &str = "imprint-focus";
/// Where the script is looked for, after `focus.kwin_script` and before the user's own
/// `~/.local/share/kwin/scripts/imprint-focus/`.
pub const SCRIPT_PATHS: &[&str] = &[
    "/usr/share/kwin/scripts/imprint-focus/contents/code/main.js",
    "/usr/share/imprint/kwin-script/imprint-focus/contents/code/main.js",
];
const MAIN_JS: &str = "contents/code/main.js";

/// The script file KWin should load: `focus.kwin_script` (the file or its package
/// directory), else the first of [`SCRIPT_PATHS`] and the user's local install that exists.
pub fn script_path(cfg: &FocusConfig, session: Option<&Session>) -> Option<PathBuf> {
    if let Some(p) = &cfg.kwin_script {
        return Some(if p.is_dir() {
            p.join(MAIN_JS)
        } else {
            p.clone()
        });
    }
    let local = session.and_then(|s| s.home.as_ref()).map(|h| {
        h.join(".local/share/kwin/scripts")
            .join(SCRIPT_NAME)
            .join(MAIN_JS)
    });
    SCRIPT_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(local)
        .find(|p| p.is_file())
}

async fn scripting<B, R>(conn: &Connection, method: &str, body: &B) -> Result<R, FocusError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
{
    let err = |e: zbus::Error| FocusError::Protocol(format!("kwin scripting {method}: {e}"));
    conn.call_method(
        Some(KWIN.bus_name),
        "/Scripting",
        Some("org.kde.kwin.Scripting"),
        method,
        body,
    )
    .await
    .map_err(err)?
    .body()
    .deserialize::<R>()
    .map_err(err)
}

/// (Re)loads and starts the script in KWin.
pub async fn load_script(conn: &Connection, path: &Path) -> Result<i32, FocusError> {
    let loaded: bool = scripting(conn, "isScriptLoaded", &(SCRIPT_NAME,)).await?;
    if loaded {
        let _: bool = scripting(conn, "unloadScript", &(SCRIPT_NAME,)).await?;
    }
    let file = path.to_string_lossy();
    let id: i32 = scripting(conn, "loadScript", &(file.as_ref(), SCRIPT_NAME)).await?;
    if id < 0 {
        return Err(FocusError::Protocol(format!(
            "kwin refused to load {file} ({id})"
        )));
    }
    let () = scripting(conn, "start", &()).await?;
    Ok(id)
}

/// Tracks KWin focus until the bus connection or KWin goes away.
pub async fn run(
    cfg: &FocusConfig,
    session: Option<&Session>,
    tx: &ReportTx,
) -> Result<(), FocusError> {
    let served = connect(KWIN, cfg, session).await?;
    match script_path(cfg, session) {
        Some(p) => {
            let id = load_script(&served.conn, &p).await?;
            tracing::info!(script = %p.display(), id, "kwin focus script loaded");
        }
        None => tracing::warn!(
            "no kwin focus script file found to load: relying on an installed, enabled \
             imprint-focus script; focus is known from the next activation on"
        ),
    }
    served.serve(cfg.titles, tx).await
}
