//! imprint as shipped, on a real Debian 12 with systemd as PID 1.
//!
//! A bookworm root filesystem made by `mmdebstrap` from Debian's packages (systemd, udev, dbus,
//! Debian's kernel and imprint's runtime dependencies) boots under QEMU with its own kernel and
//! initrd. alice logs in on tty1 (getty autologin). The guest installs the `.deb` that
//! `packaging/build-deb.sh` made, offline, and checks what the package does on a real system:
//! the two system units run as their users with the capabilities the units grant, the user
//! unit imprint-session runs in alice's login, keys typed on a uinput keyboard into bash on
//! tty1 reach the spool attributed to bash's focus from imprint-session, `systemd-analyze
//! security` scores the units,
//! and an upgrade to a higher version keeps the modified configuration and the spool and
//! restarts the services. See `tests/vm/README.md`.
//!
//! The root filesystem is cached under `target/vm/systemd/<key>/` (an ext4 image, its kernel
//! and initrd), keyed on everything that goes into it; the guest boots it with `snapshot=on`, so
//! the cache never changes. Each run adds a small second disk (`mkfs.ext4 -d`, no loop mount)
//! with the packages, the guest driver and the test script.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{self, VmRun};
use crate::{check_eq, ev_of, json_lines, Ev};

const SUITE: &str = "bookworm";
/// What the root filesystem holds beyond `mmdebstrap --variant=apt`: an init system, a device
/// manager, a bus, logind sessions for logins (libpam-systemd), a kernel with an initrd, and
/// what the package recommends (libxkbcommon0, xkb-data, libx11-data: keymaps for the text).
const PACKAGES: [&str; 11] = [
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "libpam-systemd",
    "linux-image-amd64",
    "initramfs-tools",
    "libxkbcommon0",
    "xkb-data",
    "libx11-data",
];
/// Before the packages are installed: an initrd with just what finds and mounts a virtio
/// ext4 root (MODULES=most would make it five times larger, and TCG unpacks it slowly).
const SETUP_HOOK: &str = r#"set -e
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
echo MODULES=list > "$1/etc/initramfs-tools/conf.d/imprint-vm"
printf 'virtio_pci\nvirtio_blk\next4\n' > "$1/usr/share/initramfs-tools/modules.d/imprint-vm"
"#;
/// After: the test machine. alice logs in on tty1 by herself; the serial line carries only the
/// kernel's and the test's output (no getty there); /dev/vdb (the run's payload) is mounted on
/// /payload and `imprint-vmtest.service` runs `/payload/init.sh` once the system is up.
const CUSTOMIZE_HOOK: &str = r#"set -e
R="$1"
chroot "$R" useradd --create-home --uid 1000 --shell /bin/bash alice
echo imprint-vm > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 imprint-vm\n' > "$R/etc/hosts"
printf '/dev/vda / ext4 rw,noatime 0 1\n/dev/vdb /payload ext4 ro,noatime,nofail 0 0\n' > "$R/etc/fstab"
mkdir -p "$R/payload" "$R/etc/systemd/system/getty@tty1.service.d"
printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin alice --noclear %%I $TERM\n' \
    > "$R/etc/systemd/system/getty@tty1.service.d/autologin.conf"
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
cat > "$R/etc/systemd/system/imprint-vmtest.service" <<'EOF'
[Unit]
Description=imprint VM test (runs /payload/init.sh, reports on ttyS0, powers off)
RequiresMountsFor=/payload
[Service]
Type=exec
ExecStart=/bin/sh /payload/init.sh
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
EOF
ln -sf /etc/systemd/system/imprint-vmtest.service \
    "$R/etc/systemd/system/multi-user.target.wants/imprint-vmtest.service"
"#;
/// Room for the package, its spool and the journal (sparse; writes go to QEMU's snapshot).
const IMAGE_SIZE: &str = "2G";
const INSTALL_HINT: &str =
    "apt-get install mmdebstrap e2fsprogs qemu-system-x86 (or run tests/setup.sh)";

