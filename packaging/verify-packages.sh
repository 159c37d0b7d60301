#!/usr/bin/env bash
# Checks the packages made by packaging/build-packages.sh, on a Debian machine, as root:
#
#   packaging/verify-packages.sh target/packages/coordmetrics_*.deb target/packages/coordmetrics-*.rpm
#
#  1. lintian (fails on errors) and rpmlint (fails on errors not filtered by packaging/rpmlintrc)
#  2. dpkg -i; the user, the conffile, write access to the node_exporter directory
#  3. systemd-analyze verify of the installed units (fails on any output) and
#     systemd-analyze security --offline=yes (fails above an exposure of 2.5)
#  4. the installed binary: --version and check-config on the shipped configuration
#  5. dpkg --purge: the package's files, its state and its .prom file are gone, the user stays
#  6. the .rpm holds the same regular files as the .deb, bar Debian's own metadata
#  7. the .rpm installs into an empty root
#
# Installs lintian, rpm, rpmlint and acl with apt-get when missing. Refuses to run when the package
# is already installed (it would be purged); purges what it installed if a check fails.
set -euo pipefail

max_exposure=2.5
units=(coordmetrics.service coordmetrics-snapshot.service coordmetrics-snapshot.timer)
hardened_services=(coordmetrics.service coordmetrics-snapshot.service)
prom_file=/var/lib/prometheus/node-exporter/coordmetrics.prom
state_dir=/var/lib/coordmetrics
# Files only the .deb has: Debian policy's copyright and changelog, and lintian's overrides.
deb_only_files=(
    /usr/share/doc/coordmetrics/changelog.Debian.gz
    /usr/share/doc/coordmetrics/copyright
    /usr/share/lintian/overrides/coordmetrics
)

