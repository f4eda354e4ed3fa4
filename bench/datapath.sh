#!/usr/bin/env bash
# Datapath cost of the tracer: packets per second through an NFQUEUE (fast accept-all listener) with and
# without the tracer attached, alternating off/on in the same run (the order flips every round, so drift
# of a shared machine falls on both sides), for
#   established: one 5-tuple, confirmed once, then established traffic through the queue (one-way: a flow
#                that has seen no reply stays IP_CT_NEW, so the enqueue hook reads its conntrack's status);
#   replied:     the same flow after one reply from the server (not queued): IP_CT_ESTABLISHED, as a TCP
#                flow's packets are, which the enqueue hook tells from the conntrack info alone;
#   flows:       every packet a new 5-tuple, conntrack creates and confirms an entry per packet;
#   drops:       as flows, but an nft rule after the queue drops every packet: each one passes
#                skb:kfree_skb, the only hook of tracepoint mode (freed in nft_do_chain, outside netfilter's
#                hook code, so tracepoint mode returns after a range check);
#   xtdrops:     as flows, but an xt DROP (iptables-legacy, mangle POSTROUTING, before the queue) drops
#                every packet: freed by nf_hook_slow() with a new conntrack attached, exactly where a
#                confirm loser is freed, so tracepoint mode reads the netns' insert_failed for each: its
#                worst case. Throughput here is what the rule dropped per second (the queue sees nothing).
# Throughput is what the listener verdicted (packets/s; without drops the server received the same). While the tracer is on, kernel.bpf_stats_enabled
# is 1 and the run count and run time of each of the tracer's programs is read from bpftool (restored after).
# No NAT here (each new flow would also cost a port search), but conntrack is on; the queue sits at
# postrouting as in the tests.
# usage: bench/datapath.sh BACKEND [ROUNDS] [SECONDS] [CASES]   (root; also inside scripts/vm/run.sh)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tests/e2e/lib.sh"
BACKEND=${1:-auto}
ROUNDS=${2:-5}
SECS=${3:-3}
CASES=${4:-"established flows drops xtdrops"}
BENCH=${BENCH:-$CTCT_BUILD/bench}
stats0=$(sysctl -n kernel.bpf_stats_enabled)
# BPF_STATS=0: the tracer's rounds run without kernel.bpf_stats_enabled, whose two clock reads per program
# run are part of the "on" cost otherwise (large under TCG); the per-program times are then not measured
BPF_STATS=${BPF_STATS:-1}
# The counters are mmap'd files: on tmpfs, since a VM's results share (9p) refuses shared mappings.
CNT=$(mktemp -d /run/ctct-bench.XXXXXX)
trap 'sysctl -qw kernel.bpf_stats_enabled=$stats0; [ -n "${SRV_PID:-}" ] && kill "$SRV_PID"; cleanup; rm -rf "$CNT"' EXIT INT TERM

counter() { od -An -tu8 "$1" 2>/dev/null | tr -d ' ' || echo 0; }

# "name run_cnt run_time_ns" for every program the tracer (pid $1) holds open (its fdinfo names the
# program ids; bpftool's own pid column needs a bpftool built with BPF skeletons, not always there).
prog_stats() {
	local ids
	ids=$(grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u | jq -s -c .)
	bpftool -j prog show | jq -r --argjson ids "${ids:-[]}" \
		'.[] | select(.id as $i | $ids | index($i)) | "\(.name) \(.run_cnt // 0) \(.run_time_ns // 0)"' | sort
}

# CPU time (ns) the tracer (pid $1) has run so far, all its threads: its userspace (ring buffer reads, JSON,
# its timers) and its system calls. With one vCPU (icount) that time is taken from the packets.
tracer_cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

setup() {
	topo_up && queue_after_nat || return 1
	# Conntrack runs in a netns only once a rule needs it; this one does, at no cost beyond conntrack itself.
	in_ns "$RTR" nft delete table inet ctct_nat
	in_ns "$RTR" nft add table inet ctct_ct '{ chain pre { type filter hook prerouting priority 0; ct state invalid counter; }; }'
	# new flows every packet: keep the table small (entries that never see a reply live 2 s)
	in_ns "$RTR" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=2 net.netfilter.nf_conntrack_udp_timeout_stream=2
	rm -f "$WORK/nfq.ready"
	# ip netns exec itself in the background: $! is then the listener (a function call would be a subshell
	# whose kill leaves the program running)
	ip netns exec "$RTR" "$BENCH/nfq_accept" --queue "$QUEUE" --count-file "$CNT/nfq.count" \
		--ready-file "$WORK/nfq.ready" >"$WORK/nfq.out" 2>"$WORK/nfq.log" &
	LISTENER_PID=$!
	wait_for_file "$WORK/nfq.ready" || { echo "nfq_accept did not start: $(cat "$WORK/nfq.log")" >&2; return 1; }
	ip netns exec "$SRV" "$BENCH/udp_flood" recv 10.231.2.2 $DPORT "$CNT/srv.count" >"$WORK/srv.out" 2>&1 &
	SRV_PID=$!
	wait_for_file "$CNT/srv.count" || return 1
}

