#!/usr/bin/env bash
# Cross-process comparison with Python's prometheus_client in multiprocess mode
# (PROMETHEUS_MULTIPROC_DIR): the same workload recorded by 8 processes on 13 coordinators
# (counters and a latency histogram), then the cost of producing the Prometheus text,
# in-process and as a whole process.
#
#   bench/multiprocess.sh [PYTHON_OPS_PER_PROCESS] [CHURN_PROCESSES]
#
# PYTHON_OPS_PER_PROCESS (default 200000) is the Python workers' share; our workers record for
# 2 s each instead (they need far more operations for a CPU time well above the 10 ms clock
# tick). After the first comparison, CHURN_PROCESSES (default 192) more short-lived writer
# processes (1000 operations each, 8 at a time) record into both, as worker processes of a
# long-running service come and go, and the exposition is measured again.
#
# Needs: cargo, python3 (a venv with prometheus_client is made under target/bench-venv),
# hyperfine (apt-get install hyperfine) for the whole-process timings (skipped without it).
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

PY_OPS=${1:-200000}
CHURN=${2:-192}
PROCESSES=8
VENV=target/bench-venv
CRITERION_ARGS=(--warm-up-time 1 --measurement-time 3)

if ! "$VENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet prometheus_client
fi
PY="$VENV/bin/python"

SEGMENT="$WORK/segment"
export PROMETHEUS_MULTIPROC_DIR="$WORK/multiproc"
mkdir "$PROMETHEUS_MULTIPROC_DIR"

section() { printf '\n== %s\n' "$*"; }
field() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

section "machine"
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" -c 'import importlib.metadata as m, sys; print("python", sys.version.split()[0], "prometheus_client", m.version("prometheus_client"))'

section "recording: coordmetrics, $PROCESSES processes x 1 thread, 2 s each"
"$BIN" bench --threads 1 --processes "$PROCESSES" --duration 2s --segment "$SEGMENT" --prom "$WORK/ours.prom" | tee "$WORK/ours.txt"
OURS_CPU_NS=$(sed -n 's/^  cpu time *\([0-9.]*\) ns\/op.*/\1/p' "$WORK/ours.txt")

# Python records into the same coordinators and exposes the same histogram buckets as ours, so
# both texts carry the same series.
BUCKETS=$(grep -o 'duration_seconds_bucket{coordinator="ChatCoordinator",le="[^"]*"' "$WORK/ours.prom" |
    sed 's/.*le="//; s/"$//' | grep -v Inf | paste -sd, -)
COORDINATORS=$(grep -o '_executions_total{coordinator="[^"]*"' "$WORK/ours.prom" | sed 's/.*coordinator="//; s/"$//' |
    sort -u | paste -sd, -)

section "recording: python prometheus_client multiprocess, $PROCESSES processes x $PY_OPS operations"
for i in $(seq 0 $((PROCESSES - 1))); do
    "$PY" bench/multiprocess.py worker "$i" "$PY_OPS" "$BUCKETS" "$COORDINATORS" >"$WORK/py-$i.txt" &
done
wait
PY_CPU_NS=$(cat "$WORK"/py-*.txt | awk '$1 == "cpu_ns_per_op" { print $2 }' | median)
PY_WALL_NS=$(cat "$WORK"/py-*.txt | awk '$1 == "ns_per_op" { print $2 }' | median)
echo "  per process  $PY_WALL_NS ns/op wall-clock median, $PY_CPU_NS ns/op CPU time median"

exposition() {
    local label=$1
    section "exposition ($label): in-process"
    "$PY" bench/multiprocess.py expose 50 | tee "$WORK/py-expose.txt"
    COORDMETRICS_BENCH_SEGMENT="$SEGMENT" cargo bench --quiet -p coordmetrics-exporter --bench exporter -- \
        "${CRITERION_ARGS[@]}" 2>&1 | tee "$WORK/ours-expose.txt" | grep -E 'time:|bytes'
    local ours_ms py_ms
    ours_ms=$(grep -A1 'snapshot + report + prometheus render' "$WORK/ours-expose.txt" | grep -o 'time: *\[[^]]*\]' |
        awk '{ v = $4; u = $5; if (u == "µs") v /= 1000; if (u == "ns") v /= 1e6; if (u == "s") v *= 1000; print v }')
    py_ms=$(field cpu_ms_median "$WORK/py-expose.txt")
    echo "  in-process CPU time: python generate_latest ${py_ms} ms (median of 50), coordmetrics snapshot + report + render ${ours_ms} ms (criterion median): $(awk -v a="$py_ms" -v b="$ours_ms" 'BEGIN { printf "%.0fx", a / b }')"
    "$BIN" snapshot --segment "$SEGMENT" | wc -c | xargs echo "  coordmetrics snapshot text bytes:"

    if command -v hyperfine >/dev/null; then
        section "exposition ($label): whole process (hyperfine)"
        hyperfine -N --warmup 3 --runs 20 --style basic --export-json "$WORK/hyperfine.json" \
            -n 'python generate_latest (MultiProcessCollector)' "$PY bench/multiprocess.py expose 1" \
            -n 'coordmetrics snapshot' "$BIN snapshot --segment $SEGMENT"
        "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"]; print("  whole process: python %.1f ms, coordmetrics %.2f ms (medians): %.0fx" % (r[0]["median"] * 1e3, r[1]["median"] * 1e3, r[0]["median"] / r[1]["median"]))' "$WORK/hyperfine.json"
    fi
}

exposition "$PROCESSES processes"

section "churn: $CHURN more short-lived writer processes, $PROCESSES at a time, 1000 operations each"
for _ in $(seq 1 $((CHURN / PROCESSES))); do
    "$BIN" bench --threads 1 --processes "$PROCESSES" --iterations 1000 --segment "$SEGMENT" >/dev/null
    for i in $(seq 0 $((PROCESSES - 1))); do
        "$PY" bench/multiprocess.py worker "$i" 1000 "$BUCKETS" "$COORDINATORS" >/dev/null &
    done
    wait
done
"$BIN" inspect --segment "$SEGMENT" | grep -iE 'writer|slots' | head -5 || true
exposition "after churn: $((PROCESSES + CHURN)) processes in all"

section "summary"
echo "  recording cost per operation (CPU time): python ${PY_CPU_NS} ns, coordmetrics ${OURS_CPU_NS} ns: $(awk -v a="$PY_CPU_NS" -v b="$OURS_CPU_NS" 'BEGIN { printf "%.0fx", a / b }')"
