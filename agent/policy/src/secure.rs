//! Secure input: contexts that are never captured above `timing`. Password managers, lock
//! screens and greeters (by executable name, app id or window class), window titles matching a
//! pattern (when titles are recorded), and terminal programs reading with echo turned off
//! (sudo, ssh, passwd, pinentry prompts), detected from the pty's termios.

use imprint_record::{FocusInfo, TtyMode};
use regex::Regex;

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
        // What the session helper saw: a lock screen up (even one that never takes focus),
        // a password field focused inside an ordinary application.
        if f.locked {
            return Some("lock_screen");
        }
        if f.secure_field {
            return Some("password_field");
        }
        if self.terminal_echo && is_terminal_program(f) {
            match f.tty {
                TtyMode::NoEcho => return Some("echo_off"),
                // Fail closed: a terminal whose state nobody could read may be at a prompt.
                TtyMode::Unknown | TtyMode::None => return Some("tty_unknown"),
                TtyMode::Echo | TtyMode::Raw => {}
            }
        }
        self.static_reason(&f.exe, &f.app_id, &f.wm_class, &f.title)
            .or_else(|| {
                // The terminal emulator itself can be a lock screen's or manager's host.
                (!f.terminal_exe.is_empty())
                    .then(|| self.static_reason(&f.terminal_exe, "", "", ""))
                    .flatten()
            })
    }
}

/// Programs in a terminal emulator, and on a text console.
pub fn is_terminal_program(f: &FocusInfo) -> bool {
    f.terminal_pid != 0 || f.tracker == "tty"
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
    fn the_helpers_tty_state_caps_terminal_programs() {
        let s = SecureSet::empty();
        let term = |tty| FocusInfo {
            exe: "/usr/bin/sudo".into(),
            terminal_pid: 7,
            tty,
            ..FocusInfo::default()
        };
        assert_eq!(s.focus_reason(&term(TtyMode::NoEcho)), Some("echo_off"));
        // Nobody could read the terminal: fail closed.
        assert_eq!(s.focus_reason(&term(TtyMode::Unknown)), Some("tty_unknown"));
        assert_eq!(s.focus_reason(&term(TtyMode::None)), Some("tty_unknown"));
        assert_eq!(s.focus_reason(&term(TtyMode::Echo)), None);
        assert_eq!(s.focus_reason(&term(TtyMode::Raw)), None);
        let gui = FocusInfo {
            exe: "/usr/bin/firefox".into(),
            ..FocusInfo::default()
        };
        assert_eq!(s.focus_reason(&gui), None);
        let field = FocusInfo {
            secure_field: true,
            ..gui.clone()
        };
        assert_eq!(s.focus_reason(&field), Some("password_field"));
        let locked = FocusInfo {
            locked: true,
            ..gui
        };
        assert_eq!(s.focus_reason(&locked), Some("lock_screen"));
    }
}
