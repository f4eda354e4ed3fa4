#!/usr/bin/env bash
# Kernel test: every way the NFQUEUE path loses a queued packet, made on purpose, named by the tracer,
# counted against the kernel:
#   verdict DROP      listener says NF_DROP       verdict_drop events == sent - received
#   queue full        --maxlen 4, held 1 s        queue_drop/queue_full == Δqueue_dropped == lost
#   socket overflow   tiny rcvbuf, listener stalls queue_drop/socket_overflow == Δuser_dropped == lost
#   no listener       no process on the queue     queue_drop/no_listener == lost == sent
#   no listener + --queue-bypass                   nothing lost, no loss event (queue_bypass with hooks)
# and filters: --port/--addr/--proto/--netns that must and must not match the same traffic (tracers beside
# the verdict-drop case's).
# usage: queue_losses.sh BACKEND [FLOWS]     (root; BACKEND: auto|fentry|kprobe|tracepoint; FILTERS=0 skips
# the filter cases, which exercise the same BPF code with every backend; TRACER_FLAGS are passed to the
# tracer, e.g. --exact-queue-errors or --no-queue-hooks; TRACERS="BACKEND [FLAGS];...": one tracer per entry
# on the same traffic, each checked, lib.sh; the filter tracers then use BACKEND)
# Function backends find a failed enqueue where nf_queue() frees it (source free_location) unless
# --exact-queue-errors hooks nfqnl_enqueue_packet's return (source queue_hook); both must name the queue.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
FLOWS=${2:-20}
trap cleanup EXIT INT TERM

# one datagram per flow from A: every packet is a new conntrack going through the queue
burst() { flow_traffic 4 "$FLOWS" "$1" 1; }

count_events() { # count_events TYPE [CAUSE]
	if [ -n "${2:-}" ]; then
		jq -c "select(.type == \"$1\" and .cause == \"$2\")" "$TRACE_JSON" | wc -l
	else
		events_of_type "$1" | wc -l
	fi
}

case_run() { # case_run NAME LISTENER_ARGS|none SPORT_BASE CHECKS [tracer flags...]: CHECKS once per tracer
	local name=$1 largs=$2 base=$3 checks=$4; shift 4
	TAG=$name
	topo_up && queue_after_nat || { not_ok "$TAG: setup failed"; topo_down; return 1; }
	if [ "$largs" != none ]; then
		# shellcheck disable=SC2086
		start_listener $largs || { not_ok "$TAG: listener did not start"; topo_down; return 1; }
	fi
	QD0=$(nfq_stat queue_dropped) UD0=$(nfq_stat user_dropped) IF0=$(ct_stat insert_failed)
	start_tracers "$@" || { not_ok "$TAG: tracer did not start"; topo_down; return 1; }
	[ -z "${EXTRA_START:-}" ] || $EXTRA_START || { not_ok "$TAG: $EXTRA_START failed"; topo_down; return 1; }
	read -r SENT RECV < <(RECV_IDLE_MS=${RECV_IDLE_MS:-3000} burst "$base")
	sleep 1.5
	# read the queue's counters while its listener is still bound (they vanish with it)
	QD1=$(nfq_stat queue_dropped) UD1=$(nfq_stat user_dropped) IF1=$(ct_stat insert_failed)
	stop_tracers
	[ -z "${EXTRA_STOP:-}" ] || $EXTRA_STOP
	LOST=$((SENT - RECV)) DQD=$((QD1 - QD0)) DUD=$((UD1 - UD0)) DIF=$((IF1 - IF0))
	echo "# $TAG: sent $SENT received $RECV; Δqueue_dropped $DQD Δuser_dropped $DUD Δinsert_failed $DIF"
	check "$TAG: no confirm drops in this case (Δinsert_failed)" "$DIF" 0
	"$checks"
	each_tracer tracer_checks "$name" "$checks"_tracer
	topo_down
}
tracer_checks() { # tracer_checks NAME FUNCTION: the checks of one tracer's report of the case
	TAG="$TLABEL $1"
	check "$TAG: no confirm_drop events" "$(count_events confirm_drop)" 0
	"$2"
}

