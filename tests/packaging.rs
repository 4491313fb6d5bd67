//! The packages as shipped: packaging/build-deb.sh and packaging/build-rpm.sh build the .deb
//! and the .rpm (from the static release binaries the VM tests build), and the real tools
//! read them: lintian, dpkg-deb, rpm. Installing and upgrading them on a booted systemd is the
//! systemd VM test's part; here, what is in them, with which modes, and which scriptlets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Panics naming what to install when `program` is not on PATH.
fn require(program: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: {install} (or run tests/setup.sh)"
    );
}

/// Runs `cmd`, panics with its output unless it succeeds, and returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a packaging script with OUT_DIR and returns the package path it printed last.
fn build(script: &str, out_dir: &Path, env: &[(&str, &str)]) -> PathBuf {
    let started = Instant::now();
    let stdout = run(Command::new(root().join("packaging").join(script))
        .arg(out_dir)
        .envs(env.iter().copied()));
    let path = PathBuf::from(stdout.lines().last().expect("a package path").trim());
    assert!(
        path.is_file(),
        "{script} printed {path:?}, which is no file"
    );
    eprintln!(
        "packaging: {script} {env:?} built {} in {:.1}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    path
}

struct Packages {
    deb: PathBuf,
    deb_upgrade: PathBuf,
    rpm: PathBuf,
}

/// Both packages and a second, higher-versioned .deb, built once for all the tests here.
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        require("cargo-deb", "cargo install cargo-deb --locked");
        require("rpmbuild", "apt-get install rpm");
        // A fixed place (not a temporary directory) so that the packages can be looked at
        // after a failure; each run starts it afresh.
        let dir = root().join("target").join("packaging");
        let _ = std::fs::remove_dir_all(&dir);
        let deb = build("build-deb.sh", &dir.join("deb"), &[]);
        let deb_upgrade = build(
            "build-deb.sh",
            &dir.join("deb-upgrade"),
            &[
                ("IMPRINT_DEB_VERSION", "0.1.0+test2"),
                ("IMPRINT_DEB_FAST", "1"),
            ],
        );
        let rpm = build("build-rpm.sh", &dir.join("rpm"), &[]);
        Packages {
            deb,
            deb_upgrade,
            rpm,
        }
    })
}

/// What both packages must hold, with its mode; `{zsh}` and `{doc}` differ between the two.
const FILES: &[(&str, u32)] = &[
    ("/usr/bin/imprint", 0o755),
    ("/usr/bin/imprint-collector", 0o755),
    ("/usr/bin/imprint-agent", 0o755),
    ("/usr/bin/imprint-session", 0o755),
    ("/usr/lib/systemd/system/imprint-collector.service", 0o644),
    ("/usr/lib/systemd/system/imprint-agent.service", 0o644),
    ("/usr/lib/systemd/system/imprint-metrics.socket", 0o644),
    ("/usr/lib/systemd/system/imprint-metrics.service", 0o644),
    ("/usr/share/man/man1/imprint-metrics.1.gz", 0o644),
    ("/usr/lib/systemd/user/imprint-session.service", 0o644),
    ("/usr/lib/sysusers.d/imprint.conf", 0o644),
    ("/usr/lib/tmpfiles.d/imprint.conf", 0o644),
    ("/etc/imprint/imprint.toml", 0o644),
    ("/etc/xdg/autostart/imprint-session.desktop", 0o644),
    ("/usr/share/man/man1/imprint.1.gz", 0o644),
    ("/usr/share/man/man1/imprint-status.1.gz", 0o644),
    ("/usr/share/man/man1/imprint-export.1.gz", 0o644),
    ("/usr/share/man/man1/imprint-policy-check.1.gz", 0o644),
    ("/usr/share/man/man1/imprint-session.1.gz", 0o644),
    ("/usr/share/man/man8/imprint-collector.8.gz", 0o644),
    ("/usr/share/man/man8/imprint-agent.8.gz", 0o644),
    ("/usr/share/bash-completion/completions/imprint", 0o644),
    ("{zsh}/_imprint", 0o644),
    ("/usr/share/fish/vendor_completions.d/imprint.fish", 0o644),
    ("{doc}/README.md", 0o644),
    (
        "/usr/share/gnome-shell/extensions/imprint-focus@imprint/extension.js",
        0o644,
    ),
    (
        "/usr/share/kwin/scripts/imprint-focus/contents/code/main.js",
        0o644,
    ),
];

