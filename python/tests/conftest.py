"""Shared fixtures: a private segment per test, and the external programs some tests need.

The external programs (the `coordmetrics` exporter binary, the `cm-writer` helper of the Rust
tests, `promtool`) are looked up in the environment first (COORDMETRICS_BIN, CM_WRITER_BIN,
PROMTOOL), then in the repository's `target/debug` (built by `cargo build --workspace`) or
on PATH. A missing one skips the tests that need it, with a banner at the end of the run;
under CI=true it fails them instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import coordmetrics

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
# Small capacities keep each test's segment at a few hundred KiB instead of tens of MiB.
CAPACITIES: Dict[str, int] = {"coordinators": 32, "events": 16, "writers": 64, "errors": 1024}
CAPACITIES_ARG = "{coordinators},{events},{writers},{errors}".format(**CAPACITIES)

_not_tested: List[str] = []

# The tests must exercise the installed wheel, never the source tree (which has no extension).
assert "site-packages" in coordmetrics.__file__, f"coordmetrics imported from {coordmetrics.__file__}"


def require(path: Optional[str], what: str, hint: str) -> str:
    """`path` if it is an executable, else skip loudly (fail under CI=true)."""
    if path and os.access(path, os.X_OK):
        return path
    message = f"{what} not found ({hint}): NOT TESTED"
    if IN_CI:
        pytest.fail(f"{message}; CI=true makes this a failure")
    _not_tested.append(message)
    pytest.skip(message)


def _binary(env: str, name: str) -> Optional[str]:
    explicit = os.environ.get(env)
    if explicit:
        return explicit
    built = ROOT / "target" / "debug" / name
    return str(built) if built.exists() else shutil.which(name)


@pytest.fixture
def coordmetrics_bin() -> str:
    return require(
        _binary("COORDMETRICS_BIN", "coordmetrics"),
        "the coordmetrics exporter binary",
        "run `cargo build --workspace` or set COORDMETRICS_BIN",
    )


@pytest.fixture
def cm_writer_bin() -> str:
    return require(
        _binary("CM_WRITER_BIN", "cm-writer"),
        "the cm-writer helper (tests/src/bin/cm-writer.rs)",
        "run `cargo build --workspace` or set CM_WRITER_BIN",
    )


@pytest.fixture
def promtool() -> str:
    return require(os.environ.get("PROMTOOL") or shutil.which("promtool"), "promtool", "install prometheus or set PROMTOOL")


@pytest.fixture
def segment(tmp_path: Path) -> str:
    """A segment path of this test only (never /dev/shm/coordmetrics)."""
    return str(tmp_path / "segment")


@pytest.fixture
def collector(segment: str) -> coordmetrics.CoordinatorMetricsCollector:
    return coordmetrics.CoordinatorMetricsCollector(segment=segment, capacities=CAPACITIES)


def snapshot_cli(binary: str, segment: str, *args: str) -> str:
    """`coordmetrics snapshot --segment SEGMENT ARGS...`, its standard output."""
    done = subprocess.run(
        [binary, "snapshot", "--segment", segment, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if not key.startswith("COORDMETRICS_")},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if _not_tested:
        terminalreporter.write_sep("!", "PARTS NOT TESTED (missing programs)", red=True, bold=True)
        for line in sorted(set(_not_tested)):
            terminalreporter.write_line(f"  {line}", red=True)
        terminalreporter.write_line("  (under CI=true these are failures)", red=True)
    sys.stdout.flush()
