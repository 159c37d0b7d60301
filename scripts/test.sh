#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then runs formatting and lint
# checks, every Rust test (unit, integration, multi-process, end-to-end with promtool,
# node_exporter, Prometheus and Chromium), the Prometheus rule tests, the Python binding's tests
# and the package build and install checks.
#
#   scripts/test.sh            # everything
#   SKIP_PACKAGES=1 scripts/test.sh   # all but building and installing the .deb/.rpm
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

step "installing test dependencies (if missing)"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace)"
cargo test --workspace --locked 2>&1 | tee target/test-output.log
grep -q "^test result: ok" target/test-output.log

step "Miri and loom on the lock-free core"
scripts/check-lockfree.sh

step "fuzzing the segment reader for ${FUZZ_SECONDS:-60} s"
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"

step "Prometheus rules, rule unit tests and config"
bash packaging/prometheus/check.sh

step "Kubernetes manifests (offline schemas and the pod-sidecar contract)"
bash packaging/kubernetes/check.sh

if [[ -x python/run-tests.sh ]]; then
    step "Python binding"
    python/run-tests.sh 2>&1 | tee target/python-test-output.log
fi

if [[ -z "${SKIP_PACKAGES:-}" && -x packaging/build-packages.sh ]]; then
    step "packages: build, lint, install, verify"
    packaging/build-packages.sh | tee target/packages.list
    packaging/verify-packages.sh "$(sed -n 's/^deb: //p' target/packages.list)" "$(sed -n 's/^rpm: //p' target/packages.list)"
fi

step "all tests passed"
# One closing line for the whole suite: Rust tests (cargo's own result lines) and Python tests.
rust_passed=$(awk '/^test result:/ {sum += $4} END {print sum + 0}' target/test-output.log)
python_passed=$(grep -oE '[0-9]+ passed' target/python-test-output.log 2>/dev/null | tail -1 | grep -oE '[0-9]+' || echo 0)
echo "suite: $((rust_passed + python_passed)) passed, 0 failed"