fn check_files(kind: &str, listed: &BTreeMap<String, u32>, zsh: &str, doc: &str) {
    let mut wrong = Vec::new();
    for (path, mode) in FILES {
        let path = path.replace("{zsh}", zsh).replace("{doc}", doc);
        match listed.get(&path) {
            None => wrong.push(format!("{path} missing")),
            Some(m) if m != mode => wrong.push(format!("{path} is {m:o}, not {mode:o}")),
            Some(_) => {}
        }
    }
    // No man page shadows a daemon's: `man imprint-collector` must be the daemon's page.
    for shadow in [
        "/usr/share/man/man1/imprint-collector.1.gz",
        "/usr/share/man/man1/imprint-agent.1.gz",
    ] {
        if listed.contains_key(shadow) {
            wrong.push(format!("{shadow} shadows the daemon's page"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{kind}: {wrong:#?}\nlisted: {:#?}",
        listed.keys()
    );
}

/// `dpkg-deb -c`: path → permission bits of each regular file.
fn deb_files(deb: &Path) -> BTreeMap<String, u32> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let perms = &l[..10];
            let path = l.split_whitespace().last().expect("a path");
            (path.trim_start_matches('.').to_owned(), mode_of(perms))
        })
        .collect()
}

/// "-rwxr-xr-x" → 0o755.
fn mode_of(perms: &str) -> u32 {
    perms[1..10]
        .chars()
        .fold(0, |m, c| (m << 1) | u32::from(c != '-'))
}

#[test]
fn the_deb_passes_lintian_without_errors() {
    require("lintian", "apt-get install lintian");
    let p = packages();
    // lintian exits non-zero on errors; its output is the verdict, so read it whatever the status.
    let out = Command::new("lintian")
        .args(["--info", "--display-info", "--no-tag-display-limit"])
        .arg(&p.deb)
        .output()
        .expect("lintian runs");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "lintian {} ({}):\n{report}{}",
        p.deb.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors: {errors:#?}");
    let warnings: Vec<&str> = report.lines().filter(|l| l.starts_with("W:")).collect();
    eprintln!("lintian: {} warnings: {warnings:#?}", warnings.len());
    // A lintian that rejected the file outright prints no tags at all.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("error"),
        "lintian failed to check the package"
    );
}

#[test]
fn the_deb_holds_binaries_units_pages_completions_and_the_conffile() {
    let p = packages();
    let files = deb_files(&p.deb);
    check_files(
        "deb",
        &files,
        "/usr/share/zsh/vendor-completions",
        "/usr/share/doc/imprint",
    );
    for doc in ["copyright", "changelog.Debian.gz"] {
        let path = format!("/usr/share/doc/imprint/{doc}");
        assert_eq!(
            files.get(&path),
            Some(&0o644),
            "{path}: {:#?}",
            files.keys()
        );
    }

    let info = run(Command::new("dpkg-deb").arg("-I").arg(&p.deb));
    eprintln!("dpkg-deb -I:\n{info}");
    let package = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&p.deb)
        .arg("Package"));
    assert_eq!(package.trim(), "imprint");
    let control = control_files(&p.deb);
    let conffiles = &control["conffiles"];
    for conf in [
        "/etc/imprint/imprint.toml",
        "/etc/xdg/autostart/imprint-session.desktop",
    ] {
        assert!(
            conffiles.lines().any(|l| l == conf),
            "{conf} not a conffile: {conffiles}"
        );
    }
    assert!(info.contains("conffiles"), "{info}");

    // dh_installsystemd's logic: sysusers before the units start, restart (not start) on
    // upgrade, stop only on remove (an upgrade keeps them running until postinst restarts them).
    let postinst = &control["postinst"];
    let sysusers = postinst
        .find("systemd-sysusers")
        .expect("sysusers in postinst");
    let restart = postinst
        .find("_dh_action=restart")
        .expect("restart on upgrade");
    assert!(sysusers < restart, "{postinst}");
    for unit in ["imprint-collector.service", "imprint-agent.service"] {
        assert!(
            postinst.contains(&format!("deb-systemd-helper enable {unit}")),
            "{unit} not enabled: {postinst}"
        );
    }
    assert!(
        postinst.contains("deb-systemd-helper --user enable imprint-session.service"),
        "{postinst}"
    );
    let prerm = &control["prerm"];
    assert!(
        prerm.contains("\"$1\" = remove") && prerm.contains("deb-systemd-invoke stop"),
        "{prerm}"
    );
    let postrm = &control["postrm"];
    assert!(postrm.contains("deb-systemd-helper purge"), "{postrm}");
    // The spool is never removed by the package, not even on purge.
    assert!(
        !postrm
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("/var/lib/imprint")),
        "{postrm}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh")
            .arg("-n")
            .arg(control_dir(&p.deb).join(script)));
    }
}

