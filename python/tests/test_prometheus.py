"""`export_prometheus()` is the exporter's own output: the bytes of `coordmetrics snapshot`, lint-
clean for promtool, readable by the official Python client's parser."""

from __future__ import annotations

import multiprocessing
import re
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

import cm_workers
from conftest import snapshot_cli
from coordmetrics import CoordinatorMetricsCollector

# A name that needs escaping in a label value.
TRICKY = 'Quote"Back\\slash\nNewline Coordinator'

# The lines that depend on when the snapshot is taken: the segment's age, the time of the
# snapshot and how long it took (zero today in both, masked so that measuring it later does not
# break the comparison). Every other byte must be identical.
TIME_DEPENDENT = re.compile(
    r"^([a-z_:]+_uptime_seconds|coordmetrics_last_snapshot_timestamp_seconds"
    r"|coordmetrics_snapshot_duration_seconds) .*$",
    re.MULTILINE,
)


def mask(text: str) -> str:
    return TIME_DEPENDENT.sub(r"\1 <masked>", text)


def populate(collector: CoordinatorMetricsCollector, segment: str) -> None:
    """Records through the parent (with explicit memory gauges, so that no line depends on the
    parent's resident memory at the moment of reading) and through a child that has exited."""
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    go.set()
    child = spawn.Process(target=cm_workers.worker_process, args=(segment, 7, 1, 70, go))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    for name, duration in (("ChatCoordinator", 12.5), ("ToolCoordinator", 0.003), (TRICKY, 250.0)):
        collector.track_execution(name, duration)
        collector.track_execution(name, duration * 3, success=False, error_message="failed")
        collector.record_cache_hit(name)
        collector.set_memory_bytes(name, 1 << 20)
    collector.track_execution("ChatCoordinator", 200_000.0)  # beyond the largest bucket
    collector.record_analytics_event("tool_call", 3)


@pytest.mark.parametrize(
    "cli_args, options",
    [
        # By default the original collector's documented names too, as its export_prometheus().
        (["--compat-names"], {}),
        ([], {"compat_names": False}),
        (
            ["--namespace", "victor", "--compat-names", "--bucket-resolution", "8"],
            {"namespace": "victor", "compat_names": True, "bucket_resolution": 8},
        ),
    ],
)
def test_export_prometheus_is_the_binary_output(collector, segment, coordmetrics_bin, cli_args, options):
    populate(collector, segment)
    exported = collector.export_prometheus(**options)
    printed = snapshot_cli(coordmetrics_bin, segment, "--format", "prometheus", *cli_args)
    assert len(TIME_DEPENDENT.findall(exported)) == 3
    assert mask(exported) == mask(printed)


def promtool_check(promtool: str, text: str) -> tuple:
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    return checked.returncode, (checked.stdout + checked.stderr).splitlines()


def test_export_prometheus_passes_promtool(collector, segment, promtool):
    populate(collector, segment)
    assert promtool_check(promtool, collector.export_prometheus(compat_names=False)) == (0, [])
    # The documented names' millisecond unit is the only lint, and it cannot be avoided.
    assert promtool_check(promtool, collector.export_prometheus()) == (
        3,
        [
            "victor_coordinator_duration_ms metric names should not contain abbreviated units",
            "victor_coordinator_duration_ms_total metric names should not contain abbreviated units",
        ],
    )


def test_export_prometheus_parses(collector, segment):
    populate(collector, segment)
    families = {f.name: f for f in text_string_to_metric_families(collector.export_prometheus())}
    histogram = families["victor_coordinator_duration_seconds"]
    assert histogram.type == "histogram"
    counts = {s.labels["coordinator"]: s.value for s in histogram.samples if s.name.endswith("_count")}
    assert (counts[TRICKY], counts["ToolCoordinator"]) == (2, 2)
    chat_buckets = [s for s in histogram.samples if s.name.endswith("_bucket") and s.labels["coordinator"] == "ChatCoordinator"]
    assert chat_buckets[-1].labels["le"] == "+Inf" and chat_buckets[-1].value == counts["ChatCoordinator"]
    # The 200 s execution is above the largest finite bucket (128 s).
    assert chat_buckets[-2].value == counts["ChatCoordinator"] - 1
    executions = {s.labels["coordinator"]: s.value for s in families["victor_coordinator_executions"].samples}
    # The child's deterministic workload, recorded by another process.
    first = cm_workers.COORDINATORS[0]
    assert executions[first] == cm_workers.expected([(7, 1, 70)]).coordinators[first].executions


def test_invalid_options_are_refused(collector):
    with pytest.raises(ValueError, match="namespace"):
        collector.export_prometheus(namespace="1-bad")
    with pytest.raises(ValueError, match="bucket_resolution"):
        collector.export_prometheus(bucket_resolution=3)