/// The cached root filesystem.
#[derive(Clone)]
struct Rootfs {
    image: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

/// The Debian mirror: `IMPRINT_VM_DEBIAN_MIRROR`, else the host's own (its apt sources), else
/// deb.debian.org. Not part of the cache key: any mirror serves the same packages.
fn mirror() -> String {
    if let Ok(m) = std::env::var("IMPRINT_VM_DEBIAN_MIRROR") {
        return m;
    }
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .map(str::trim)
        .find(|uri| uri.ends_with("/debian"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_owned()
}

fn mmdebstrap_args() -> Vec<String> {
    vec![
        "--mode=root".into(),
        "--variant=apt".into(),
        "--aptopt=Apt::Install-Recommends \"false\"".into(),
        format!("--include={}", PACKAGES.join(",")),
        format!("--setup-hook={SETUP_HOOK}"),
        format!("--customize-hook={CUSTOMIZE_HOOK}"),
        SUITE.into(),
    ]
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what} ({INSTALL_HINT})"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the root filesystem unless the cache has it (once per process: tests share it).
fn rootfs() -> Result<Rootfs> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let args = mmdebstrap_args();
    let mut hasher = Sha256::new();
    for a in args.iter().chain([&IMAGE_SIZE.to_owned()]) {
        hasher.update(a.as_bytes());
        hasher.update([0]);
    }
    let key = hex_prefix(&hasher.finalize(), 8);
    let base = harness::vm_dir().join("systemd");
    let dir = base.join(&key);
    let rootfs = Rootfs {
        image: dir.join("root.ext4"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    if dir.join("done").exists() {
        return Ok(rootfs);
    }
    // Another key's image is stale: drop it rather than pile up 700 MB per change.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    std::fs::create_dir_all(&dir)?;
    let tree = dir.join("tree");
    let started = Instant::now();
    let mirror = mirror();
    run_cmd(
        Command::new("mmdebstrap")
            .args(&args)
            .arg(&tree)
            .arg(&mirror),
        &format!("mmdebstrap {SUITE} from {mirror}"),
    )?;
    let fetched = started.elapsed();
    let boot = tree.join("boot");
    let mut kernel = None;
    let mut initrd = None;
    for entry in std::fs::read_dir(&boot)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("vmlinuz-") {
            kernel = Some(path.clone());
        } else if name.starts_with("initrd.img-") {
            initrd = Some(path.clone());
        }
    }
    let (Some(kernel), Some(initrd)) = (kernel, initrd) else {
        bail!("{} has no vmlinuz-* and initrd.img-*", boot.display());
    };
    std::fs::copy(&kernel, &rootfs.kernel)?;
    std::fs::copy(&initrd, &rootfs.initrd)?;
    let packages = run_cmd(
        Command::new("chroot").arg(&tree).args([
            "dpkg-query",
            "-W",
            "-f",
            "${Package} ${Version}\n",
        ]),
        "dpkg-query in the new root",
    )?;
    std::fs::write(dir.join("packages.txt"), packages)?;
    run_cmd(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "imprint-root", "-d"])
            .arg(&tree)
            .arg(&rootfs.image)
            .arg(IMAGE_SIZE),
        "mkfs.ext4 -d (the root filesystem image)",
    )?;
    std::fs::remove_dir_all(&tree)?;
    std::fs::write(dir.join("done"), "")?;
    eprintln!(
        "vm: built the {SUITE} root filesystem {} in {:.1}s (mmdebstrap {:.1}s)",
        dir.display(),
        started.elapsed().as_secs_f64(),
        fetched.as_secs_f64()
    );
    Ok(rootfs)
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Builds the package with `packaging/build-deb.sh` (it builds the static binaries in
/// target/vm with the harness's flags, the collector on its own).
fn build_deb(out_dir: &Path, version: Option<&str>) -> Result<PathBuf> {
    let root = harness::workspace_root();
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("packaging/build-deb.sh"))
        .arg(out_dir)
        .current_dir(&root);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    match version {
        Some(v) => cmd.env("IMPRINT_DEB_VERSION", v),
        None => cmd.env_remove("IMPRINT_DEB_VERSION"),
    };
    let out = run_cmd(&mut cmd, "packaging/build-deb.sh")?;
    let deb = out
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .context("packaging/build-deb.sh printed nothing")?;
    if !deb.is_file() {
        bail!("packaging/build-deb.sh printed {deb:?}, which is no file");
    }
    Ok(deb)
}

fn deb_version(deb: &Path) -> Result<String> {
    Ok(run_cmd(
        Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"),
        "dpkg-deb -f",
    )?
    .trim()
    .to_owned())
}

/// One boot of the systemd VM: the payload disk's files and the timeout.
struct SystemdVm {
    name: String,
    files: Vec<(String, Vec<u8>, u32)>,
    timeout: Duration,
}

/// `/payload/init.sh`, started by `imprint-vmtest.service`: runs the test, reports its status
/// and powers off.
const INIT: &str = r#"
echo "@@imprint-vm:ready@@ kernel $(uname -r)"
sh /payload/test.sh
rc=$?
echo "@@imprint-vm:exit:$rc@@"
sync
systemctl poweroff --force --force
"#;

/// Prepended to each test script.
const PRELUDE: &str = r#"export NO_COLOR=1 SYSTEMD_PAGER= SYSTEMD_COLORS=0 LC_ALL=C.UTF-8
# Print FILE between marker lines, as section NAME.
section() {
    echo "@@imprint-vm:begin:$1@@"
    cat "$2"
    echo "@@imprint-vm:end:$1@@"
}
# wait_for SECONDS CMD...: run CMD every half second until it succeeds; 1 if it never did.
wait_for() {
    deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.5
    done
}
# unit_facts UNIT: key=value lines about UNIT's main process (systemctl show and /proc).
unit_facts() {
    systemctl show -p ActiveState -p SubState -p MainPID -p NRestarts -p Result \
        -p MemoryCurrent -p MemoryPeak -p TasksCurrent -p CPUUsageNSec "$1"
    pid=$(systemctl show -p MainPID --value "$1")
    proc_facts "$pid"
}
# proc_facts PID: its owner and the credential lines of /proc/PID/status, as key=value.
proc_facts() {
    echo "proc_user=$(stat -c %U /proc/$1)"
    grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|VmHWM|VmRSS|Threads):' /proc/$1/status \
        | sed 's/:[[:space:]]*/=/'
}
# as_alice CMD...: CMD as alice, able to reach her user manager.
as_alice() {
    setpriv --reuid=1000 --regid=1000 --init-groups env XDG_RUNTIME_DIR=/run/user/1000 "$@"
}
# alice_session: the id of alice's logind session, if any.
alice_session() {
    loginctl list-sessions --no-legend | awk '$3 == "alice" { print $1; exit }'
}
# new_login: alice has an active session other than $old_sid.
new_login() {
    s=$(alice_session)
    [ -n "$s" ] && [ "$s" != "$old_sid" ] && [ "$(loginctl show-session "$s" -p State --value)" = active ]
}
mkdir -p /tmp/out
"#;

impl SystemdVm {
    fn new(name: &str) -> Self {
        SystemdVm {
            name: name.to_owned(),
            files: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }

    /// Adds `/payload/<path>`.
    fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((path.to_owned(), data.into(), mode));
        self
    }

