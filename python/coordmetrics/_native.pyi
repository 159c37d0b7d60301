"""Type stubs of ``coordmetrics._native``, the Rust extension module (PyO3)."""

import os
from types import TracebackType
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Type, Union, final

from .records import CoordinatorSnapshot

__all__ = [
    "Coordinator",
    "AnalyticsEvent",
    "CoordinatorMetricsCollector",
    "SegmentError",
    "Tracking",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SEGMENT_PATH",
    "SEGMENT_ENV",
    "run_benchmark",
    "sample_data",
]

DEFAULT_SEGMENT_PATH: str
"""Default path of the segment: ``/dev/shm/coordmetrics``."""
SEGMENT_ENV: str
"""Environment variable naming the segment: ``COORDMETRICS_SEGMENT``."""
DEFAULT_NAMESPACE: str
"""Prometheus namespace of ``export_prometheus()`` unless given: ``victor_coordinator``."""

class SegmentError(OSError):
    """The segment could not be created or opened (missing directory, permissions, another
    layout version, corruption)."""

@final
class _Ready:
    """An awaitable that is already complete (what ``__aenter__``/``__aexit__`` return)."""

    def __await__(self) -> Generator[Any, None, Any]: ...

@final
class Tracking:
    """One execution of a coordinator, timed from entering to leaving a ``with`` or
    ``async with`` block. An exception inside the block records a failed execution with the
    message ``f"{type(e).__name__}: {e}"`` (a cancellation: ``"cancelled"``) and propagates."""

    def __enter__(self) -> "Tracking": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...
    def __aenter__(self) -> _Ready: ...
    def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> _Ready: ...
    def start(self) -> "Tracking":
        """Starts timing, for code that cannot use ``with`` (callbacks); returns self."""
    def finish(self, success: bool = True, error_message: Optional[str] = None) -> None:
        """Records the execution started by ``start()``; does nothing if already recorded."""
    @property
    def elapsed_ms(self) -> float:
        """Milliseconds since the execution started (0.0 before it started or once recorded)."""
    @property
    def coordinator(self) -> "Coordinator":
        """The coordinator this execution belongs to."""

@final
class Coordinator:
    """A resolved coordinator (``collector.coordinator(name)``): the fast path, no name
    lookup per call."""

    @property
    def name(self) -> str: ...
    @property
    def recording(self) -> bool:
        """Whether updates reach a segment (False for a disabled collector, an empty name or a
        name that no longer fits in a full table)."""
    def track(self, metadata: Optional[Dict[str, Any]] = None) -> Tracking:
        """A context manager (sync and async) recording one execution."""
    def record(
        self,
        duration_ms: float,
        success: bool = True,
        error_message: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Records one execution that took ``duration_ms`` milliseconds (ValueError if < 0)."""
    def cache_hit(self) -> None: ...
    def cache_miss(self) -> None: ...
    def set_memory_bytes(self, n: int) -> None:
        """Sets this process's memory gauge for the coordinator, in bytes."""

@final
class AnalyticsEvent:
    """A resolved analytics event (``collector.event(name)``)."""

    @property
    def name(self) -> str: ...
    def record(self, count: int = 1) -> None: ...

class CoordinatorMetricsCollector:
    """Records coordinator metrics into a shared-memory segment that every process on the
    host can write and that the ``coordmetrics`` exporter reads.

    ``max_history`` bounds the executions kept per coordinator in this process. ``segment``
    defaults to ``$COORDMETRICS_SEGMENT``, else ``/dev/shm/coordmetrics``; it is created if
    missing, with ``capacities`` (keys ``coordinators``, ``events``, ``writers``, ``errors``;
    ignored for an existing segment). Raises ``SegmentError`` if it cannot be opened or created.
    """

    def __new__(
        cls,
        max_history: int = 10000,
        *,
        segment: Union[str, "os.PathLike[str]", None] = None,
        capacities: Optional[Mapping[str, int]] = None,
    ) -> "CoordinatorMetricsCollector": ...
    @staticmethod
    def disabled(reason: Optional[str] = None) -> "CoordinatorMetricsCollector":
        """A collector that records nothing and whose exports raise RuntimeError."""
    @property
    def segment(self) -> Optional[str]: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def disabled_reason(self) -> Optional[str]: ...
    @property
    def max_history(self) -> int: ...
    @property
    def dropped_updates(self) -> int:
        """Updates that could not be recorded (full tables, no writer slot, no segment)."""
    def coordinator(self, name: str) -> Coordinator:
        """The resolved handle of coordinator ``name`` (cached per name)."""
    def event(self, name: str) -> AnalyticsEvent:
        """The resolved handle of analytics event ``name`` (cached per name)."""
    def track_coordinator(self, coordinator_name: str, metadata: Optional[Dict[str, Any]] = None) -> Tracking:
        """A context manager, ``with`` and ``async with``, recording one execution of
        ``coordinator_name``; ``metadata`` is kept with it in this process's history."""
    def track_execution(
        self,
        coordinator_name: str,
        duration_ms: float,
        success: bool = True,
        error_message: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Records one execution measured elsewhere; a failed one with ``error_message`` goes
        into the ring of recent errors."""
    def record_cache_hit(self, coordinator_name: str) -> None: ...
    def record_cache_miss(self, coordinator_name: str) -> None: ...
    def record_analytics_event(self, event_name: str, count: int = 1) -> None: ...
    def set_memory_bytes(self, coordinator_name: str, n: int) -> None: ...
    def export_json(self, include_history: bool = False) -> str:
        """metrics.json text (the exporter's formatter). With ``include_history``: the
        ``history`` points and ``coordinator_stats`` (stats plus ``recent_executions``, the
        last 100 of this process). Rates are since this collector's previous ``export_json``.
        RuntimeError if disabled."""
    def export_prometheus(
        self, *, namespace: str = "victor_coordinator", compat_names: bool = True, bucket_resolution: int = 4
    ) -> str:
        """Prometheus text: the bytes of ``coordmetrics snapshot --format prometheus
        [--compat-names]`` for the same segment state; ``namespace`` defaults to
        ``DEFAULT_NAMESPACE``. RuntimeError if disabled."""
    def get_coordinator_stats(self, coordinator_name: str) -> Dict[str, Any]:
        """Segment-wide statistics of one coordinator (min/max from this process's history);
        zero-filled when it has no executions."""
    def get_snapshot(self, coordinator_name: str) -> Optional[CoordinatorSnapshot]:
        """Its totals now, or None if it has no executions."""
    def get_all_snapshots(self) -> List[CoordinatorSnapshot]:
        """Totals of every coordinator with executions."""
    def get_overall_stats(self) -> Dict[str, Any]:
        """The metrics.json ``overall_stats``."""
    def reset_coordinator(self, coordinator_name: str) -> None:
        """Restarts the coordinator at zero for every reader of the segment; forgets its history here."""
    def reset_all(self) -> None:
        """Restarts every coordinator and event at zero for every reader; forgets this process's history."""

def run_benchmark(
    collector: CoordinatorMetricsCollector, iterations: int, on_iteration: Optional[Callable[[int], Any]] = None
) -> None:
    """Records ``iterations`` executions of each of the 13 Victor coordinators into the
    collector's segment through the Rust client (``coordmetrics generate --benchmark``)."""

def sample_data(format: str) -> str:
    """The exporter's deterministic sample data (marked as demo data) as ``"json"`` or
    ``"prometheus"`` text."""
