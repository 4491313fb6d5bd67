//! How a terminal program's tty reads input right now: line buffered with echo, a password
//! prompt (echo off while line buffered), or raw (line editors, full-screen programs).
//!
//! The helper reads it as the session's user: it opens the program's terminal device itself
//! (`/dev/pts/N` or `/dev/ttyN`, owned by that user), which works even for a setuid program
//! such as sudo whose `/proc/PID/fd` the user may not open. Anything it cannot read is
//! [`TtyMode::Unknown`], which policy treats as a prompt.

use imprint_record::TtyMode;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// The device node of a `tty_nr` from `/proc/PID/stat`: a pty or a virtual console.
pub fn tty_device(tty_nr: u32) -> Option<String> {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        4 if (1..64).contains(&minor) => Some(format!("/dev/tty{minor}")),
        _ => crate::terminal::pts_path(tty_nr),
    }
}

/// The mode of the terminal `pid` is attached to.
pub fn tty_mode(pid: u32) -> TtyMode {
    if pid == 0 {
        return TtyMode::Unknown;
    }
    let Ok(stat) = imprint_procs::read_stat(pid) else {
        return TtyMode::Unknown;
    };
    match tty_device(stat.tty_nr) {
        Some(dev) => mode_of_device(&dev),
        None => TtyMode::Unknown,
    }
}

/// The mode of the terminal device at `path`.
pub fn mode_of_device(path: &str) -> TtyMode {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    else {
        return TtyMode::Unknown;
    };
    let mut t = std::mem::MaybeUninit::<libc::termios>::zeroed();
    // SAFETY: `f` is an open descriptor for the duration of the call and `t` is a valid,
    // writable termios buffer.
    if unsafe { libc::tcgetattr(f.as_raw_fd(), t.as_mut_ptr()) } != 0 {
        return TtyMode::Unknown;
    }
    // SAFETY: tcgetattr succeeded, so it filled `t`.
    let t = unsafe { t.assume_init() };
    TtyMode::from_lflag(t.c_lflag & libc::ECHO != 0, t.c_lflag & libc::ICANON != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Command, Stdio};

    fn set_lflag(fd: &OwnedFd, flag: libc::tcflag_t, on: bool) {
        let mut t = std::mem::MaybeUninit::<libc::termios>::zeroed();
        // SAFETY: valid descriptor and termios buffer.
        assert_eq!(
            unsafe { libc::tcgetattr(fd.as_raw_fd(), t.as_mut_ptr()) },
            0
        );
        // SAFETY: tcgetattr filled it.
        let mut t = unsafe { t.assume_init() };
        if on {
            t.c_lflag |= flag;
        } else {
            t.c_lflag &= !flag;
        }
        // SAFETY: valid descriptor and termios.
        assert_eq!(
            unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) },
            0
        );
    }

    #[test]
    fn devices() {
        assert_eq!(tty_device((4 << 8) | 1).as_deref(), Some("/dev/tty1"));
        assert_eq!(tty_device((136 << 8) | 3).as_deref(), Some("/dev/pts/3"));
        assert_eq!(tty_device(0), None);
        assert_eq!(tty_mode(0), TtyMode::Unknown);
    }

    /// A real pty: a child on it is at a prompt exactly while ECHO is off and ICANON on.
    #[test]
    fn mode_is_read_from_the_programs_terminal() {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the given ints.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: openpty returned two fresh descriptors that nothing else owns.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdin = slave.try_clone().expect("dup");
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::null())
            .spawn()
            .expect("sleep");
        // `sleep` has no controlling terminal: read its tty from the descriptor instead.
        let dev = std::fs::read_link(format!("/proc/{}/fd/0", child.id())).expect("fd 0");
        let dev = dev.to_string_lossy().into_owned();
        set_lflag(&slave, libc::ECHO | libc::ICANON, true);
        assert_eq!(mode_of_device(&dev), TtyMode::Echo);
        set_lflag(&slave, libc::ECHO, false);
        assert_eq!(mode_of_device(&dev), TtyMode::NoEcho);
        set_lflag(&slave, libc::ICANON, false);
        assert_eq!(mode_of_device(&dev), TtyMode::Raw);
        assert_eq!(mode_of_device("/nonexistent/tty"), TtyMode::Unknown);
        let _ = child.kill();
        let _ = child.wait();
        drop(master);
    }
}
