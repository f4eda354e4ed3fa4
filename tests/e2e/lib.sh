# Shared pieces of the kernel tests: a private topology, the collision traffic, the kernel's counters.
# Sourced by the test scripts. All traffic stays inside the namespaces created here.
#
#   cli (10.231.1.2 + .3, fd00:231:1::2 + ::3) -- rtr (MASQUERADE, NFQUEUE after NAT) -- srv (10.231.2.2)
#
# The queue sits at postrouting priority 200, after SNAT (100): SNAT of a second new flow cannot see the
# first (still unconfirmed, in userspace), so two flows from A:p and B:p both become rtr:p -> srv:5000
# and the later one loses at __nf_conntrack_confirm.

CTCT_BUILD=${CTCT_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
TRACER=${TRACER:-$CTCT_BUILD/ctconfirm-trace}
HELPERS=${HELPERS:-$CTCT_BUILD/tests/helpers}
NS=ctct$$
CLI=$NS-cli RTR=$NS-rtr SRV=$NS-srv
QUEUE=${QUEUE:-3}
DPORT=5000
# In a VM, keep the evidence on the results share.
WORK=$(mktemp -d "${VM_OUT:-/tmp}/ctct-e2e.XXXXXX")
PASS=0 FAIL=0

# nsenter, not ip netns exec: that also makes a mount namespace and mounts a new /sys, a cost each time
# (about 0.15 s under emulation) and a number taken from the pool namespaces share
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
check() { # check "description" actual expected
	if [ "$2" = "$3" ]; then ok "$1 ($2)"; else not_ok "$1: got $2, expected $3"; fi
}
finish() {
	echo "$PASS passed, $FAIL failed"
	[ "$FAIL" -eq 0 ]
}

load_modules() {
	# Debian kernels build netfilter as modules; the CI kernel has it built in (modprobe then fails quietly).
	for m in nf_conntrack nf_nat nfnetlink_queue nf_tables nft_chain_nat nft_masq nft_compat xt_NFQUEUE \
		 nf_conntrack_ipv4 nf_conntrack_ipv6 veth; do
		modprobe -q "$m" 2>/dev/null || true
	done
}

# Fixed MAC addresses: static neighbours need no lookup; one ip per namespace (-batch) sets it up.
topo_up() {
	load_modules
	for n in $CLI $RTR $SRV; do [ -e "/run/netns/$n" ] || ip netns add "$n"; done # netns_reuse.sh makes RTR
	ip link add c0 netns "$CLI" address 02:31:01:00:00:02 type veth peer name r0 netns "$RTR" address 02:31:01:00:00:01
	ip link add s0 netns "$SRV" address 02:31:02:00:00:02 type veth peer name r1 netns "$RTR" address 02:31:02:00:00:01
	# Static neighbours: no ARP/ND round trip delays the first packet of a burst.
	ip -n "$CLI" -batch - <<IP
addr add 10.231.1.2/24 dev c0
addr add 10.231.1.3/24 dev c0
addr add fd00:231:1::2/64 dev c0 nodad
addr add fd00:231:1::3/64 dev c0 nodad
link set lo up
link set c0 up
route add default via 10.231.1.1
route add default via fd00:231:1::1
neigh replace 10.231.1.1 lladdr 02:31:01:00:00:01 dev c0
neigh replace fd00:231:1::1 lladdr 02:31:01:00:00:01 dev c0
IP
	ip -n "$RTR" -batch - <<IP
addr add 10.231.1.1/24 dev r0
addr add fd00:231:1::1/64 dev r0 nodad
addr add 10.231.2.1/24 dev r1
addr add fd00:231:2::1/64 dev r1 nodad
link set lo up
link set r0 up
link set r1 up
neigh replace 10.231.2.2 lladdr 02:31:02:00:00:02 dev r1
neigh replace fd00:231:2::2 lladdr 02:31:02:00:00:02 dev r1
IP
	ip -n "$SRV" -batch - <<IP
addr add 10.231.2.2/24 dev s0
addr add fd00:231:2::2/64 dev s0 nodad
link set lo up
link set s0 up
route add default via 10.231.2.1
route add default via fd00:231:2::1
IP
	in_ns "$RTR" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	in_ns "$RTR" nft -f - <<NFT
table inet ctct_nat {
	chain post { type nat hook postrouting priority srcnat; oifname "r1" masquerade; }
}
NFT
}

# The xt NFQUEUE target inside an nft base chain at priority 200 (after SNAT): iptables-nft builds the
# rule in its own user chain (it refuses non-standard base chains), nft jumps to it. This works where
# the nft queue statement is missing (CONFIG_NFT_QUEUE off) and on Debian's kernels alike.
queue_after_nat() {
	local fam ipt
	for fam in ip ip6; do
		ipt=iptables-nft-restore
		[ $fam = ip6 ] && ipt=ip6tables-nft-restore
		in_ns "$RTR" $ipt --noflush <<IPT || return 1
*mangle
:CTCTQ - [0:0]
-A CTCTQ -p udp --dport $DPORT -j NFQUEUE --queue-num $QUEUE ${QUEUE_OPTS:-}
COMMIT
IPT
	done
	in_ns "$RTR" nft -f - <<NFT
add chain ip mangle ctct_post { type filter hook postrouting priority 200; }
add rule ip mangle ctct_post jump CTCTQ
add chain ip6 mangle ctct_post { type filter hook postrouting priority 200; }
add rule ip6 mangle ctct_post jump CTCTQ
NFT
}

# An ordinary rule DROP after the queue: frees the same kind of skb at the same place as a clash loss.
drop_after_queue() { # drop_after_queue SPORT_FROM SPORT_TO
	in_ns "$RTR" nft -f - <<NFT
table inet ctct_drop {
	chain post { type filter hook postrouting priority 300; udp sport $1-$2 udp dport $DPORT drop; }
}
NFT
}

topo_down() {
	[ -n "${LISTENER_PID:-}" ] && kill "$LISTENER_PID" 2>/dev/null && wait "$LISTENER_PID" 2>/dev/null
	LISTENER_PID=
	for n in $CLI $RTR $SRV; do ip netns del "$n" 2>/dev/null; done
	true
}

cleanup() {
	[ -n "${TRACER_PID:-}" ] && kill -INT "$TRACER_PID" 2>/dev/null && wait "$TRACER_PID" 2>/dev/null
	local p
	for p in "${TRACER_PIDS[@]}"; do kill -INT "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	[ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
	[ -n "${TRACE_FIFO:-}" ] && rm -f "$TRACE_FIFO"
	topo_down
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

start_listener() { # start_listener HOLD_MS [extra nfq_hold flags]
	local hold=$1; shift
	rm -f "$WORK/nfq.ready"
	nsenter --net="/run/netns/$RTR" ${LISTENER_WRAP:-} "$HELPERS/nfq_hold" --queue "$QUEUE" --hold-ms "$hold" --ready-file "$WORK/nfq.ready" "$@" \
		2>"$WORK/nfq.log" &
	LISTENER_PID=$!
	wait_for_file "$WORK/nfq.ready" || { echo "nfq_hold did not start: $(cat "$WORK/nfq.log")" >&2; return 1; }
}

wait_for_file() { local i; for i in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }

free_port() { # a port nothing listens on (TCP, any address)
	local p i
	for i in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		ss -Htln "sport = :$p" | grep -q . || { echo $p; return 0; }
	done
	return 1
}

netns_inode() { in_ns "$1" stat -L -c %i /proc/self/ns/net; }

# Sum of one column of the rtr netns' /proc/net/stat/nf_conntrack (hex per CPU rows). Empty if absent.
ct_stat() {
	local col=$1 idx=0 i sum=0 line
	local -a words
	{
		read -r -a words
		for i in "${!words[@]}"; do [ "${words[$i]}" = "$col" ] && idx=$((i + 1)); done
		[ $idx -gt 0 ] || return 0
		while read -r -a words; do sum=$((sum + 16#${words[$((idx - 1))]})); done
	} < <(in_ns "$RTR" cat /proc/net/stat/nf_conntrack)
	echo $sum
}

# One column of the router's /proc/net/netfilter/nfnetlink_queue line for $QUEUE (0 if not bound):
# queue_dropped (queue full) or user_dropped (listener socket full).
nfq_stat() {
	local col
	case $1 in queue_dropped) col=6 ;; user_dropped) col=7 ;; queue_total) col=3 ;; *) return 1 ;; esac
	in_ns "$RTR" awk -v q="$QUEUE" -v c="$col" '$1 == q { v = $c } END { print v + 0 }' /proc/net/netfilter/nfnetlink_queue
}

