#!/usr/bin/env bash
# bench/datapath.sh once per backend (and per build), e.g. inside a VM whose clock counts instructions:
#   scripts/vm/run.sh --kernel 6.12 --icount 0 --smp 1 --out /tmp/vm612 --env CTCT_BUILD=$PWD/build \
#     --env BPF_STATS=0 -- bench/datapath-backends.sh 5 3 fentry kprobe
# CTCT_BUILDS="DIR1 DIR2": the same for each build in turn (a before/after pair in one boot; BENCH=DIR
# picks one build's nfq_accept and udp_flood for all). CASES: as datapath.sh's fourth argument.
# usage: bench/datapath-backends.sh ROUNDS SECONDS BACKEND...
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:?rounds} secs=${2:?seconds}
shift 2
rc=0
for build in ${CTCT_BUILDS:-$CTCT_BUILD}; do
	for b in "$@"; do
		echo "# build $build"
		CTCT_BUILD=$build bash "$here/datapath.sh" "$b" "$rounds" "$secs" "${CASES:-}" || rc=1
	done
done
exit $rc
