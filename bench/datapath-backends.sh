#!/usr/bin/env bash
# bench/datapath.sh once per backend, e.g. inside a VM:
#   scripts/vm/run.sh --kernel 6.12 --out /tmp/vm612 --env CTCT_BUILD=$PWD/build -- bench/datapath-backends.sh 3 2 fentry kprobe
# usage: bench/datapath-backends.sh ROUNDS SECONDS BACKEND...
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:?rounds} secs=${2:?seconds}
shift 2
rc=0
for b in "$@"; do bash "$here/datapath.sh" "$b" "$rounds" "$secs" || rc=1; done
exit $rc
