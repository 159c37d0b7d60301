"""The generator's three modes, through both entry points: ``python -m coordmetrics.generate``
and ``coordmetrics generate``, with the original script's flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordmetrics import CoordinatorMetricsCollector

from conftest import CAPACITIES

VICTOR_COORDINATORS = 13


@pytest.fixture(params=["python", "binary"])
def generate(request, tmp_path: Path):
    """Runs the generator of one entry point in `tmp_path` with the given flags."""
    command = (
        [sys.executable, "-m", "coordmetrics.generate"]
        if request.param == "python"
        else [request.getfixturevalue("coordmetrics_bin"), "generate"]
    )

    def run(*flags: str) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith("COORDMETRICS_")}
        done = subprocess.run([*command, *flags], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    return run


def test_sample_data(generate, tmp_path: Path):
    generate("--sample-data")  # the original's default output path
    document = json.loads((tmp_path / "docs" / "dashboard" / "metrics.json").read_text())
    assert document["demo"] is True
    assert len(document["coordinators"]) == VICTOR_COORDINATORS
    generate("-s", "--format", "prometheus", "--output", "sample.prom")
    text = (tmp_path / "sample.prom").read_text()
    assert "\nvictor_coordinator_total_executions " in text


def test_benchmark_drives_every_coordinator_n_times(generate, tmp_path: Path):
    done = generate("--benchmark", "--iterations", "12", "--verbose", "--output", "bench.json")
    assert "iteration 11/12" in done.stdout
    document = json.loads((tmp_path / "bench.json").read_text())
    counts = {c["coordinator_name"]: c["execution_count"] for c in document["coordinators"]}
    assert len(counts) == VICTOR_COORDINATORS and set(counts.values()) == {12}
    assert document["demo"] is False
    generate("-b", "-i", "3", "-f", "prometheus", "-o", "bench.prom")
    text = (tmp_path / "bench.prom").read_text()
    assert f"\nvictor_coordinator_total_executions {3 * VICTOR_COORDINATORS}\n" in text


def test_export_of_the_segment(generate, segment, tmp_path: Path):
    collector = CoordinatorMetricsCollector(segment=segment, capacities=CAPACITIES)
    for _ in range(4):
        collector.track_execution("ChatCoordinator", 2.0)
    collector.record_cache_hit("SessionCoordinator")
    generate("--segment", segment, "--output", "out/metrics.json")
    document = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [(c["coordinator_name"], c["execution_count"]) for c in document["coordinators"]] == [("ChatCoordinator", 4)]
    assert [c["coordinator_name"] for c in document["coordinators_without_executions"]] == ["SessionCoordinator"]