    fn script(self, script: &str) -> Self {
        let text = format!("{PRELUDE}\n{script}");
        self.file("test.sh", text, 0o755)
    }

    fn run(self, rootfs: &Rootfs) -> Result<VmRun> {
        use std::os::unix::fs::PermissionsExt;
        let runs = harness::vm_dir().join("runs");
        let dir = runs.join(format!("{}.payload", self.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut bytes = 0u64;
        for (path, data, mode) in self.files.iter().chain(std::iter::once(&(
            "init.sh".to_owned(),
            INIT.as_bytes().to_vec(),
            0o755,
        ))) {
            let dest = dir.join(path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&dest, data)?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))?;
            bytes += data.len() as u64;
        }
        let disk = runs.join(format!("{}.payload.ext4", self.name));
        let mib = bytes / (1024 * 1024) + 32;
        run_cmd(
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "payload", "-d"])
                .arg(&dir)
                .arg(&disk)
                .arg(format!("{mib}M")),
            "mkfs.ext4 -d (the payload disk)",
        )?;
        let _ = std::fs::remove_dir_all(&dir);
        let qemu = harness::host()?.qemu.clone();
        let log = runs.join(format!("{}.log", self.name));
        let started = Instant::now();
        let drive = |path: &Path, extra: &str| {
            format!("file={},if=virtio,format=raw,{extra}", path.display())
        };
        let mut child = Command::new(&qemu)
            .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1536"])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(&rootfs.kernel)
            .arg("-initrd")
            .arg(&rootfs.initrd)
            .arg("-drive")
            .arg(drive(&rootfs.image, "snapshot=on"))
            .arg("-drive")
            .arg(drive(&disk, "readonly=on"))
            .args([
                "-append",
                "root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.show_status=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", qemu.display()))?;
        let mut stdout = child.stdout.take().context("qemu stdout")?;
        let mut stderr = child.stderr.take().context("qemu stderr")?;
        // The console also goes to the log as it arrives, to watch a long boot (`tail -f`).
        let mut live =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let out_reader = std::thread::spawn(move || {
            use std::io::Write as _;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let _ = live.write_all(&chunk[..n]);
                buf.extend_from_slice(&chunk[..n]);
            }
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                timed_out = true;
                let _ = child.kill();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        let _ = std::fs::remove_file(&disk);
        let mut console = String::from_utf8_lossy(&out)
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        if !err.is_empty() {
            let _ = write!(
                console,
                "\n[qemu stderr]\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        if !timed_out && !status.success() {
            let _ = write!(console, "\n[qemu exited with {status}]\n");
        }
        std::fs::write(&log, &console).with_context(|| format!("writing {}", log.display()))?;
        let run = VmRun::parse(console, log, started.elapsed());
        eprintln!(
            "vm: {} ran in {:.1}s (systemd, 2 CPUs, 1536 MB RAM; console log: {})",
            self.name,
            run.elapsed.as_secs_f64(),
            run.log.display()
        );
        if timed_out {
            run.fail(&format!(
                "the VM did not power off within {} s",
                self.timeout.as_secs()
            ));
        }
        Ok(run)
    }
}

/// Everything a test needs before it boots: the root filesystem, the guest driver, and the
/// package built twice (as built, and at a higher version for the upgrade).
#[derive(Clone)]
struct Prepared {
    rootfs: Rootfs,
    guest: Vec<u8>,
    debs: [(String, Vec<u8>); 2],
}

/// Prepares once per process: the tests run in parallel, and two build-deb.sh runs at once
/// would share (and delete) each other's staging directory.
fn prepare() -> Prepared {
    static CACHE: Mutex<Option<Prepared>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.get_or_insert_with(prepare_uncached).clone()
}

fn prepare_uncached() -> Prepared {
    // mmdebstrap mostly waits on the network and dpkg; the static builds mostly on the CPU.
    // Only the guest driver through the harness: build-deb.sh builds the packaged binaries
    // (the collector on its own, so building it here with the CLI would rebuild it twice).
    let out = harness::vm_dir().join("debs");
    let (rootfs, bin_dir, first) = std::thread::scope(|s| {
        let rootfs = s.spawn(rootfs);
        let bin_dir = harness::build(&[harness::GUEST_PACKAGE]);
        let _ = std::fs::remove_dir_all(&out);
        let first = build_deb(&out.join("1"), None);
        (rootfs.join().expect("rootfs thread"), bin_dir, first)
    });
    let rootfs = rootfs.unwrap_or_else(|e| panic!("the {SUITE} root filesystem: {e:#}"));
    let bin_dir = bin_dir.unwrap_or_else(|e| panic!("{e:#}"));
    let first = first.unwrap_or_else(|e| panic!("{e:#}"));
    let v1 = deb_version(&first).unwrap_or_else(|e| panic!("{e:#}"));
    let v2 = format!("{v1}+vmupgrade1");
    let second = build_deb(&out.join("2"), Some(&v2)).unwrap_or_else(|e| panic!("{e:#}"));
    check_version(
        &v2,
        &deb_version(&second).unwrap_or_else(|e| panic!("{e:#}")),
    );
    let read =
        |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    Prepared {
        rootfs,
        guest: read(&bin_dir.join(harness::GUEST_PACKAGE)),
        debs: [(v1, read(&first)), (v2, read(&second))],
    }
}

#[track_caller]
fn check_version(want: &str, got: &str) {
    assert_eq!(
        got, want,
        "IMPRINT_DEB_VERSION was not applied by packaging/build-deb.sh"
    );
}

const KEYBOARD: &str = "imprint-sysvm-keyboard";
const USER_UID: u64 = 1000;
/// The shipped policy captures nothing; the test's captures what is typed into bash and cat.
const POLICY: &str = r#"# written by tests/vm/systemd.rs: capture bash and cat on this test machine
[policy]
default = "off"
unknown_focus = "off"

[[rule]]
name = "bash"
exe = "/usr/bin/bash"
level = "full"

[[rule]]
name = "cat"
exe = "/usr/bin/cat"
level = "full"
"#;
/// Typed into bash (a builtin: bash keeps the terminal), and what it writes.
const SHELL_TEXT: &str = "echo typed as shipped 42 > /tmp/typed.txt\n";
const TYPED: &str = "typed as shipped 42\n";
const CAT_TEXT: &str = "into cat 7\n";
const SHELL: &str = "/usr/bin/bash";
/// CAP_PERFMON (38) and CAP_BPF (39): what imprint-collector.service grants.
const COLLECTOR_CAPS: u64 = (1 << 38) | (1 << 39);
const AGENT_MAX_EXPOSURE: f64 = 2.0;
const COLLECTOR_MAX_EXPOSURE: f64 = 3.0;

const STEPS: &str = "fg /usr/bin/bash
sleep 1500
type shell /payload/texts/shell.txt
file /tmp/typed.txt
type shell-cat /payload/texts/shell-cat.txt
fg /usr/bin/cat
sleep 1500
type cat /payload/texts/cat.txt
type cat-eof /payload/texts/cat-eof.txt
fg /usr/bin/bash
";

/// Boot, login, install, capabilities, session, policy reload (the part every test shares).
const INSTALL: &str = r#"
systemctl is-system-running --wait > /tmp/out/boot-state 2>&1
{ systemd-analyze; echo; systemd-analyze blame | head -n 15; } > /tmp/out/analyze 2>&1
section boot-state /tmp/out/boot-state
section analyze /tmp/out/analyze

dpkg -i /payload/debs/imprint-1.deb > /tmp/out/install-1 2>&1
echo "rc=$?" >> /tmp/out/install-1
dpkg-query -W -f '${Version}\n' imprint >> /tmp/out/install-1
section install-1 /tmp/out/install-1
# What the package set up by itself, before the README's `systemctl enable --now`.
{ for u in imprint-collector.service imprint-agent.service; do
    echo "$u enabled=$(systemctl is-enabled $u) active=$(systemctl is-active $u)"; done
  echo "imprint-session.service global=$(systemctl --global is-enabled imprint-session.service)"
  getent passwd imprint imprint-collector; getent group imprint input
  ls -ld /etc/imprint /var/lib/imprint; } > /tmp/out/package 2>&1
section package /tmp/out/package

# alice logged in on tty1 at boot, before the install; she logs in again (getty restarts and
# autologins), so her new login is the first after the install, as on a fleet machine.
wait_for 120 systemctl is-active --quiet user@1000.service
old_sid=$(alice_session)
loginctl terminate-user alice
wait_for 120 new_login
wait_for 60 systemctl is-active --quiet user@1000.service
sid=$(alice_session)
{ echo "session=$sid"; echo "first_session=$old_sid"
  loginctl show-session "$sid" -p Type -p TTY -p Seat -p Active -p State -p Remote
  echo "user_manager=$(systemctl is-active user@1000.service)"; } > /tmp/out/login 2>&1
section login /tmp/out/login

systemctl enable --now imprint-collector.service imprint-agent.service > /tmp/out/enable 2>&1
echo "rc=$?" >> /tmp/out/enable
section enable /tmp/out/enable
wait_for 60 systemctl is-active --quiet imprint-collector.service
wait_for 60 systemctl is-active --quiet imprint-agent.service
# The collector is up once it has a source (loading the BPF programs takes a while under TCG).
wait_for 120 sh -c "imprint status 2>/dev/null | grep -q -e 'source: ebpf' -e 'source: evdev'"
imprint status > /tmp/out/status-1 2>&1
section status-1 /tmp/out/status-1
unit_facts imprint-collector.service > /tmp/out/collector-1 2>&1
unit_facts imprint-agent.service > /tmp/out/agent-1 2>&1
section collector-1 /tmp/out/collector-1
section agent-1 /tmp/out/agent-1

# The user unit, enabled globally by the package, in alice's login.
wait_for 60 as_alice systemctl --user is-active --quiet imprint-session.service
{ echo "active=$(as_alice systemctl --user is-active imprint-session.service)"
  echo "enabled=$(as_alice systemctl --user is-enabled imprint-session.service)"
  proc_facts "$(as_alice systemctl --user show -p MainPID --value imprint-session.service)"; } \
    > /tmp/out/session 2>&1
section session /tmp/out/session

cp /payload/policy.toml /etc/imprint/imprint.toml
systemctl reload imprint-agent.service
echo "reload rc=$?" > /tmp/out/reload
# imprint-session reports bash, the collector and the agent decide on it.
wait_for 60 sh -c "imprint status 2>/dev/null | grep -q ', 2 rules;'"
echo "two rules loaded: $?" >> /tmp/out/reload
imprint status >> /tmp/out/reload 2>&1
section reload /tmp/out/reload
"#;

const MAIN: &str = r#"
modprobe evdev; modprobe uinput
# imprint-session (as alice) cannot open the proc connector, so its tty tracker re-reads the
# VT's foreground program only on VT switches: it read tty1 while alice's login was still
# starting. Switch to tty2 and back, as a user would, so it reads bash (see the README).
perl -e 'open(my $t, "+<", "/dev/tty0") or die "tty0: $!";
    for my $n (2, 1) { ioctl($t, 0x5606, $n) or die "VT_ACTIVATE: $!";
                       ioctl($t, 0x5607, $n) or die "VT_WAITACTIVE: $!"; }' > /tmp/out/vt 2>&1
echo "rc=$? active=$(cat /sys/class/tty/tty0/active)" >> /tmp/out/vt
sleep 2
section vt-switch /tmp/out/vt
/payload/imprint-vm-guest drive --name imprint-sysvm-keyboard --steps /payload/steps \
    --step-ms 15 --settle-ms 1000 --linger-ms 500 --timeout-s 90 \
    --sent /tmp/out/sent.jsonl --marks /tmp/out/marks.jsonl 2> /tmp/out/drive.log
drive_rc=$?
# The agent fsyncs every second.
sleep 3
cp /tmp/typed.txt /tmp/out/typed 2>/dev/null
cp /tmp/cat.txt /tmp/out/cat 2>/dev/null
# The agent holds the keys of a word back until it can tell whether they are a secret, and
# flushes them when it stops (it seals its segment on exit): dump what a stopped agent wrote.
systemctl stop imprint-agent.service
imprint dump --data-dir /var/lib/imprint > /tmp/out/dump-1 2> /tmp/out/dump-1.err
echo "rc=$?" >> /tmp/out/dump-1.err
systemctl start imprint-agent.service
wait_for 60 systemctl is-active --quiet imprint-agent.service
section sent /tmp/out/sent.jsonl
section marks /tmp/out/marks.jsonl
section typed /tmp/out/typed
section cat /tmp/out/cat
section dump-1 /tmp/out/dump-1
section dump-1-stderr /tmp/out/dump-1.err
section drive-log /tmp/out/drive.log

for u in imprint-agent imprint-collector; do
    systemd-analyze security --no-pager $u.service > /tmp/out/security-$u 2>&1
    section security-$u /tmp/out/security-$u
done

# The upgrade: a higher version over the first, with the configuration modified.
unit_facts imprint-collector.service > /tmp/out/collector-pre 2>&1
unit_facts imprint-agent.service > /tmp/out/agent-pre 2>&1
section collector-pre /tmp/out/collector-pre
section agent-pre /tmp/out/agent-pre
sha256sum /etc/imprint/imprint.toml > /tmp/out/conf-before
dpkg -i /payload/debs/imprint-2.deb > /tmp/out/install-2 2>&1
echo "rc=$?" >> /tmp/out/install-2
dpkg-query -W -f '${Version}\n' imprint >> /tmp/out/install-2
section install-2 /tmp/out/install-2
wait_for 60 systemctl is-active --quiet imprint-collector.service
wait_for 60 systemctl is-active --quiet imprint-agent.service
unit_facts imprint-collector.service > /tmp/out/collector-2 2>&1
unit_facts imprint-agent.service > /tmp/out/agent-2 2>&1
section collector-2 /tmp/out/collector-2
section agent-2 /tmp/out/agent-2
sha256sum /etc/imprint/imprint.toml > /tmp/out/conf-after
cat /etc/imprint/imprint.toml >> /tmp/out/conf-after
section conf-before /tmp/out/conf-before
section conf-after /tmp/out/conf-after
systemctl stop imprint-agent.service
imprint dump --data-dir /var/lib/imprint > /tmp/out/dump-2 2>&1
section dump-2 /tmp/out/dump-2

journalctl -b --no-pager -o short-monotonic -u imprint-collector -u imprint-agent \
    > /tmp/out/journal 2>&1
as_alice journalctl --user -b --no-pager -o short-monotonic -u imprint-session >> /tmp/out/journal 2>&1
section journal /tmp/out/journal
exit $drive_rc
"#;

/// `key=value` lines (and `Key=a b c`), as a map.
fn facts(run: &VmRun, section: &str) -> BTreeMap<String, String> {
    run.section(section)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[track_caller]
fn fact<'a>(run: &VmRun, facts: &'a BTreeMap<String, String>, what: &str, key: &str) -> &'a str {
    facts
        .get(key)
        .map(String::as_str)
        .unwrap_or_else(|| run.fail(&format!("{what}: no {key}= in {facts:?}")))
}

