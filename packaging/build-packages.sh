#!/usr/bin/env bash
# Builds the coordmetrics .deb and .rpm from the workspace and prints their paths.
#
#   packaging/build-packages.sh            # then: packaging/verify-packages.sh DEB RPM
#
# Installs cargo-deb and cargo-generate-rpm when missing. The release binary is built in its
# own target directory (target/package) with debug info off and symbols stripped, as
# distributions ship binaries (lintian and rpmlint reject unstripped ones), while the
# workspace's release profile keeps its line tables for development; the two builds never
# invalidate each other.
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# Both packaging tools map "target/release/" in the asset paths to $CARGO_TARGET_DIR/release.
export CARGO_TARGET_DIR="$root/target/package"
assets="$CARGO_TARGET_DIR/release/assets"
out="$root/target/packages"

step() { printf '\n==> %s\n' "$*" >&2; }

ensure_cargo_subcommand() { # SUBCOMMAND CRATE
    if cargo "$1" --version >/dev/null 2>&1; then
        return
    fi
    step "installing $2"
    cargo install --locked "$2"
}

ensure_cargo_subcommand deb cargo-deb
ensure_cargo_subcommand generate-rpm cargo-generate-rpm

step "building the release binary (stripped) in $CARGO_TARGET_DIR"
CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p coordmetrics-exporter --bin coordmetrics
binary="$CARGO_TARGET_DIR/release/coordmetrics"

step "generating the man page and shell completions into $assets"
rm -rf "$assets"
"$binary" generate-assets --output "$assets"
# A plain roff page is compressed here as dh_compress would (maximum, no name or time stamp).
if [[ -f "$assets/coordmetrics.1" ]]; then
    gzip -9nf "$assets/coordmetrics.1"
fi
for f in coordmetrics.1.gz completions/coordmetrics.bash completions/_coordmetrics \
    completions/coordmetrics.fish; do
    [[ -s "$assets/$f" ]] || { echo "error: generate-assets did not write $assets/$f" >&2; exit 1; }
done

step "writing the Debian changelog"
# Debian policy wants /usr/share/doc/coordmetrics/changelog.Debian.gz. It is derived from the
# crate version and the deb maintainer so that it can never disagree with them.
read -r version maintainer < <(
    cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "coordmetrics-exporter")
print(pkg["version"], pkg["metadata"]["deb"]["maintainer"])
')
[[ -n "${maintainer:-}" ]] || { echo "error: no version or deb maintainer in cargo metadata" >&2; exit 1; }
date=$(date -R ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"})
gzip -9n > "$assets/changelog.Debian.gz" <<EOF
coordmetrics ($version-1) unstable; urgency=medium

  * Upstream release $version. See /usr/share/doc/coordmetrics/README.md.

 -- $maintainer  $date
EOF

rm -rf "$out"
mkdir -p "$out"

step "building the .deb"
cargo deb -p coordmetrics-exporter --no-build --output "$out/"

step "building the .rpm"
cargo generate-rpm -p exporter --output "$out/"

step "packages"
deb=$(find "$out" -maxdepth 1 -name 'coordmetrics_*.deb' -print -quit)
rpm=$(find "$out" -maxdepth 1 -name 'coordmetrics-*.rpm' -print -quit)
[[ -n "$deb" && -n "$rpm" ]] || { echo "error: a package is missing in $out" >&2; exit 1; }
printf 'deb: %s\nrpm: %s\n' "$deb" "$rpm"
printf 'check them with: %s %q %q\n' "packaging/verify-packages.sh" "$deb" "$rpm"
