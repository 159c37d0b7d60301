# Sourced by the benchmark scripts: strict mode, the repository root as working directory, a
# release build of the exporter in $BIN, and a scratch directory $WORK that is removed on exit,
# after the script's own `bench_cleanup` (a function it may define: stop what it started).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

BIN=target/release/coordmetrics
cargo build --quiet --release -p coordmetrics-exporter
WORK=$(mktemp -d)
trap 'if declare -F bench_cleanup >/dev/null; then bench_cleanup; fi; rm -rf "$WORK"' EXIT
