//! What a process's cgroup path says about it: its systemd unit, and the application id
//! that flatpak, snap and desktop launchers encode in unit names.

/// What a cgroup path tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The innermost `.service` or `.scope` unit.
    pub unit: String,
    /// The application id encoded in the unit name (flatpak, snap or XDG app unit).
    pub app_id: String,
    /// The unit is a flatpak sandbox (`app-flatpak-ID-N.scope`).
    pub flatpak: bool,
    /// The unit is a snap (`snap.NAME.APP-….scope` or `snap.NAME.APP.service`).
    pub snap: bool,
}

/// Picks the path that names the process's systemd unit from `/proc/PID/cgroup`: the
/// unified hierarchy (`0::`) or, on hybrid hosts where that is `/`, the `name=systemd` one.
pub fn parse_proc_cgroup(text: &str) -> String {
    let mut unified = None;
    let mut systemd = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        if controllers.is_empty() {
            unified = Some(path);
        } else if controllers == "name=systemd" {
            systemd = Some(path);
        }
    }
    match (unified, systemd) {
        (Some("/"), Some(s)) => s.to_owned(),
        (Some(u), _) => u.to_owned(),
        (None, Some(s)) => s.to_owned(),
        (None, None) => String::new(),
    }
}

/// Undoes systemd's unit-name escaping (`\x2d` for `-`, …).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    let mut bytes = Vec::with_capacity(s.len());
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                bytes.push(v);
                i += 4;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

/// Reads a cgroup path.
pub fn classify(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    for comp in path.split('/').rev() {
        if comp.ends_with(".service") || comp.ends_with(".scope") {
            info.unit = comp.to_owned();
            break;
        }
    }
    // The innermost component that encodes an application wins.
    for comp in path.split('/').rev() {
        if let Some(id) = snap_app(comp) {
            info.app_id = id;
            info.snap = true;
            break;
        }
        if let Some((launcher, id)) = xdg_app(comp) {
            info.flatpak = launcher == "flatpak";
            info.app_id = id;
            break;
        }
    }
    info
}

/// `snap.NAME.APP-UUID.scope`, `snap.NAME.APP.service`, `snap.NAME.hook.HOOK-….scope`: the
/// snap's name.
fn snap_app(comp: &str) -> Option<String> {
    let rest = comp.strip_prefix("snap.")?;
    if !(rest.ends_with(".scope") || rest.ends_with(".service")) {
        return None;
    }
    let name = rest.split('.').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// XDG application units (systemd.io/DESKTOP_ENVIRONMENTS):
/// `app[-LAUNCHER]-APPID[@RANDOM].service` and `app[-LAUNCHER]-APPID-RANDOM.scope`, also
/// `app[-LAUNCHER]-APPID.slice`. Returns the launcher ("" when none) and the app id.
fn xdg_app(comp: &str) -> Option<(String, String)> {
    let rest = comp.strip_prefix("app-")?;
    let body = if let Some(b) = rest.strip_suffix(".service") {
        b.split('@').next()?
    } else if let Some(b) = rest.strip_suffix(".scope") {
        // The last dash-separated part is the random/instance suffix.
        b.rsplit_once('-').map(|(a, _)| a)?
    } else {
        rest.strip_suffix(".slice")?
    };
    let (launcher, id) = match body.split_once('-') {
        // A launcher is one word without dots (gnome, kde, flatpak, …); app ids have dots.
        Some((l, id)) if !l.contains('.') && !l.is_empty() => (l, id),
        _ => ("", body),
    };
    let id = unescape(id);
    (!id.is_empty()).then(|| (launcher.to_owned(), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_unified_or_systemd_hierarchy() {
        let v2 = "0::/user.slice/user-1000.slice/session-2.scope\n";
        assert_eq!(
            parse_proc_cgroup(v2),
            "/user.slice/user-1000.slice/session-2.scope"
        );
        let hybrid = "9:name=systemd:/system.slice/sshd.service\n4:memory:/x\n0::/\n";
        assert_eq!(parse_proc_cgroup(hybrid), "/system.slice/sshd.service");
        assert_eq!(parse_proc_cgroup(""), "");
    }

    #[test]
    fn units_and_app_ids() {
        let base = "/user.slice/user-1000.slice/user@1000.service/app.slice/";
        let c = classify(&format!(
            "{base}app-flatpak-org.mozilla.firefox-12345.scope"
        ));
        assert_eq!(c.unit, "app-flatpak-org.mozilla.firefox-12345.scope");
        assert_eq!(c.app_id, "org.mozilla.firefox");
        assert!(c.flatpak);

        let c = classify(&format!("{base}snap.firefox.firefox-1a2b3c.scope"));
        assert_eq!(c.app_id, "firefox");
        assert!(c.snap);

        let c = classify(&format!("{base}app-gnome-org.gnome.Terminal-4567.scope"));
        assert_eq!(c.app_id, "org.gnome.Terminal");
        assert!(!c.flatpak);

        let c = classify(&format!("{base}app-org.kde.konsole@a1b2.service"));
        assert_eq!(c.unit, "app-org.kde.konsole@a1b2.service");
        assert_eq!(c.app_id, "org.kde.konsole");

        let c = classify(&format!("{base}app-gnome-my\\x2dapp-99.scope"));
        assert_eq!(c.app_id, "my-app");

        let c = classify("/system.slice/ssh.service");
        assert_eq!(c.unit, "ssh.service");
        assert_eq!(c.app_id, "");

        let c = classify("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(c.unit, "session-3.scope");
        assert_eq!(c.app_id, "");
    }
}
