#!/usr/bin/env bash
# Build the userspace benchmark (Release, own build dir) and print the table: events/s per stage and for
# the whole decode -> summary -> JSON -> write path, and RSS over a 5M-event run.
# Usage: bench/run_userspace.sh [extra google-benchmark flags, e.g. --benchmark_filter=Pipeline]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTCT_BENCH_BUILD:-$root/build-bench}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCTCT_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target userspace_bench >/dev/null
# One core, as the goal says; taskset keeps the numbers comparable between runs.
exec taskset -c 0 "$build/userspace_bench" --benchmark_counters_tabular=true "$@"
