#!/usr/bin/env bash
# Builds the Debian package (metadata in agent/cli/Cargo.toml) into OUT_DIR and prints the
# .deb's path as the last line of stdout.
#
#   packaging/build-deb.sh OUT_DIR
#
# Environment:
#   IMPRINT_DEB_VERSION=VER   the package version (default: the workspace version, revision 1),
#                             e.g. a higher one for an upgrade test
#   IMPRINT_DEB_NO_BUILD=1    package the binaries already built for x86_64-unknown-linux-gnu in
#                             the cargo target directory (CARGO_TARGET_DIR; tests/vm builds them
#                             statically there) instead of running `cargo build --release`
#
# PROVISIONAL (branch sysvm): written for the systemd VM test until the packaging branch
# provides its own build-deb.sh; needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
out_dir=${1:?usage: packaging/build-deb.sh OUT_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v cargo-deb >/dev/null 2>&1 || {
    echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
}
mkdir -p "$out_dir"
args=(-p imprint --no-strip --fast -o "$out_dir")
if [ "${IMPRINT_DEB_NO_BUILD:-}" = 1 ]; then
    args+=(--no-build --target x86_64-unknown-linux-gnu)
else
    cargo build --release --locked -p imprint -p imprint-collector -p imprint-agent -p imprint-session >&2
    args+=(--no-build)
fi
[ -n "${IMPRINT_DEB_VERSION:-}" ] && args+=(--deb-version "$IMPRINT_DEB_VERSION")
# cargo-deb prints the path of the package it wrote as its last line.
deb=$(cargo deb "${args[@]}" | tail -n 1)
[ -f "$deb" ] || { echo "build-deb.sh: cargo deb did not report a package (got: $deb)" >&2; exit 1; }
echo "$deb"