# Addresses of the topology by family: sets A, B (client addresses) and DST (server).
family_addrs() {
	if [ "$1" = 6 ]; then A=fd00:231:1::2 B=fd00:231:1::3 DST=fd00:231:2::2; else A=10.231.1.2 B=10.231.1.3 DST=10.231.2.2; fi
}

# send_traffic FAMILY COUNT < lines "SRC SPORT": one socket per line, COUNT datagrams each, to DST:DPORT,
# all from one process (a burst). Records every flow in $WORK/sent.flows and prints "sent received"
# (received: counted by the server until it is idle for 3 s).
send_traffic() {
	family_addrs "$1"
	rm -f "$WORK/recv.out"
	# the receiver stops after RECV_IDLE_MS without a datagram, counted from when it is ready: a case
	# whose listener holds packets must allow for the hold plus the send (slow under emulation)
	# (RECV_FIRST_MS: how long the first datagram may take, where the test knows some must arrive)
	in_ns "$SRV" "$HELPERS/udp_burst" recv "$DST" $DPORT "${RECV_IDLE_MS:-3000}" "${RECV_FIRST_MS:-${RECV_IDLE_MS:-3000}}" >"$WORK/recv.out" &
	local rpid=$! i src sport sent
	local -a sources=()
	for i in $(seq 50); do grep -q ready "$WORK/recv.out" 2>/dev/null && break; sleep 0.1; done
	: >"$WORK/sent.flows"
	while read -r src sport; do
		sources+=("$src,$sport")
		echo "$src $sport $DST $DPORT" >>"$WORK/sent.flows"
	done
	sent=$(in_ns "$CLI" "$HELPERS/udp_burst" sendmany "$DST" $DPORT "$2" "${sources[@]}")
	wait "$rpid"
	echo "${sent:-0} $(tail -n 1 "$WORK/recv.out")"
}

