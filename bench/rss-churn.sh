#!/usr/bin/env bash
# Resident memory of the exporter (`coordmetrics run`) while 1000 short-lived writer processes
# start, record and exit, 20 at a time: the exporter's memory must not grow with the number of
# processes that ever wrote (target: flat within 1 MiB).
#
#   bench/rss-churn.sh [WRITERS] [BATCH]      (defaults 1000 and 20)
#
# The exporter snapshots every 50 ms into a .prom and a metrics.json. First a warm-up: 200
# writer processes (so every one of the segment's 128 writer slots has been used once and
# mapped by the exporter) and a full metrics.json history (120 snapshots). Then WRITERS more
# processes, and VmRSS, RssAnon (the exporter's own heap and stacks) and RssShmem (pages of the
# shared segment it has read) from /proc/PID/status before, during and after.
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

WRITERS=${1:-1000}
BATCH=${2:-20}
WARMUP=200

SEGMENT=/dev/shm/coordmetrics-rss-churn-$$
EXPORTER=
bench_cleanup() {
    [ -n "$EXPORTER" ] && kill "$EXPORTER" 2>/dev/null && wait "$EXPORTER" 2>/dev/null
    rm -rf "$SEGMENT"
}

COORDMETRICS_LOG=warn "$BIN" run --create --segment "$SEGMENT" --interval 50ms \
    --prom "$WORK/coordmetrics.prom" --json "$WORK/metrics.json" &
EXPORTER=$!
for _ in $(seq 100); do [ -s "$WORK/metrics.json" ] && break; sleep 0.05; done

status() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$EXPORTER/status"; }
sample() { printf '%-34s VmRSS %6d KiB  RssAnon %6d KiB  RssShmem %6d KiB\n' "$1" "$(status VmRSS)" "$(status RssAnon)" "$(status RssShmem)"; }
writers() {
    # Each batch is `coordmetrics bench`: BATCH worker processes that record 1000 operations
    # each, exit, and have their totals verified.
    local count=$1 done=0
    while [ "$done" -lt "$count" ]; do
        "$BIN" bench --threads 1 --processes "$BATCH" --iterations 1000 --segment "$SEGMENT" >/dev/null
        done=$((done + BATCH))
    done
}

echo "exporter pid $EXPORTER, segment $SEGMENT ($(stat -c %s "$SEGMENT") bytes), $(nproc) cores"
sample "start (no writer yet)"
writers "$WARMUP"
sleep 7 # 120 history points at 50 ms
sample "after warm-up ($WARMUP writers)"
BEFORE_RSS=$(status VmRSS)
BEFORE_ANON=$(status RssAnon)
for step in 1 2 3 4 5; do
    writers $((WRITERS / 5))
    sample "+ $((step * WRITERS / 5)) writer processes"
done
sleep 1
sample "after $WRITERS writer processes"
AFTER_RSS=$(status VmRSS)
AFTER_ANON=$(status RssAnon)
"$BIN" inspect --segment "$SEGMENT" | grep -E '^(used|dropped)' || true
kill -TERM "$EXPORTER"
if wait "$EXPORTER"; then echo "exporter exited 0 after TERM"; else echo "exporter exited $? after TERM"; fi
EXPORTER=
echo "VmRSS change over $WRITERS writer processes: $((AFTER_RSS - BEFORE_RSS)) KiB (RssAnon $((AFTER_ANON - BEFORE_ANON)) KiB); target within 1024 KiB"
