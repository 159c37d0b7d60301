"""The original collector's API over the segment: recording, errors, cancellation, exports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import coordmetrics
from coordmetrics import CoordinatorMetricsCollector, SegmentError


def messages(collector: CoordinatorMetricsCollector) -> list:
    return [(e["coordinator"], e["message"]) for e in json.loads(collector.export_json())["recent_errors"]]


def entry(collector: CoordinatorMetricsCollector, name: str) -> dict:
    """The metrics.json entry of coordinator `name`, with or without executions."""
    document = json.loads(collector.export_json())
    everyone = document["coordinators"] + document["coordinators_without_executions"]
    return next(c for c in everyone if c["coordinator_name"] == name)


def test_with_block_records_success_and_failure_and_reraises(collector):
    with collector.track_coordinator("ChatCoordinator", metadata={"user": "u1"}) as tracking:
        assert isinstance(tracking, coordmetrics.Tracking)
    with pytest.raises(ValueError, match="provider timeout"):
        with collector.track_coordinator("ChatCoordinator"):
            raise ValueError("provider timeout")

    stats = collector.get_coordinator_stats("ChatCoordinator")
    assert stats["execution_count"] == 2
    assert stats["error_count"] == 1
    assert stats["error_rate"] == 0.5
    assert messages(collector) == [("ChatCoordinator", "ValueError: provider timeout")]


def test_async_with_records_and_reraises(collector):
    async def main():
        async with collector.track_coordinator("ToolCoordinator") as tracking:
            assert isinstance(tracking, coordmetrics.Tracking)
            await asyncio.sleep(0.02)
        with pytest.raises(KeyError):
            async with collector.track_coordinator("ToolCoordinator"):
                raise KeyError("tool")

    asyncio.run(main())
    stats = collector.get_coordinator_stats("ToolCoordinator")
    assert (stats["execution_count"], stats["error_count"]) == (2, 1)
    assert collector.get_snapshot("ToolCoordinator").total_duration_ms >= 20.0
    assert messages(collector) == [("ToolCoordinator", "KeyError: 'tool'")]


def test_cancellation_is_counted_as_failed(collector):
    entered = []

    async def slow():
        async with collector.track_coordinator("ProviderCoordinator"):
            entered.append(True)
            await asyncio.sleep(10)

    async def slow_sync_with():
        with collector.track_coordinator("ProviderCoordinator"):
            entered.append(True)
            await asyncio.sleep(10)

    async def main():
        for body in (slow, slow_sync_with):
            task = asyncio.ensure_future(body())
            while len(entered) < (1 if body is slow else 2):
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

    asyncio.run(main())
    stats = collector.get_coordinator_stats("ProviderCoordinator")
    assert (stats["execution_count"], stats["error_count"]) == (2, 2)
    assert messages(collector) == [("ProviderCoordinator", "cancelled")] * 2


def test_track_execution_durations_are_exact(collector, segment):
    collector.track_execution("ContextCoordinator", 12.5)
    collector.track_execution("ContextCoordinator", 0.25, success=True, error_message="ignored when successful")
    collector.track_execution("ContextCoordinator", 2.0, success=False)
    collector.track_execution("ContextCoordinator", 1.0, False, "window overflow")
    with pytest.raises(ValueError):
        collector.track_execution("ContextCoordinator", -1.0)
    with pytest.raises(ValueError):
        collector.track_execution("ContextCoordinator", float("nan"))

    stats = collector.get_coordinator_stats("ContextCoordinator")
    assert stats["execution_count"] == 4
    assert stats["error_count"] == 2
    assert collector.get_snapshot("ContextCoordinator").total_duration_ms == 15.75
    assert stats["avg_duration_ms"] == pytest.approx(15.75 / 4, abs=1e-9)
    # Only a failure with a message goes into the ring.
    assert messages(collector) == [("ContextCoordinator", "window overflow")]
    text = collector.export_prometheus()
    assert 'victor_coordinator_duration_seconds_sum{coordinator="ContextCoordinator"} 0.01575\n' in text
    assert 'victor_coordinator_duration_seconds_count{coordinator="ContextCoordinator"} 4\n' in text


def test_cache_analytics_and_memory(collector):
    for _ in range(3):
        collector.record_cache_hit("SessionCoordinator")
    collector.record_cache_miss("SessionCoordinator")
    collector.record_analytics_event("tool_call")
    collector.record_analytics_event("tool_call", 5)
    collector.record_analytics_event("session_start", count=2)
    collector.set_memory_bytes("SessionCoordinator", 3 * 1024 * 1024)

    # Cache traffic only: listed beside the coordinators with executions in metrics.json.
    session = entry(collector, "SessionCoordinator")
    assert (session["cache_hits"], session["cache_misses"], session["cache_hit_rate"]) == (3, 1, 0.75)
    assert (session["memory_bytes"], session["memory_mb"], session["memory_source"]) == (3 * 1024 * 1024, 3.0, "explicit")
    overall = collector.get_overall_stats()
    assert overall["analytics_events"] == {"session_start": 2, "tool_call": 6}
    assert (overall["cache_hits"], overall["cache_misses"]) == (3, 1)


def test_overall_stats_has_the_original_schema(collector):
    collector.track_execution("A", 1.0)
    collector.track_execution("B", 1.0, success=False)
    overall = collector.get_overall_stats()
    for key in ("total_executions", "total_coordinators", "total_errors", "overall_error_rate", "uptime_seconds", "analytics_events"):
        assert key in overall
    assert (overall["total_executions"], overall["total_coordinators"], overall["total_errors"]) == (2, 2, 1)
    assert overall["overall_error_rate"] == 0.5
    assert collector.get_coordinator_stats("Unknown")["execution_count"] == 0


def test_handles_are_resolved_once_and_record(collector):
    chat = collector.coordinator("ChatCoordinator")
    assert collector.coordinator("ChatCoordinator") is chat
    assert (chat.name, chat.recording, repr(chat)) == ("ChatCoordinator", True, "Coordinator('ChatCoordinator')")
    with chat.track():
        pass
    chat.record(3.0)
    chat.record(4.0, success=False, error_message="bad input")
    chat.cache_hit()
    chat.cache_miss()
    event = collector.event("tool_call")
    assert collector.event("tool_call") is event
    event.record()
    event.record(4)

    stats = collector.get_coordinator_stats("ChatCoordinator")
    assert (stats["execution_count"], stats["error_count"], stats["cache_hits"], stats["cache_misses"]) == (3, 1, 1, 1)
    assert collector.get_overall_stats()["analytics_events"] == {"tool_call": 5}


def test_start_finish_and_misuse(collector):
    tracking = collector.track_coordinator("Callbacks")
    assert tracking.elapsed_ms == 0.0  # not started
    tracking.start()
    time.sleep(0.02)
    elapsed = tracking.elapsed_ms
    tracking.finish(success=False, error_message="callback failed")
    assert tracking.elapsed_ms == 0.0  # recorded
    tracking.finish()  # already recorded: nothing more
    # The clock ran from start() and the record holds the duration measured at finish().
    [recorded] = json.loads(collector.export_json(include_history=True))["coordinator_stats"]["Callbacks"]["recent_executions"]
    assert 20.0 <= elapsed <= recorded["duration_ms"]
    with pytest.raises(RuntimeError):
        with collector.track_coordinator("Callbacks") as inner:
            with inner:  # the same execution twice
                pass
    stats = collector.get_coordinator_stats("Callbacks")
    assert (stats["execution_count"], stats["error_count"]) == (2, 2)
    assert ("Callbacks", "callback failed") in messages(collector)
    assert ("Callbacks", "RuntimeError: this execution is already being tracked") in messages(collector)


def test_export_json_history_only_when_asked(collector, segment):
    collector.track_execution("ChatCoordinator", 5.0)
    document = json.loads(collector.export_json())
    assert document["schema_version"] == 1
    assert document["history"] == []
    assert document["source"]["segment"] == segment
    assert [c["coordinator_name"] for c in document["coordinators"]] == ["ChatCoordinator"]
    # The collector's reporter keeps one history point per export_json.
    history = json.loads(collector.export_json(include_history=True))["history"]
    assert len(history) == 2
    assert history[-1]["coordinators"]["ChatCoordinator"]["executions"] == 1


def test_explicit_segment_errors_raise(tmp_path: Path):
    with pytest.raises(SegmentError) as raised:
        CoordinatorMetricsCollector(segment=str(tmp_path / "missing-dir" / "segment"))
    assert isinstance(raised.value, OSError)
    not_a_segment = tmp_path / "not-a-segment"
    not_a_segment.write_bytes(b"x" * 4096)
    with pytest.raises(SegmentError, match="not a coordmetrics segment"):
        CoordinatorMetricsCollector(segment=not_a_segment)
    with pytest.raises(ValueError, match="unknown capacity"):
        CoordinatorMetricsCollector(segment=str(tmp_path / "s"), capacities={"rows": 3})


def run_python(code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_singleton_uses_the_environment(tmp_path: Path):
    segment = tmp_path / "from-env"
    done = run_python(
        """
        import coordmetrics
        collector = coordmetrics.get_coordinator_metrics_collector()
        assert collector is coordmetrics.get_coordinator_metrics_collector()
        with collector.track_coordinator("ChatCoordinator"):
            pass
        print(collector.segment)
        """,
        {"COORDMETRICS_SEGMENT": str(segment)},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(segment)
    reader = CoordinatorMetricsCollector(segment=segment)
    assert reader.get_coordinator_stats("ChatCoordinator")["execution_count"] == 1


def test_singleton_degrades_to_disabled_without_a_segment(tmp_path: Path):
    done = run_python(
        """
        import asyncio, coordmetrics
        collector = coordmetrics.get_coordinator_metrics_collector()
        assert not collector.enabled
        with collector.track_coordinator("ChatCoordinator"):
            pass
        collector.record_cache_hit("ChatCoordinator")
        collector.track_execution("ChatCoordinator", 1.0)
        collector.record_analytics_event("tool_call")
        async def main():
            async with collector.track_coordinator("ChatCoordinator"):
                pass
        asyncio.run(main())
        assert collector.dropped_updates >= 4, collector.dropped_updates
        try:
            collector.export_prometheus()
        except RuntimeError as error:
            print("export:", error)
        """,
        {"COORDMETRICS_SEGMENT": str(tmp_path / "no-such-dir" / "segment")},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "metrics disabled" in done.stderr
    assert "export: metrics are disabled" in done.stdout


def test_module_constants():
    assert coordmetrics.DEFAULT_SEGMENT_PATH == "/dev/shm/coordmetrics"
    assert coordmetrics.SEGMENT_ENV == "COORDMETRICS_SEGMENT"
    assert coordmetrics.DEFAULT_NAMESPACE == "victor_coordinator"


def test_executions_in_progress_count_in_flight(collector):
    with collector.track_coordinator("Busy"):
        with collector.track_coordinator("Busy"):
            assert entry(collector, "Busy")["in_flight"] == 2
        assert entry(collector, "Busy")["in_flight"] == 1
    busy = entry(collector, "Busy")
    assert (busy["in_flight"], busy["execution_count"]) == (0, 2)
