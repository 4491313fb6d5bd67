//! The kernel's netlink proc connector (`NETLINK_CONNECTOR`, `CN_IDX_PROC`): fork, exec
//! and exit notifications for every process, pushed by the kernel. Subscribing needs
//! CAP_NET_ADMIN in the initial user and network namespaces.

use super::{ProcError, ProcEvent};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;

const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
/// `struct proc_event` header: what, cpu, timestamp_ns.
const EV_HDR: usize = 16;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_UID: u32 = 0x0000_0004;
const PROC_EVENT_SID: u32 = 0x0000_0080;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// A subscribed proc-connector socket.
pub struct ProcConnector {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

fn last_err() -> ProcError {
    ProcError::Connector(std::io::Error::last_os_error())
}

impl ProcConnector {
    /// Opens the socket and subscribes to process events. Needs a tokio runtime.
    pub fn open() -> Result<ProcConnector, ProcError> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(last_err());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // nl_pid 0: the kernel picks a unique port id.
        // SAFETY: addr is a valid sockaddr_nl of the given length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_err());
        }
        // A larger receive buffer makes overruns (and so table resets) rarer.
        let size: libc::c_int = 1 << 20;
        // SAFETY: setsockopt with a pointer to a live c_int of the stated size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        send_listen(fd.as_raw_fd())?;
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, unchanged, until it drops.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| ProcError::Connector(e.into()))?;
        Ok(ProcConnector {
            fd,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Waits for the next datagram and appends the events it carries to `out`.
    pub async fn recv(&mut self, out: &mut Vec<ProcEvent>) -> Result<(), ProcError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(ProcError::Connector)?;
            let buf = &mut self.buf;
            let res = guard.try_io(|fd| {
                // SAFETY: recv into a buffer we own, of its full length.
                let n = unsafe {
                    libc::recv(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        0,
                    )
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => {
                    parse_datagram(&self.buf[..n], out);
                    return Ok(());
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.push(ProcEvent::Lost);
                    return Ok(());
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(ProcError::Connector(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

fn send_listen(fd: RawFd) -> Result<(), ProcError> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut msg = Vec::with_capacity(total);
    // nlmsghdr: len, type (NLMSG_DONE), flags, seq, pid
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    // cn_msg: id {idx, val}, seq, ack, len, flags
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&4u16.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes());
    msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    // SAFETY: send of a buffer we own, of its full length.
    let n = unsafe { libc::send(fd, msg.as_ptr() as *const libc::c_void, msg.len(), 0) };
    if n < 0 {
        return Err(last_err());
    }
    Ok(())
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

/// Decodes one datagram (one or more netlink messages) into events; anything malformed or
/// uninteresting (threads, comm changes, …) is skipped.
pub fn parse_datagram(mut b: &[u8], out: &mut Vec<ProcEvent>) {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32_at(b, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return;
        }
        let msg = &b[NLMSG_HDRLEN..len];
        if let Some(ev) = parse_cn_msg(msg) {
            out.push(ev);
        }
        // Messages are 4-byte aligned.
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
}

fn parse_cn_msg(m: &[u8]) -> Option<ProcEvent> {
    if u32_at(m, 0)? != CN_IDX_PROC || u32_at(m, 4)? != CN_VAL_PROC {
        return None;
    }
    let ev = m.get(CN_MSG_LEN..)?;
    let what = u32_at(ev, 0)?;
    let d = ev.get(EV_HDR..)?;
    // Every event's data starts with (pid, tgid) of the process concerned, except fork,
    // which starts with the parent's and then the child's.
    match what {
        PROC_EVENT_FORK => {
            let (parent_tgid, child_pid, child_tgid) =
                (u32_at(d, 4)?, u32_at(d, 8)?, u32_at(d, 12)?);
            (child_pid == child_tgid).then_some(ProcEvent::Fork {
                parent: parent_tgid,
                child: child_tgid,
            })
        }
        PROC_EVENT_EXEC => Some(ProcEvent::Exec { pid: u32_at(d, 4)? }),
        PROC_EVENT_EXIT => {
            let (pid, tgid) = (u32_at(d, 0)?, u32_at(d, 4)?);
            // Only the thread-group leader's exit ends the process.
            (pid == tgid).then_some(ProcEvent::Exit { pid: tgid })
        }
        PROC_EVENT_UID => {
            let (pid, tgid) = (u32_at(d, 0)?, u32_at(d, 4)?);
            (pid == tgid).then_some(ProcEvent::Uid { pid: tgid })
        }
        PROC_EVENT_SID => Some(ProcEvent::Sid { pid: u32_at(d, 4)? }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, data: &[u32]) -> Vec<u8> {
        let body_len = CN_MSG_LEN + EV_HDR + data.len() * 4;
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body_len) as u32).to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]);
        for v in data {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m
    }

    #[test]
    fn decodes_events_and_skips_threads() {
        let mut out = Vec::new();
        parse_datagram(&datagram(PROC_EVENT_FORK, &[10, 10, 11, 11]), &mut out);
        parse_datagram(&datagram(PROC_EVENT_FORK, &[10, 10, 12, 11]), &mut out); // a thread
        parse_datagram(&datagram(PROC_EVENT_EXEC, &[11, 11]), &mut out);
        parse_datagram(&datagram(PROC_EVENT_EXIT, &[12, 11, 0, 17]), &mut out); // a thread
        parse_datagram(&datagram(PROC_EVENT_EXIT, &[11, 11, 0, 17]), &mut out);
        parse_datagram(&datagram(0x200, &[11, 11]), &mut out); // comm: ignored
        parse_datagram(&[1, 2, 3], &mut out);
        assert_eq!(
            out,
            vec![
                ProcEvent::Fork {
                    parent: 10,
                    child: 11
                },
                ProcEvent::Exec { pid: 11 },
                ProcEvent::Exit { pid: 11 },
            ]
        );
    }
}