xt_dropped() { in_ns "$RTR" iptables-legacy -t mangle -nvxL POSTROUTING | awk '$3 == "DROP" {print $1; exit}'; }
handled() { if [ "$kind_case" = xtdrops ]; then xt_dropped; else counter "$CNT/nfq.count"; fi; }

# `replied`: the flow's conntrack has seen a reply (udp_flood reply: the server's port back to the client's),
# made again if it is gone; fails if conntrack still has no such entry. The one-flow cases raise the UDP
# timeouts so the entry outlives the pauses between windows: on the instruction clock (-icount sleep=off)
# every wait for the VM's 9p root jumps the clock ahead, and starting conntrack or the tracer took > 2 s.
flow_state() { in_ns "$RTR" conntrack -L -p udp --orig-port-src 40000 --orig-port-dst $DPORT 2>>"$WORK/conntrack.err"; }
replied() {
	local s i
	for i in 1 2 3 4 5; do
		s=$(flow_state)
		[ -n "$s" ] && [[ $s != *UNREPLIED* ]] && return 0
		if [ -z "$s" ]; then
			in_ns "$CLI" "$BENCH/udp_flood" send 10.231.2.2 $DPORT 0.01 one >/dev/null
		else
			in_ns "$SRV" "$BENCH/udp_flood" reply 10.231.2.2 $DPORT 10.231.1.2 40000 || return 1
		fi
		sleep 0.3
	done
	echo "replied: no replied conntrack entry for the flow; udp entries: $(in_ns "$RTR" conntrack -L -p udp 2>&1 | head -5)" \
		"($(tail -n 3 "$WORK/conntrack.err"))" >&2
	return 1
}

# One measurement window: prints "pps_handled pps_sent" (handled: verdicted by the listener, or for
# xtdrops dropped by the rule).
window() {
	local kind=$1 r0 r1 sent elapsed
	r0=$(handled)
	read -r sent _ elapsed < <(in_ns "$CLI" "$BENCH/udp_flood" send 10.231.2.2 $DPORT "$SECS" "$kind")
	sleep 0.3 # let the queue drain
	r1=$(handled)
	awk -v h=$((r1 - r0)) -v s="$sent" -v t="$elapsed" 'BEGIN { printf "%.0f %.0f\n", h / t, s / t }'
}