#[track_caller]
fn cap_eff(run: &VmRun, facts: &BTreeMap<String, String>, what: &str) -> u64 {
    let hex = fact(run, facts, what, "CapEff");
    u64::from_str_radix(hex, 16)
        .unwrap_or_else(|_| run.fail(&format!("{what}: CapEff={hex} is not hex")))
}

/// The overall exposure `systemd-analyze security UNIT` printed last.
#[track_caller]
fn exposure(run: &VmRun, unit: &str) -> f64 {
    let text = run.section(&format!("security-{unit}"));
    text.lines()
        .find_map(|l| {
            l.split_once("Overall exposure level for ")?
                .1
                .split_once(": ")
        })
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            run.fail(&format!(
                "no overall exposure in `systemd-analyze security {unit}`:\n{text}"
            ))
        })
}

/// Checks a system unit's main process: active, as `user`, with exactly `caps` effective.
#[track_caller]
fn check_unit(run: &VmRun, section: &str, user: &str, caps: u64) -> BTreeMap<String, String> {
    let f = facts(run, section);
    check_eq(
        run,
        &format!("{section}: ActiveState"),
        &fact(run, &f, section, "ActiveState"),
        &"active",
    );
    check_eq(
        run,
        &format!("{section}: owner of the main process"),
        &fact(run, &f, section, "proc_user"),
        &user,
    );
    check_eq(
        run,
        &format!("{section}: effective capabilities (CapEff, /proc/PID/status)"),
        &format!("{:#x}", cap_eff(run, &f, section)),
        &format!("{caps:#x}"),
    );
    f
}

