"""A drop-in for ``victor.observability.coordinator_metrics``: the original module's public
names, in one import::

    from coordmetrics.victor import (
        CoordinatorExecution,
        CoordinatorMetricsCollector,
        CoordinatorSnapshot,
        get_coordinator_metrics_collector,
        track_coordinator_metrics,
    )

The collector records into the shared segment; see the package README for what is segment-wide
and what is kept per process.
"""

from . import CoordinatorMetricsCollector, get_coordinator_metrics_collector, track_coordinator_metrics
from .records import CoordinatorExecution, CoordinatorSnapshot

__all__ = [
    "CoordinatorExecution",
    "CoordinatorMetricsCollector",
    "CoordinatorSnapshot",
    "get_coordinator_metrics_collector",
    "track_coordinator_metrics",
]
