//! The real-kernel harness: builds static guest binaries, packs an initramfs around them, boots
//! one of Debian's kernels ([`Kernel`]) under QEMU (TCG) and collects the serial console.
//!
//! A test describes what to run in the guest as a shell script ([`Vm::script`]) plus any files it
//! needs ([`Vm::file`]). The guest's `/init` mounts the usual filesystems (proc, sys, devtmpfs,
//! bpffs, tracefs), loads `evdev.ko` and `uinput.ko`, runs the script, prints its exit status
//! between marker lines and powers off. Inside the script, `section NAME FILE` prints a file
//! between marker lines; on the host, [`VmRun::section`] returns it.
//!
//! Nothing is cached across runs except cargo's own incremental state in `target/vm` and the
//! fetched kernels in `target/kernels/<suite>`: the initramfs is rebuilt from the current
//! binaries, kernel and modules every time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Packages every test needs.
pub const GUEST_PACKAGE: &str = "imprint-vm-guest";
/// The agent, for the tests that run it.
pub const IMPRINT_PACKAGE: &str = "imprint";
/// The per-session helper's package (and binary).
pub const SESSION_PACKAGE: &str = "imprint-session";

const TARGET: &str = "x86_64-unknown-linux-gnu";
const INSTALL_HINT: &str = "install them with: \
    apt-get install qemu-system-x86 linux-image-amd64 busybox-static \
    (and libinput-tools for the recording)";
const MARK: &str = "@@imprint-vm";
/// How much of the console a failure message carries.
const TAIL_LINES: usize = 200;

/// The workspace root (the parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the static builds, logs and initramfs images go.
pub fn vm_dir() -> PathBuf {
    workspace_root().join("target").join("vm")
}

// ---------------------------------------------------------------------------------------------
// Host prerequisites

/// QEMU and busybox on the host.
pub struct Host {
    pub qemu: PathBuf,
    pub busybox: PathBuf,
}

/// Finds (once) QEMU and busybox on the host, or explains what to install.
pub fn host() -> Result<&'static Host> {
    static HOST: OnceLock<std::result::Result<Host, String>> = OnceLock::new();
    HOST.get_or_init(|| find_host().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn find_host() -> Result<Host> {
    let qemu = which("qemu-system-x86_64")
        .with_context(|| format!("qemu-system-x86_64 is not on PATH; {INSTALL_HINT}"))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .with_context(|| format!("busybox is missing; {INSTALL_HINT}"))?;
    if !is_static(&busybox)? {
        bail!(
            "{} is dynamically linked and cannot run in the initramfs; {INSTALL_HINT}",
            busybox.display()
        );
    }
    Ok(Host { qemu, busybox })
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// Which Debian kernel a VM boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The host's newest `/boot/vmlinuz-<version>` (Debian 12 bookworm: 6.1).
    Host,
    /// Debian 11 bullseye's `linux-image-amd64` (5.10), fetched into `target/kernels/bullseye`.
    Bullseye,
    /// Debian 13 trixie's `linux-image-amd64` (6.12), fetched into `target/kernels/trixie`.
    Trixie,
}

impl Kernel {
    /// The Debian suite the kernel comes from.
    pub fn suite(self) -> &'static str {
        match self {
            Kernel::Host => "bookworm (host)",
            Kernel::Bullseye => "bullseye",
            Kernel::Trixie => "trixie",
        }
    }
}

/// A kernel image and the directory holding its modules.
pub struct KernelImage {
    pub image: PathBuf,
    pub version: String,
    pub modules_dir: PathBuf,
    /// What it is, for messages: the package and its version, or the host path.
    pub origin: String,
}