#[test]
fn the_deb_payload_is_what_was_built() {
    let p = packages();
    let tree = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&p.deb)
        .arg(tree.path()));
    let usr = tree.path().join("usr");

    let version = run(Command::new(usr.join("bin/imprint")).arg("--version"));
    assert_eq!(version.trim(), "imprint 0.1.0");
    // The collector was built on its own: the CLI's replay (YAML) code is not in it.
    let collector = std::fs::read(usr.join("bin/imprint-collector")).unwrap();
    let cli = std::fs::read(usr.join("bin/imprint")).unwrap();
    let holds = |bin: &[u8], s: &str| bin.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(holds(&cli, "serde_norway"), "the check would see it");
    assert!(
        !holds(&collector, "serde_norway"),
        "the packaged collector links the replay code"
    );

    for (page, head) in [
        (
            "share/man/man8/imprint-collector.8.gz",
            ".TH IMPRINT-COLLECTOR 8",
        ),
        ("share/man/man8/imprint-agent.8.gz", ".TH IMPRINT-AGENT 8"),
        (
            "share/man/man1/imprint-session.1.gz",
            ".TH IMPRINT-SESSION 1",
        ),
        ("share/man/man1/imprint.1.gz", ".TH IMPRINT 1"),
    ] {
        let text = run(Command::new("gzip").arg("-dc").arg(usr.join(page)));
        assert!(text.contains(head), "{page}: {text}");
    }
    let agent = run(Command::new("gzip")
        .arg("-dc")
        .arg(usr.join("share/man/man8/imprint-agent.8.gz")));
    assert!(agent.contains("exit\\-when\\-closed"), "{agent}");

    let bash = usr.join("share/bash-completion/completions/imprint");
    run(Command::new("bash").arg("-n").arg(&bash));
    let completion = std::fs::read_to_string(&bash).unwrap();
    // (clap_complete's bash script offers the hidden `generate` too; zsh and fish do not.)
    assert!(
        completion.contains("export") && completion.contains("--exit-when-closed"),
        "{completion}"
    );
}

