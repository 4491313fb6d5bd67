#!/usr/bin/env bash
# Builds imprint's Debian package into OUT_DIR; its path is the last line of stdout.
#   usage: packaging/build-deb.sh OUT_DIR
#   IMPRINT_DEB_VERSION=0.1.0+test2   the package's version (default: the workspace's, with
#                                     Debian revision 1), e.g. a higher one to test an upgrade
#   IMPRINT_DEB_FAST=1                faster, larger compression (cargo deb --fast), for test
#                                     builds such as that upgrade
# Needs cargo-deb (tests/setup.sh installs it) and the eBPF toolchain (nightly, bpf-linker).
set -euo pipefail
out=${1:?usage: packaging/build-deb.sh OUT_DIR}
command -v cargo-deb >/dev/null || { echo "build-deb.sh: cargo-deb missing (cargo install cargo-deb --locked, or tests/setup.sh)" >&2; exit 1; }
. "$(dirname "$0")/stage.sh"
mkdir -p "$out"
out=$(cd "$out" && pwd)
deb_args=()
if [ -n "${IMPRINT_DEB_FAST:-}" ]; then
    deb_args+=(--fast)
fi
if [ -n "${IMPRINT_DEB_VERSION:-}" ]; then
    deb_args+=(--deb-version "$IMPRINT_DEB_VERSION")
fi
version=${IMPRINT_DEB_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)-1}
deb="$out/imprint_${version}_amd64.deb"
(cd "$root" && cargo deb -p imprint --no-build --target "$triple" --strip \
    "${deb_args[@]}" --output "$deb") >&2
echo "$deb"
