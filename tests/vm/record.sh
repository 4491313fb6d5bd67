#!/bin/sh
# Regenerates tests/data/keyboard-mouse.yml (and keyboard-mouse.sent.jsonl) with the real
# `libinput record` inside the QEMU guest. See tests/data/README.md for what is recorded.
# Needs: qemu-system-x86 linux-image-amd64 busybox-static libinput-tools (apt-get install ...).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
IMPRINT_VM_RECORD_DIR="$root/tests/data" \
    cargo test -p imprint-tests --test vm -- --ignored --exact record_keyboard_mouse_fixture --nocapture
