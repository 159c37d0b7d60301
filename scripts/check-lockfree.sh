#!/usr/bin/env bash
# The lock-free core under the tools that can see what ordinary tests cannot:
#  - Miri runs the client's unit tests that use plain (heap) memory and the layout crate's
#    tests, and reports undefined behaviour and data races;
#  - loom model-checks name registration, writer slot claims and the error ring's seqlock
#    (client/src/loom_models.rs) over every interleaving of two threads.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

echo "==> Miri: coordmetrics-proto and the client's unit tests" >&2
MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test --locked -p coordmetrics-proto -p coordmetrics --lib

echo "==> loom: models of the lock-free protocols" >&2
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --locked --release -p coordmetrics --lib loom_models
