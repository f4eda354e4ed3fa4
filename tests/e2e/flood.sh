#!/usr/bin/env bash
# Kernel test: as many confirm drops as this kernel produces in SECONDS (colliding pairs from a raw-socket
# sender, MASQUERADE, NFQUEUE after SNAT, a listener holding HOLD_MS so both packets of a pair are in the
# queue together), first with a 4 KiB ring buffer that must overflow, then with the default one. Kernel
# drops = Δinsert_failed + Δclashres + Δqueue_dropped + Δuser_dropped (at this rate the queue overflows
# now and then, and those are events too). Asserts
#   tiny ring:    events + lost == kernel drops, ringbuf_full > 0, a `loss` line,
#                 and the per-CPU ringbuf_full adds up to the total;
#   default ring: events == kernel drops, queue_drop events == the queue's drops, confirm-path events
#                 (confirm_drop + clash_resolved + verdict_drop) == Δinsert_failed + Δclashres, in
#                 tracepoint mode Σ insert_failed_delta == Δinsert_failed, nothing lost;
#   slow reader:  a 64 KiB ring, the tracer's stdout a pipe whose reader stops for SINK_PAUSE s (a stuck log shipper):
#                 events + lost == kernel drops, ringbuf_full > 0, and the summary's longest_write_ms
#                 shows the wait (> half the pause).
# (events: confirm_drop + clash_resolved + queue_drop + verdict_drop, see below; lost: ringbuf_full +
# the join maps' *_map_full)
# Prints the kernel's drop rate (Δinsert_failed per second) and what the tracer delivered.
# Measured (host 6.18, 2 CPUs, tracepoint mode): 87-111k kernel drops/s in Dec 2026 (about 40 % confirm
# drops, the rest queue overflows); 20 s gives about 2 million, the 10 s of scripts/test.sh about 1 million.
# usage: [TINY_SECS=S] [ALLOW_LOSS=1] flood.sh BACKEND [SECONDS]     (root; BACKEND: auto|fentry|kprobe|tracepoint)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
SECS=${2:-10}
TINY_SECS=${TINY_SECS:-$SECS} # the tiny ring overflows within a second; the default-ring run is the long one
# ALLOW_LOSS=1 (the VMs): under emulation userspace cannot format as fast as the emulated kernel drops, so
# the default ring may overflow too; then every loss must still be counted (events + lost == kernel).
ALLOW_LOSS=${ALLOW_LOSS:-0}
HOLD_MS=${HOLD_MS:-20}
SINK_PAUSE=${SINK_PAUSE:-2}
BENCH=${BENCH:-$CTCT_BUILD/bench}
trap cleanup EXIT INT TERM