# pairs_traffic FAMILY PAIRS SPORT_BASE_A SPORT_BASE_B: each pair is one datagram from A and one from B.
pairs_traffic() {
	local i
	family_addrs "$1"
	for i in $(seq 0 $(($2 - 1))); do echo "$A $(($3 + i))"; echo "$B $(($4 + i))"; done | send_traffic "$1" 1
}

# flow_traffic FAMILY FLOWS SPORT_BASE COUNT: FLOWS flows from A, COUNT datagrams each from one socket.
flow_traffic() {
	local i
	family_addrs "$1"
	for i in $(seq 0 $(($2 - 1))); do echo "$A $(($3 + i))"; done | send_traffic "$1" "$4"
}

start_tracer() { # start_tracer BACKEND [flags]: JSON lines to $WORK/trace.json, only the router's netns
	# (or $TRACE_NETNS); $TRACER_FLAGS are added to every start (e.g. --no-queue-hooks)
	local backend=$1; shift
	# The background child truncates the file only when it gets to run; remove it here so the wait
	# below cannot see the previous run's start line (it did: drops were sent before the attach).
	rm -f "$WORK/trace.json" "$WORK/trace.err"
	# $TRACER_SINK (a command): the tracer writes into a pipe that this command copies to trace.json (the
	# FIFO in /tmp: $WORK is a 9p share in the VMs, which has none)
	local out="$WORK/trace.json"
	SINK_PID=
	if [ -n "${TRACER_SINK:-}" ]; then
		out=$(mktemp -u /tmp/ctct-trace.XXXXXX) && mkfifo "$out" || return 1
		TRACE_FIFO=$out
		$TRACER_SINK <"$out" >"$WORK/trace.json" &
		SINK_PID=$!
	fi
	# shellcheck disable=SC2086
	"$TRACER" --json --backend "$backend" --netns "${TRACE_NETNS:-$(netns_inode "$RTR")}" ${TRACER_FLAGS:-} "$@" \
		>"$out" 2>"$WORK/trace.err" &
	TRACER_PID=$!
	wait_started "$TRACER_PID" "$WORK/trace.json" "$WORK/trace.err" || { TRACER_PID=; return 1; }
}

wait_started() { # wait_started PID OUT ERR: until OUT has the start line (30 s), or the process died
	local i
	for i in $(seq 300); do
		grep -q '"type":"start"' "$2" 2>/dev/null && return 0
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	echo "$(basename "$TRACER") did not start: $(cat "$3")" >&2
	return 1
}