fn keyboard_events(dump: &[Value], keyboard: i64) -> impl Iterator<Item = &Value> {
    dump.iter()
        .filter(move |v| v["kind"] == "event" && v["device"].as_i64() == Some(keyboard))
}

/// The typed step `label`'s interval and its events in the sent log.
#[track_caller]
fn mark(run: &VmRun, label: &str) -> (u64, u64, usize, usize) {
    json_lines(run, "marks")
        .into_iter()
        .find(|m| m["label"] == label)
        .and_then(|m| {
            Some((
                m["from_ns"].as_u64()?,
                m["to_ns"].as_u64()?,
                m["first"].as_u64()? as usize,
                m["count"].as_u64()? as usize,
            ))
        })
        .unwrap_or_else(|| run.fail(&format!("no complete mark for typed step {label}")))
}

/// The shipped package on systemd: units, users, capabilities, login, capture, scores, upgrade.
#[test]
fn shipped_package_on_systemd() {
    let started = Instant::now();
    let prep = prepare();
    let prepared_in = started.elapsed();
    let [(v1, deb1), (v2, deb2)] = prep.debs;
    let run = SystemdVm::new("shipped_package_on_systemd")
        .file("imprint-vm-guest", prep.guest, 0o755)
        .file("debs/imprint-1.deb", deb1, 0o644)
        .file("debs/imprint-2.deb", deb2, 0o644)
        .file("policy.toml", POLICY, 0o644)
        .file("steps", STEPS, 0o644)
        .file("texts/shell.txt", SHELL_TEXT, 0o644)
        .file("texts/shell-cat.txt", "cat > /tmp/cat.txt\n", 0o644)
        .file("texts/cat.txt", CAT_TEXT, 0o644)
        .file("texts/cat-eof.txt", "\u{4}", 0o644)
        .script(&format!("{INSTALL}\n{MAIN}"))
        .run(&prep.rootfs)
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "systemd VM: prepared in {:.1}s, booted and ran in {:.1}s\n{}",
        prepared_in.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        run.section("analyze").trim_end()
    );
    run.assert_success();

    // systemd booted cleanly, and alice is logged in on tty1 in a logind session.
    check_eq(
        &run,
        "systemctl is-system-running",
        &run.section("boot-state").trim(),
        &"running",
    );
    let login = facts(&run, "login");
    for (key, want) in [
        ("Type", "tty"),
        ("TTY", "tty1"),
        ("Seat", "seat0"),
        ("Active", "yes"),
        ("user_manager", "active"),
    ] {
        check_eq(
            &run,
            &format!("alice's login: {key}"),
            &fact(&run, &login, "login", key),
            &want,
        );
    }
    let session_id = fact(&run, &login, "login", "session").to_owned();

    // The package installed offline, at the version built.
    let install_1 = run.section("install-1");
    if !install_1.contains("rc=0") || install_1.lines().last() != Some(v1.as_str()) {
        run.fail(&format!(
            "installing imprint {v1} with apt failed:\n{install_1}"
        ));
    }
    let enable = run.section("enable");
    if !enable.contains("rc=0") {
        run.fail(&format!("systemctl enable --now failed:\n{enable}"));
    }

    // The units as their users, with exactly the capabilities the units grant.
    check_unit(&run, "collector-1", "imprint-collector", COLLECTOR_CAPS);
    check_unit(&run, "agent-1", "imprint", 0);
    let session = facts(&run, "session");
    check_eq(
        &run,
        "imprint-session (user unit) is active",
        &fact(&run, &session, "session", "active"),
        &"active",
    );
    check_eq(
        &run,
        "imprint-session's owner",
        &fact(&run, &session, "session", "proc_user"),
        &"alice",
    );
    check_eq(
        &run,
        "imprint-session's CapEff",
        &cap_eff(&run, &session, "session"),
        &0,
    );
    let status = run.section("status-1");
    let source = if status.contains("source: ebpf") {
        "ebpf"
    } else if status.contains("source: evdev") {
        "evdev"
    } else {
        run.fail(&format!(
            "the collector never reported a live source:\n{status}"
        ))
    };
    eprintln!("systemd VM: the shipped collector captures with {source}");

    // The keys typed into bash on tty1: bash ran them, and the spool has exactly them,
    // attributed to bash's focus from imprint-session (tracker tty, alice, her session, seat0).
    let reload = run.section("reload");
    if !reload.contains("reload rc=0") || !reload.contains("two rules loaded: 0") {
        run.fail(&format!(
            "`systemctl reload imprint-agent` did not load the test's policy:\n{reload}"
        ));
    }
    check_eq(&run, "what bash wrote", &run.section("typed"), &TYPED);
    check_eq(&run, "what cat wrote", &run.section("cat"), &CAT_TEXT);
    let dump_err = run.section("dump-1-stderr");
    if !dump_err.contains("rc=0") {
        run.fail(&format!("imprint dump failed:\n{dump_err}"));
    }
    let dump = json_lines(&run, "dump-1");
    let keyboard = dump
        .iter()
        .find(|v| v["kind"] == "device" && v["name"] == KEYBOARD)
        .and_then(|v| v["device"].as_i64())
        .unwrap_or_else(|| run.fail(&format!("`imprint dump` has no device line for {KEYBOARD}")));
    let foci = |exe: &str| -> Vec<&Value> {
        dump.iter()
            .filter(|v| v["kind"] == "focus" && v["exe"] == exe)
            .collect()
    };
    let bash_foci = foci(SHELL);
    if bash_foci.is_empty() {
        run.fail(
            "no focus record for /usr/bin/bash: imprint-session did not report tty1's foreground",
        );
    }
    for f in bash_foci.iter().chain(foci("/usr/bin/cat").iter()) {
        for (key, want) in [
            ("tracker", Value::from("tty")),
            ("uid", Value::from(USER_UID)),
            ("session", Value::from(session_id.as_str())),
            ("seat", Value::from("seat0")),
        ] {
            check_eq(&run, &format!("focus record's {key}: {f}"), &f[key], &want);
        }
    }
    let seqs =
        |foci: &[&Value]| -> Vec<u64> { foci.iter().filter_map(|f| f["seq"].as_u64()).collect() };
    let bash_seqs = seqs(&bash_foci);
    let sent: Vec<Ev> = json_lines(&run, "sent")
        .iter()
        .map(|v| ev_of(&run, v))
        .collect();
    let typed_during = |label: &str| -> (Vec<&Value>, std::ops::Range<usize>) {
        let (from, to, first, count) = mark(&run, label);
        let events = keyboard_events(&dump, keyboard)
            .filter(|e| {
                e["mono_ns"]
                    .as_u64()
                    .is_some_and(|t| (from..=to).contains(&t))
            })
            .collect();
        (events, first..first + count)
    };
    let (in_shell, range) = typed_during("shell");
    if let Some(e) = in_shell
        .iter()
        .find(|e| !e["focus"].as_u64().is_some_and(|f| bash_seqs.contains(&f)))
    {
        run.fail(&format!(
            "a key typed into bash is not attributed to bash's focus {bash_seqs:?}: {e}"
        ));
    }
    let got: Vec<Ev> = in_shell.iter().map(|v| ev_of(&run, v)).collect();
    crate::check_events(
        &run,
        "keys typed into bash, in the spool",
        &got,
        &sent[range],
    );
    // The focus follows bash's child: the user unit cannot open the proc connector, so the tty
    // tracker polls the VT's foreground program instead.
    let cat_seqs = seqs(&foci("/usr/bin/cat"));
    let (in_cat, _) = typed_during("cat");
    let attributed_to_cat = in_cat
        .iter()
        .filter(|e| e["focus"].as_u64().is_some_and(|f| cat_seqs.contains(&f)))
        .count();
    eprintln!(
        "systemd VM: keys typed into cat: {} written, {attributed_to_cat} attributed to a focus on cat",
        in_cat.len()
    );
    if in_cat.is_empty() || attributed_to_cat != in_cat.len() {
        run.fail(&format!(
            "keys typed into cat: {} written, only {attributed_to_cat} attributed to a focus on cat",
            in_cat.len()
        ));
    }

    // The units' exposure, as systemd scores it.
    let agent_score = exposure(&run, "imprint-agent");
    let collector_score = exposure(&run, "imprint-collector");
    eprintln!("systemd VM: systemd-analyze security: imprint-agent {agent_score}, imprint-collector {collector_score}");
    if agent_score > AGENT_MAX_EXPOSURE || collector_score > COLLECTOR_MAX_EXPOSURE {
        run.fail(&format!(
            "systemd-analyze security: imprint-agent {agent_score} (at most {AGENT_MAX_EXPOSURE}), \
             imprint-collector {collector_score} (at most {COLLECTOR_MAX_EXPOSURE}):\n{}\n{}",
            run.section("security-imprint-agent"),
            run.section("security-imprint-collector")
        ));
    }

    // The upgrade: installed, the modified configuration kept, the services restarted (new
    // main processes, as before: users and capabilities), and the spool still holds its events.
    let install_2 = run.section("install-2");
    if !install_2.contains("rc=0") || install_2.lines().last() != Some(v2.as_str()) {
        run.fail(&format!(
            "upgrading to imprint {v2} with apt failed:\n{install_2}"
        ));
    }
    let before = run.section("conf-before");
    let after = run.section("conf-after");
    check_eq(
        &run,
        "/etc/imprint/imprint.toml's sha256 across the upgrade",
        &after.lines().next(),
        &before.lines().next(),
    );
    if !after.contains(POLICY) {
        run.fail(&format!(
            "/etc/imprint/imprint.toml after the upgrade is not the test's policy:\n{after}"
        ));
    }
    let collector_1 = check_unit(&run, "collector-pre", "imprint-collector", COLLECTOR_CAPS);
    let agent_1 = check_unit(&run, "agent-pre", "imprint", 0);
    let collector_2 = check_unit(&run, "collector-2", "imprint-collector", COLLECTOR_CAPS);
    let agent_2 = check_unit(&run, "agent-2", "imprint", 0);
    for (unit, old, new) in [
        ("imprint-collector", &collector_1, &collector_2),
        ("imprint-agent", &agent_1, &agent_2),
    ] {
        let (old, new) = (
            fact(&run, old, unit, "MainPID"),
            fact(&run, new, unit, "MainPID"),
        );
        if old == new {
            run.fail(&format!(
                "{unit}.service was not restarted by the upgrade (MainPID {old} before and after): \
                 the old binary still runs"
            ));
        }
    }
    let dump_2 = json_lines(&run, "dump-2");
    let key = |v: &Value| {
        (
            v["mono_ns"].as_u64(),
            v["code"].as_str().map(str::to_owned),
            v["value"].as_i64(),
        )
    };
    let before: Vec<_> = keyboard_events(&dump, keyboard).map(key).collect();
    let kept: Vec<_> = keyboard_events(&dump_2, keyboard).map(key).collect();
    if !kept.starts_with(&before) {
        run.fail(&format!(
            "the spool lost events across the upgrade: {} keyboard events before, {} after",
            before.len(),
            kept.len()
        ));
    }
    eprintln!(
        "systemd VM: whole test {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Issue 12's watchdog: a SIGSTOPped agent stops sending WATCHDOG=1, and systemd kills and
/// restarts it (the daemons feed the watchdog from their main loops: `Type=notify`,
/// `WatchdogSec=30`).
#[test]
fn stopped_agent_is_restarted_by_the_watchdog() {
    let prep = prepare();
    let [(_, deb1), _] = prep.debs;
    let run = SystemdVm::new("stopped_agent_is_restarted_by_the_watchdog")
        .file("imprint-vm-guest", prep.guest, 0o755)
        .file("debs/imprint-1.deb", deb1, 0o644)
        .file("debs/imprint-2.deb", Vec::new(), 0o644)
        .file("policy.toml", POLICY, 0o644)
        .script(&format!(
            r#"{INSTALL}
systemctl show -p Type -p WatchdogUSec imprint-agent.service > /tmp/out/watchdog 2>&1
old=$(systemctl show -p MainPID --value imprint-agent.service)
kill -STOP "$old"
# Restarted: a new main process, active again (WatchdogSec plus RestartSec, with room for TCG).
wait_for 180 sh -c "[ \"\$(systemctl show -p MainPID --value imprint-agent.service)\" != $old ] \
    && systemctl is-active --quiet imprint-agent.service"
echo "restarted=$?" >> /tmp/out/watchdog
echo "old_pid=$old" >> /tmp/out/watchdog
unit_facts imprint-agent.service >> /tmp/out/watchdog 2>&1
journalctl -b --no-pager -u imprint-agent > /tmp/out/journal 2>&1
section watchdog /tmp/out/watchdog
section journal /tmp/out/journal
"#
        ))
        .run(&prep.rootfs)
        .unwrap_or_else(|e| panic!("{e:#}"));
    run.assert_success();
    let f = facts(&run, "watchdog");
    check_eq(
        &run,
        "imprint-agent's Type",
        &fact(&run, &f, "watchdog", "Type"),
        &"notify",
    );
    if fact(&run, &f, "watchdog", "WatchdogUSec") == "0" {
        run.fail("imprint-agent.service has no WatchdogSec=");
    }
    check_eq(
        &run,
        "restarted by systemd",
        &fact(&run, &f, "watchdog", "restarted"),
        &"0",
    );
    let restarts: u32 = fact(&run, &f, "watchdog", "NRestarts").parse().unwrap_or(0);
    if restarts == 0 {
        run.fail("imprint-agent.service's NRestarts is 0");
    }
    if !run.section("journal").contains("Watchdog timeout") {
        run.fail("the journal does not say the watchdog killed imprint-agent");
    }
}
