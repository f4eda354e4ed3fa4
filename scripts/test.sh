#!/usr/bin/env bash
# The whole test suite: unit tests (no root), then kernel tests on this host (root).
# Ends with one line "N passed, N failed" counting the suites.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTCT_BUILD:-$root/build}
passed=0 failed=0
suite() { # suite NAME COMMAND...
	local name=$1; shift
	echo "=== $name"
	if "$@"; then passed=$((passed + 1)); echo "=== $name: PASS"; else failed=$((failed + 1)); echo "=== $name: FAIL"; fi
}
"$root/scripts/install-deps.sh" || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }
"$root/scripts/build.sh" -DBUILD_TESTING=ON || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
suite "unit tests (ctest)" ctest --test-dir "$build" --output-on-failure
if [ "$(id -u)" = 0 ]; then
	suite "host kernel: confirm drops, tracepoint backend" \
		timeout 900 env CTCT_BUILD="$build" bash "$root/tests/e2e/confirm_drop.sh" tracepoint 3 20
else
	echo "not root: kernel tests skipped"
	failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
