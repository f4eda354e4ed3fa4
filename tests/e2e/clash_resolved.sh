#!/usr/bin/env bash
# Kernel test: the near miss. Two datagrams of one UDP flow (same socket) are queued before the first
# is confirmed, so each has its own unconfirmed conntrack; when the second is confirmed the kernel finds
# the first in the table and, for UDP, resolves the clash instead of dropping. Asserts, per run:
#   packets lost == Δinsert_failed == confirm_drop events   (normally all 0),
#   clash_resolved events == Δclashres (where the backend can see the confirm step),
# that Δclashres is what this kernel is known to do, and that each event names its flow and winner.
# usage: clash_resolved.sh BACKEND [FLOWS]     (root; BACKEND: auto|fentry|kprobe|tracepoint;
# TRACERS="BACKEND [FLAGS];..." instead: one tracer per entry on the same traffic, each checked, lib.sh)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
FLOWS=${2:-20}
HOLD_MS=200
export RECV_FIRST_MS=15000 # every datagram arrives: the first may come late under emulation
trap cleanup EXIT INT TERM

tag="clash resolved (udp, 2 datagrams per flow)"
topo_up && queue_after_nat && start_listener $HOLD_MS || { not_ok "$tag: setup failed"; finish; exit; }
if0=$(ct_stat insert_failed) cr0=$(ct_stat clashres)
start_tracers || { not_ok "$tag: tracer did not start"; finish; exit; }
read -r sent recv < <(flow_traffic 4 "$FLOWS" 42000 2)
sleep 1.5
stop_tracers
dif=$(($(ct_stat insert_failed) - if0)) dcr=$(($(ct_stat clashres) - cr0))
lost=$((sent - recv))
echo "# $tag: kernel $(uname -r): sent $sent received $recv Δinsert_failed $dif Δclashres $dcr"
check "$tag: packets lost == Δinsert_failed" "$lost" "$dif"
# The kernel's own behaviour, so the test cannot pass vacuously. Before 6.12 the reinject path looks the
# conntrack up again and hands the second datagram the first one's entry: no clash at all (measured on
# Debian 6.1: Δclashres 0). From 6.12 that re-lookup is gone and every second datagram clashes with its
# flow's first at confirm, and UDP clashes are resolved.
expected=$FLOWS
[ "$(printf '%s\n' 6.12 "$(uname -r)" | sort -V | head -n 1)" = 6.12 ] || expected=0
check "$tag: Δclashres == $expected on $(uname -r)" "$dcr" "$expected"

tracer_checks() {
	local tag="$TLABEL clash resolved (udp, 2 datagrams per flow)"
	check "$tag: confirm_drop events == Δinsert_failed" "$(events_of_type confirm_drop | wc -l)" "$dif"
	if [ "$(trace_mode)" = function ]; then
		check "$tag: clash_resolved events == Δclashres" "$(events_of_type clash_resolved | wc -l)" "$dcr"
		# Same flow: the winner's original tuple is the loser's, and both waited in the queue.
		check "$tag: winner is the same flow" \
			"$(events_of_type clash_resolved | jq -r 'select(.winner == null or .winner.orig != .loser.orig) | 1' | wc -l)" 0
		check "$tag: reported tuples not sent by the test" \
			"$(events_of_type clash_resolved | jq -r '"\(.loser.orig.src) \(.loser.orig.sport) \(.loser.orig.dst) \(.loser.orig.dport)"' |
				grep -vxF -f "$WORK/sent.flows" | wc -l)" 0
		check "$tag: time in queue within [hold, 5s]" \
			"$(events_of_type clash_resolved | jq -r --argjson lo $((HOLD_MS * 1000000)) --argjson hi 5000000000 \
				'select(.queue == null or .queue.latency_ns < $lo or .queue.latency_ns > $hi) | 1' | wc -l)" 0
	else
		echo "# $tag: tracepoint mode cannot see resolved clashes; asserting only that none is reported as a drop"
	fi
	check "$tag: ring buffer / map losses" \
		"$(jq -r 'select(.type == "summary") | [.losses[]] | add' "$TRACE_JSON")" 0
}
each_tracer tracer_checks
finish