setup || { echo "setup failed" >&2; exit 1; }
# Under scripts/vm/run.sh --icount the vCPUs take turns on one instruction-counting clock: the machine's
# budget is one CPU's worth of that clock, and a rate is work per packet, whatever the host is doing.
budget_cpus=$(nproc)
[ -n "${VM_ICOUNT:-}" ] && budget_cpus=1
echo "# $(uname -r) backend=$BACKEND rounds=$ROUNDS seconds=$SECS ncpu=$(nproc) bpf_stats=$BPF_STATS icount=${VM_ICOUNT:-off}"
: >"$WORK/results"
for kind_case in $CASES; do
	kind=one
	[ "$kind_case" != established ] && [ "$kind_case" != replied ] && kind=flows
	[ "$kind_case" = drops ] && drop_after_queue 1024 65535
	udp_timeout=2
	[ "$kind" = one ] && udp_timeout=300
	# established: a one-way flow, even after the replied case
	[ "$kind_case" = established ] && in_ns "$RTR" conntrack -D -p udp --orig-port-src 40000 --orig-port-dst $DPORT >/dev/null 2>&1
	in_ns "$RTR" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=$udp_timeout \
		net.netfilter.nf_conntrack_udp_timeout_stream=$udp_timeout
	if [ "$kind_case" = xtdrops ]; then
		modprobe -q iptable_mangle 2>/dev/null # Debian's kernels: iptables-legacy does not load it itself
		in_ns "$RTR" iptables-legacy -t mangle -A POSTROUTING -p udp --dport $DPORT -j DROP || exit 1
	fi
	# warm up with one discarded window: a boot's first window ran 8 % slow with established traffic and
	# 4 % fast with new flows (an empty conntrack table) on the instruction clock
	if [ "$kind_case" = replied ]; then replied || exit 1; fi
	window "$kind" >/dev/null
	if [ "$kind_case" = established ] && [[ $(flow_state) != *UNREPLIED* ]]; then
		echo "established: the flow's conntrack is not unreplied: $(flow_state) ($(tail -n 3 "$WORK/conntrack.err"))" >&2
		exit 1
	fi
	for round in $(seq "$ROUNDS"); do
		order="off on"
		[ $((round % 2)) = 0 ] && order="on off"
		for mode in $order; do
			if [ $mode = on ]; then
				[ "$BPF_STATS" = 1 ] && sysctl -qw kernel.bpf_stats_enabled=1
				start_tracer "$BACKEND" || exit 1
				prog_stats "$TRACER_PID" >"$WORK/ps0"
				cpu0=$(tracer_cpu_ns "$TRACER_PID")
			fi
			if [ "$kind_case" = replied ]; then replied || exit 1; fi
			read -r pps sent_pps < <(window "$kind")
			if [ $mode = on ]; then
				echo "tracer $kind_case $(($(tracer_cpu_ns "$TRACER_PID") - cpu0))" >>"$WORK/results"
				prog_stats "$TRACER_PID" >"$WORK/ps1"
				sysctl -qw kernel.bpf_stats_enabled="$stats0"
				stop_tracer
				join "$WORK/ps0" "$WORK/ps1" | awk -v c="$kind_case" '{print "prog", c, $1, $4 - $2, $5 - $3}' >>"$WORK/results"
			fi
			echo "run $kind_case $round $mode $pps $sent_pps" | tee -a "$WORK/results"
		done
	done
	in_ns "$RTR" nft delete table inet ctct_drop 2>/dev/null
	[ "$kind_case" = xtdrops ] && in_ns "$RTR" iptables-legacy -t mangle -F POSTROUTING
done
echo "# ratio = received pps with tracer / without, per round (mean, min, max, median over rounds: one odd window"
echo "# moves the mean, not the median)"
echo "# bpf ns/pkt: the tracer's programs' run time per packet verdicted while on; cpu budget/pkt: ncpu s / off pps"
echo "# (icount: 1 s / off pps);"
echo "# their quotient is the share of the machine the hooks take (robust where pps is noisy, e.g. under TCG)"
echo "# tracer cpu: the tracer process's own CPU time during the windows (userspace and its system calls),"
echo "# as a share of the machine's (ncpu x window; icount: 1 x window)"
awk -v secs="$SECS" -v ncpu="$budget_cpus" '
	$1 == "run" { pps[$2, $3, $4] = $5; cases[$2] = 1; if ($3 > n) n = $3 }
	$1 == "prog" { bpfns[$2] += $5 }
	$1 == "tracer" { tcpu[$2] += $3 }
	$1 == "prog" { cnt[$2, $3] += $4; ns[$2, $3] += $5; progs[$2, $3] = 1 }
	END {
		for (c in cases) {
			s = 0; lo = 1e9; hi = 0; off = 0; on = 0
			for (r = 1; r <= n; r++) {
				x = pps[c, r, "on"] / pps[c, r, "off"]; s += x; off += pps[c, r, "off"]; on += pps[c, r, "on"]
				if (x < lo) lo = x; if (x > hi) hi = x
				# insertion sort for the median
				for (i = r - 1; i >= 1 && sorted[i] > x; i--) sorted[i + 1] = sorted[i]
				sorted[i + 1] = x
			}
			med = n % 2 ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
			printf "datapath %-11s off %8.0f pps  on %8.0f pps  ratio %.3f (min %.3f, max %.3f, median %.3f)", c, off / n, on / n, s / n, lo, hi, med
			ppkt = on ? bpfns[c] / (on * secs) : 0; budget = off ? ncpu * 1e9 / (off / n) : 0
			printf "  bpf ns/pkt %.0f of %.0f budget = %.1f%%", ppkt, budget, budget ? 100 * ppkt / budget : 0
			printf "  tracer cpu %.2f%%\n", 100 * tcpu[c] / (n * secs * ncpu * 1e9)
		}
		for (k in progs) {
			split(k, p, SUBSEP)
			printf "prog %-11s %-24s run_cnt %10.0f run_time_ns %14.0f avg_ns %6.0f\n", p[1], p[2], cnt[k], ns[k], cnt[k] ? ns[k] / cnt[k] : 0
		}
	}' "$WORK/results"