# Filters, in the kernel: tracers beside the one case 1 checks, on the same traffic, each with a filter that
# must match every packet (all) or none (0). One tracer per filter, started together: one case instead of one
# per filter. Entries: DESCRIPTION|EXPECTED|NETNS (router, or self: another namespace)|FLAGS
FILTER_CASES=(
	"--port $DPORT matches|all|router|--port $DPORT"
	"--port 5999 excludes|0|router|--port 5999"
	"--addr 10.231.1.0/24 matches|all|router|--addr 10.231.1.0/24"
	"--addr 10.231.2.1 (NAT address, reply side) matches|all|router|--addr 10.231.2.1"
	"--addr 192.0.2.0/24 excludes|0|router|--addr 192.0.2.0/24"
	"--addr fd00:231:1::/64 excludes IPv4|0|router|--addr fd00:231:1::/64"
	"--proto udp matches|all|router|--proto udp"
	"--proto tcp excludes|0|router|--proto tcp"
	"--netns of another namespace excludes|0|self|"
)
FILTER_PIDS=()
start_filter_tracers() {
	local i desc want ns flags netns
	FILTER_PIDS=()
	for i in "${!FILTER_CASES[@]}"; do
		IFS='|' read -r desc want ns flags <<<"${FILTER_CASES[$i]}"
		netns=$(netns_inode "$RTR")
		[ "$ns" = self ] && netns=$(stat -L -c %i /proc/self/ns/net)
		# shellcheck disable=SC2086
		"$TRACER" --json --backend "$BACKEND" --netns "$netns" ${TRACER_FLAGS:-} $flags \
			>"$WORK/filter.$i.json" 2>"$WORK/filter.$i.err" &
		FILTER_PIDS+=($!)
	done
	for i in "${!FILTER_PIDS[@]}"; do
		wait_started "${FILTER_PIDS[$i]}" "$WORK/filter.$i.json" "$WORK/filter.$i.err" || return 1
	done
}
stop_filter_tracers() {
	local i
	for i in "${!FILTER_PIDS[@]}"; do kill -INT "${FILTER_PIDS[$i]}" 2>/dev/null; done
	for i in "${!FILTER_PIDS[@]}"; do
		wait "${FILTER_PIDS[$i]}" || not_ok "$BACKEND filter ${FILTER_CASES[$i]%%|*}: tracer exit status $?"
	done
	FILTER_PIDS=()
}
filter_checks() {
	local i desc want ns flags
	for i in "${!FILTER_CASES[@]}"; do
		IFS='|' read -r desc want ns flags <<<"${FILTER_CASES[$i]}"
		[ "$want" = all ] && want=$LOST
		check "$BACKEND filter $desc: verdict_drop events" \
			"$(jq -c 'select(.type == "verdict_drop")' "$WORK/filter.$i.json" | wc -l)" "$want"
		check "$BACKEND filter $desc: no confirm_drop events" \
			"$(jq -c 'select(.type == "confirm_drop")' "$WORK/filter.$i.json" | wc -l)" 0
	done
}
filters=
[ "${FILTERS:-1}" = 0 ] || filters=1

# 1. the listener drops everything (and, with filters, the filter tracers watch the same traffic)
verdict_drop() {
	[ -z "$filters" ] || filter_checks
	check "$TAG: all lost" "$LOST" "$FLOWS"
}
verdict_drop_tracer() {
	local vcause=listener_verdict
	verdict_hooked || vcause=listener_verdict_or_later_hook
	check "$TAG: verdict_drop events ($vcause) == lost" "$(count_events verdict_drop $vcause)" "$LOST"
	check "$TAG: no queue_drop events" "$(count_events queue_drop)" 0
	if verdict_hooked; then
		check "$TAG: verdict drops name queue $QUEUE" \
			"$(events_of_type verdict_drop | jq -r 'select(.queue.num == '"$QUEUE"' and .queue.verdict == "drop"
				and .queue.latency_to == "reinject") | 1' | wc -l)" "$LOST"
	elif queue_hooked; then
		# every packet is a new flow: recorded at enqueue, closed where the reinject function freed it
		check "$TAG: verdict drops name queue $QUEUE, time to the free" \
			"$(events_of_type verdict_drop | jq -r 'select(.queue.num == '"$QUEUE"' and .queue.hook == "postrouting"
				and .queue.latency_to == "free" and .queue.verdict == null) | 1' | wc -l)" "$LOST"
	fi
}
EXTRA_START=${filters:+start_filter_tracers} EXTRA_STOP=${filters:+stop_filter_tracers} \
	case_run "verdict drop" "0 --verdict drop" 41000 verdict_drop

