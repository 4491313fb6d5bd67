//! Secure input: contexts that are never captured above `timing`. Password managers, lock
//! screens and greeters (by executable name, app id or window class), window titles matching a
//! pattern (when titles are recorded), and terminal programs reading with echo turned off
//! (sudo, ssh, passwd, pinentry prompts), detected from the pty's termios.

use imprint_record::FocusInfo;
use regex::Regex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Password managers, matched on the executable's file name, the app id or the window class
/// (case-insensitive). Extend with `policy.password_managers`.
pub const PASSWORD_MANAGERS: &[&str] = &[
    "keepassxc",
    "org.keepassxc.keepassxc",
    "keepass",
    "keepass2",
    "1password",
    "bitwarden",
    "com.bitwarden.desktop",
    "enpass",
    "seahorse",
    "org.gnome.seahorse.application",
    "kwalletmanager5",
    "kwalletmanager",
    "gnome-keyring-daemon",
    "pinentry",
    "pinentry-gnome3",
    "pinentry-qt",
    "pinentry-gtk-2",
    "pinentry-curses",
    "pinentry-tty",
    "gcr-prompter",
    "ksshaskpass",
    "ssh-askpass",
    "lxqt-openssh-askpass",
    "polkit-gnome-authentication-agent-1",
    "polkit-kde-authentication-agent-1",
    "lxpolkit",
    "keepassx",
    "passwordsafe",
    "org.gnome.world.passwordsafe",
    "proton-pass",
    "dashlane",
    "lastpass",
    "nordpass",
];

/// Lock screens and greeters. Extend with `policy.lock_screens`.
pub const LOCK_SCREENS: &[&str] = &[
    "gdm",
    "gdm-session-worker",
    "gdm-greeter",
    "lightdm",
    "lightdm-gtk-greeter",
    "lightdm-slick-greeter",
    "slick-greeter",
    "sddm",
    "sddm-greeter",
    "sddm-greeter-qt6",
    "greetd",
    "gtkgreet",
    "tuigreet",
    "regreet",
    "swaylock",
    "hyprlock",
    "i3lock",
    "xscreensaver",
    "xscreensaver-auth",
    "xsecurelock",
    "light-locker",
    "slock",
    "kscreenlocker_greet",
    "cinnamon-screensaver",
    "mate-screensaver",
    "xfce4-screensaver",
    "gnome-screensaver",
    "login",
];

/// Window titles treated as secure when titles are recorded. Extend with
/// `policy.secure_titles`.
pub const SECURE_TITLES: &[&str] = &[
    r"(?i)(?-u:\b)password(?-u:\b)",
    r"(?i)(?-u:\b)passphrase(?-u:\b)",
    r"(?i)(?-u:\b)unlock(?-u:\b)",
    r"(?i)(?-u:\b)authenticat(e|ion) required(?-u:\b)",
    r"(?i)(?-u:\b)sign in(?-u:\b)",
    r"(?i)(?-u:\b)log ?in(?-u:\b)",
];

/// The compiled secure-input lists.
#[derive(Clone, Debug)]
pub struct SecureSet {
    managers: Vec<String>,
    locks: Vec<String>,
    title_patterns: Vec<String>,
    /// Compiled on first use (titles are off by default, and compiling costs).
    titles: std::sync::Arc<std::sync::OnceLock<Vec<Regex>>>,
    pub terminal_echo: bool,
}

impl SecureSet {
    /// No lists at all (the fallback when nothing else compiles).
    pub fn empty() -> SecureSet {
        SecureSet {
            managers: Vec::new(),
            locks: Vec::new(),
            title_patterns: Vec::new(),
            titles: Default::default(),
            terminal_echo: true,
        }
    }

    pub fn new(
        extra_managers: &[String],
        extra_locks: &[String],
        extra_titles: &[String],
        terminal_echo: bool,
    ) -> Result<SecureSet, String> {
        let lower = |b: &[&str], e: &[String]| -> Vec<String> {
            b.iter()
                .map(|s| s.to_lowercase())
                .chain(e.iter().map(|s| s.to_lowercase()))
                .collect()
        };
        for t in extra_titles {
            Regex::new(t).map_err(|e| format!("secure_titles `{t}`: {e}"))?;
        }
        Ok(SecureSet {
            managers: lower(PASSWORD_MANAGERS, extra_managers),
            locks: lower(LOCK_SCREENS, extra_locks),
            title_patterns: SECURE_TITLES
                .iter()
                .map(|s| s.to_string())
                .chain(extra_titles.iter().cloned())
                .collect(),
            titles: Default::default(),
            terminal_echo,
        })
    }

    /// Why `f` is secure input regardless of its terminal state, if it is.
    pub fn static_reason(
        &self,
        exe: &str,
        app_id: &str,
        wm_class: &str,
        title: &str,
    ) -> Option<&'static str> {
        let base = exe.rsplit('/').next().unwrap_or(exe).to_lowercase();
        let names = [base, app_id.to_lowercase(), wm_class.to_lowercase()];
        let hit = |list: &[String]| names.iter().any(|n| !n.is_empty() && list.contains(n));
        if hit(&self.managers) {
            return Some("password_manager");
        }
        if hit(&self.locks) {
            return Some("lock_screen");
        }
        if !title.is_empty() && self.titles().iter().any(|r| r.is_match(title)) {
            return Some("secure_title");
        }
        None
    }

    fn titles(&self) -> &[Regex] {
        self.titles.get_or_init(|| {
            self.title_patterns
                .iter()
                .filter_map(|t| Regex::new(t).ok())
                .collect()
        })
    }

    /// As [`SecureSet::static_reason`], for a focus record.
    pub fn focus_reason(&self, f: &FocusInfo) -> Option<&'static str> {
        self.static_reason(&f.exe, &f.app_id, &f.wm_class, &f.title)
            .or_else(|| {
                // The terminal emulator itself can be a lock screen's or manager's host.
                (!f.terminal_exe.is_empty())
                    .then(|| self.static_reason(&f.terminal_exe, "", "", ""))
                    .flatten()
            })
    }
}

