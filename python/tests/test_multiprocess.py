"""Python worker processes (multiprocessing, spawn) and Rust processes record into one segment,
concurrently; the exporter's totals are exact.

- Python only: every total the exporter reports equals the prediction of `cm_workers.expected`.
- Python and Rust: the segment written by both at once shows, for every counter and histogram
  sample, exactly the sum of a segment written by the Python workers alone and one written by
  the Rust processes alone (the `cm-writer` helper of the Rust tests, whose own tests check it
  against its prediction); only the durations of the two coordinators timed by the clock are
  left out (their counts are compared). Read through the `coordmetrics` binary and `export_*()`.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
from collections import Counter
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

import cm_workers
import promtext
from conftest import CAPACITIES, CAPACITIES_ARG, snapshot_cli
from coordmetrics import CoordinatorMetricsCollector

ITERATIONS = 1400  # per thread; every error message still fits in the 1024-entry ring
WORKERS = [(worker, 2, ITERATIONS) for worker in range(4)]
PARENT = (len(WORKERS), 2, ITERATIONS)
RUST_PROCESSES = 2
RUST_ARGS = ["--processes", str(RUST_PROCESSES), "--threads", "2", "--iterations", "300"]
# Timed by the clock (real `with` blocks and Rust trackers): exact counts, measured durations.
MEASURED = {cm_workers.TRACKED, "WorkflowCoordinator"}
TIMEOUT = 120


def record(segment: Path, cm_writer: Optional[str] = None) -> None:
    """Runs the Python workers, the parent's share and, with `cm_writer`, the Rust processes at
    the same time: the workers open the segment and are released together, then the Rust
    processes start while they record."""
    parent = CoordinatorMetricsCollector(segment=segment, capacities=CAPACITIES)  # creates the segment
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Barrier(len(WORKERS) + 1)
    workers = [
        spawn.Process(target=cm_workers.worker_process, args=(str(segment), *worker, go), name=f"worker-{worker[0]}")
        for worker in WORKERS
    ]
    rust: List[subprocess.Popen] = []
    try:
        for process in workers:
            process.start()
        go.wait(TIMEOUT)
        if cm_writer:
            for index in range(RUST_PROCESSES):
                command = [cm_writer, "workload", "--segment", str(segment), "--capacities", CAPACITIES_ARG]
                command += [*RUST_ARGS, "--process", str(index)]
                rust.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        cm_workers.run(parent, *PARENT)
        for process in workers:
            process.join(TIMEOUT)
            assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"
        for process in rust:
            out, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err
            assert out.startswith("segment-id "), out
    finally:
        for process in workers:
            if process.is_alive():
                process.kill()
        for process in rust:
            if process.poll() is None:
                process.kill()


def rust_only(segment: Path, cm_writer: str) -> None:
    for index in range(RUST_PROCESSES):
        command = [cm_writer, "workload", "--segment", str(segment), "--capacities", CAPACITIES_ARG]
        done = subprocess.run([*command, *RUST_ARGS, "--process", str(index)], capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr


def deterministic(samples: dict) -> dict:
    """The samples without the durations of the coordinators timed by the clock."""
    return {
        (name, labels): value
        for (name, labels), value in samples.items()
        if not (name.endswith(("_bucket", "_sum")) and dict(labels).get("coordinator") in MEASURED)
    }


def totals_of(document: dict) -> Tuple[dict, dict, list]:
    coordinators = {
        c["coordinator_name"]: (c["execution_count"], c["error_count"], c["cache_hits"], c["cache_misses"])
        for c in document["coordinators"]
    }
    messages = sorted((e["coordinator"], e["message"]) for e in document["recent_errors"])
    return coordinators, document["overall_stats"]["analytics_events"], messages


def test_python_worker_processes_totals_are_exact(tmp_path: Path):
    segment = tmp_path / "segment"
    record(segment)
    predicted = cm_workers.expected([*WORKERS, PARENT])

    document = json.loads(CoordinatorMetricsCollector(segment=segment).export_json())
    coordinators, events, messages = totals_of(document)
    assert coordinators == {
        name: (c.executions, c.errors, c.cache_hits, c.cache_misses) for name, c in predicted.coordinators.items()
    }
    assert events == predicted.events
    assert messages == predicted.messages
    durations = {c["coordinator_name"]: c["total_duration_ms"] for c in document["coordinators"]}
    for name, counts in predicted.coordinators.items():
        if counts.duration_ns is not None:
            assert durations[name] == counts.duration_ns / 1e6, name
    overall = document["overall_stats"]
    assert overall["total_executions"] == sum(c.executions for c in predicted.coordinators.values())
    assert overall["total_errors"] == sum(c.errors for c in predicted.coordinators.values())
    # Every thread of every process had its own writer slot; none was refused.
    assert document["exporter"]["dropped_updates"] == 0


def test_python_and_rust_processes_share_one_segment_exactly(tmp_path: Path, cm_writer_bin: str, coordmetrics_bin: str):
    python_only, rust_alone, shared = tmp_path / "python", tmp_path / "rust", tmp_path / "shared"
    record(python_only)
    rust_only(rust_alone, cm_writer_bin)
    record(shared, cm_writer=cm_writer_bin)

    # Python's part alone is exactly its prediction (the durations too).
    predicted = cm_workers.expected([*WORKERS, PARENT])
    python_json = json.loads(snapshot_cli(coordmetrics_bin, str(python_only), "--format", "json"))
    python_coordinators, python_events, python_messages = totals_of(python_json)
    assert python_coordinators == {
        name: (c.executions, c.errors, c.cache_hits, c.cache_misses) for name, c in predicted.coordinators.items()
    }
    assert (python_events, python_messages) == (predicted.events, predicted.messages)

    # Every counter and histogram sample of the shared segment is the sum of the two parts,
    # as the binary and as export_prometheus() read it.
    python_samples = deterministic(promtext.counters(snapshot_cli(coordmetrics_bin, str(python_only))))
    rust_samples = deterministic(promtext.counters(snapshot_cli(coordmetrics_bin, str(rust_alone))))
    summed = Counter(python_samples)
    summed.update(rust_samples)
    assert any(name == "victor_coordinator_executions_total" and ("coordinator", "ChatCoordinator") in labels
               for name, labels in set(python_samples) & set(rust_samples)), "the workloads share no coordinator"
    shared_collector = CoordinatorMetricsCollector(segment=shared)
    for text in (snapshot_cli(coordmetrics_bin, str(shared)), shared_collector.export_prometheus(compat_names=False)):
        assert deterministic(promtext.counters(text)) == dict(summed)

    # And so are the JSON totals and the error messages (both rings hold every message).
    rust_json = json.loads(snapshot_cli(coordmetrics_bin, str(rust_alone), "--format", "json"))
    rust_coordinators, rust_events, rust_messages = totals_of(rust_json)
    expected_coordinators = dict(rust_coordinators)
    for name, counts in python_coordinators.items():
        before = expected_coordinators.get(name, (0, 0, 0, 0))
        expected_coordinators[name] = tuple(a + b for a, b in zip(before, counts))
    expected_events = Counter(rust_events)
    expected_events.update(python_events)
    for document in (
        json.loads(snapshot_cli(coordmetrics_bin, str(shared), "--format", "json")),
        json.loads(shared_collector.export_json()),
    ):
        coordinators, events, messages = totals_of(document)
        assert coordinators == expected_coordinators
        assert events == dict(expected_events)
        assert messages == sorted(python_messages + rust_messages)
        assert document["exporter"]["dropped_updates"] == 0


def _forked_worker(collector: CoordinatorMetricsCollector, worker: int) -> None:
    cm_workers.run(collector, worker, 2, ITERATIONS)


def test_forked_children_record_through_the_inherited_collector(tmp_path: Path):
    """A collector opened before `fork` keeps working in the children: each claims writer slots
    of its own instead of writing into the parent's."""
    collector = CoordinatorMetricsCollector(segment=tmp_path / "segment", capacities=CAPACITIES)
    cm_workers.run(collector, 0, 2, ITERATIONS)  # the parent's threads hold slots before the fork
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_forked_worker, args=(collector, worker)) for worker in (1, 2)]
    for child in children:
        child.start()
    cm_workers.run(collector, 3, 2, ITERATIONS)  # and keeps recording meanwhile
    for child in children:
        child.join(TIMEOUT)
        assert child.exitcode == 0
    predicted = cm_workers.expected([(worker, 2, ITERATIONS) for worker in range(4)])

    coordinators, events, messages = totals_of(json.loads(collector.export_json()))
    assert coordinators == {
        name: (c.executions, c.errors, c.cache_hits, c.cache_misses) for name, c in predicted.coordinators.items()
    }
    assert (events, messages) == (predicted.events, predicted.messages)
