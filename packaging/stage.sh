#!/usr/bin/env bash
# Sourced by build-deb.sh and build-rpm.sh: builds what both packages hold and sets
#   $root   the repository
#   $bin    the four static release binaries (imprint, imprint-collector, imprint-agent,
#           imprint-session), built as tests/vm/harness.rs builds them, into the same target
#           directory (target/vm), so that after the VM tests this is a no-op
#   $stage  target/vm/package: man/ (gzip'd pages) and completions/ (imprint.bash, _imprint,
#           imprint.fish), made by the built `imprint generate`
# Everything but the caller's last line goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
triple=x86_64-unknown-linux-gnu
cargo=${CARGO:-cargo}
export CARGO_TARGET_DIR="$root/target/vm"
# Exactly the harness's flags: anything else would rebuild, or build something else.
unset CARGO_ENCODED_RUSTFLAGS CARGO_MAKEFLAGS MAKEFLAGS MFLAGS
export RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
# A package must never ship a collector built without its eBPF programs.
unset IMPRINT_NO_EBPF
export IMPRINT_REQUIRE_EBPF=1
bin="$CARGO_TARGET_DIR/$triple/release"
stage="$CARGO_TARGET_DIR/package"
# Two builds at once would delete each other's staging directory: the lock is held until the
# calling script exits, so through its packaging of $stage too.
mkdir -p "$CARGO_TARGET_DIR"
exec 9>"$CARGO_TARGET_DIR/package.lock"
flock 9
(
    cd "$root"
    "$cargo" build --release --locked --target "$triple" -p imprint -p imprint-agent -p imprint-session
    # The collector on its own: built with the CLI, features would be unified and it would
    # link the CLI's replay (YAML) code, which tests/crate_graph.rs keeps out of it.
    "$cargo" build --release --locked --target "$triple" -p imprint-collector
) >&2
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions"
"$bin/imprint" generate man --out "$stage/man" >/dev/null
"$bin/imprint" generate completions --out "$stage/completions" >/dev/null
# -n: no name or time stamp in the header, so the pages are the same bytes on every build.
gzip -9n "$stage"/man/*
