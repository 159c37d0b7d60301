#!/usr/bin/env bash
# Validates the Kubernetes manifests of this directory offline, without a cluster:
#   - check.py: every resource against the Kubernetes schemas bundled with kubernetes-validate
#     (strict) or the vendored schemas/ for custom resources, and the pod-sidecar contract the
#     schemas cannot express; --self-test proves each rule still fails on a broken copy;
#   - the sidecar's config.toml from the ConfigMap with `coordmetrics check-config`.
# Needs python3 with kubernetes-validate (scripts/install-test-deps.sh installs it) and cargo.
# Without kubernetes-validate it fails under CI=true and skips, saying so, otherwise.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! python3 -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null; then
    message="the Python package kubernetes-validate is missing (python3 -m pip install kubernetes-validate)"
    if [[ "${CI:-}" == true ]]; then
        echo "check.sh: $message" >&2
        exit 1
    fi
    echo "check.sh: SKIPPED, $message" >&2
    exit 0
fi

python3 "$here/check.py" --self-test "$here"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))["data"]["config.toml"])' \
    "$here/configmap.yaml" >"$tmp/config.toml"
cargo run --quiet --locked --manifest-path "$root/Cargo.toml" -p coordmetrics-exporter --bin coordmetrics -- \
    check-config --config "$tmp/config.toml" >/dev/null
echo "check.sh: configmap.yaml's config.toml passes coordmetrics check-config"
echo "check.sh: all checks passed"
