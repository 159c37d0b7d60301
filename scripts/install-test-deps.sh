#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: Debian packages (promtool, Prometheus,
# node_exporter, Chromium, lintian, rpm), the browser test's npm packages, and cargo's clippy
# and rustfmt components. Idempotent and quick when everything is there already.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)

need_apt=()
for pair in promtool:prometheus prometheus:prometheus prometheus-node-exporter:prometheus-node-exporter \
    chromium:chromium lintian:lintian rpm:rpm rpmlint:rpmlint systemd-analyze:systemd; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair##*:}")
done
if ((${#need_apt[@]})); then
    mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
    echo "==> installing Debian packages: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [[ ! -d "$root/tests/dashboard/node_modules/playwright-core" ]]; then
    echo "==> installing the browser test's npm packages" >&2
    (cd "$root/tests/dashboard" && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    echo "==> installing prometheus_client (the second exposition parser)" >&2
    python3 -m pip install --quiet --disable-pip-version-check prometheus_client
fi

if ! python3 -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "==> installing kubernetes-validate and PyYAML (offline Kubernetes manifest checks)" >&2
    python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0" PyYAML
fi

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "==> installing Miri (nightly toolchain component)" >&2
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    rustup component add --toolchain nightly miri rust-src
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

for component in clippy rustfmt; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
