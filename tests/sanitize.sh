#!/usr/bin/env bash
# Build the unit tests with ASan+UBSan (CTCT_SANITIZE) in their own build dir and run them; any report
# (leak, overflow, UB) fails the run. CI: call this after the plain unit tests.
# Usage: tests/sanitize.sh   (build dir: $CTCT_SANITIZE_BUILD, default ./build-sanitize)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTCT_SANITIZE_BUILD:-$root/build-sanitize}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=ON -DCTCT_SANITIZE=ON >/dev/null
# Only what the unit tests need: the tracer itself needs the BPF skeleton and root to be exercised.
cmake --build "$build" -j"$(nproc)" --target unit_tests
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
"$build/unit_tests" --gtest_brief=1
echo "sanitized unit tests: PASS"