/// Whether the terminal `pid` reads from is at a password prompt: echo off while input is
/// still line-buffered (canonical), as getpass, sudo, ssh, passwd and `read -s` leave it.
/// Line editors (readline, zle, ash) and full-screen programs turn both off to echo for
/// themselves, so they are not taken for prompts; pinentry-curses/tty are on the password
/// manager list instead. `None` when it cannot be told (not a tty, no permission, gone).
pub fn echo_off(pid: u32) -> Option<bool> {
    use std::os::fd::AsRawFd;
    if pid == 0 {
        return None;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(format!("/proc/{pid}/fd/0"))
        .ok()?;
    let mut t = std::mem::MaybeUninit::<libc::termios>::zeroed();
    // SAFETY: `f` is an open descriptor for the duration of the call and `t` is a valid,
    // writable termios buffer.
    let rc = unsafe { libc::tcgetattr(f.as_raw_fd(), t.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: tcgetattr succeeded, so it filled `t`.
    let t = unsafe { t.assume_init() };
    Some(t.c_lflag & libc::ECHO == 0 && t.c_lflag & libc::ICANON != 0)
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
    }
}

/// Echo state per pid, re-read at most every `ttl` (a key press is the only trigger, so an
/// idle agent reads nothing).
#[derive(Debug)]
pub struct EchoCache {
    ttl: Duration,
    seen: HashMap<u32, (Instant, Option<bool>)>,
}

impl EchoCache {
    pub fn new(ttl: Duration) -> EchoCache {
        EchoCache {
            ttl,
            seen: HashMap::new(),
        }
    }

    /// True when `pid`'s terminal has echo off.
    pub fn echo_off(&mut self, pid: u32) -> bool {
        let now = Instant::now();
        if let Some((at, v)) = self.seen.get(&pid) {
            if now.duration_since(*at) < self.ttl {
                return v.unwrap_or(false);
            }
        }
        if self.seen.len() > 256 {
            self.seen.clear();
        }
        let v = echo_off(pid);
        self.seen.insert(pid, (now, v));
        v.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_match() {
        let s = SecureSet::new(&["MyVault".into()], &[], &[], true).expect("set");
        assert_eq!(
            s.static_reason("/usr/bin/keepassxc", "", "", ""),
            Some("password_manager")
        );
        assert_eq!(
            s.static_reason("/opt/x/bin", "", "myvault", ""),
            Some("password_manager")
        );
        assert_eq!(
            s.static_reason("/usr/bin/swaylock", "", "", ""),
            Some("lock_screen")
        );
        assert_eq!(
            s.static_reason("/usr/bin/firefox", "", "", "Enter password - Firefox"),
            Some("secure_title")
        );
        assert_eq!(s.static_reason("/usr/bin/gedit", "", "", "notes"), None);
    }

    #[test]
    fn echo_of_self_is_readable_or_unknown() {
        // Under a test runner stdin is rarely a tty: the answer is None, never a panic.
        let _ = echo_off(std::process::id());
        assert_eq!(echo_off(0), None);
    }
}

#[cfg(test)]
mod pty_tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Command, Stdio};

    fn set_lflag(fd: &OwnedFd, flag: libc::tcflag_t, on: bool) {
        use std::os::fd::AsRawFd;
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

    /// A real pty: a child reading from it is seen as a password prompt exactly while the
    /// terminal's ECHO flag is off.
    #[test]
    fn echo_off_is_read_from_the_foreground_programs_tty() {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into valid out-pointers; the optional
        // arguments are null.
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
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let set_echo = |on: bool| set_lflag(&slave, libc::ECHO, on);
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        set_echo(true);
        assert_eq!(echo_off(pid), Some(false));
        set_echo(false);
        assert_eq!(echo_off(pid), Some(true));
        // A line editor at a shell prompt: echo and line buffering both off.
        set_lflag(&slave, libc::ICANON, false);
        assert_eq!(echo_off(pid), Some(false));
        set_lflag(&slave, libc::ICANON, true);
        let mut cache = EchoCache::new(Duration::from_millis(0));
        assert!(cache.echo_off(pid));
        // The agent's filter caps a `full` terminal program at `timing` while echo is off.
        let policy = crate::Policy::new(crate::Level::Full);
        let mut f = crate::filter::Filter::new(policy);
        let mut out = Vec::new();
        f.push_record(
            imprint_record::Record::Focus(Box::new(FocusInfo {
                seq: 1,
                pid,
                exe: "/usr/bin/sudo".into(),
                terminal_pid: 1,
                terminal_exe: "/usr/bin/xterm".into(),
                ..Default::default()
            })),
            &mut out,
        );
        for value in [1, 0] {
            f.push_record(
                imprint_record::Record::Event(imprint_record::InputEvent {
                    mono_ns: 10 + value as u64,
                    device: 0,
                    kind: 1,
                    code: 19, // KEY_R
                    value,
                    focus: 1,
                }),
                &mut out,
            );
        }
        f.flush(&mut out);
        let codes: Vec<u16> = out
            .iter()
            .filter_map(|r| match r {
                imprint_record::Record::Event(e) => Some(e.code),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![30, 30], "masked to KEY_A: {out:?}");
        assert_eq!(f.stats.echo_off_keys, 1);
        set_echo(true);
        assert!(!cache.echo_off(pid));
        let _ = child.kill();
        let _ = child.wait();
        drop(master);
    }
}
