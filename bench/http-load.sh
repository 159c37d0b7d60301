#!/usr/bin/env bash
# Requests per second and latency of the exporter's HTTP listener (loopback only): GET /metrics
# with 1, 10 and 100 concurrent clients, then 10 clients under 200 slow connections that trickle
# a request one byte every 3 s. The segment holds the 13 coordinators of `coordmetrics bench`.
#
# Usage: bench/http-load.sh [SECONDS per run, default 10]
# COORDMETRICS_BIN=PATH measures another build of the exporter (an older commit's, say) with the
# same load generator.
set -euo pipefail

seconds=${1:-10}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo build --release -q -p coordmetrics-exporter --bin coordmetrics --example http_load
bin=${COORDMETRICS_BIN:-target/release/coordmetrics}
load=target/release/examples/http_load

tmp=$(mktemp -d)
exporter_pid=
cleanup() {
    [[ -n $exporter_pid ]] && kill "$exporter_pid" 2>/dev/null && wait "$exporter_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" bench --segment "$tmp/segment" --threads 1 --processes 1 --iterations 20000 >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" run --segment "$tmp/segment" --prom "$tmp/out.prom" --json "$tmp/metrics.json" \
    --interval 10s --listen "127.0.0.1:$port" 2>"$tmp/exporter.log" &
exporter_pid=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$tmp/exporter.log" >&2; exit 1; }
echo "GET /metrics: $(curl -s "http://127.0.0.1:$port/metrics" | wc -c) bytes, ${seconds} s per run"

for clients in 1 10 100; do
    "$load" "127.0.0.1:$port" /metrics "$clients" "$seconds" 0
done
"$load" "127.0.0.1:$port" /metrics 10 "$seconds" 200
