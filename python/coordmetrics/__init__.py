"""coordmetrics: coordinator metrics recorded into a shared-memory segment.

The original Python collector's API, backed by the Rust client of coordmetrics: every process on
the host (Python or Rust) records into one segment, and one exporter (``coordmetrics run``)
turns it into a Prometheus text file and a ``metrics.json`` for the dashboard::

    from coordmetrics import get_coordinator_metrics_collector, track_coordinator_metrics

    collector = get_coordinator_metrics_collector()  # $COORDMETRICS_SEGMENT or /dev/shm/coordmetrics

    with collector.track_coordinator("ChatCoordinator"):
        ...  # one execution, timed; an exception is recorded as failed and re-raised

    @track_coordinator_metrics(collector)
    async def chat(message): ...  # times the awaited execution

Recording never raises because of the segment: a collector that cannot open it records nothing
and counts the updates as dropped.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from typing import Any, Callable, Optional, TypeVar

from ._native import (
    DEFAULT_NAMESPACE,
    DEFAULT_SEGMENT_PATH,
    SEGMENT_ENV,
    AnalyticsEvent,
    Coordinator,
    CoordinatorMetricsCollector,
    SegmentError,
    Tracking,
)
from .records import CoordinatorExecution, CoordinatorSnapshot

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SEGMENT_PATH",
    "SEGMENT_ENV",
    "AnalyticsEvent",
    "Coordinator",
    "CoordinatorExecution",
    "CoordinatorMetricsCollector",
    "CoordinatorSnapshot",
    "SegmentError",
    "Tracking",
    "get_coordinator_metrics_collector",
    "track_coordinator_metrics",
]

_F = TypeVar("_F", bound=Callable[..., Any])

_logger = logging.getLogger("coordmetrics")
_default: Optional[CoordinatorMetricsCollector] = None
_default_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    # A thread of the parent may have held the lock when it forked: the child has no such
    # thread. The collector itself survives a fork (the client claims new writer slots).
    global _default_lock
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def get_coordinator_metrics_collector() -> CoordinatorMetricsCollector:
    """The process-wide collector, on the segment named by ``$COORDMETRICS_SEGMENT``
    (default ``/dev/shm/coordmetrics``), created on first use.

    If the segment cannot be opened, the reason is logged once (logger ``coordmetrics``) and
    the collector is disabled: it records nothing, so metrics never break the program.
    """
    global _default
    collector = _default
    if collector is None:
        with _default_lock:
            if _default is None:
                try:
                    _default = CoordinatorMetricsCollector()
                except SegmentError as error:
                    _logger.warning("coordmetrics: metrics disabled: %s", error)
                    _default = CoordinatorMetricsCollector.disabled(str(error))
            collector = _default
    return collector


def _handle_getter(
    collector: Optional[CoordinatorMetricsCollector], coordinator_name: Optional[str], func: Any
) -> Callable[[], Coordinator]:
    """A function giving the coordinator each call of `func` records into: ``coordinator_name``,
    else ``func.__qualname__`` as the original collector did (``ChatCoordinator.process_chat``),
    since existing dashboards and alerts are keyed on those names. The handle is resolved on
    the first call (looking up the default collector then if none was given), so a call costs
    no name lookup."""
    name = coordinator_name or func.__qualname__
    handle: Optional[Coordinator] = None

    def get() -> Coordinator:
        nonlocal handle
        if handle is None:
            handle = (collector or get_coordinator_metrics_collector()).coordinator(name)
        return handle

    return get


def track_coordinator_metrics(
    collector: Optional[CoordinatorMetricsCollector] = None,
    coordinator_name: Optional[str] = None,
) -> Callable[[_F], _F]:
    """A decorator that records each call of the function as one execution of a coordinator.

    ``async def`` functions are timed over the awaited execution (not the creation of the
    coroutine, as the original collector did); a cancelled call counts as failed with the
    message "cancelled". An exception is recorded as failed with
    ``f"{type(e).__name__}: {e}"`` and re-raised.

    The coordinator is ``coordinator_name`` if given, else ``func.__qualname__`` (for a method,
    ``Class.method``), as the original collector recorded. ``collector`` defaults to
    ``get_coordinator_metrics_collector()``, looked up on the first call.

    Generator functions are refused (``TypeError``): decorating one would time only the
    creation of the generator.
    """

    def decorate(func: _F) -> _F:
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"track_coordinator_metrics cannot time the generator function {func.__qualname__}: "
                "calling it only creates the generator; track the code that consumes it instead"
            )
        handle_for = _handle_getter(collector, coordinator_name, func)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def timed_coroutine(*args: Any, **kwargs: Any) -> Any:
                with handle_for().track():
                    return await func(*args, **kwargs)

            return timed_coroutine  # type: ignore[return-value]

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with handle_for().track():
                return func(*args, **kwargs)

        return timed  # type: ignore[return-value]

    return decorate
