"""`track_coordinator_metrics`: sync functions and coroutines timed over their real execution."""

from __future__ import annotations

import asyncio
import inspect
import json
import time

import pytest

import coordmetrics
from coordmetrics import track_coordinator_metrics


def stats(collector, name):
    found = collector.get_coordinator_stats(name)
    assert found["execution_count"] > 0, f"{name} recorded nothing: {[c['coordinator_name'] for c in json.loads(collector.export_json())['coordinators']]}"
    return found


def test_async_function_is_timed_over_the_awaited_execution(collector):
    @track_coordinator_metrics(collector, "ChatCoordinator")
    async def chat(message):
        """Answers."""
        await asyncio.sleep(0.05)
        return message.upper()

    assert inspect.iscoroutinefunction(chat)
    assert (chat.__name__, chat.__doc__) == ("chat", "Answers.")
    assert asyncio.run(chat("hi")) == "HI"

    recorded = stats(collector, "ChatCoordinator")
    assert recorded["execution_count"] == 1
    # The original timed only the creation of the coroutine (microseconds).
    assert recorded["p50_duration_ms"] >= 45.0
    assert recorded["min_duration_ms"] >= 50.0


def test_sync_function_is_timed(collector):
    @track_coordinator_metrics(collector, "ContextCoordinator")
    def build_context(n):
        time.sleep(0.02)
        return list(range(n))

    assert build_context(3) == [0, 1, 2]
    recorded = stats(collector, "ContextCoordinator")
    assert recorded["execution_count"] == 1
    assert recorded["p50_duration_ms"] >= 19.0


def test_errors_are_recorded_and_reraised(collector):
    @track_coordinator_metrics(collector, "ToolCoordinator")
    def sync_tool():
        raise ValueError("bad arguments")

    @track_coordinator_metrics(collector, "ToolCoordinator")
    async def async_tool():
        await asyncio.sleep(0)
        raise TimeoutError("tool timed out")

    with pytest.raises(ValueError):
        sync_tool()
    with pytest.raises(TimeoutError):
        asyncio.run(async_tool())

    recorded = stats(collector, "ToolCoordinator")
    assert (recorded["execution_count"], recorded["error_count"]) == (2, 2)
    errors = [e["message"] for e in json.loads(collector.export_json())["recent_errors"]]
    assert errors == ["TimeoutError: tool timed out", "ValueError: bad arguments"]


def test_cancelled_coroutine_is_counted_as_failed(collector):
    @track_coordinator_metrics(collector, "ProviderCoordinator")
    async def call_provider(event):
        event.set()
        await asyncio.sleep(10)

    async def main():
        event = asyncio.Event()
        task = asyncio.ensure_future(call_provider(event))
        await event.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    recorded = stats(collector, "ProviderCoordinator")
    assert (recorded["execution_count"], recorded["error_count"]) == (1, 1)
    assert json.loads(collector.export_json())["recent_errors"][0]["message"] == "cancelled"


class BaseCoordinator:
    @track_coordinator_metrics()
    async def execute(self):
        await asyncio.sleep(0)
        return type(self).__name__

    @classmethod
    @track_coordinator_metrics()
    def describe(cls):
        return cls.__name__

    @staticmethod
    @track_coordinator_metrics()
    def helper(value):
        return value


class ChatCoordinator(BaseCoordinator):
    pass


def test_names_default_to_the_qualified_name_as_the_original(collector, monkeypatch):
    # collector=None: the decorator uses the process-wide collector, looked up on first call.
    monkeypatch.setattr(coordmetrics, "_default", collector)

    @track_coordinator_metrics()
    def plain_function():
        return 1

    assert asyncio.run(BaseCoordinator().execute()) == "BaseCoordinator"
    assert asyncio.run(ChatCoordinator().execute()) == "ChatCoordinator"
    assert ChatCoordinator.describe() == "ChatCoordinator"
    assert BaseCoordinator.helper(41) == 41
    assert plain_function() == 1

    counts = {c["coordinator_name"]: c["execution_count"] for c in json.loads(collector.export_json())["coordinators"]}
    # func.__qualname__, the names existing dashboards and alerts are keyed on: the defining
    # class's, whichever subclass the call came through.
    assert counts == {
        "BaseCoordinator.execute": 2,
        "BaseCoordinator.describe": 1,
        "BaseCoordinator.helper": 1,
        "test_names_default_to_the_qualified_name_as_the_original.<locals>.plain_function": 1,
    }


def test_generator_functions_are_refused(collector):
    with pytest.raises(TypeError, match="generator"):

        @track_coordinator_metrics(collector)
        def numbers():
            yield 1

    with pytest.raises(TypeError, match="generator"):

        @track_coordinator_metrics(collector)
        async def stream():
            yield 1
