#!/usr/bin/env bash
# Fetches Debian's kernels for the VM tests' kernel matrix (tests/vm/kernels.rs): bullseye's
# 5.10 and trixie's 6.12 (bookworm's 6.1 is the host's own /boot/vmlinuz). Each is downloaded as
# Debian's linux-image package and unpacked, not installed: only the kernel image and the two
# modules the VM loads (evdev, uinput) are kept, under target/kernels/<suite>/ with a `ready`
# file naming the package. A suite that is ready is not fetched again.
#
# The system's apt configuration is untouched: a private apt directory per suite
# (target/kernels/.apt-<suite>) with its own sources.list, lists and cache, on the mirror the
# system already uses (/etc/apt/sources.list.d/debian.sources).
#
#   tests/vm/fetch-kernels.sh [SUITE...]     (default: bullseye trixie)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/target/kernels"
suites=("$@")
((${#suites[@]})) || suites=(bullseye trixie)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mirror=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
mirror=${mirror:-http://deb.debian.org/debian}
for tool in apt-get apt-cache dpkg-deb tar; do
    command -v "$tool" >/dev/null || { echo "fetch-kernels: $tool is missing" >&2; exit 1; }
done
[ -r "$keyring" ] || { echo "fetch-kernels: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

for suite in "${suites[@]}"; do
    dir="$out/$suite"
    [ -f "$dir/ready" ] && continue
    apt="$out/.apt-$suite"
    rm -rf "$apt" "$dir.tmp"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/deb" "$dir.tmp"
    echo "deb [signed-by=$keyring] $mirror $suite main" > "$apt/sources.list"
    opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Dir::State::Status=/dev/null
        -o Acquire::Languages=none -o APT::Architectures=amd64
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
        -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false
        -o Debug::NoLocking=1)
    echo "fetch-kernels: $suite from $mirror"
    if ! apt-get "${opts[@]}" update -qq >"$apt/update.log" 2>&1; then
        cat "$apt/update.log" >&2
        echo "fetch-kernels: apt-get update for $suite ($mirror) failed" >&2
        exit 1
    fi
    # linux-image-amd64 depends on exactly the current ABI's package, e.g. linux-image-5.10.0-32-amd64.
    pkg=$(apt-cache "${opts[@]}" depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
    [ -n "$pkg" ] || { echo "fetch-kernels: no linux-image-amd64 in $suite" >&2; exit 1; }
    if ! (cd "$apt/deb" && apt-get "${opts[@]}" download -qq "$pkg") >"$apt/download.log" 2>&1; then
        cat "$apt/download.log" >&2
        echo "fetch-kernels: apt-get download $pkg ($suite) failed" >&2
        exit 1
    fi
    deb=$(ls "$apt"/deb/*.deb)
    # Only the image and the two modules (a whole package unpacked is 300-500 MB).
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" --wildcards \
        './boot/vmlinuz-*' '*/kernel/drivers/input/evdev.ko*' '*/kernel/drivers/input/misc/uinput.ko*'
    version=$(dpkg-deb -f "$deb" Version)
    ls "$dir.tmp"/boot/vmlinuz-* >/dev/null
    printf 'package=%s\nversion=%s\nsuite=%s\nmirror=%s\n' "$pkg" "$version" "$suite" "$mirror" > "$dir.tmp/ready"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    rm -rf "$apt"
    echo "fetch-kernels: $suite: $pkg $version in $dir"
done
