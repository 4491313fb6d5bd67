//! The session socket (`/run/imprint/session.sock`): imprint-session helpers report what has
//! focus in their login session, and the agent returns its scope verdict for each focus.
//!
//! Trust comes from the kernel, never from a message: every connection's uid is read with
//! `SO_PEERCRED`. A focus report is accepted only from the uid that owns the seat's active
//! login session (logind's state files, re-read for every report so that a switch of user is
//! followed); a verdict only from the agent's uid. Everything else is refused and counted.
//! Packets are decoded as untrusted input ([`imprint_record::wire`]).

use imprint_procs::logind;
use imprint_record::wire::{decode_message, SessionMessage, Verdict, MAX_MESSAGE_BYTES};
use imprint_record::{FocusInfo, Record};
use nix::sys::socket::{
    accept4, bind, getsockopt, listen, recv, socket, sockopt, AddressFamily, Backlog, MsgFlags,
    SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

pub use imprint_record::wire::SOCKET_FILE;

/// What the session socket tells the collector's loop.
#[derive(Debug)]
pub enum SessionEvent {
    /// The active session's helper on connection `conn` reports this focus (`conn` 0: trackers
    /// in this process).
    Focus(u64, Box<FocusInfo>),
    /// The agent's verdict for a focus.
    Verdict(Verdict),
    /// A pointer sample, window geometry or display layout from the helper on connection
    /// `conn` (pointer and window only count from the helper whose focus is current).
    Screen(u64, Record),
    /// A helper connected.
    HelperUp { conn: u64, uid: u32 },
    /// A helper's connection closed (it exited, crashed or was killed).
    HelperDown { conn: u64, uid: u32 },
    /// A report from a peer (on connection `conn`) that does not own the seat's active session.
    Refused { conn: u64, uid: u32 },
    /// A verdict from a peer that is not the agent.
    VerdictRefused { uid: u32 },
    /// A packet that was too long or did not decode.
    Malformed,
    /// Someone (`imprint status`) asks for fresh BPF counters.
    Refresh,
}

/// Who may report focus: the owner of the seat's active session.
#[derive(Clone, Debug)]
pub enum SessionAuthority {
    /// logind's state files (normally `/run/systemd/seats`, `/run/systemd/sessions`).
    Logind {
        seats_dir: PathBuf,
        sessions_dir: PathBuf,
        seat: String,
    },
    /// A fixed uid, for machines without logind (the VM, tests) where the operator says whose
    /// session the seat is.
    Uid(u32),
}

impl SessionAuthority {
    /// logind on `seat`, at its usual paths.
    pub fn logind(seat: &str) -> SessionAuthority {
        SessionAuthority::Logind {
            seats_dir: logind::SEATS_DIR.into(),
            sessions_dir: logind::SESSIONS_DIR.into(),
            seat: seat.into(),
        }
    }

    /// The active session of the seat, if `uid` owns it.
    fn active_for(&self, uid: u32) -> Option<ActiveSession> {
        match self {
            SessionAuthority::Uid(u) => (*u == uid).then(ActiveSession::default),
            SessionAuthority::Logind {
                seats_dir,
                sessions_dir,
                seat,
            } => {
                let id = logind::active_session_id(seats_dir, seat)?;
                let s = logind::load_session(sessions_dir, &id)?;
                (s.uid == uid).then(|| ActiveSession {
                    id: s.id,
                    seat: seat.clone(),
                })
            }
        }
    }
}

#[derive(Default)]
struct ActiveSession {
    id: String,
    seat: String,
}

/// Session socket settings.
#[derive(Clone, Debug)]
pub struct SessionSocketOptions {
    pub path: PathBuf,
    pub authority: SessionAuthority,
    /// Uids whose verdicts are accepted (the agent's user; the collector's own uid always is,
    /// for `imprint run`).
    pub agent_uids: Vec<u32>,
}

/// Binds the socket (mode 0666: every user's helper must reach it; trust comes from the peer
/// credentials) and serves it until `tx` closes.
pub fn spawn(
    opts: SessionSocketOptions,
    tx: mpsc::Sender<SessionEvent>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind_listener(&opts.path)?;
    tracing::info!(socket = %opts.path.display(), "session socket listening");
    Ok(tokio::spawn(serve(listener, opts, tx)))
}

fn bind_listener(path: &Path) -> std::io::Result<AsyncFd<OwnedFd>> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    listen(&fd, Backlog::new(16).map_err(std::io::Error::from)?)?;
    // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open while it is registered.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into())
}

async fn serve(
    listener: AsyncFd<OwnedFd>,
    opts: SessionSocketOptions,
    tx: mpsc::Sender<SessionEvent>,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let mut next_conn = 0u64;
    loop {
        let accepted = tokio::select! {
            r = listener.readable() => r,
            () = tx.closed() => return,
        };
        let mut guard = match accepted {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "session socket failed; helpers cannot report");
                return;
            }
        };
        let conn = match guard.try_io(|l| {
            accept4(
                l.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            )
            .map_err(std::io::Error::from)
        }) {
            Ok(Ok(fd)) => fd,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "session socket accept failed");
                continue;
            }
            Err(_would_block) => continue,
        };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let conn: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(conn) };
        let uid = match getsockopt(&conn, sockopt::PeerCredentials) {
            Ok(c) => c.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials on the session socket; closing");
                continue;
            }
        };
        next_conn += 1;
        let is_agent = uid == own_uid || opts.agent_uids.contains(&uid);
        let id = next_conn;
        let tx = tx.clone();
        let authority = opts.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(conn, id, uid, is_agent, authority, tx).await {
                tracing::debug!(uid, error = %e, "session connection ended");
            }
        });
    }
}

