//! The organisation's notice (`[notice]` in imprint.toml), shown once per version when a
//! person logs in: as a desktop notification (`org.freedesktop.Notifications.Notify` on the
//! session bus) where a notification server runs, otherwise on the helper's terminal
//! (stderr). The last version shown is remembered per user in
//! `$XDG_STATE_HOME/imprint/notice-version` (default `~/.local/state`), file mode 0600 in a
//! directory of mode 0700; a newer version is shown again.
//!
//! Remembering fails open toward the person: a state file that cannot be read means the
//! notice is shown again.

use imprint_config::NoticeConfig;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOTIFICATIONS: &str = "org.freedesktop.Notifications";
const NOTIFICATIONS_PATH: &str = "/org/freedesktop/Notifications";
const STATE_FILE: &str = "notice-version";
/// How long the session bus may take to answer.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors while showing or remembering the notice.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("session bus: {0}")]
    Bus(#[from] zbus::Error),
}

/// Where the notice was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// A desktop notification, with the server's id for it.
    Desktop(u32),
    /// The helper's stderr.
    Terminal,
}

/// The file that remembers the last notice version this user was shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionFile {
    path: PathBuf,
}

impl VersionFile {
    /// The file at `path` itself.
    pub fn at(path: PathBuf) -> VersionFile {
        VersionFile { path }
    }

    /// From this process's environment (`XDG_STATE_HOME`, else `HOME`).
    pub fn from_env() -> Option<VersionFile> {
        VersionFile::from_vars(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
    }

    /// `$XDG_STATE_HOME/imprint/notice-version`, or `$HOME/.local/state/imprint/…`; a
    /// relative `XDG_STATE_HOME` is ignored, as the XDG base directory specification says.
    pub fn from_vars(state_home: Option<OsString>, home: Option<OsString>) -> Option<VersionFile> {
        let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
        let base = absolute(state_home)
            .or_else(|| absolute(home).map(|h| h.join(".local").join("state")))?;
        Some(VersionFile {
            path: base.join("imprint").join(STATE_FILE),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version last shown; None when never (or the file does not say).
    pub fn last_shown(&self) -> Option<u32> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let v = text.trim().parse().ok();
                if v.is_none() {
                    tracing::warn!(file = %self.path.display(), "notice version file does not parse; the notice is shown again");
                }
                v
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the notice version file; the notice is shown again");
                None
            }
        }
    }

    /// Whether `notice` is to be shown: there is one, and this user was never shown it or
    /// only an older version.
    pub fn is_due(&self, notice: &NoticeConfig) -> bool {
        !notice.text.trim().is_empty() && self.last_shown().is_none_or(|v| notice.version > v)
    }

    /// Remembers that `version` was shown (directory 0700, file 0600, replaced atomically).
    pub fn record(&self, version: u32) -> Result<(), NoticeError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NoticeError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let meta = std::fs::metadata(dir).map_err(io_err(dir))?;
        if meta.permissions().mode() & 0o7777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(dir))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        // An existing temporary file keeps its mode: make sure of it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(&tmp))?;
        writeln!(f, "{version}").map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))
    }
}

/// At login: shows `notice` when this user has not seen its version yet, then remembers it.
/// Without a place to remember (no `HOME`), it is shown at every login.
pub async fn at_login(notice: NoticeConfig) {
    if notice.text.trim().is_empty() {
        return;
    }
    let file = VersionFile::from_env();
    if let Some(f) = &file {
        if !f.is_due(&notice) {
            tracing::debug!(version = notice.version, file = %f.path().display(), "notice already shown");
            return;
        }
    } else {
        tracing::warn!(
            "neither XDG_STATE_HOME nor HOME is set: the notice is shown at every login"
        );
    }
    let shown = show(&notice).await;
    tracing::info!(version = notice.version, shown = ?shown, "notice shown");
    if let Some(f) = &file {
        if let Err(e) = f.record(notice.version) {
            tracing::warn!(error = %e, "cannot remember that the notice was shown; it is shown again next login");
        }
    }
}

