#!/usr/bin/env bash
# Builds the coordmetrics wheel with maturin and runs the Python tests against it.
#
# Idempotent: creates python/.venv on first use and installs maturin, pytest and
# prometheus_client there only if they are missing; rebuilds the wheel (cargo rebuilds only what
# changed) and reinstalls it. Exits non-zero on any failure, including "no tests ran".
#
#   python/run-tests.sh              # build, install, run every test
#   python/run-tests.sh -k decorator # extra arguments go to pytest
#
# Environment: PYTHON (interpreter for the venv, default python3), CARGO_TARGET_DIR (default
# target/python at the repository root), CI=true (missing helpers such as promtool or the
# cm-writer binary fail the tests instead of skipping them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
venv="$here/.venv"
python="${PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/python}"
wheels="$CARGO_TARGET_DIR/wheels"

if [ ! -x "$venv/bin/python" ]; then
    echo "run-tests: creating $venv" >&2
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        # Debian ships venv's ensurepip in a separate package.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "run-tests: installing python3-venv" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$python" -m venv "$venv"
        else
            echo "run-tests: '$python -m venv' failed: install python3-venv (Debian/Ubuntu) and retry" >&2
            exit 1
        fi
    fi
fi

missing=()
"$venv/bin/python" -m maturin --version >/dev/null 2>&1 || missing+=("maturin>=1.9.4,<2")
"$venv/bin/python" -c "import pytest" >/dev/null 2>&1 || missing+=("pytest>=7")
"$venv/bin/python" -c "import prometheus_client" >/dev/null 2>&1 || missing+=("prometheus_client>=0.17")
if [ "${#missing[@]}" -gt 0 ]; then
    echo "run-tests: installing ${missing[*]}" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

# Only this build's wheel in the directory, so the install below cannot pick a stale one.
rm -f "$wheels"/coordmetrics-*.whl
(cd "$here" && "$venv/bin/python" -m maturin build --release --quiet --out "$wheels")
wheel=("$wheels"/coordmetrics-*.whl)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "${wheel[0]}"

# `pytest` rather than `python -m pytest`: the latter puts the working directory on sys.path,
# where the source package (without its extension module) would shadow the installed wheel.
cd "$here"
status=0
"$venv/bin/pytest" "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "run-tests: pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