step() { printf '\n==> %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || { echo "usage: $0 DEB RPM" >&2; exit 2; }
deb=$(realpath -e -- "$1")
rpm_package=$(realpath -e -- "$2")
[[ $EUID -eq 0 ]] || fail "must run as root (it installs and purges the package)"
packaging=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

work=$(mktemp -d)
installed_by_us=false
cleanup() {
    if $installed_by_us; then
        echo "purging the coordmetrics package installed by this run" >&2
        dpkg --purge coordmetrics >/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# COMMAND:PACKAGE; acl is also a dependency of the .deb, which dpkg -i does not install.
missing=()
for tool in lintian:lintian rpm:rpm rpmlint:rpmlint setfacl:acl; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Regular files of each package, one absolute path a line, sorted.
dpkg-deb --fsys-tarfile "$deb" | tar -tv | awk '/^-/ { sub(/^\./, "", $6); print $6 }' \
    | sort > "$work/deb-files"
rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$rpm_package" 2>/dev/null \
    | awk '/^-/ { print $2 }' | sort > "$work/rpm-files"
[[ -s "$work/deb-files" && -s "$work/rpm-files" ]] || fail "could not list the packages' files"

step "lintian $deb"
lintian --fail-on error "$deb" || fail "lintian reports errors"
ok "no lintian errors"

step "rpmlint $rpm_package"
rpmlint -r "$packaging/rpmlintrc" "$rpm_package" || fail "rpmlint reports errors"
ok "no rpmlint errors"

step "rpm scriptlets parse"
for tag in PREIN POSTIN PREUN POSTUN; do
    rpm -qp --qf "%{$tag}" "$rpm_package" > "$work/$tag" 2>/dev/null
    [[ -s "$work/$tag" ]] || fail "the rpm has no $tag scriptlet"
    sh -n "$work/$tag" || fail "the rpm's $tag scriptlet does not parse"
done
ok "pre, post, preun and postun present and valid sh"

step "dpkg -i $deb"
if dpkg-query -W -f='${Status}' coordmetrics 2>/dev/null | grep -q ' installed$'; then
    fail "coordmetrics is already installed; purge it first (dpkg --purge coordmetrics)"
fi
installed_by_us=true
dpkg -i "$deb"
getent passwd coordmetrics >/dev/null || fail "postinst did not create the user coordmetrics"
getent group coordmetrics >/dev/null || fail "postinst did not create the group coordmetrics"
[[ $(getent passwd coordmetrics | cut -d: -f7) == */nologin ]] || fail "coordmetrics has a login shell"
ok "system user and group coordmetrics"
dpkg-query -W -f='${Conffiles}\n' coordmetrics | grep -q '^ /etc/coordmetrics/config.toml ' \
    || fail "/etc/coordmetrics/config.toml is not a conffile"
ok "/etc/coordmetrics/config.toml is a conffile"
probe="$(dirname "$prom_file")/.coordmetrics-verify.$$"
runuser -u coordmetrics -- touch "$probe" \
    || fail "coordmetrics cannot write to $(dirname "$prom_file") (see the output of textfile-access in the postinst above)"
rm -f "$probe"
ok "coordmetrics can write to $(dirname "$prom_file")"

step "systemd-analyze verify"
unit_paths=()
for unit in "${units[@]}"; do
    unit_paths+=("/usr/lib/systemd/system/$unit")
done
# --man=no: Documentation=man:coordmetrics(1) is checked below against the package contents,
# which also holds where dpkg is configured not to install man pages (container images).
if ! output=$(systemd-analyze verify --man=no "${unit_paths[@]}" 2>&1) || [[ -n "$output" ]]; then
    printf '%s\n' "$output" >&2
    fail "systemd-analyze verify reports problems"
fi
grep -qx /usr/share/man/man1/coordmetrics.1.gz "$work/deb-files" \
    || fail "the man page named by Documentation= is not in the package"
ok "${units[*]}"

step "systemd-analyze security --offline=yes (at most $max_exposure)"
for unit in "${hardened_services[@]}"; do
    output=$(systemd-analyze security --offline=yes "$unit" 2>&1) \
        || { printf '%s\n' "$output" >&2; fail "systemd-analyze security failed for $unit"; }
    exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$output")
    [[ -n "$exposure" ]] || { printf '%s\n' "$output" >&2; fail "no exposure level for $unit"; }
    if awk -v e="$exposure" -v max="$max_exposure" 'BEGIN { exit !(e > max) }'; then
        grep '✗' <<<"$output" >&2 || true
        fail "$unit: exposure $exposure is above $max_exposure"
    fi
    ok "$unit: exposure $exposure"
done

step "the installed binary"
version=$(dpkg-query -W -f='${Version}' coordmetrics)
upstream_version=${version%-*}
output=$(/usr/bin/coordmetrics --version) || fail "coordmetrics --version failed"
[[ $output == *"$upstream_version"* ]] \
    || fail "coordmetrics --version prints '$output', expected version $upstream_version"
ok "coordmetrics --version: $output"
/usr/bin/coordmetrics check-config --config /etc/coordmetrics/config.toml \
    || fail "the shipped /etc/coordmetrics/config.toml does not pass check-config"
ok "check-config accepts the shipped configuration"

step "dpkg --purge coordmetrics"
# Stand-ins for what the exporter writes, which the purge must remove.
install -d -o coordmetrics -g coordmetrics "$state_dir"
runuser -u coordmetrics -- touch "$state_dir/metrics.json"
[[ -e $prom_file ]] || runuser -u coordmetrics -- touch "$prom_file"
dpkg --purge coordmetrics
installed_by_us=false
left=()
while read -r path; do
    if [[ -e $path ]]; then left+=("$path"); fi
done < <(cat "$work/deb-files"; printf '%s\n' "$state_dir" "$prom_file" /etc/coordmetrics)
((${#left[@]} == 0)) || fail "left behind after purge: ${left[*]}"
if getfacl -cp "$(dirname "$prom_file")" 2>/dev/null | grep -q '^user:coordmetrics:'; then
    fail "the ACL entry of coordmetrics on $(dirname "$prom_file") survived the purge"
fi
getent passwd coordmetrics >/dev/null || fail "the purge removed the user coordmetrics (Debian policy keeps it)"
ok "no file left; the user coordmetrics is kept, as Debian policy wants"

step "the .rpm holds the .deb's files"
printf '%s\n' "${deb_only_files[@]}" | sort > "$work/deb-only"
comm -23 "$work/deb-files" "$work/deb-only" > "$work/deb-files-comparable"
if ! diff -u --label deb "$work/deb-files-comparable" --label rpm "$work/rpm-files" >&2; then
    fail "the .deb and the .rpm hold different files (- only in the deb, + only in the rpm)"
fi
ok "$(wc -l < "$work/rpm-files") files in both"

step "rpm -ivh into an empty root"
rpm_root="$work/rpm-root"
mkdir -p "$rpm_root"
rpm --root "$rpm_root" --initdb
# --noscripts: the scriptlets would run chrooted into a root without /bin/sh; they are
# checked above.
rpm -ivh --root "$rpm_root" --nodeps --noscripts "$rpm_package"
[[ -x "$rpm_root/usr/bin/coordmetrics" ]] || fail "/usr/bin/coordmetrics is not in the rpm root"
while read -r file; do
    [[ -f "$rpm_root$file" ]] || fail "$file is missing from the rpm root"
done < "$work/rpm-files"
ok "all $(wc -l < "$work/rpm-files") files installed, /usr/bin/coordmetrics executable"

printf '\nall package checks passed\n'
