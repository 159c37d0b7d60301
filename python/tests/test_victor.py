"""The drop-in for ``victor.observability.coordinator_metrics``: every call of the original API,
with its keyword names, its defaults, its return types and its dict keys, over the segment."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

import coordmetrics
from coordmetrics.victor import (
    CoordinatorExecution,
    CoordinatorMetricsCollector,
    CoordinatorSnapshot,
    get_coordinator_metrics_collector,
    track_coordinator_metrics,
)

from conftest import CAPACITIES

STATS_KEYS = [
    "coordinator_name",
    "execution_count",
    "avg_duration_ms",
    "min_duration_ms",
    "max_duration_ms",
    "p50_duration_ms",
    "p95_duration_ms",
    "p99_duration_ms",
    "error_count",
    "error_rate",
    "cache_hit_rate",
]


@pytest.fixture
def victor(segment) -> CoordinatorMetricsCollector:
    return CoordinatorMetricsCollector(max_history=5, segment=segment, capacities=CAPACITIES)


def record_in_another_process(segment: str, code: str) -> None:
    """Runs `code` with `collector` open on `segment` in a new Python process."""
    program = f"import coordmetrics\ncollector = coordmetrics.CoordinatorMetricsCollector(segment={segment!r})\n"
    done = subprocess.run(
        [sys.executable, "-c", program + textwrap.dedent(code)],
        cwd=os.path.dirname(segment),  # not python/, where the source package would shadow the wheel
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_original_names_in_one_import():
    assert CoordinatorMetricsCollector is coordmetrics.CoordinatorMetricsCollector
    assert get_coordinator_metrics_collector is coordmetrics.get_coordinator_metrics_collector
    assert track_coordinator_metrics is coordmetrics.track_coordinator_metrics
    assert CoordinatorExecution is coordmetrics.CoordinatorExecution
    assert CoordinatorSnapshot is coordmetrics.CoordinatorSnapshot


def test_max_history_keyword_and_default(segment):
    assert CoordinatorMetricsCollector(segment=segment).max_history == 10000
    assert CoordinatorMetricsCollector(max_history=100, segment=segment).max_history == 100
    assert CoordinatorMetricsCollector(7, segment=segment).max_history == 7


def test_every_recording_call_with_its_keyword_names(victor):
    with victor.track_coordinator(coordinator_name="ChatCoordinator", metadata={"user": "u1"}):
        pass

    async def chat():
        async with victor.track_coordinator(coordinator_name="ChatCoordinator"):
            await asyncio.sleep(0)

    asyncio.run(chat())
    victor.track_execution(
        coordinator_name="ChatCoordinator",
        duration_ms=30.0,
        success=False,
        error_message="provider timeout",
        metadata={"attempt": 2},
    )
    victor.record_cache_hit(coordinator_name="ChatCoordinator")
    victor.record_cache_hit(coordinator_name="ChatCoordinator")
    victor.record_cache_miss(coordinator_name="ChatCoordinator")
    victor.record_analytics_event(event_name="tool_call")
    victor.record_analytics_event(event_name="tool_call", count=4)

    stats = victor.get_coordinator_stats(coordinator_name="ChatCoordinator")
    assert list(stats) == STATS_KEYS + ["cache_hits", "cache_misses"]
    assert (stats["execution_count"], stats["error_count"], stats["error_rate"]) == (3, 1, 1 / 3)
    assert (stats["cache_hits"], stats["cache_misses"], stats["cache_hit_rate"]) == (2, 1, 2 / 3)
    recorded = json.loads(victor.export_json(include_history=True))["coordinator_stats"]["ChatCoordinator"]
    durations = [r["duration_ms"] for r in recorded["recent_executions"]]
    assert (stats["min_duration_ms"], stats["max_duration_ms"]) == (min(durations), max(durations))
    assert durations[2] == 30.0
    assert [r["metadata"] for r in recorded["recent_executions"]] == [{"user": "u1"}, {}, {"attempt": 2}]
    assert [r["error_message"] for r in recorded["recent_executions"]] == [None, None, "provider timeout"]
    assert victor.get_overall_stats()["analytics_events"] == {"tool_call": 5}


def test_unknown_coordinator_stats_are_zero_filled(victor):
    victor.record_cache_hit("CacheOnly")  # cache traffic, no execution: still "unknown" as in the original
    for name in ("NeverSeen", "CacheOnly"):
        stats = victor.get_coordinator_stats(name)
        assert list(stats) == STATS_KEYS
        assert stats == {key: (name if key == "coordinator_name" else 0) for key in STATS_KEYS}
        assert victor.get_snapshot(name) is None


def test_stats_percentiles_come_from_the_segment_and_min_max_from_this_process(victor, segment):
    for duration in (1.0, 2.0, 4.0, 8.0, 100.0):
        victor.track_execution("ToolCoordinator", duration)
    # Another process's executions count in the segment-wide figures, not in this one's records.
    record_in_another_process(segment, 'for _ in range(15):\n    collector.track_execution("ToolCoordinator", 0.5)\n')
    stats = victor.get_coordinator_stats("ToolCoordinator")
    assert stats["execution_count"] == 20
    assert stats["avg_duration_ms"] == pytest.approx((115.0 + 15 * 0.5) / 20)
    # Fine buckets: within 4.4% of the true quantile (ranks 10, 19 and 20 of 20).
    assert stats["p50_duration_ms"] == pytest.approx(0.5, rel=0.045)
    assert stats["p95_duration_ms"] == pytest.approx(8.0, rel=0.045)
    assert stats["p99_duration_ms"] == pytest.approx(100.0, rel=0.045)
    assert (stats["min_duration_ms"], stats["max_duration_ms"]) == (1.0, 100.0)


def test_overall_stats_are_those_of_metrics_json(victor):
    # Explicit memory gauges everywhere, so that no figure depends on this process's memory.
    for name, duration, success in (("ChatCoordinator", 12.5, True), ("ChatCoordinator", 7.0, False), ("ToolCoordinator", 3.0, False)):
        victor.track_execution(name, duration, success=success)
        victor.set_memory_bytes(name, 5 << 20)
    victor.record_cache_hit("ChatCoordinator")
    victor.record_cache_miss("SessionCoordinator")  # cache traffic only
    victor.set_memory_bytes("SessionCoordinator", 1 << 20)
    victor.record_analytics_event("tool_call", 2)
    victor.record_analytics_event("a_first")

    overall = victor.get_overall_stats()
    written = json.loads(victor.export_json())["overall_stats"]  # a report taken a moment later
    assert list(overall) == list(written)
    assert {key: type(value) for key, value in overall.items()} == {key: type(value) for key, value in written.items()}
    by_clock = ("uptime_seconds", "throughput_per_sec")
    assert {k: v for k, v in overall.items() if k not in by_clock} == {k: v for k, v in written.items() if k not in by_clock}
    assert (overall["total_coordinators"], overall["overall_error_rate"], overall["cache_hit_rate"]) == (2, round(2 / 3, 6), 0.5)
    assert list(overall["analytics_events"].items()) == [("a_first", 1), ("tool_call", 2)]
    # The same executions over a longer time since the segment was created.
    assert overall["uptime_seconds"] <= written["uptime_seconds"]
    assert overall["throughput_per_sec"] >= written["throughput_per_sec"] > 0


def test_snapshots_are_the_original_dataclasses(victor, segment):
    victor.track_execution("ChatCoordinator", 12.5)
    victor.track_execution("ChatCoordinator", 7.5, success=False)
    victor.record_cache_hit("ChatCoordinator")
    victor.record_cache_miss("SessionCoordinator")  # no execution: no snapshot, as in the original
    record_in_another_process(segment, 'collector.track_execution("ToolCoordinator", 1.0)\n')

    snapshot = victor.get_snapshot(coordinator_name="ChatCoordinator")
    assert isinstance(snapshot, CoordinatorSnapshot)
    assert [f.name for f in dataclasses.fields(CoordinatorSnapshot)] == [
        "timestamp",
        "coordinator_name",
        "memory_bytes",
        "cpu_percent",
        "execution_count",
        "total_duration_ms",
        "error_count",
        "cache_hits",
        "cache_misses",
    ]
    assert (snapshot.execution_count, snapshot.total_duration_ms, snapshot.error_count) == (2, 20.0, 1)
    assert (snapshot.cache_hits, snapshot.cache_misses) == (1, 0)
    assert snapshot.timestamp.endswith("+00:00")
    assert snapshot.memory_bytes > 0  # this process's resident memory, as the original's psutil rss
    as_dict = snapshot.to_dict()
    assert as_dict["memory_mb"] == snapshot.memory_bytes / (1024 * 1024)
    assert as_dict["cache_hit_rate"] == 1.0
    victor.set_memory_bytes("ChatCoordinator", 5 << 20)
    assert victor.get_snapshot("ChatCoordinator").memory_bytes == 5 << 20  # an explicit gauge wins

    names = sorted(s.coordinator_name for s in victor.get_all_snapshots())
    assert names == ["ChatCoordinator", "ToolCoordinator"]


def test_history_is_bounded_and_exported_with_metadata(victor):
    for i in range(8):
        victor.track_execution("ChatCoordinator", float(i + 1), metadata={"i": i})
    with victor.track_coordinator("ChatCoordinator", metadata={"last": True}):
        pass
    document = json.loads(victor.export_json(include_history=True))
    chat = document["coordinator_stats"]["ChatCoordinator"]
    # Counts are segment-wide; the records are this process's last max_history (5) executions.
    assert chat["execution_count"] == 9
    recent = chat["recent_executions"]
    assert [r["metadata"] for r in recent] == [{"i": 4}, {"i": 5}, {"i": 6}, {"i": 7}, {"last": True}]
    assert set(recent[0]) == {f.name for f in dataclasses.fields(CoordinatorExecution)}
    first = CoordinatorExecution(**recent[0])
    assert first.to_dict() == recent[0]
    assert first.duration_ms == 5.0
    assert first.end_time - first.start_time == pytest.approx(0.005, abs=1e-6)  # Unix times: ~0.2 us steps
    # Over the records kept (5..8 ms and the `with` block), not the older executions (1..4 ms).
    durations = [r["duration_ms"] for r in recent]
    assert (chat["min_duration_ms"], chat["max_duration_ms"]) == (min(durations), max(durations))
    assert durations[:4] == [5.0, 6.0, 7.0, 8.0]
    assert "coordinator_stats" not in json.loads(victor.export_json())


def test_recent_executions_are_the_last_hundred(segment):
    collector = CoordinatorMetricsCollector(segment=segment, capacities=CAPACITIES)
    for i in range(130):
        collector.track_execution("WorkflowCoordinator", 1.0, metadata={"i": i})
    stats = json.loads(collector.export_json(include_history=True))["coordinator_stats"]["WorkflowCoordinator"]
    assert [r["metadata"]["i"] for r in stats["recent_executions"]] == list(range(30, 130))


def test_decorator_records_the_qualified_name_without_a_name(victor):
    class ChatCoordinator:
        @track_coordinator_metrics(victor)
        def process_chat(self, message):
            return message

    @track_coordinator_metrics(collector=victor, coordinator_name="Named")
    def named():
        return 1

    assert ChatCoordinator().process_chat("hi") == "hi"
    assert named() == 1
    qualname = ChatCoordinator.process_chat.__qualname__
    assert qualname.endswith("ChatCoordinator.process_chat")
    assert victor.get_coordinator_stats(qualname)["execution_count"] == 1
    assert victor.get_coordinator_stats("Named")["execution_count"] == 1


def test_reset_forgets_this_process_history(victor):
    def recorded_here():
        stats = json.loads(victor.export_json(include_history=True))["coordinator_stats"]
        return {name: [r["duration_ms"] for r in s["recent_executions"]] for name, s in stats.items()}

    for name in ("ChatCoordinator", "ToolCoordinator"):
        victor.track_execution(name, 3.0)
    victor.reset_coordinator(coordinator_name="ChatCoordinator")
    # No executions left anywhere, and none remembered here: gone, as in the original.
    assert recorded_here() == {"ToolCoordinator": [3.0]}
    victor.track_execution("ChatCoordinator", 7.0)
    assert recorded_here() == {"ChatCoordinator": [7.0], "ToolCoordinator": [3.0]}
    stats = victor.get_coordinator_stats("ChatCoordinator")
    assert (stats["min_duration_ms"], stats["max_duration_ms"]) == (7.0, 7.0)
    victor.reset_all()
    assert recorded_here() == {}
    victor.track_execution("ToolCoordinator", 9.0)
    assert recorded_here() == {"ToolCoordinator": [9.0]}


def test_reset_coordinator_restarts_every_reader_at_zero_for_that_coordinator_only(victor, segment):
    record_in_another_process(
        segment,
        'collector.track_execution("ChatCoordinator", 2.0)\ncollector.track_execution("ToolCoordinator", 2.0)\n',
    )
    victor.track_execution("ChatCoordinator", 1.0)
    victor.record_cache_hit("ChatCoordinator")
    victor.reset_coordinator("ChatCoordinator")
    reader = CoordinatorMetricsCollector(segment=segment)
    for collector in (victor, reader):
        assert collector.get_coordinator_stats("ChatCoordinator")["execution_count"] == 0
        assert collector.get_snapshot("ChatCoordinator") is None
        assert collector.get_coordinator_stats("ToolCoordinator")["execution_count"] == 1
    victor.track_execution("ChatCoordinator", 1.0)
    assert reader.get_coordinator_stats("ChatCoordinator")["execution_count"] == 1


def test_reset_all_restarts_every_coordinator_and_event_at_zero(victor, segment):
    record_in_another_process(segment, 'collector.track_execution("ToolCoordinator", 2.0)\n')
    victor.track_execution("ChatCoordinator", 1.0)
    victor.record_analytics_event("tool_call", 3)
    victor.reset_all()
    reader = CoordinatorMetricsCollector(segment=segment)
    for collector in (victor, reader):
        overall = collector.get_overall_stats()
        assert (overall["total_executions"], overall["total_coordinators"]) == (0, 0)
        assert collector.get_all_snapshots() == []
