#!/usr/bin/env python3
"""Cost of timing one execution from Python: coordmetrics against prometheus_client, same run.

    python/.venv/bin/python python/bench_python.py [--rounds 5] [--ops 100000]

Each case times an empty block `--ops` times per round with time.perf_counter_ns and prints the
median over `--rounds` rounds in ns per operation (the loop itself included: see the `empty
loop` line). Cases:

- coordmetrics `with collector.track_coordinator(name):` (by name, the original API), through a
  pre-resolved handle (`with handle.track():`), and a `@track_coordinator_metrics` function;
  then the by-name block with this process's execution records (the default) against none kept
  (`max_history=0`), in alternating rounds, as a ratio;
- prometheus_client `Histogram.time()`, labelled per call (`h.labels(name).time()`, the
  by-name equivalent) and on a pre-resolved child, in its default single-process mode;
- the same in prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, a temporary
  directory), measured in a child process because the mode is chosen when prometheus_client is
  imported.

The segment is a temporary file, never /dev/shm/coordmetrics. Needs `pip install
prometheus_client` and the coordmetrics wheel (python/run-tests.sh installs both in .venv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Callable, Dict, List, Tuple

NAME = "BenchCoordinator"

# Running this file puts its directory first on sys.path, where the source package (without
# its compiled extension) would shadow the installed wheel.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]


def median_ns(body: Callable[[int], None], ops: int, rounds: int) -> Tuple[float, float]:
    """(median, min) ns per operation over `rounds` rounds of `ops` operations."""
    body(min(ops, 10_000))  # warm-up: first resolution, writer slot, caches
    per_op: List[float] = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        body(ops)
        per_op.append((time.perf_counter_ns() - start) / ops)
    return statistics.median(per_op), min(per_op)


def empty_loop(n: int) -> None:
    for _ in range(n):
        pass


def prometheus_cases(prefix: str) -> Dict[str, Callable[[int], None]]:
    from prometheus_client import CollectorRegistry, Histogram

    histogram = Histogram("bench_duration_seconds", "Bench.", ["coordinator"], registry=CollectorRegistry())
    child = histogram.labels(NAME)

    def by_label(n: int) -> None:
        labels = histogram.labels
        for _ in range(n):
            with labels(NAME).time():
                pass

    def resolved(n: int) -> None:
        time_it = child.time
        for _ in range(n):
            with time_it():
                pass

    return {
        f"prometheus_client {prefix}: with h.labels(name).time():": by_label,
        f"prometheus_client {prefix}: with child.time():": resolved,
    }


def by_name_case(collector) -> Callable[[int], None]:
    def by_name(n: int) -> None:
        track = collector.track_coordinator
        for _ in range(n):
            with track(NAME):
                pass

    return by_name


def paired_ratio(first: Callable[[int], None], second: Callable[[int], None], ops: int, rounds: int) -> float:
    """Median over rounds of (time of `first`) / (time of `second`), the two run back to back in
    each round (in alternating order), so that load changing between rounds affects both alike."""
    first(min(ops, 10_000))
    second(min(ops, 10_000))
    ratios: List[float] = []
    for round_index in range(rounds):
        timed: Dict[int, int] = {}
        for which in ((0, 1) if round_index % 2 == 0 else (1, 0)):
            start = time.perf_counter_ns()
            (first, second)[which](ops)
            timed[which] = time.perf_counter_ns() - start
        ratios.append(timed[0] / timed[1])
    return statistics.median(ratios)


def coordmetrics_cases(segment: str) -> Dict[str, Callable[[int], None]]:
    from coordmetrics import CoordinatorMetricsCollector, track_coordinator_metrics

    collector = CoordinatorMetricsCollector(segment=segment)
    handle = collector.coordinator(NAME)
    by_name = by_name_case(collector)

    def resolved(n: int) -> None:
        track = handle.track
        for _ in range(n):
            with track():
                pass

    @track_coordinator_metrics(collector, NAME)
    def work() -> None:
        pass

    def decorated(n: int) -> None:
        for _ in range(n):
            work()

    return {
        "coordmetrics: with collector.track_coordinator(name):": by_name,
        "coordmetrics: with handle.track():": resolved,
        "coordmetrics: @track_coordinator_metrics function call": decorated,
    }


def run_cases(cases: Dict[str, Callable[[int], None]], ops: int, rounds: int) -> Dict[str, Tuple[float, float]]:
    return {name: median_ns(body, ops, rounds) for name, body in cases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--multiprocess-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.multiprocess_child:
        results = run_cases(prometheus_cases("multiprocess"), args.ops, args.rounds)
        json.dump(results, sys.stdout)
        return

    results: Dict[str, Tuple[float, float]] = {"empty loop (baseline)": median_ns(empty_loop, args.ops, args.rounds)}
    with tempfile.TemporaryDirectory(prefix="coordmetrics-bench-") as directory:
        segment = os.path.join(directory, "segment")
        results.update(run_cases(coordmetrics_cases(segment), args.ops, args.rounds))
        # The cost of this process's execution records (max_history, the default 10000) against
        # none kept (max_history=0: the segment only, as before the records existed).
        from coordmetrics import CoordinatorMetricsCollector

        records_ratio = paired_ratio(
            by_name_case(CoordinatorMetricsCollector(segment=segment)),
            by_name_case(CoordinatorMetricsCollector(0, segment=segment)),
            args.ops,
            args.rounds * 2,
        )
        results.update(run_cases(prometheus_cases("single process"), args.ops, args.rounds))
        multiproc_dir = os.path.join(directory, "prometheus-multiproc")
        os.mkdir(multiproc_dir)
        child = subprocess.run(
            [sys.executable, __file__, "--multiprocess-child", "--rounds", str(args.rounds), "--ops", str(args.ops)],
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc_dir},
            capture_output=True,
            text=True,
            check=True,
        )
        results.update({name: tuple(value) for name, value in json.loads(child.stdout).items()})

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"coordmetrics {version('coordmetrics')}, prometheus_client {version('prometheus_client')}; "
        f"{args.rounds} rounds x {args.ops} ops; median (min) ns/op; empty block, loop included"
    )
    width = max(len(name) for name in results)
    reference = results["coordmetrics: with collector.track_coordinator(name):"][0]
    for name, (median, fastest) in results.items():
        print(f"  {name:<{width}}  {median:8.1f}  ({fastest:8.1f})  x{median / reference:5.2f}")
    print(f"with collector.track_coordinator(name): with execution records / without (max_history=0), paired: x{records_ratio:.3f}")


if __name__ == "__main__":
    main()