flood_run() { # flood_run LABEL [TRACER FLAGS]
	local label=$1 tag="$BACKEND flood $1" secs=$SECS
	shift
	[ "$label" = default-ring ] || secs=$TINY_SECS
	rm -f "$WORK/flood.began"
	topo_up && queue_after_nat || { not_ok "$tag: setup failed"; topo_down; return; }
	# udp_flood pairs spreads over dports 5000-5099; winners live 5 s so the table stays well below its max.
	in_ns "$RTR" iptables-nft -t mangle -A CTCTQ -p udp --dport 5001:5099 -j NFQUEUE --queue-num "$QUEUE"
	in_ns "$RTR" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=5
	in_ns "$SRV" nft add table inet sink '{ chain in { type filter hook input priority 0; udp dport 5000-5099 drop; }; }'
	start_listener "$HOLD_MS" --maxlen 262144 --rcvbuf 67108864 || { not_ok "$tag: listener"; topo_down; return; }
	start_tracer "$BACKEND" "$@" || { not_ok "$tag: tracer did not start"; topo_down; return; }
	local if0 if1 cr0 cr1 qd0 qd1 ud0 ud1 sent t0 t1
	if0=$(ct_stat insert_failed) cr0=$(ct_stat clashres) qd0=$(nfq_stat queue_dropped) ud0=$(nfq_stat user_dropped)
	t0=$(date +%s.%N)
	touch "$WORK/flood.began"
	read -r sent _ < <(in_ns "$CLI" "$BENCH/udp_flood" send 10.231.2.2 $DPORT "$secs" pairs)
	t1=$(date +%s.%N)
	# Under emulation the queue can still hold a backlog when the sender is done; a drop after the
	# counters are read but before the tracer stops was counted by the tracer only (VM 6.1: +378).
	# So wait until the queue is empty, then the 1 s sweep of drops not seen freed.
	for _ in $(seq 300); do [ "$(nfq_stat queue_total)" = 0 ] && break; sleep 0.1; done
	sleep 2
	if1=$(ct_stat insert_failed) cr1=$(ct_stat clashres) qd1=$(nfq_stat queue_dropped) ud1=$(nfq_stat user_dropped)
	stop_tracer || not_ok "$tag: tracer exit status $?"
	# Kernel outcomes and tracer events both include resolved clashes (none expected: the two flows of
	# a pair differ in their original tuple), so a lost clash_resolved cannot hide a missing drop; and
	# the queue's own drops: at this rate the queue overflows now and then (queue_dropped grows).
	local ringbuf_full longest_write_ms qdrops=$((qd1 - qd0 + ud1 - ud0)) dif dif_confirm events qevents cevents vevents lost lost_cpu loss_lines delta_sum
	dif_confirm=$((if1 - if0 + ${cr1:-0} - ${cr0:-0}))
	dif=$((dif_confirm + qdrops))
	# grep, not jq: a million lines take jq half a minute (the JSON is compact, keys in fixed order)
	events=$(grep -c -E '"type":"(confirm_drop|clash_resolved|queue_drop|verdict_drop)"' "$WORK/trace.json")
	# The listener accepts everything and nothing after the queue drops, so a verdict_drop (a free inside the
	# reinject function) is a confirm loser that tracepoint mode could not claim an insert_failed increment
	# for: another loser's event on another CPU would have claimed both (its insert_failed_delta 2; not
	# seen since the fix below). Counted with the confirm path, and said. (Before this was told apart, a
	# queue drop freed in nf_queue() could claim a loser's increment: 25 in 1.7 M drops.)
	qevents=$(grep -c '"type":"queue_drop"' "$WORK/trace.json")
	cevents=$(grep -c -E '"type":"(confirm_drop|clash_resolved|verdict_drop)"' "$WORK/trace.json")
	vevents=$(grep -c '"type":"verdict_drop"' "$WORK/trace.json")
	[ "$vevents" -eq 0 ] || echo "# $tag: $vevents verdict_drop events although the listener accepted all (see above)"
	delta_sum=$(grep -o '"insert_failed_delta":[0-9]*' "$WORK/trace.json" | awk -F: '{ s += $2 } END { print s + 0 }')
	grep '"type":"summary"' "$WORK/trace.json" >"$WORK/summary.json"
	# every counter that stands for a drop not reported: the ring, and the join maps of function mode
	lost=$(jq -r '.losses | .ringbuf_full + .inflight_map_full + .pending_map_full' "$WORK/summary.json")
	ringbuf_full=$(jq -r '.losses.ringbuf_full' "$WORK/summary.json")
	longest_write_ms=$(jq -r '.longest_write_ms' "$WORK/summary.json")
	lost_cpu=$(jq -r '.losses_per_cpu.ringbuf_full | add' "$WORK/summary.json")
	loss_lines=$(grep -c '"type":"loss"' "$WORK/trace.json")
	echo "# $tag: events by type: $(grep -o '"type":"[a-z_]*"' "$WORK/trace.json" | sort | uniq -c | tr -s ' \n' ' ')"
	echo "# $tag: sent $sent packets in $(echo "$t1 - $t0" | bc) s; kernel Δinsert_failed+Δclashres+Δqueue_dropped+Δuser_dropped" \
		"$dif ($(echo "$dif / $secs" | bc)/s, queue $qdrops); tracer events $events (queue_drop $qevents, sum of" \
		"insert_failed_delta $delta_sum), lost $lost (ringbuf_full $ringbuf_full), loss lines $loss_lines," \
		"longest output write $longest_write_ms ms"
	[ "$dif" -gt 0 ] || not_ok "$tag: the kernel produced no drops"
	check "$tag: per-CPU ringbuf_full adds up to the total" "$lost_cpu" "$ringbuf_full"
	if [ "$label" != default-ring ]; then
		check "$tag: events + lost == kernel drops" "$((events + lost))" "$dif"
		[ "$ringbuf_full" -gt 0 ] && ok "$tag: the ring overflowed ($ringbuf_full)" || not_ok "$tag: the ring did not overflow"
		[ "$loss_lines" -gt 0 ] && ok "$tag: a loss line was printed ($loss_lines)" || not_ok "$tag: no loss line"
		if [ "$label" = slow-reader ]; then
			[ "$(echo "$longest_write_ms * 2 > $SINK_PAUSE * 1000" | bc)" = 1 ] &&
				ok "$tag: the summary shows the blocked write ($longest_write_ms ms)" ||
				not_ok "$tag: longest_write_ms $longest_write_ms, the reader paused $SINK_PAUSE s"
		fi
	elif [ "$ALLOW_LOSS" = 1 ] && [ "$lost" -gt 0 ]; then
		echo "# $tag: the default ring overflowed too ($lost lost; ALLOW_LOSS=1): checking the accounting only"
		check "$tag: events + lost == kernel drops" "$((events + lost))" "$dif"
	else
		check "$tag: events == kernel drops" "$events" "$dif"
		check "$tag: queue_drop events == Δqueue_dropped + Δuser_dropped" "$qevents" "$qdrops"
		check "$tag: confirm_drop + clash_resolved + verdict_drop events == Δinsert_failed + Δclashres" "$cevents" "$dif_confirm"
		[ "$BACKEND" != tracepoint ] ||
			check "$tag: Σ insert_failed_delta == Δinsert_failed" "$delta_sum" "$((if1 - if0))"
		check "$tag: nothing lost" "$lost" 0
	fi
	topo_down
}

# The reader of a pipe that passes the start line on, then stops reading until $1 s after the flood began.
slow_sink() {
	local line
	IFS= read -r line && printf '%s\n' "$line"
	until [ -e "$WORK/flood.began" ]; do sleep 0.05; done
	sleep "$1"
	exec cat
}

flood_run tiny-ring --ringbuf-kb 4
flood_run default-ring
# 64 KiB: ~200 events, so that the ring overflows during the pause at the VMs' rates too
TRACER_SINK="slow_sink $SINK_PAUSE" flood_run slow-reader --ringbuf-kb 64
finish
