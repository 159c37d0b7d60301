"""``python -m coordmetrics.generate``: the original ``scripts/generate_coordinator_metrics.py``,
with its flags, for existing cron lines and systemd units.

    python -m coordmetrics.generate                          # export the segment as it is
    python -m coordmetrics.generate --sample-data            # the deterministic sample data
    python -m coordmetrics.generate --benchmark --iterations 100 --format prometheus -o m.prom

``--benchmark`` executes each of the 13 Victor coordinators N times through the Rust client in a
private temporary segment (as the original used a fresh collector) and exports that; without a
mode flag, the segment (``--segment``, default ``$COORDMETRICS_SEGMENT`` or
``/dev/shm/coordmetrics``) is exported. JSON is ``export_json(include_history=True)``,
Prometheus ``export_prometheus()`` (the original names included). Exits 0 on success.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from . import CoordinatorMetricsCollector
from ._native import run_benchmark, sample_data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m coordmetrics.generate", description="Generate coordinator performance metrics"
    )
    parser.add_argument("--output", "-o", default="docs/dashboard/metrics.json", help="output file (default: %(default)s)")
    parser.add_argument("--format", "-f", choices=["json", "prometheus"], default="json", help="output format (default: json)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--benchmark", "-b", action="store_true", help="run the 13 coordinators through the client and export that")
    mode.add_argument("--sample-data", "-s", action="store_true", help="write the deterministic sample data (marked as demo data)")
    parser.add_argument("--iterations", "-i", type=int, default=50, help="executions of each coordinator with --benchmark (default: 50)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the benchmark's progress and the busiest coordinators")
    parser.add_argument("--segment", default=None, help="segment to export without a mode flag")
    return parser


def _export(collector: CoordinatorMetricsCollector, output_format: str) -> str:
    if output_format == "prometheus":
        return collector.export_prometheus()
    return collector.export_json(include_history=True)


def _summary(collector: CoordinatorMetricsCollector, verbose: bool) -> None:
    overall = collector.get_overall_stats()
    print(
        f"{overall['total_executions']} executions of {overall['total_coordinators']} coordinators "
        f"({overall['total_errors']} failed, error rate {overall['overall_error_rate']:.2%})"
    )
    if verbose:
        busiest = sorted(collector.get_all_snapshots(), key=lambda s: s.execution_count, reverse=True)
        for snapshot in busiest[:5]:
            print(f"  {snapshot.coordinator_name}: {snapshot.execution_count} executions")


def _benchmark(iterations: int, output_format: str, verbose: bool) -> str:
    directory = tempfile.mkdtemp(prefix="coordmetrics-generate-")
    try:
        collector = CoordinatorMetricsCollector(segment=os.path.join(directory, "segment"))

        def progress(index: int) -> None:
            if verbose and index % 10 == 0:
                print(f"  iteration {index + 1}/{iterations}")

        run_benchmark(collector, iterations, progress)
        text = _export(collector, output_format)
        _summary(collector, verbose)
        return text
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.iterations < 1:
        _parser().error("--iterations must be at least 1")
    if args.sample_data:
        text = sample_data(args.format)
    elif args.benchmark:
        text = _benchmark(args.iterations, args.format, args.verbose)
    else:
        collector = CoordinatorMetricsCollector(segment=args.segment)
        text = _export(collector, args.format)
        _summary(collector, args.verbose)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Replaced atomically, as the exporter writes its files: a reader never sees half of it.
    partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(output)
    print(f"metrics written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