stop_tracer() {
	kill -INT "$TRACER_PID"
	wait "$TRACER_PID"
	local rc=$?
	TRACER_PID=
	[ -z "${SINK_PID:-}" ] || wait "$SINK_PID"
	SINK_PID=
	[ -z "${TRACE_FIFO:-}" ] || rm -f "$TRACE_FIFO"
	TRACE_FIFO=
	TRACE_N=$((${TRACE_N:-0} + 1))
	cp "$WORK/trace.json" "$WORK/trace.$TRACE_N.json" # kept with KEEP=1 for a failing run
	return $rc
}

# Tracers side by side: TRACERS="BACKEND [FLAGS];BACKEND [FLAGS];..." runs one tracer per entry on the same
# traffic, each with its own output ($WORK/trace.tI.json); the test's checks then run once per entry
# (each_tracer). Unset: one tracer, the test's BACKEND with $TRACER_FLAGS. One traffic run then tests every
# backend and flag set that the kernel offers, instead of one run each: the kernel counts once, and each
# tracer must account for that count by itself.
tracer_entries() { # the entries, one per line
	if [ -n "${TRACERS:-}" ]; then tr ';' '\n' <<<"$TRACERS" | sed '/^ *$/d'; else echo "$BACKEND ${TRACER_FLAGS:-}"; fi
}
TRACER_PIDS=()
start_tracers() { # start_tracers [flags for every tracer]
	local i=0 entry backend flags netns
	TRACER_PIDS=() TRACER_LABELS=()
	netns=${TRACE_NETNS:-$(netns_inode "$RTR")}
	while read -r backend flags; do
		rm -f "$WORK/trace.t$i.json" "$WORK/trace.t$i.err"
		# shellcheck disable=SC2086
		"$TRACER" --json --backend "$backend" --netns "$netns" $flags "$@" \
			>"$WORK/trace.t$i.json" 2>"$WORK/trace.t$i.err" &
		TRACER_PIDS+=($!)
		TRACER_LABELS+=("$(echo "$backend $flags" | sed 's/ *$//')")
		i=$((i + 1))
	done < <(tracer_entries)
	for i in "${!TRACER_PIDS[@]}"; do
		wait_started "${TRACER_PIDS[$i]}" "$WORK/trace.t$i.json" "$WORK/trace.t$i.err" || {
			for i in "${TRACER_PIDS[@]}"; do kill -INT "$i" 2>/dev/null && wait "$i" 2>/dev/null; done
			TRACER_PIDS=()
			return 1
		}
	done
}
stop_tracers() { # SIGINT to all, then each one's exit status checked
	local i rc
	for i in "${!TRACER_PIDS[@]}"; do kill -INT "${TRACER_PIDS[$i]}" 2>/dev/null; done
	for i in "${!TRACER_PIDS[@]}"; do
		wait "${TRACER_PIDS[$i]}"
		rc=$?
		[ $rc = 0 ] || not_ok "${TRACER_LABELS[$i]}: tracer exit status $rc ($(head -c 300 "$WORK/trace.t$i.err"))"
		TRACE_N=$((${TRACE_N:-0} + 1))
		cp "$WORK/trace.t$i.json" "$WORK/trace.$TRACE_N.json" # kept with KEEP=1 for a failing run
	done
	TRACER_PIDS=()
}
each_tracer() { # each_tracer FUNCTION [ARGS]: FUNCTION once per tracer, with TRACE_JSON and TLABEL set
	local i
	for i in "${!TRACER_LABELS[@]}"; do
		TRACE_JSON=$WORK/trace.t$i.json TLABEL=${TRACER_LABELS[$i]} "$@"
	done
}

events_of_type() { jq -c "select(.type == \"$1\")" "${TRACE_JSON:-$WORK/trace.json}"; }

# The mode the tracer reported in its start line: function or tracepoint. (jq -e on a stream of lines
# exits 4 in jq 1.6 even when the match printed true, so compare text.)
trace_mode() { jq -r 'select(.type == "start") | .mode' "${TRACE_JSON:-$WORK/trace.json}"; }
# function mode with the queue path hooked (not --no-queue-hooks): drops of new flows' packets name their
# queue and time in it
queue_hooked() { [ "$(trace_mode)" = function ] && has_hook enqueue; }
# ... and the listener's verdicts are seen (--verdict-hook): a verdict drop is told from a later hook's
verdict_hooked() { [ "$(trace_mode)" = function ] && has_hook reinject; }
has_hook() { [ "$(jq -r --arg h "$1" 'select(.type == "start") | [.hooks[].hook] | index($h) != null' "${TRACE_JSON:-$WORK/trace.json}")" = true ]; }