# 2. queue full: 4 slots, held 1 s, a burst of FLOWS
# The receiver counts until RECV_IDLE_MS pass without a datagram, from when it is ready; here the first
# datagram comes only after the send and the 1 s hold. With the default 3 s, one run on 6.1 under TCG
# with kprobes (host heavily loaded) saw all 20 lost and no event for the 4 accepted ones: most likely
# the receiver had given up before they came. 8 s here.
queue_full() {
	check "$TAG: lost == FLOWS - 4" "$LOST" $((FLOWS - 4))
	check "$TAG: Δqueue_dropped == queue-full packets" "$DQD" $((FLOWS - 4))
}
queue_full_tracer() {
	check "$TAG: queue_drop/queue_full events == Δqueue_dropped" "$(count_events queue_drop queue_full)" "$DQD"
	check "$TAG: no other queue_drop causes" "$(count_events queue_drop)" "$DQD"
	check "$TAG: queue_drop events name queue $QUEUE" \
		"$(events_of_type queue_drop | jq -r 'select(.queue.num == '"$QUEUE"') | 1' | wc -l)" "$DQD"
	local qsource=free_location
	[ "$(trace_mode)" = function ] && has_hook enqueue_return && qsource=queue_hook
	check "$TAG: queue_drop events from $qsource" \
		"$(events_of_type queue_drop | jq -r 'select(.source == "'"$qsource"'") | 1' | wc -l)" "$DQD"
}
RECV_IDLE_MS=8000 case_run "queue full" "1000 --maxlen 4" 42000 queue_full

# 3. listener socket overflow: smallest receive buffer, the listener does not read for 1 s
socket_overflow() {
	[ "$DUD" -gt 0 ] && ok "$TAG: the kernel counted user_dropped ($DUD)" || not_ok "$TAG: no user_dropped, case not built"
	check "$TAG: Δuser_dropped == lost" "$DUD" "$LOST"
}
socket_overflow_tracer() {
	check "$TAG: queue_drop/socket_overflow events == Δuser_dropped" "$(count_events queue_drop socket_overflow)" "$DUD"
	check "$TAG: no other queue_drop causes" "$(count_events queue_drop)" "$DUD"
}
# The datagrams that fit in the socket arrive only after the stall: under emulation on a busy host that
# was once more than the receiver's 3 s for a first datagram (all 20 counted lost, 17 user_dropped).
RECV_FIRST_MS=8000 case_run "socket overflow" "0 --rcvbuf 1 --stall-ms 1000" 43000 socket_overflow

# 4. nobody listens on the queue
no_listener() { check "$TAG: all lost" "$LOST" "$FLOWS"; }
no_listener_tracer() { check "$TAG: queue_drop/no_listener events == lost" "$(count_events queue_drop no_listener)" "$LOST"; }
case_run "no listener" none 44000 no_listener

# 5. nobody listens, but the rule says --queue-bypass: nothing is lost
bypass() { check "$TAG: nothing lost" "$LOST" 0; }
bypass_tracer() {
	check "$TAG: no queue_drop events" "$(count_events queue_drop)" 0
	if [ "$(trace_mode)" = function ] && has_hook enqueue_return; then
		check "$TAG: queue_bypass events == sent" "$(count_events queue_bypass no_listener)" "$SENT"
	fi
}
QUEUE_OPTS=--queue-bypass case_run "no listener, bypass" none 45000 bypass

finish
