#!/bin/bash
# tests/e2e/lifecycle.sh and flood.sh for each backend ($BACKENDS, default all three), inside the VM:
#   scripts/vm/run.sh --kernel 6.12 --out DIR --env CTCT_BUILD=$PWD/build -- tests/vm/flood-lifecycle.sh [SECONDS]
set -uo pipefail
: "${VM_OUT:?run me via scripts/vm/run.sh}"
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
rc=0
for backend in ${BACKENDS:-fentry kprobe tracepoint}; do
	t0=$SECONDS
	bash "$here/e2e/lifecycle.sh" "$backend" || rc=1
	echo "=== $backend lifecycle: $((SECONDS - t0)) s"
	t0=$SECONDS
	bash "$here/e2e/flood.sh" "$backend" "$secs" || rc=1
	echo "=== $backend flood: $((SECONDS - t0)) s"
done
exit $rc
