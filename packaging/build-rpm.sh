#!/usr/bin/env bash
# Builds imprint's RPM into OUT_DIR from packaging/rpm/imprint.spec; its path is the last line
# of stdout. The binaries, man pages and completions are the ones build-deb.sh packages
# (packaging/stage.sh); the spec's sources are a tarball of the work tree.
#   usage: packaging/build-rpm.sh OUT_DIR
# Needs rpmbuild (Debian package `rpm`; tests/setup.sh installs it).
set -euo pipefail
out=${1:?usage: packaging/build-rpm.sh OUT_DIR}
command -v rpmbuild >/dev/null || { echo "build-rpm.sh: rpmbuild missing (apt-get install rpm, or tests/setup.sh)" >&2; exit 1; }
. "$(dirname "$0")/stage.sh"
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(sed -n 's/^Version: *//p' "$root/packaging/rpm/imprint.spec")
top="$CARGO_TARGET_DIR/rpmbuild"
rm -rf "$top"
mkdir -p "$top/SOURCES"
# The work tree as it is (tracked and new files, not target/), as imprint-VERSION/.
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --transform "s,^,imprint-$version/," -czf "$top/SOURCES/imprint-$version.tar.gz")
cp "$root/systemd/imprint.sysusers" "$top/SOURCES/"
load=()
# Debian's rpm has no systemd macros: supply them, and only then (Fedora's are the real ones).
if [ "$(rpm --eval '%{?systemd_post:yes}')" != yes ]; then
    load=(--load "$root/packaging/rpm/macros.systemd-fallback")
fi
# --nodeps: the BuildRequires are RPM packages, which a Debian host's rpm database lacks.
rpmbuild "${load[@]}" -bb --nodeps \
    --define "_topdir $top" \
    --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "imprint_bindir $bin" \
    --define "imprint_stagedir $stage" \
    "$root/packaging/rpm/imprint.spec" >&2
ls -t "$out"/imprint-"$version"-*.x86_64.rpm | head -1
