"""A deterministic Python workload for the multi-process tests.

Every (worker, thread) records a fixed sequence of operations through the public API; the same
description gives, independently of any recording, the exact totals a snapshot must show
(`expected`). Spawned worker processes import this module by name.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

# ChatCoordinator and tool_call are also written by the Rust workload of `cm-writer`.
COORDINATORS = ("PyIngestCoordinator", "PyRankCoordinator", "ChatCoordinator")
TRACKED = "PyTrackedCoordinator"
EVENTS = ("py_event", "tool_call")


@dataclass(frozen=True)
class Op:
    kind: str  # execution | hit | miss | event | tracked
    name: str
    duration_ms: float = 0.0
    success: bool = True
    message: Optional[str] = None
    count: int = 0


def ops(worker: int, thread: int, iterations: int) -> Iterator[Op]:
    for k in range(iterations):
        tag = f"w{worker} t{thread} k{k}"
        coordinator = COORDINATORS[(worker + thread + k) % len(COORDINATORS)]
        # Multiples of 0.25 ms: whole nanoseconds, exact in the JSON's 3 decimals.
        duration_ms = 0.25 * (1 + (7 * k + 3 * worker + thread) % 40)
        step, cycle = k % 7, k // 7
        # One cycle in 8 has messages: enough to check the ring, few enough to fit in it.
        with_message = cycle % 8 == 0
        if step == 0:
            yield Op("execution", coordinator, duration_ms)
        elif step == 1:
            yield Op("execution", coordinator, duration_ms, False, f'{tag}: upstream said "no"' if with_message else None)
        elif step == 2:
            yield Op("execution", coordinator, duration_ms, False)
        elif step == 3:
            yield Op("hit" if k % 3 else "miss", coordinator)
        elif step == 4:
            yield Op("event", EVENTS[k % 2], count=1 + k % 5)
        elif step == 5:
            yield Op("tracked", TRACKED, success=not with_message, message=f"RuntimeError: {tag}" if with_message else None)
        else:
            yield Op("hit", coordinator)


def apply(collector, op: Op) -> None:
    if op.kind == "execution":
        collector.track_execution(op.name, op.duration_ms, op.success, op.message)
    elif op.kind == "hit":
        collector.record_cache_hit(op.name)
    elif op.kind == "miss":
        collector.record_cache_miss(op.name)
    elif op.kind == "event":
        collector.record_analytics_event(op.name, op.count)
    elif op.kind == "tracked":
        try:
            with collector.track_coordinator(op.name):
                if not op.success:
                    raise RuntimeError(op.message.split(": ", 1)[1])
        except RuntimeError:
            pass


@dataclass
class Counts:
    executions: int = 0
    errors: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    duration_ns: Optional[int] = 0  # None for TRACKED: measured by the clock


@dataclass
class Totals:
    coordinators: Dict[str, Counts] = field(default_factory=dict)
    events: Dict[str, int] = field(default_factory=dict)
    messages: List[Tuple[str, str]] = field(default_factory=list)


def expected(workers: List[Tuple[int, int, int]]) -> Totals:
    """Totals of every (worker, threads, iterations) in `workers`."""
    totals = Totals()
    for worker, threads, iterations in workers:
        for thread in range(threads):
            for op in ops(worker, thread, iterations):
                if op.kind == "event":
                    totals.events[op.name] = totals.events.get(op.name, 0) + op.count
                    continue
                counts = totals.coordinators.setdefault(op.name, Counts(duration_ns=None if op.name == TRACKED else 0))
                if op.kind in ("execution", "tracked"):
                    counts.executions += 1
                    counts.errors += not op.success
                    if counts.duration_ns is not None:
                        counts.duration_ns += round(op.duration_ms * 1e6)
                    if op.message is not None:
                        totals.messages.append((op.name, op.message))
                elif op.kind == "hit":
                    counts.cache_hits += 1
                else:
                    counts.cache_misses += 1
    totals.messages.sort()
    return totals


def run(collector, worker: int, threads: int, iterations: int) -> None:
    """Records every thread of `worker`: thread 0 here, the others on their own threads."""
    others = [
        threading.Thread(target=lambda t=t: [apply(collector, op) for op in ops(worker, t, iterations)])
        for t in range(1, threads)
    ]
    for thread in others:
        thread.start()
    for op in ops(worker, 0, iterations):
        apply(collector, op)
    for thread in others:
        thread.join()


def worker_process(segment: str, worker: int, threads: int, iterations: int, go) -> None:
    """Entry point of a spawned worker: opens the process-wide collector on
    $COORDMETRICS_SEGMENT, waits for `go` (an Event or a Barrier) and records."""
    os.environ["COORDMETRICS_SEGMENT"] = segment
    import coordmetrics

    collector = coordmetrics.get_coordinator_metrics_collector()
    if not collector.enabled:
        raise SystemExit(f"worker {worker}: {collector.disabled_reason}")
    go.wait(60)
    run(collector, worker, threads, iterations)
