#!/usr/bin/env bash
# Installs what imprint's tests need beyond cargo, on Debian 12. Idempotent; needs root (or sudo).
#   capnproto        the capnp compiler: regenerates the schema code and checks the checked-in copy
#   prometheus       promtool, which checks the served metrics (tests/metrics.rs)
#   qemu-system-x86  the real-kernel VM for the evdev and eBPF tests (tests/vm)
#   linux-image-amd64, busybox-static   the VM's kernel (with evdev.ko, uinput.ko) and userland
#   xvfb x11-utils xterm xdotool   a real X server and clients for the X11 focus tests
#   xserver-xorg-core xserver-xorg-input-libinput xserver-xorg-video-dummy xinput   a real Xorg on the
#                    VM's uinput devices (libinput input driver, dummy video driver) and an XI2 event viewer (tests/vm/xorg.rs)
#   libinput-tools evtest   the peers the VM overhead bench measures imprint against (tests/vm/overhead.rs)
#   sway foot        a real Wayland compositor (headless) and terminal for the sway focus tests
#   dbus-daemon      a real session bus for the GNOME/KDE focus reporter tests
#   i3lock xsecurelock   real X screen lockers that take no EWMH focus (tests/session_lock.rs)
#   at-spi2-core python3-gi gir1.2-gtk-3.0   the AT-SPI bus and registry, and a real GTK 3 password entry (tests/session_atspi.rs)
#   python3-venv     the venv (target/pyenv) with pandas, pyarrow and datasets for the export loader test (tests/export.rs),
#                    and moto[server] (moto_server, a real S3-compatible server on 127.0.0.1) for the shipping tests
#                    (tests/ship.rs) and the upload benchmark (benches/ship.rs)
#   dunst            a real notification server (and dunstctl) for the login notice (tests/session_notice.rs)
#   lintian rpm      the package checks (tests/packaging.rs): lintian on the .deb, rpmbuild and rpm for the .rpm
#   llvm-22-dev      LLVM for bpf-linker (it must match nightly rustc's LLVM 22)
#   mmdebstrap       the Debian 12 root filesystem of the systemd VM test (tests/vm/systemd.rs)
# and cargo-deb (packaging/build-deb.sh builds the .deb with it),
# and, for the eBPF programs (built by agent/build.rs with aya-build):
#   the nightly toolchain with rust-src, and bpf-linker built against LLVM 22 (about 3 minutes).
set -euo pipefail
pkgs=(capnproto prometheus qemu-system-x86 linux-image-amd64 busybox-static xvfb x11-utils xterm xdotool x11-xkb-utils sway foot dbus-daemon llvm-22-dev libxkbcommon0 xkb-data libx11-data sudo xserver-xorg-core xserver-xorg-input-libinput xserver-xorg-video-dummy xinput at-spi2-core python3-gi gir1.2-gtk-3.0 i3lock xsecurelock dunst python3-venv lintian rpm mmdebstrap libinput-tools evtest)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "tests/setup.sh: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "tests/setup.sh: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal >/dev/null
fi
sysroot=$(rustup run nightly rustc --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/src/rust/library/core" ]; then
    echo "tests/setup.sh: adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly >/dev/null
fi
if ! command -v bpf-linker >/dev/null 2>&1; then
    echo "tests/setup.sh: building bpf-linker against LLVM 22 (about 3 minutes)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --no-default-features --features llvm-22
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "tests/setup.sh: installing cargo-deb"
    cargo install cargo-deb --locked --quiet
fi
# The export loader test (tests/export.rs runs tests/python/load_export.py) loads the export
# with pandas, pyarrow and Hugging Face datasets, from PyPI into a venv under target/.
venv="$(cd "$(dirname "$0")/.." && pwd)/target/pyenv"
if ! "$venv/bin/python" -c "import pandas, pyarrow, datasets" >/dev/null 2>&1; then
    echo "tests/setup.sh: creating $venv with pandas, pyarrow and datasets"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pandas pyarrow datasets
fi
# The shipping tests (tests/ship.rs) and benchmark upload to moto_server, into the same venv.
if [ ! -x "$venv/bin/moto_server" ]; then
    echo "tests/setup.sh: installing moto[server] into $venv"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]'
fi
echo "tests/setup.sh: test dependencies present"
# The VM tests' kernel matrix (tests/vm/kernels.rs) boots Debian 11's 5.10 and Debian 13's 6.12
# besides the host's 6.1: Debian's linux-image packages, downloaded with a private apt
# directory and unpacked (not installed) under target/kernels/<suite> (about 25 s, 19 MB kept).
# A failure here fails only those tests: the harness retries the fetch and names what is missing.
bash "$(dirname "$0")/vm/fetch-kernels.sh" bullseye trixie \
    || echo "tests/setup.sh: fetching the VM kernel matrix failed; tests/vm/kernels.rs will fail" >&2
