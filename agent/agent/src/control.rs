//! The agent's control socket: a local Unix socket any user may connect to, to see what is
//! captured about their own sessions right now and, where the policy allows, to pause that
//! capture for a bounded time (`imprint status`, `imprint status --pause MINUTES`).
//!
//! The caller is who the kernel says it is (`SO_PEERCRED`), never what the request claims, and
//! a reply only describes the caller's own focused application. The socket lives in a
//! directory of its own so that the agent's runtime directory stays private; nothing listens
//! on a network address.
//!
//! Besides the caller's own focus, a reply says what every local user may know about the
//! machine: whether input is captured right now and by which source (the agent reads the
//! collector's ring, which ordinary users cannot), and the organisation's notice.
//!
//! One JSON line in, one JSON line out, per connection.

use crate::status::{CaptureView, PolicyStatus};
use imprint_config::NoticeConfig;
use imprint_policy::filter::CurrentFocus;
use imprint_record::monotonic_now_ns;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// The socket's file name in its directory.
pub const SOCKET_FILE: &str = "control.sock";
/// Longest request line accepted.
const REQUEST_MAX: u64 = 4096;
/// How long a client may take to send its request or read the reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
const NS_PER_MINUTE: u64 = 60_000_000_000;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// What is captured about me right now?
    Status,
    /// Pause capture of my sessions for this many minutes.
    Pause { minutes: u64 },
    /// End my pause now.
    Resume,
}

/// The agent's answer, about the caller only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The caller, as the kernel identified it.
    pub uid: u32,
    /// The policy in force (`version:hash`), empty before the agent has published it.
    pub policy: String,
    /// The focused application and its level, when it belongs to the caller.
    pub focused: Option<CurrentFocus>,
    /// True when an application of another user (or none known) has focus.
    pub focus_not_yours: bool,
    /// Seconds left of the caller's pause, when paused.
    pub paused_for_s: Option<u64>,
    /// Longest pause the policy allows, in minutes (0: pausing is not allowed).
    pub pause_max_minutes: u64,
    /// Why the request was refused.
    pub error: Option<String>,
    /// Whether input on this machine is captured right now, as the agent reads the
    /// collector's ring (None: this agent was not told where the ring is).
    #[serde(default)]
    pub capture: Option<CaptureView>,
    /// The organisation's notice (`[notice]` in imprint.toml; empty when none is set).
    #[serde(default)]
    pub notice: NoticeConfig,
}

/// Where the control socket finds what it tells everyone beyond the policy.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The collector's ring and the agent's cursor beside it.
    pub ring: Option<(PathBuf, PathBuf)>,
    /// The configuration file (and whether it must exist), for `[notice]`.
    pub config: Option<(PathBuf, bool)>,
}

/// What a reply says about the machine rather than the caller, gathered before answering.
#[derive(Clone, Debug, Default)]
struct Machine {
    capture: Option<CaptureView>,
    notice: NoticeConfig,
}

/// The serving thread's own state: the sources and the notice last read.
struct Gatherer {
    sources: Sources,
    notice: NoticeConfig,
    /// (modification time, length) of the configuration when `notice` was read.
    read_at: Option<(SystemTime, u64)>,
}

impl Gatherer {
    fn gather(&mut self) -> Machine {
        let capture = self
            .sources
            .ring
            .as_ref()
            .map(|(ring, cursor)| CaptureView::read(ring, cursor));
        self.refresh_notice();
        Machine {
            capture,
            notice: self.notice.clone(),
        }
    }

    /// Reads `[notice]` again when the configuration file changed; a configuration that
    /// does not load keeps the notice in force.
    fn refresh_notice(&mut self) {
        let Some((path, must_exist)) = &self.sources.config else {
            return;
        };
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if self.read_at.is_some() && stamp == self.read_at {
            return;
        }
        match imprint_config::Config::load(path, *must_exist) {
            Ok(cfg) => {
                if cfg.notice != self.notice {
                    tracing::info!(config = %path.display(), version = cfg.notice.version, "notice read");
                }
                self.notice = cfg.notice;
                self.read_at = stamp;
            }
            Err(e) => {
                tracing::warn!(config = %path.display(), error = %e, "cannot read [notice]; the notice in force stays");
                self.read_at = stamp;
            }
        }
    }
}

/// Errors of the control socket's client side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: the agent's reply does not parse: {source}")]
    Reply {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Default)]
struct Shared {
    status: Option<PolicyStatus>,
    pause_max_minutes: u64,
    /// uid → pause interval `[from, until)` in CLOCK_MONOTONIC ns (the events' clock).
    pauses: BTreeMap<u32, (u64, u64)>,
    pauses_changed: bool,
}

