#!/usr/bin/env bash
# Fuzzes the segment reader with libFuzzer (cargo fuzz): arbitrary bytes as a segment file go
# through open, snapshot, report and the formatters (text, JSON, protobuf with native histograms;
# fuzz/fuzz_targets/segment_reader.rs).
# The corpus in fuzz/corpus/segment_reader/ starts from real segments and keeps what the
# fuzzer finds; a crash leaves its input in fuzz/artifacts/.
#
#   scripts/fuzz.sh [SECONDS]     # default 60
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
cargo +nightly fuzz run segment_reader fuzz/corpus/segment_reader -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
