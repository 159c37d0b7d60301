"""The Python peer of `coordmetrics bench`: prometheus_client in multiprocess mode.

Two roles, chosen by the first argument (PROMETHEUS_MULTIPROC_DIR must name an existing
directory, as prometheus_client requires):

  worker  N OPS BUCKETS COORDINATORS
                          record OPS operations of the same mix as `coordmetrics bench` (a
                          quarter each: an execution with its latency, a cache hit, a cache
                          miss, an analytics event) on handles resolved once,
                          then print "ns_per_op <wall-clock>" and "cpu_ns_per_op
                          <process CPU time>" per operation
  expose  REPEAT          build the exposition text with MultiProcessCollector +
                          generate_latest REPEAT times in this process, then print
                          "bytes <n>", "files <n>" and the per-call times in milliseconds
                          (wall-clock min and median, CPU-time median); REPEAT = 1 is the
                          whole-process case that hyperfine times

BUCKETS is a comma-separated list of histogram upper bounds (seconds) and COORDINATORS one of
coordinator names, both read from the text `coordmetrics bench` exposed, so that both sides
record and expose the same series.
"""

import os
import statistics
import sys
import time

NAMESPACE = "victor_coordinator"
MASK = (1 << 64) - 1


def worker(thread_id, operations, buckets, coordinators):
    from prometheus_client import Counter, Histogram

    labels = ["coordinator"]
    executions = Counter(f"{NAMESPACE}_executions", "Executions.", labels)
    errors = Counter(f"{NAMESPACE}_errors", "Failed executions.", labels)
    hits = Counter(f"{NAMESPACE}_cache_hits", "Cache hits.", labels)
    misses = Counter(f"{NAMESPACE}_cache_misses", "Cache misses.", labels)
    duration = Histogram(f"{NAMESPACE}_duration_seconds", "Duration.", labels, buckets=buckets)
    events = Counter(f"{NAMESPACE}_analytics_events", "Analytics events.", ["event"])
    # Handles resolved once, as coordmetrics' Coordinator handles are.
    handles = [
        (executions.labels(c), errors.labels(c), hits.labels(c), misses.labels(c), duration.labels(c))
        for c in coordinators
    ]
    event = events.labels("bench_operation")
    count = len(coordinators)

    def perform(n):
        execution, error, hit, miss, latency = handles[(n + thread_id) % count]
        kind = n % 4
        if kind == 0:
            # The same durations as coordmetrics bench: 20 us to 100 ms.
            nanos = 20_000 + (((n * 0x9E3779B97F4A7C15) & MASK) >> 40) % 200_000 * 500
            latency.observe(nanos * 1e-9)
            execution.inc()
            if (n // 4) % 20 == 0:
                error.inc()
        elif kind == 1:
            hit.inc()
        elif kind == 2:
            miss.inc()
        else:
            event.inc()

    perform(0)  # first use outside the timed region, as in coordmetrics bench
    start, cpu_start = time.perf_counter_ns(), time.process_time_ns()
    for n in range(1, operations):
        perform(n)
    cpu = time.process_time_ns() - cpu_start
    elapsed = time.perf_counter_ns() - start
    print(f"ns_per_op {elapsed / (operations - 1):.1f}")
    print(f"cpu_ns_per_op {cpu / (operations - 1):.1f}")


def expose(repeat):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    times, cpu_times = [], []
    text = b""
    for _ in range(repeat):
        start, cpu_start = time.perf_counter_ns(), time.process_time_ns()
        text = generate_latest(registry)
        cpu_times.append((time.process_time_ns() - cpu_start) / 1e6)
        times.append((time.perf_counter_ns() - start) / 1e6)
    files = len([f for f in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"]) if f.endswith(".db")])
    print(f"bytes {len(text)}")
    print(f"files {files}")
    print(f"ms_min {min(times):.3f}")
    print(f"ms_median {statistics.median(times):.3f}")
    print(f"cpu_ms_median {statistics.median(cpu_times):.3f}")


def main():
    role = sys.argv[1]
    if role == "worker":
        buckets = [float(b) for b in sys.argv[4].split(",")]
        worker(int(sys.argv[2]), int(sys.argv[3]), buckets, sys.argv[5].split(","))
    elif role == "expose":
        expose(int(sys.argv[2]))
    else:
        sys.exit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