/// The agent's side: a listening socket served by a thread of its own.
pub struct Control {
    shared: Arc<Mutex<Shared>>,
    path: PathBuf,
}

impl Control {
    /// Binds the socket at `path` (mode 0666: any local user may ask about themselves) and
    /// starts serving it, with nothing to say about the collector or a notice.
    pub fn start(path: &Path) -> io::Result<Control> {
        Control::start_with(path, Sources::default())
    }

    /// Like [`Control::start`], answering also from `sources`: the collector's ring (capture
    /// on or off, the live source, its counters) and the configuration's notice.
    pub fn start_with(path: &Path, sources: Sources) -> io::Result<Control> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            // A socket left by an earlier run; anything else there is not ours to remove.
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let served = shared.clone();
        let mut gatherer = Gatherer {
            sources,
            notice: NoticeConfig::default(),
            read_at: None,
        };
        // The notice is known before the first person asks (and a bad file is logged now).
        gatherer.refresh_notice();
        std::thread::Builder::new()
            .name("imprint-control".into())
            .spawn(move || serve(listener, served, gatherer))?;
        tracing::info!(socket = %path.display(), "control socket listening");
        Ok(Control {
            shared,
            path: path.to_path_buf(),
        })
    }

    /// Publishes what the agent is doing, for the next replies.
    pub fn publish(&self, status: PolicyStatus, pause_max_minutes: u64) {
        let mut s = lock(&self.shared);
        s.status = Some(status);
        s.pause_max_minutes = pause_max_minutes;
    }

    /// The pauses in force, when they changed since the last call.
    pub fn take_pauses(&self) -> Option<BTreeMap<u32, (u64, u64)>> {
        let mut s = lock(&self.shared);
        let now = monotonic_now_ns();
        s.pauses.retain(|_, (_, until)| *until > now);
        std::mem::take(&mut s.pauses_changed).then(|| s.pauses.clone())
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn serve(listener: UnixListener, shared: Arc<Mutex<Shared>>, mut gatherer: Gatherer) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = handle(stream, &shared, &mut gatherer) {
                    tracing::debug!(error = %e, "control client");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle(stream: UnixStream, shared: &Mutex<Shared>, gatherer: &mut Gatherer) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let uid = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?
        .uid();
    let mut line = String::new();
    BufReader::new((&stream).take(REQUEST_MAX)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => {
            // Outside the lock: the agent's loop publishes through it.
            let machine = gatherer.gather();
            let mut reply = answer(&mut lock(shared), uid, req, monotonic_now_ns());
            reply.capture = machine.capture;
            reply.notice = machine.notice;
            reply
        }
        Err(e) => Reply {
            uid,
            error: Some(format!("bad request: {e}")),
            ..Reply::default()
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// Applies `req` from `uid` at monotonic time `now` and says what holds for that user.
fn answer(s: &mut Shared, uid: u32, req: Request, now: u64) -> Reply {
    s.pauses.retain(|_, (_, until)| *until > now);
    let mut error = None;
    match req {
        Request::Status => {}
        Request::Pause { minutes } => {
            let max = s.pause_max_minutes;
            if max == 0 {
                error = Some(
                    "this machine's policy does not let people pause capture \
                     (policy.user_pause_max_minutes = 0)"
                        .into(),
                );
            } else if minutes == 0 || minutes > max {
                error = Some(format!("a pause lasts 1 to {max} minutes"));
            } else {
                let until = now.saturating_add(minutes * NS_PER_MINUTE);
                s.pauses.insert(uid, (now, until));
                s.pauses_changed = true;
                tracing::info!(uid, minutes, "capture paused by the user");
            }
        }
        Request::Resume => {
            if s.pauses.remove(&uid).is_some() {
                s.pauses_changed = true;
                tracing::info!(uid, "capture resumed by the user");
            }
        }
    }
    let current = s.status.as_ref().and_then(|p| p.current.clone());
    let yours = current
        .as_ref()
        .is_some_and(|c| c.uid == Some(uid) || uid == 0);
    Reply {
        uid,
        policy: s
            .status
            .as_ref()
            .map(|p| format!("{}:{}", p.stamp.version, p.stamp.hash))
            .unwrap_or_default(),
        focus_not_yours: !yours,
        focused: current.filter(|_| yours),
        paused_for_s: s
            .pauses
            .get(&uid)
            .map(|(_, until)| until.saturating_sub(now).div_ceil(1_000_000_000)),
        pause_max_minutes: s.pause_max_minutes,
        error,
        capture: None,
        notice: NoticeConfig::default(),
    }
}

/// Sends `req` to the agent's socket at `path` and returns its reply.
pub fn request(path: &Path, req: &Request) -> Result<Reply, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(io_err)?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| io_err(io::Error::other(e)))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new((&stream).take(1 << 20))
        .read_line(&mut reply)
        .map_err(io_err)?;
    serde_json::from_str(reply.trim()).map_err(|source| ControlError::Reply {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max: u64, focus_uid: Option<u32>) -> Shared {
        Shared {
            status: Some(PolicyStatus {
                current: Some(CurrentFocus {
                    uid: focus_uid,
                    exe: "/usr/bin/app".into(),
                    level: "full".into(),
                    ..CurrentFocus::default()
                }),
                ..PolicyStatus::default()
            }),
            pause_max_minutes: max,
            ..Shared::default()
        }
    }

    #[test]
    fn a_reply_shows_only_the_callers_own_focus() {
        let mut s = shared(0, Some(1000));
        let mine = answer(&mut s, 1000, Request::Status, 1);
        assert_eq!(mine.focused.map(|f| f.exe), Some("/usr/bin/app".into()));
        let theirs = answer(&mut s, 1001, Request::Status, 1);
        assert!(theirs.focused.is_none() && theirs.focus_not_yours);
    }

    #[test]
    fn pauses_are_bounded_by_the_policy_and_per_user() {
        let mut s = shared(0, Some(1000));
        let r = answer(&mut s, 1000, Request::Pause { minutes: 5 }, 1);
        assert!(r.error.is_some() && r.paused_for_s.is_none());

        let mut s = shared(10, Some(1000));
        assert!(answer(&mut s, 1000, Request::Pause { minutes: 11 }, 1)
            .error
            .is_some());
        let r = answer(&mut s, 1000, Request::Pause { minutes: 10 }, 0);
        assert_eq!((r.error, r.paused_for_s), (None, Some(600)));
        assert_eq!(s.pauses.get(&1000), Some(&(0, 10 * NS_PER_MINUTE)));
        assert!(std::mem::take(&mut s.pauses_changed));
        // Another user is not paused by it, and it ends on its own.
        assert_eq!(answer(&mut s, 1001, Request::Status, 1).paused_for_s, None);
        let later = answer(&mut s, 1000, Request::Status, 10 * NS_PER_MINUTE);
        assert_eq!(later.paused_for_s, None);
        answer(&mut s, 1000, Request::Pause { minutes: 1 }, 0);
        answer(&mut s, 1000, Request::Resume, 1);
        assert!(s.pauses.is_empty());
    }

    #[test]
    fn the_socket_answers_with_the_kernels_idea_of_the_caller() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SOCKET_FILE);
        let control = Control::start(&path).expect("start");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o666);
        control.publish(PolicyStatus::default(), 5);
        let me = nix::unistd::getuid().as_raw();
        let r = request(&path, &Request::Pause { minutes: 5 }).expect("reply");
        assert_eq!((r.uid, r.error), (me, None));
        let pauses = control.take_pauses().expect("changed");
        assert!(pauses.contains_key(&me));
        assert!(control.take_pauses().is_none(), "reported once");
        let r = request(&path, &Request::Resume).expect("reply");
        assert_eq!(r.paused_for_s, None);
        assert_eq!(control.take_pauses().map(|p| p.len()), Some(0));
        assert_eq!(r.capture, None, "no ring was given");
    }

    #[test]
    fn the_reply_carries_the_notice_and_what_the_agent_knows_of_capture() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("imprint.toml");
        std::fs::write(
            &config,
            "[notice]\ntext = \"We record input.\"\nversion = 2\n",
        )
        .expect("config");
        let path = dir.path().join(SOCKET_FILE);
        let sources = Sources {
            ring: Some((dir.path().join("ring"), dir.path().join("cursor"))),
            config: Some((config.clone(), true)),
        };
        let control = Control::start_with(&path, sources).expect("start");
        control.publish(PolicyStatus::default(), 0);
        let r = request(&path, &Request::Status).expect("reply");
        assert_eq!(
            (r.notice.text.as_str(), r.notice.version),
            ("We record input.", 2)
        );
        let c = r.capture.expect("capture");
        assert!(c.known && !c.capture_on, "no ring: off, and known: {c:?}");
        // A changed notice is answered without a restart; a broken file keeps the old one.
        std::fs::write(&config, "[notice]\ntext = \"Revised.\"\nversion = 3\n").expect("config");
        let r = request(&path, &Request::Status).expect("reply");
        assert_eq!((r.notice.text.as_str(), r.notice.version), ("Revised.", 3));
        std::fs::write(&config, "[notice]\nversion = \"x\"\n").expect("config");
        let r = request(&path, &Request::Status).expect("reply");
        assert_eq!(r.notice.version, 3);
    }
}