/// Shows `notice` as a desktop notification, or on stderr when no notification server
/// answers on the session bus.
pub async fn show(notice: &NoticeConfig) -> Shown {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
        match notify(notice).await {
            Ok(id) => return Shown::Desktop(id),
            Err(e) => {
                tracing::info!(error = %e, "no desktop notification server; the notice goes to the terminal")
            }
        }
    }
    print_to_terminal(notice);
    Shown::Terminal
}

/// `org.freedesktop.Notifications.Notify` on the session bus; the server's notification id.
pub async fn notify(notice: &NoticeConfig) -> Result<u32, NoticeError> {
    let conn = zbus::connection::Builder::session()?
        .method_timeout(BUS_TIMEOUT)
        .build()
        .await?;
    let summary = format!(
        "imprint: notice from your organisation (version {})",
        notice.version
    );
    let body = escape_markup(&notice.text);
    let mut hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    // Normal urgency; it stays until dismissed (expire timeout 0).
    hints.insert("urgency", zbus::zvariant::Value::U8(1));
    hints.insert(
        "desktop-entry",
        zbus::zvariant::Value::from("imprint-session"),
    );
    let actions: Vec<&str> = Vec::new();
    let reply = conn
        .call_method(
            Some(NOTIFICATIONS),
            NOTIFICATIONS_PATH,
            Some(NOTIFICATIONS),
            "Notify",
            &(
                "imprint",
                0u32,
                "dialog-information",
                summary.as_str(),
                body.as_str(),
                actions,
                hints,
                0i32,
            ),
        )
        .await?;
    Ok(reply.body().deserialize::<u32>()?)
}

/// Notification bodies may be interpreted as markup: keep the text as written.
fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn print_to_terminal(notice: &NoticeConfig) {
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "imprint: notice from your organisation (version {}):",
        notice.version
    );
    for line in notice.text.lines() {
        let _ = writeln!(err, "  {line}");
    }
    let _ = writeln!(
        err,
        "  (`imprint status` shows what is captured about you right now)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(version: u32) -> NoticeConfig {
        NoticeConfig {
            text: "Keyboard and pointer input on this machine is recorded.".into(),
            version,
        }
    }

    #[test]
    fn shown_once_per_version_and_again_when_newer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = VersionFile::from_vars(Some(dir.path().join("state").into()), None)
            .expect("state file");
        assert_eq!(f.path(), dir.path().join("state/imprint/notice-version"));
        assert!(f.is_due(&notice(1)), "never shown");
        f.record(1).expect("record");
        assert!(!f.is_due(&notice(1)), "shown once");
        assert!(!f.is_due(&notice(0)), "an older version is not news");
        assert!(f.is_due(&notice(2)), "a newer version shows again");
        f.record(2).expect("record");
        assert_eq!(f.last_shown(), Some(2));
        assert!(!f.is_due(&notice(2)));
        assert!(
            !f.is_due(&NoticeConfig::default()),
            "no notice, nothing to show"
        );

        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(f.path()), 0o600);
        assert_eq!(mode(&dir.path().join("state/imprint")), 0o700);

        // A file that does not say is shown again rather than silently skipped.
        std::fs::write(f.path(), "garbage").expect("write");
        assert!(f.is_due(&notice(2)));
    }

    #[test]
    fn the_state_file_follows_xdg_state_home_else_home() {
        let home = VersionFile::from_vars(None, Some("/home/ann".into())).expect("home");
        assert_eq!(
            home.path(),
            Path::new("/home/ann/.local/state/imprint/notice-version")
        );
        let rel = VersionFile::from_vars(Some("state".into()), Some("/home/ann".into()));
        assert_eq!(rel, Some(home), "a relative XDG_STATE_HOME is ignored");
        assert!(VersionFile::from_vars(None, None).is_none());
    }

    #[test]
    fn markup_in_the_text_is_shown_as_written() {
        assert_eq!(escape_markup("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