async fn connection(
    fd: OwnedFd,
    conn: u64,
    uid: u32,
    is_agent: bool,
    authority: SessionAuthority,
    tx: mpsc::Sender<SessionEvent>,
) -> std::io::Result<()> {
    // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open while it is registered.
    let fd = unsafe { AsyncFd::register(fd) }?;
    // One byte more than the limit tells an oversized packet (truncated by the kernel) apart.
    let mut buf = vec![0u8; MAX_MESSAGE_BYTES + 1];
    let mut helper = false;
    let result = loop {
        let mut guard = fd.readable().await?;
        let n = match guard.try_io(|f| {
            recv(f.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC).map_err(std::io::Error::from)
        }) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => break Err(e),
            Err(_would_block) => continue,
        };
        if n == 0 {
            break Ok(());
        }
        let event = if n > MAX_MESSAGE_BYTES {
            SessionEvent::Malformed
        } else {
            match decode_message(&buf[..n]) {
                Err(e) => {
                    tracing::warn!(uid, error = %e, "malformed session message");
                    SessionEvent::Malformed
                }
                Ok(SessionMessage::Verdict(v)) if is_agent => SessionEvent::Verdict(v),
                Ok(SessionMessage::Verdict(_)) => SessionEvent::VerdictRefused { uid },
                Ok(SessionMessage::Refresh) => SessionEvent::Refresh,
                Ok(SessionMessage::Focus(mut f)) => match authority.active_for(uid) {
                    Some(active) => {
                        if !helper {
                            helper = true;
                            if tx.send(SessionEvent::HelperUp { conn, uid }).await.is_err() {
                                break Ok(());
                            }
                        }
                        f.reporter = "session".into();
                        f.reporter_uid = uid;
                        if !active.id.is_empty() {
                            f.session = active.id;
                            f.seat = active.seat;
                        }
                        SessionEvent::Focus(conn, f)
                    }
                    None => SessionEvent::Refused { conn, uid },
                },
                Ok(SessionMessage::Display(mut d)) => match authority.active_for(uid) {
                    Some(active) => {
                        d.uid = uid;
                        d.session = active.id;
                        SessionEvent::Screen(conn, Record::Display(d))
                    }
                    None => SessionEvent::Refused { conn, uid },
                },
                // Pointer samples come tens of times a second: rather than re-read logind's
                // files for each, they count only from a connection whose focus report was
                // accepted (and, in the collector, only while that focus is current).
                Ok(SessionMessage::Pointer(p)) if helper => {
                    SessionEvent::Screen(conn, Record::Pointer(p))
                }
                Ok(SessionMessage::Window(w)) if helper => {
                    SessionEvent::Screen(conn, Record::Window(w))
                }
                Ok(SessionMessage::Pointer(_) | SessionMessage::Window(_)) => {
                    SessionEvent::Refused { conn, uid }
                }
            }
        };
        if tx.send(event).await.is_err() {
            break Ok(());
        }
    };
    if helper {
        let _ = tx.send(SessionEvent::HelperDown { conn, uid }).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trust follows logind's state files: only the owner of the seat's active session.
    #[test]
    fn only_the_active_sessions_owner_may_report() {
        let dir = tempfile::tempdir().expect("tmp");
        let seats = dir.path().join("seats");
        let sessions = dir.path().join("sessions");
        std::fs::create_dir_all(&seats).expect("mkdir");
        std::fs::create_dir_all(&sessions).expect("mkdir");
        let auth = SessionAuthority::Logind {
            seats_dir: seats.clone(),
            sessions_dir: sessions.clone(),
            seat: "seat0".into(),
        };
        // No logind state at all: nobody is trusted.
        assert!(auth.active_for(1000).is_none());
        std::fs::write(seats.join("seat0"), "ACTIVE=c7\nSESSIONS=c7 c9\n").expect("seat");
        std::fs::write(
            sessions.join("c7"),
            "UID=1000\nUSER=ada\nSEAT=seat0\nACTIVE=1\n",
        )
        .expect("session");
        std::fs::write(sessions.join("c9"), "UID=1001\nUSER=bob\nSEAT=seat0\n").expect("session");
        let a = auth.active_for(1000).expect("the active session's owner");
        assert_eq!((a.id.as_str(), a.seat.as_str()), ("c7", "seat0"));
        assert!(
            auth.active_for(1001).is_none(),
            "a background session's owner"
        );
        // A switch of user is followed at the next report.
        std::fs::write(seats.join("seat0"), "ACTIVE=c9\n").expect("seat");
        assert!(auth.active_for(1000).is_none());
        assert!(auth.active_for(1001).is_some());
        assert!(SessionAuthority::Uid(5).active_for(5).is_some());
        assert!(SessionAuthority::Uid(5).active_for(6).is_none());
    }
}