/// Finds (once per kernel) the image and modules; a fetched kernel that is not in
/// `target/kernels/` yet is fetched with `tests/vm/fetch-kernels.sh`.
pub fn kernel(kind: Kernel) -> Result<&'static KernelImage> {
    type Slot = OnceLock<std::result::Result<KernelImage, String>>;
    static HOST_K: Slot = OnceLock::new();
    static BULLSEYE: Slot = OnceLock::new();
    static TRIXIE: Slot = OnceLock::new();
    let slot = match kind {
        Kernel::Host => &HOST_K,
        Kernel::Bullseye => &BULLSEYE,
        Kernel::Trixie => &TRIXIE,
    };
    slot.get_or_init(|| find_kernel(kind).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn find_kernel(kind: Kernel) -> Result<KernelImage> {
    if kind == Kernel::Host {
        let (version, image, modules_dir) = newest_kernel(Path::new("/"))?.with_context(|| {
            format!(
                "no /boot/vmlinuz-<version> with evdev.ko under /lib/modules/<version>; {INSTALL_HINT}"
            )
        })?;
        std::fs::File::open(&image)
            .with_context(|| format!("{} is not readable (run as root?)", image.display()))?;
        return Ok(KernelImage {
            origin: image.display().to_string(),
            image,
            version,
            modules_dir,
        });
    }
    let suite = kind.suite();
    let dir = kernels_dir().join(suite);
    let ready = dir.join("ready");
    if !ready.exists() {
        fetch_kernel(suite)?;
    }
    let facts = std::fs::read_to_string(&ready).with_context(|| {
        format!(
            "reading {} (run tests/vm/fetch-kernels.sh {suite})",
            ready.display()
        )
    })?;
    let fact = |key: &str| {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("?")
            .to_owned()
    };
    let (version, image, modules_dir) = newest_kernel(&dir)?.with_context(|| {
        format!(
            "{} holds no boot/vmlinuz-<version> with evdev.ko under lib/modules/<version>: \
             remove it and run tests/vm/fetch-kernels.sh {suite}",
            dir.display()
        )
    })?;
    Ok(KernelImage {
        origin: format!("{} {} ({suite})", fact("package"), fact("version")),
        image,
        version,
        modules_dir,
    })
}

/// Where fetched kernels are unpacked.
pub fn kernels_dir() -> PathBuf {
    workspace_root().join("target").join("kernels")
}

/// Runs the fetch script for `suite` (one fetch at a time in this process).
fn fetch_kernel(suite: &str) -> Result<()> {
    static FETCHING: Mutex<()> = Mutex::new(());
    let _one = FETCHING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if kernels_dir().join(suite).join("ready").exists() {
        return Ok(());
    }
    let script = workspace_root().join("tests/vm/fetch-kernels.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(suite)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "the {suite} kernel is missing from {} and fetching it failed ({}); it is Debian's \
             linux-image-amd64 of {suite}, downloaded from the mirror in \
             /etc/apt/sources.list.d/debian.sources (tests/setup.sh fetches it; to retry: \
             bash tests/vm/fetch-kernels.sh {suite}):\n{}{}",
            kernels_dir().join(suite).display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stdout), 20),
            tail(&String::from_utf8_lossy(&out.stderr), 40)
        );
    }
    eprintln!(
        "vm: fetched the {suite} kernel in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The newest `<root>/boot/vmlinuz-<version>` whose modules (under `<root>/lib/modules` or
/// `<root>/usr/lib/modules`) include evdev: (version, image, modules directory).
fn newest_kernel(root: &Path) -> Result<Option<(String, PathBuf, PathBuf)>> {
    let mut candidates = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("boot")) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix("vmlinuz-") {
                let modules_dir = ["lib/modules", "usr/lib/modules"]
                    .iter()
                    .map(|m| root.join(m).join(version))
                    .find(|m| find_module(m, "kernel/drivers/input/evdev").is_some());
                if let Some(modules_dir) = modules_dir {
                    candidates.push((version.to_owned(), entry.path(), modules_dir));
                }
            }
        }
    }
    candidates.sort_by_key(|c| version_key(&c.0));
    Ok(candidates.pop())
}

