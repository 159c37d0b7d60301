"""The original collector's record types, as it defined them: ``CoordinatorExecution`` (one
execution kept in this process's history) and ``CoordinatorSnapshot`` (a coordinator's totals at
a point in time), each with ``to_dict()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

__all__ = ["CoordinatorExecution", "CoordinatorSnapshot"]


@dataclass
class CoordinatorExecution:
    """One execution recorded by this process: Unix times in seconds, duration in ms."""

    coordinator_name: str
    start_time: float
    end_time: float
    duration_ms: float
    success: bool
    error_message: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "coordinator_name": self.coordinator_name,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration_ms": self.duration_ms,
            "success": self.success,
            "error_message": self.error_message,
            "metadata": self.metadata,
        }


@dataclass
class CoordinatorSnapshot:
    """A coordinator's segment-wide totals at ``timestamp`` (ISO 8601, UTC)."""

    timestamp: str
    coordinator_name: str
    memory_bytes: int
    cpu_percent: float
    execution_count: int
    total_duration_ms: float
    error_count: int
    cache_hits: int = 0
    cache_misses: int = 0

    def to_dict(self) -> Dict[str, Any]:
        lookups = self.cache_hits + self.cache_misses
        return {
            "timestamp": self.timestamp,
            "coordinator_name": self.coordinator_name,
            "memory_bytes": self.memory_bytes,
            "memory_mb": self.memory_bytes / (1024 * 1024),
            "cpu_percent": self.cpu_percent,
            "execution_count": self.execution_count,
            "total_duration_ms": self.total_duration_ms,
            "error_count": self.error_count,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_rate": self.cache_hits / lookups if lookups > 0 else 0,
        }
