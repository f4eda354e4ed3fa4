#!/usr/bin/env bash
# Kernel test: as many confirm drops as this kernel produces in SECONDS (colliding pairs from a raw-socket
# sender, MASQUERADE, NFQUEUE after SNAT, a listener holding HOLD_MS so both packets of a pair are in the
# queue together), first with a 4 KiB ring buffer that must overflow, then with the default one. Asserts
#   tiny ring:    confirm_drop events + ringbuf_full == Δinsert_failed, ringbuf_full > 0, a `loss` line,
#                 and the per-CPU ringbuf_full adds up to the total;
#   default ring: confirm_drop events == Δinsert_failed, nothing lost.
# Prints the kernel's drop rate (Δinsert_failed per second) and what the tracer delivered.
# usage: flood.sh BACKEND [SECONDS]     (root; BACKEND: auto|fentry|kprobe|tracepoint)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
SECS=${2:-10}
HOLD_MS=${HOLD_MS:-20}
BENCH=${BENCH:-$CTCT_BUILD/bench}
trap cleanup EXIT INT TERM

flood_run() { # flood_run LABEL [TRACER FLAGS]
	local label=$1 tag="$BACKEND flood $1"
	shift
	topo_up && queue_after_nat || { not_ok "$tag: setup failed"; topo_down; return; }
	# udp_flood pairs spreads over dports 5000-5099; winners live 5 s so the table stays well below its max.
	in_ns "$RTR" iptables-nft -t mangle -A CTCTQ -p udp --dport 5001:5099 -j NFQUEUE --queue-num "$QUEUE"
	in_ns "$RTR" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=5
	in_ns "$SRV" nft add table inet sink '{ chain in { type filter hook input priority 0; udp dport 5000-5099 drop; }; }'
	start_listener "$HOLD_MS" --maxlen 262144 --rcvbuf 67108864 || { not_ok "$tag: listener"; topo_down; return; }
	start_tracer "$BACKEND" "$@" || { not_ok "$tag: tracer did not start"; topo_down; return; }
	local if0 if1 sent t0 t1
	if0=$(ct_stat insert_failed)
	t0=$(date +%s.%N)
	read -r sent _ < <(in_ns "$CLI" "$BENCH/udp_flood" send 10.231.2.2 $DPORT "$SECS" pairs)
	t1=$(date +%s.%N)
	sleep 2 # listener hold, then the 1 s sweep of drops not seen freed
	if1=$(ct_stat insert_failed)
	stop_tracer || not_ok "$tag: tracer exit status $?"
	local dif=$((if1 - if0)) events lost lost_cpu loss_lines delta_sum
	events=$(events_of_type confirm_drop | wc -l)
	delta_sum=$(events_of_type confirm_drop | jq -s 'map(.insert_failed_delta // 1) | add // 0')
	lost=$(jq -r 'select(.type == "summary") | .losses.ringbuf_full' "$WORK/trace.json")
	lost_cpu=$(jq -r 'select(.type == "summary") | .losses_per_cpu.ringbuf_full | add' "$WORK/trace.json")
	loss_lines=$(events_of_type loss | wc -l)
	echo "# $tag: sent $sent packets in $(echo "$t1 - $t0" | bc) s; kernel Δinsert_failed $dif ($(echo "$dif / $SECS" | bc)/s);" \
		"tracer confirm_drop $events (sum of insert_failed_delta $delta_sum), ringbuf_full $lost, loss lines $loss_lines"
	[ "$dif" -gt 0 ] || not_ok "$tag: the kernel produced no drops"
	check "$tag: per-CPU ringbuf_full adds up to the total" "$lost_cpu" "$lost"
	if [ "$label" = tiny-ring ]; then
		check "$tag: events + ringbuf_full == Δinsert_failed" "$((events + lost))" "$dif"
		[ "$lost" -gt 0 ] && ok "$tag: the ring overflowed ($lost)" || not_ok "$tag: the ring did not overflow"
		[ "$loss_lines" -gt 0 ] && ok "$tag: a loss line was printed ($loss_lines)" || not_ok "$tag: no loss line"
	else
		check "$tag: events == Δinsert_failed" "$events" "$dif"
		check "$tag: ringbuf_full" "$lost" 0
	fi
	topo_down
}

flood_run tiny-ring --ringbuf-kb 4
flood_run default-ring
finish
