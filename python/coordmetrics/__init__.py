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
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from ._native import (
    DEFAULT_SEGMENT_PATH,
    SEGMENT_ENV,
    AnalyticsEvent,
    Coordinator,
    CoordinatorMetricsCollector,
    SegmentError,
    Tracking,
)

__all__ = [
    "DEFAULT_SEGMENT_PATH",
    "SEGMENT_ENV",
    "AnalyticsEvent",
    "Coordinator",
    "CoordinatorMetricsCollector",
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
) -> Callable[[Tuple[Any, ...]], Coordinator]:
    """A function from the arguments of one call of `func` to the coordinator it records into.

    - With an explicit name: that name.
    - A function defined in a class (its ``__qualname__`` says so): as the original collector,
      the class of the object it is called on (``type(self).__name__``, or ``cls.__name__``
      for a classmethod), so that each subclass is its own coordinator; when the first
      argument is not an instance of the defining class (a staticmethod), the defining class.
    - Any other function: its name (``__qualname__`` without the ``<locals>`` part).

    Handles are resolved once per name (per class for methods): a call costs a dict lookup.
    """
    handles: Dict[Optional[type], Coordinator] = {}

    def resolve(name: str) -> Coordinator:
        nonlocal collector
        if collector is None:
            collector = get_coordinator_metrics_collector()
        return collector.coordinator(name)

    qualname: str = func.__qualname__
    owner, _, function_name = qualname.rpartition(".")
    if coordinator_name is not None or not owner or owner.endswith("<locals>"):
        name = coordinator_name if coordinator_name is not None else function_name

        def fixed(args: Tuple[Any, ...]) -> Coordinator:
            handle = handles.get(None)
            if handle is None:
                handle = handles[None] = resolve(name)
            return handle

        return fixed

    owner_name = owner.rpartition(".")[2]
    module: str = func.__module__

    def class_name(cls: Optional[type]) -> str:
        if cls is not None and any(
            getattr(base, "__qualname__", None) == owner and getattr(base, "__module__", None) == module
            for base in cls.__mro__
        ):
            return cls.__name__
        return owner_name

    def of_class(args: Tuple[Any, ...]) -> Coordinator:
        if args:
            first = args[0]
            cls: Optional[type] = first if isinstance(first, type) else type(first)
        else:
            cls = None
        handle = handles.get(cls)
        if handle is None:
            handle = handles[cls] = resolve(class_name(cls))
        return handle

    return of_class


def track_coordinator_metrics(
    collector: Optional[CoordinatorMetricsCollector] = None,
    coordinator_name: Optional[str] = None,
) -> Callable[[_F], _F]:
    """A decorator that records each call of the function as one execution of a coordinator.

    ``async def`` functions are timed over the awaited execution (not the creation of the
    coroutine, as the original collector did); a cancelled call counts as failed with the
    message "cancelled". An exception is recorded as failed with
    ``f"{type(e).__name__}: {e}"`` and re-raised.

    The coordinator is ``coordinator_name`` if given; else, for a method, the class of the
    object it is called on (``type(self).__name__``, as the original collector did); else
    the function's name. ``collector`` defaults to ``get_coordinator_metrics_collector()``,
    looked up on the first call.

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
                with handle_for(args).track():
                    return await func(*args, **kwargs)

            return timed_coroutine  # type: ignore[return-value]

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with handle_for(args).track():
                return func(*args, **kwargs)

        return timed  # type: ignore[return-value]

    return decorate
