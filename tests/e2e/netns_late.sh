#!/usr/bin/env bash
# Kernel test: netns the tracer could not seed at its start (tracepoint mode, no --netns filter).
#   born after: the tracer starts, THEN the topology is made; PAIRS colliding pairs ->
#     confirm_drop events in the router netns == its Δinsert_failed, no verdict_drop there, no loss counted.
#     (The seeding cannot know a netns not yet made; its insert_failed started at 0, as the tracer's mark
#     says: once every one of them came out as verdict_drop.)
#   older but hidden: the router netns, its insert_failed already PAIRS, held only by a bind mount outside
#     /run/netns and with no process in it while a second tracer starts; PAIRS more pairs ->
#     its first confirm drop cannot be told (unseeded_unclassified 1, not reported), the rest are
#     confirm_drop events (PAIRS - 1), no verdict_drop there.
# usage: netns_late.sh BACKEND [PAIRS]    (root; BACKEND tracepoint, or auto where that picks it)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
PAIRS=${2:-5}
HOLD_MS=200
HIDDEN=$WORK/rtr.netns
trap 'umount "$HIDDEN" 2>/dev/null; cleanup' EXIT INT TERM

start_unfiltered() { # like start_tracer, without --netns: every netns, seeded or not
	rm -f "$WORK/trace.json" "$WORK/trace.err"
	"$TRACER" --json --backend "$BACKEND" >"$WORK/trace.json" 2>"$WORK/trace.err" &
	TRACER_PID=$!
	wait_started "$TRACER_PID" "$WORK/trace.json" "$WORK/trace.err" || { TRACER_PID=; return 1; }
}
in_rtr() { jq -c --argjson ns "$ino" "select(.type == \"$1\" and .netns == \$ns)" "$WORK/trace.json" | wc -l; }
loss() { jq -r "select(.type == \"summary\") | .losses.$1" "$WORK/trace.json"; }

# --- born after the start
start_unfiltered || { not_ok "$BACKEND: tracer did not start: $(cat "$WORK/trace.err")"; finish; exit; }
if [ "$(trace_mode)" != tracepoint ]; then
	echo "# SKIP: $BACKEND is not tracepoint mode here (no baselines to test)"
	finish
	exit
fi
topo_up && queue_after_nat && start_listener $HOLD_MS || { not_ok "setup failed"; finish; exit; }
ino=$(netns_inode "$RTR")
if0=$(ct_stat insert_failed)
read -r sent recv < <(pairs_traffic 4 "$PAIRS" 40000 40000)
dif1=$(($(ct_stat insert_failed) - if0))
sleep 1.5 # a drop not freed yet would be swept after 1 s
stop_tracer || not_ok "$BACKEND: tracer exit status $?"
check "born after: packets lost == pairs" "$((sent - recv))" "$PAIRS"
check "born after: Δinsert_failed == lost" "$dif1" "$PAIRS"
check "born after: confirm_drop events in the router netns == Δinsert_failed" "$(in_rtr confirm_drop)" "$dif1"
check "born after: no verdict_drop in the router netns" "$(in_rtr verdict_drop)" 0
# other sessions' netns are either seeded (there at the start) or born after it: none is unclassified
check "born after: nothing unclassified" "$(loss unseeded_unclassified)" 0

# --- older than the start, out of the seeding's sight
kill "$LISTENER_PID" && wait "$LISTENER_PID" 2>/dev/null
LISTENER_PID=
touch "$HIDDEN" && mount --bind "/run/netns/$RTR" "$HIDDEN" && umount "/run/netns/$RTR" && rm -f "/run/netns/$RTR" ||
	{ not_ok "cannot hide the router netns"; finish; exit; }
start_unfiltered || { not_ok "$BACKEND: second tracer did not start: $(cat "$WORK/trace.err")"; finish; exit; }
touch "/run/netns/$RTR" && mount --bind "$HIDDEN" "/run/netns/$RTR" && umount "$HIDDEN" ||
	{ not_ok "cannot bring the router netns back"; finish; exit; }
check "hidden: the same router netns" "$(netns_inode "$RTR")" "$ino"
check "hidden: its insert_failed before == the first part's" "$(ct_stat insert_failed)" "$((if0 + dif1))"
start_listener $HOLD_MS || { not_ok "listener setup failed"; finish; exit; }
if0=$(ct_stat insert_failed)
read -r sent recv < <(pairs_traffic 4 "$PAIRS" 42000 42000)
dif2=$(($(ct_stat insert_failed) - if0))
sleep 1.5
stop_tracer || not_ok "$BACKEND: second tracer exit status $?"
check "hidden: Δinsert_failed == pairs" "$dif2" "$PAIRS"
check "hidden: the first drop unclassified (counted as a loss)" "$(loss unseeded_unclassified)" 1
check "hidden: confirm_drop events == Δinsert_failed - 1" "$(in_rtr confirm_drop)" "$((dif2 - 1))"
check "hidden: no verdict_drop in the router netns" "$(in_rtr verdict_drop)" 0
finish
