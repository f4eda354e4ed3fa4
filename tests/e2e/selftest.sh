#!/usr/bin/env bash
# Kernel test of `ctconfirm-trace selftest`: it must report what the kernel counted, agree with it, and
# leave nothing behind, also when killed. Each run's numbers are checked here, not only its exit code.
# usage: selftest.sh BACKEND [RUNS]     (root)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
RUNS=${2:-3}
PAIRS=20
trap cleanup EXIT INT TERM
netns_count() { lsns -t net -n | wc -l; }
our_progs() { bpftool prog show | grep -c -E 'kfree_skb_btf|confirm_f|confirm_k|enqueue_|reinject_|resolve_clash_'; }
n0=$(netns_count) p0=$(our_progs)
for run in $(seq "$RUNS"); do
	tag="selftest $BACKEND run $run"
	out=$("$TRACER" selftest --json --backend "$BACKEND" --pairs $PAIRS)
	rc=$?
	echo "# $out"
	check "$tag: exit status" "$rc" 0
	check "$tag: result" "$(jq -r .result <<<"$out")" pass
	check "$tag: packets lost == pairs" "$(jq -r .packets.lost <<<"$out")" $PAIRS
	check "$tag: kernel insert_failed == lost" "$(jq -r .kernel.insert_failed <<<"$out")" $PAIRS
	check "$tag: tracer confirm_drop == lost" "$(jq -r .tracer.confirm_drop <<<"$out")" $PAIRS
	check "$tag: queue saw every packet" "$(jq -r .packets.queued <<<"$out")" $((2 * PAIRS))
done
# Interrupted (SIGINT) and killed (SIGKILL) mid-run: namespaces and BPF programs are gone afterwards.
for sig in INT KILL; do
	"$TRACER" selftest --backend "$BACKEND" --hold-ms 5000 >/dev/null 2>&1 &
	pid=$!
	for i in $(seq 50); do [ "$(netns_count)" -gt "$n0" ] && [ "$(our_progs)" -gt "$p0" ] && break; sleep 0.1; done
	check "selftest SIG$sig: namespaces were created" "$(($(netns_count) > n0))" 1
	kill -$sig $pid
	wait $pid 2>/dev/null
	sleep 0.5
	check "selftest SIG$sig: no namespace left" "$(netns_count)" "$n0"
	check "selftest SIG$sig: no BPF program left" "$(our_progs)" "$p0"
done
finish