#[test]
fn the_upgrade_deb_has_a_higher_version_and_the_same_files() {
    let p = packages();
    let version = |deb: &Path| {
        run(Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .arg("Version"))
        .trim()
        .to_owned()
    };
    let (first, second) = (version(&p.deb), version(&p.deb_upgrade));
    assert_eq!(first, "0.1.0-1");
    assert_eq!(second, "0.1.0+test2");
    run(Command::new("dpkg").args(["--compare-versions", &second, "gt", &first]));
    let names = |deb: &Path| deb_files(deb).into_keys().collect::<Vec<_>>();
    assert_eq!(names(&p.deb), names(&p.deb_upgrade));
}

#[test]
fn the_rpm_holds_the_same_with_systemd_scriptlets() {
    let p = packages();
    let query = |args: &[&str]| run(Command::new("rpm").args(args).arg(&p.rpm));
    let list = query(&[
        "-qp",
        "--queryformat",
        "[%{FILEMODES:perms} %{FILENAMES}\n]",
    ]);
    let files: BTreeMap<String, u32> = list
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let (perms, path) = l.split_once(' ').expect("perms path");
            (path.to_owned(), mode_of(perms))
        })
        .collect();
    check_files(
        "rpm",
        &files,
        "/usr/share/zsh/site-functions",
        "/usr/share/doc/imprint-0.1.0",
    );
    assert!(
        files
            .keys()
            .any(|f| f.starts_with("/usr/share/licenses/imprint")),
        "no %license: {list}"
    );
    // rpm -qlp lists the same (it is the same query without modes).
    let plain = query(&["-qlp"]);
    for f in files.keys() {
        assert!(plain.lines().any(|l| l == f), "{f} not in rpm -qlp");
    }
    assert!(
        list.lines()
            .any(|l| l.starts_with("drwx------ ") && l.ends_with(" /var/lib/imprint")),
        "the spool directory is not 0700: {list}"
    );

    let config = query(&["-qp", "--configfiles"]);
    assert!(
        config.lines().any(|l| l == "/etc/imprint/imprint.toml"),
        "{config}"
    );
    let noreplace = query(&[
        "-qp",
        "--queryformat",
        "[%{FILEFLAGS:fflags} %{FILENAMES}\n]",
    ]);
    assert!(
        noreplace
            .lines()
            .any(|l| l.starts_with("cn") && l.ends_with(" /etc/imprint/imprint.toml")),
        "imprint.toml is not %config(noreplace): {noreplace}"
    );

    let scripts = query(&["-qp", "--scripts"]);
    eprintln!("rpm --scripts:\n{scripts}");
    let section = |name: &str| {
        let start = scripts
            .find(&format!("{name} scriptlet"))
            .unwrap_or_else(|| panic!("no {name} scriptlet: {scripts}"));
        let rest = &scripts[start..];
        let end = rest[1..].find(" scriptlet").map_or(rest.len(), |e| {
            rest[..e + 1].rfind('\n').unwrap_or(rest.len())
        });
        rest[..end].to_owned()
    };
    let pre = section("preinstall");
    assert!(
        pre.contains("systemd-sysusers") && pre.contains("u imprint-collector"),
        "{pre}"
    );
    let post = section("postinstall");
    assert!(
        post.contains("imprint-collector.service imprint-agent.service")
            && post.contains("imprint-session.service"),
        "{post}"
    );
    let preun = section("preuninstall");
    assert!(
        preun.contains("imprint-collector.service imprint-agent.service"),
        "{preun}"
    );
    let postun = section("postuninstall");
    assert!(
        postun.contains("imprint-collector.service imprint-agent.service")
            && (postun.contains("try-restart") || postun.contains("mark-restart-system-units")),
        "no restart on upgrade: {postun}"
    );
}

/// The control archive's files (conffiles, postinst, ...), by name.
fn control_files(deb: &Path) -> BTreeMap<String, String> {
    let dir = control_dir(deb);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}

/// The control archive unpacked (once per package) next to it.
fn control_dir(deb: &Path) -> PathBuf {
    let dir = deb.with_extension("control");
    if !dir.join("control").is_file() {
        run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&dir));
    }
    dir
}