/// Orders "6.1.0-56-amd64" numerically by its numeric runs.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `<modules_dir>/<stem>.ko`, or a compressed variant of it.
fn find_module(modules_dir: &Path, stem: &str) -> Option<PathBuf> {
    ["ko", "ko.xz", "ko.zst", "ko.gz"]
        .iter()
        .map(|ext| modules_dir.join(format!("{stem}.{ext}")))
        .find(|p| p.exists())
}

/// The module's bytes, decompressed on the host (busybox insmod cannot decompress).
fn module_bytes(kernel: &KernelImage, stem: &str) -> Result<Vec<u8>> {
    let path = find_module(&kernel.modules_dir, stem).with_context(|| {
        format!(
            "{}/{stem}.ko* is missing; the kernel package {} seems incomplete",
            kernel.modules_dir.display(),
            kernel.origin
        )
    })?;
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        return std::fs::read(&path).with_context(|| format!("reading {}", path.display()));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(&path)
        .output()
        .with_context(|| format!("running {tool} to decompress {name} (apt-get install {tool})"))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// True if the ELF file at `path` has no program interpreter (so it runs without a libc).
fn is_static(path: &Path) -> Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let u16_at = |off: usize| {
        data.get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |off: usize| {
        data.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |off: usize| {
        data.get(off..off + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if data.get(0..5) != Some(b"\x7fELF\x02".as_slice()) {
        bail!("{} is not a 64-bit ELF file", path.display());
    }
    let malformed = || anyhow!("{} has a malformed ELF header", path.display());
    let phoff = u64_at(0x20).ok_or_else(malformed)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(malformed)? as usize;
    let phnum = u16_at(0x38).ok_or_else(malformed)? as usize;
    for i in 0..phnum {
        const PT_INTERP: u32 = 3;
        if u32_at(phoff + i * phentsize).ok_or_else(malformed)? == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Static builds

/// Builds `packages` as static binaries (once per test process, serialised across threads) and
/// returns the directory that holds them.
pub fn build(packages: &[&str]) -> Result<PathBuf> {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let out_dir = vm_dir().join(TARGET).join("release");
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !built.iter().any(|b| b == p))
        .collect();
    if missing.is_empty() {
        return Ok(out_dir);
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(vm_dir());
    for package in &missing {
        cmd.args(["-p", package]);
    }
    // Flags from the outer cargo would change the build (or break it); set exactly ours.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    // The initramfs is unpacked into the guest's RAM: debug info (hundreds of MB once the CLI
    // links Arrow and Parquet) would not fit, and panics still name their location without it.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "0");
    cmd.env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    // The eBPF tests must never silently test a binary built without eBPF.
    cmd.env("IMPRINT_REQUIRE_EBPF", "1");
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "static build of {missing:?} failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 80)
        );
    }
    eprintln!(
        "vm: built {missing:?} (static, {TARGET}) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    built.extend(missing.iter().map(|p| p.to_string()));
    Ok(out_dir)
}

// ---------------------------------------------------------------------------------------------
// The initramfs (newc cpio, uncompressed: TCG decompresses slowly)

#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
}

impl Initramfs {
    /// Adds `path` (absolute, in the guest) and its parent directories.
    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.parents(path);
        self.entries.insert(
            path.trim_start_matches('/').to_owned(),
            Entry::File {
                data: data.into(),
                mode,
            },
        );
    }

    pub fn dir(&mut self, path: &str) {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.entries.entry(prefix.clone()).or_insert(Entry::Dir);
        }
    }

    fn parents(&mut self, path: &str) {
        if let Some((parent, _)) = path.trim_start_matches('/').rsplit_once('/') {
            self.dir(parent);
        }
    }

    /// Copies a host file (following symlinks) to `guest_path`, keeping its permission bits.
    pub fn copy(&mut self, host_path: &Path, guest_path: &str) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data =
            std::fs::read(host_path).with_context(|| format!("reading {}", host_path.display()))?;
        let mode = std::fs::metadata(host_path)?.permissions().mode() & 0o7777;
        self.file(guest_path, data, mode);
        Ok(())
    }

    /// Copies a host directory tree to the same path in the guest.
    pub fn copy_tree(&mut self, host_dir: &Path) -> Result<()> {
        for entry in std::fs::read_dir(host_dir)
            .with_context(|| format!("reading directory {}", host_dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                self.copy_tree(&path)?;
            } else if path.is_file() {
                let guest = path.to_string_lossy().into_owned();
                self.copy(&path, &guest)?;
            }
        }
        Ok(())
    }

    /// Copies a dynamically linked host executable and every library `ldd` lists for it.
    pub fn copy_dynamic(&mut self, exe: &Path) -> Result<()> {
        let guest = exe.to_string_lossy().into_owned();
        self.copy(exe, &guest)?;
        let out = Command::new("ldd")
            .arg(exe)
            .output()
            .with_context(|| format!("running ldd {}", exe.display()))?;
        if !out.status.success() {
            bail!("ldd {} failed", exe.display());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" or "/lib64/ld-linux... (0x...)"
            let lib = line
                .split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from);
            if let Some(lib) = lib {
                let guest = lib.to_string_lossy().into_owned();
                self.copy(&lib, &guest)?;
            }
        }
        Ok(())
    }

    /// The archive in newc format.
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (mode, data): (u32, &[u8]) = match entry {
                Entry::Dir => (0o040_755, &[]),
                Entry::File { data, mode } => (0o100_000 | mode, data),
            };
            cpio_entry(&mut out, ino, path, mode, data);
        }
        cpio_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
        out
    }
}

fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    let mut header = String::from("070701");
    for field in fields {
        let _ = write!(header, "{field:08x}");
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

// ---------------------------------------------------------------------------------------------
// The VM

/// The guest's `/init`. The test's script runs as `/test.sh` with `section` defined.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /sys/fs/bpf /sys/kernel/tracing /tmp /run
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t tmpfs tmp /tmp
# Keep kernel messages off the console so they cannot split a section; `dmesg` still has them.
echo 1 > /proc/sys/kernel/printk
insmod /lib/modules/evdev.ko || echo "insmod evdev.ko failed"
insmod /lib/modules/uinput.ko || echo "insmod uinput.ko failed"
echo "@@imprint-vm:ready@@ kernel $(uname -r)"
# Before any test can hide it: whether the kernel has BTF (which the eBPF source needs).
if [ -e /sys/kernel/btf/vmlinux ]; then echo "@@imprint-vm:btf:present@@"; else echo "@@imprint-vm:btf:absent@@"; fi
sh /test.sh
rc=$?
if [ "$rc" != 0 ]; then
    dmesg | tail -n 40 > /tmp/dmesg.txt
    echo "@@imprint-vm:begin:dmesg@@"; cat /tmp/dmesg.txt; echo "@@imprint-vm:end:dmesg@@"
fi
echo "@@imprint-vm:exit:$rc@@"
sync
poweroff -f
"#;

/// Prepended to every test script.
const PRELUDE: &str = r#"# Print FILE between marker lines, as section NAME.
section() {
    echo "@@imprint-vm:begin:$1@@"
    cat "$2"
    echo "@@imprint-vm:end:$1@@"
}
"#;

/// One VM boot: what goes into it and how long it may take.
pub struct Vm {
    name: String,
    packages: Vec<&'static str>,
    initramfs: Initramfs,
    script: String,
    timeout: Duration,
    memory_mb: u32,
    kernel: Kernel,
}

impl Vm {
    /// A VM for the test `name` (used for the console log's file name) with the guest driver.
    pub fn new(name: &str) -> Self {
        Vm {
            name: name.to_owned(),
            packages: vec![GUEST_PACKAGE],
            initramfs: Initramfs::default(),
            script: String::new(),
            timeout: Duration::from_secs(120),
            memory_mb: 512,
            kernel: Kernel::Host,
        }
    }

    /// The kernel to boot ([`Kernel::Host`] unless set).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Also build and install the `imprint` binary as `/bin/imprint`.
    pub fn with_imprint(mut self) -> Self {
        self.packages.push(IMPRINT_PACKAGE);
        self
    }

    /// Also build and install `imprint-session` as `/bin/imprint-session`.
    pub fn with_session(mut self) -> Self {
        self.packages.push(SESSION_PACKAGE);
        self
    }

    /// Adds a file to the guest.
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.initramfs.file(path, data, mode);
        self
    }

    /// Gives direct access to the initramfs (for host files, trees, dynamic executables).
    pub fn initramfs(&mut self) -> &mut Initramfs {
        &mut self.initramfs
    }

    /// The shell script (busybox sh) the guest runs. Its exit status is reported.
    pub fn script(mut self, script: &str) -> Self {
        self.script = script.to_owned();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The guest's RAM (`qemu -m`), 512 MB unless set. The initramfs lives in it, unpacked, next
    /// to everything the test runs.
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Builds what is needed, boots, runs the script and collects the console. Errors (as
    /// opposed to test failures) are problems of the harness or the host: missing packages, a
    /// failed build, QEMU not starting, the timeout.
    pub fn run(mut self) -> Result<VmRun> {
        let host = host()?;
        let kernel = kernel(self.kernel)?;
        let bin_dir = build(&self.packages)?;

        let mut fs = std::mem::take(&mut self.initramfs);
        for dir in ["dev", "proc", "sys", "tmp", "run", "etc", "root"] {
            fs.dir(dir);
        }
        fs.copy(&host.busybox, "/bin/busybox")?;
        for package in &self.packages {
            // Each package here has one binary, named after it.
            let binary = bin_dir.join(package);
            if !is_static(&binary)? {
                bail!("{} is not statically linked", binary.display());
            }
            fs.copy(&binary, &format!("/bin/{package}"))?;
        }
        fs.file(
            "/lib/modules/evdev.ko",
            module_bytes(kernel, "kernel/drivers/input/evdev")?,
            0o644,
        );
        fs.file(
            "/lib/modules/uinput.ko",
            module_bytes(kernel, "kernel/drivers/input/misc/uinput")?,
            0o644,
        );
        fs.file("/init", INIT, 0o755);
        fs.file("/test.sh", format!("{PRELUDE}\n{}", self.script), 0o755);

        let dir = vm_dir().join("runs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let initrd = dir.join(format!("{}.cpio", self.name));
        let cpio = fs.to_cpio();
        let initrd_mib = cpio.len() as f64 / (1024.0 * 1024.0);
        std::fs::write(&initrd, cpio).with_context(|| format!("writing {}", initrd.display()))?;
        let log = dir.join(format!("{}.log", self.name));

        let started = Instant::now();
        let result = boot(host, &kernel.image, &initrd, self.memory_mb, self.timeout);
        let _ = std::fs::remove_file(&initrd);
        let (console, timed_out) = result?;
        std::fs::write(&log, &console).with_context(|| format!("writing {}", log.display()))?;
        let run = VmRun::parse(console, log, started.elapsed());
        eprintln!(
            "vm: {} ran in {:.1}s on {} ({initrd_mib:.1} MiB initramfs, {} MB RAM; console log: {})",
            self.name,
            run.elapsed.as_secs_f64(),
            kernel.version,
            self.memory_mb,
            run.log.display()
        );
        if timed_out {
            run.fail(&format!(
                "the VM did not power off within {} s",
                self.timeout.as_secs()
            ));
        }
        if let Some(booted) = run.kernel.as_deref().filter(|v| *v != kernel.version) {
            run.fail(&format!(
                "the guest booted kernel {booted}, not {} ({})",
                kernel.version, kernel.origin
            ));
        }
        Ok(run)
    }
}

/// Runs QEMU until it exits or `timeout` passes; returns the console and whether it timed out.
fn boot(
    host: &Host,
    image: &Path,
    initrd: &Path,
    memory_mb: u32,
    timeout: Duration,
) -> Result<(String, bool)> {
    let mut child = Command::new(&host.qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "1"])
        .args(["-m", &memory_mb.to_string()])
        .args(["-nographic", "-no-reboot"])
        // No network: the guest needs none, and it spares loading the NIC's boot ROM.
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(image)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", host.qemu.display()))?;

    let mut stdout = child.stdout.take().context("qemu stdout")?;
    let mut stderr = child.stderr.take().context("qemu stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });

    let deadline = Instant::now() + timeout;
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
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    // Serial newlines are CRLF; a lone CR (progress indicators) also ends a line for us.
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
    Ok((console, timed_out))
}

/// The result of one boot: the console and the sections the guest printed.
pub struct VmRun {
    pub console: String,
    pub log: PathBuf,
    pub elapsed: Duration,
    sections: BTreeMap<String, String>,
    /// The exit status of the test script, if the guest got that far.
    pub exit: Option<i32>,
    pub kernel: Option<String>,
    /// Whether the guest kernel has `/sys/kernel/btf/vmlinux`, as `/init` found it.
    pub btf: Option<bool>,
}

impl VmRun {
    /// Reads the marker lines (sections, exit status, kernel) out of a console log.
    pub(crate) fn parse(console: String, log: PathBuf, elapsed: Duration) -> Self {
        let mut sections = BTreeMap::new();
        let mut exit = None;
        let mut kernel = None;
        let mut btf = None;
        let mut open: Option<(String, String)> = None;
        for line in console.lines() {
            // A marker may follow output that did not end its line; it counts from where it starts.
            if let Some(rest) = line.find(MARK).map(|at| &line[at + MARK.len()..]) {
                if let Some(name) = rest
                    .strip_prefix(":begin:")
                    .and_then(|r| r.strip_suffix("@@"))
                {
                    open = Some((name.to_owned(), String::new()));
                    continue;
                }
                if let Some(name) = rest
                    .strip_prefix(":end:")
                    .and_then(|r| r.strip_suffix("@@"))
                {
                    if let Some((open_name, body)) = open.take() {
                        if open_name == name {
                            sections.insert(open_name, body);
                        }
                    }
                    continue;
                }
                if let Some(code) = rest
                    .strip_prefix(":exit:")
                    .and_then(|r| r.strip_suffix("@@"))
                {
                    exit = code.parse().ok();
                    continue;
                }
                if let Some(version) = rest.strip_prefix(":ready@@ kernel ") {
                    kernel = Some(version.trim().to_owned());
                    continue;
                }
                if let Some(state) = rest
                    .strip_prefix(":btf:")
                    .and_then(|r| r.strip_suffix("@@"))
                {
                    btf = Some(state == "present");
                    continue;
                }
            }
            if let Some((_, body)) = open.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        VmRun {
            console,
            log,
            elapsed,
            sections,
            exit,
            kernel,
            btf,
        }
    }

    /// Panics with `msg`, the end of the console and where the full log is.
    #[track_caller]
    pub fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n\n--- last {TAIL_LINES} lines of the guest console (full log: {}) ---\n{}\n--- end of console ---",
            self.log.display(),
            tail(&self.console, TAIL_LINES)
        )
    }

    /// Asserts that the guest booted and the script exited 0.
    #[track_caller]
    pub fn assert_success(&self) {
        match self.exit {
            Some(0) => {}
            Some(code) => self.fail(&format!("the guest test script exited with status {code}")),
            None if self.kernel.is_none() => {
                self.fail("the guest never reached /init (kernel or initramfs problem)")
            }
            None => self.fail("the guest script never finished (crash, hang or panic?)"),
        }
    }

    /// The text the guest printed with `section NAME FILE`; fails the test if absent.
    #[track_caller]
    pub fn section(&self, name: &str) -> &str {
        match self.sections.get(name) {
            Some(body) => body,
            None => self.fail(&format!("the guest printed no section {name:?}")),
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Quotes `s` for the guest shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
