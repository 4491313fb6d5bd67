#!/usr/bin/env bash
# Installs what imprint's tests need beyond cargo, on Debian 12. Idempotent; needs root (or sudo).
#   capnproto        the capnp compiler: regenerates the schema code and checks the checked-in copy
#   qemu-system-x86  the real-kernel VM for the evdev tests (tests/vm)
#   linux-image-amd64, busybox-static   the VM's kernel (with evdev.ko, uinput.ko) and userland
#   xvfb x11-utils xterm xdotool   a real X server and clients for the X11 focus tests
#   sway foot        a real Wayland compositor (headless) and terminal for the sway focus tests
set -euo pipefail
pkgs=(capnproto qemu-system-x86 linux-image-amd64 busybox-static xvfb x11-utils xterm xdotool sway foot)
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
echo "tests/setup.sh: test dependencies present"
