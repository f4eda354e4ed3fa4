#!/usr/bin/env bash
# Kernel test of the fix-verification workflow and the periodic views:
#   verify exit 1 (drops over --max-drops), 0 (within), 0 (quiet), 3 (kernel counted drops the tracer
#   did not see: a filter excludes them; and interrupted early), 2 (usage); its JSON summary equals the
#   router's Δinsert_failed; stats records carry the kernel's deltas and name the listener process;
#   --group flow gives one row per colliding flow.
# usage: verify.sh BACKEND [PAIRS]     (root)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
PAIRS=${2:-5}
trap cleanup EXIT INT TERM

start_verify() { # start_verify ARGS...: verify --json in the background, output in $WORK/verify.out
	rm -f "$WORK/verify.out"
	"$TRACER" verify --json --backend "$BACKEND" --netns "$(netns_inode "$RTR")" "$@" >"$WORK/verify.out" 2>"$WORK/verify.err" &
	VERIFY_PID=$!
	wait_started "$VERIFY_PID" "$WORK/verify.out" "$WORK/verify.err"
}
verify_summary() { grep '^{' "$WORK/verify.out" | jq -c 'select(.type == "verify")'; }

verify_case() { # verify_case NAME EXPECTED_EXIT PAIRS_TO_SEND verify-args...
	local name=$1 want=$2 pairs=$3; shift 3
	local tag="$BACKEND verify: $name"
	topo_up && queue_after_nat && start_listener 200 || { not_ok "$tag: setup failed"; topo_down; return; }
	local if0 if1 rc
	if0=$(ct_stat insert_failed)
	start_verify "$@" || { not_ok "$tag: did not start"; topo_down; return; }
	[ "$pairs" -gt 0 ] && pairs_traffic 4 "$pairs" 47000 47000 >/dev/null
	wait "$VERIFY_PID"; rc=$?
	if1=$(ct_stat insert_failed)
	check "$tag: exit code" "$rc" "$want"
	check "$tag: one verdict line" "$(grep -c '^verify ' "$WORK/verify.out")" 1
	check "$tag: summary drops == Δinsert_failed" "$(verify_summary | jq -r .drops)" $((if1 - if0))
	SUMMARY=$(verify_summary)
	topo_down
}

verify_case "drops over the threshold" 1 "$PAIRS" --duration 6s --max-drops 0
check "$BACKEND verify: coverage complete when all seen" "$(jq -r .coverage_complete <<<"$SUMMARY")" true
check "$BACKEND verify: confirm_drop seen == pairs" "$(jq -r '.netns[0].seen.confirm_drop' <<<"$SUMMARY")" "$PAIRS"
check "$BACKEND verify: the netns entry names the router" "$(jq -r '.netns[0].netns_info.label' <<<"$SUMMARY")" "netns:$RTR"
verify_case "drops within the threshold" 0 "$PAIRS" --duration 6s --max-drops "$PAIRS"
verify_case "quiet window" 0 0 --duration 3s
verify_case "a filter hides the drops: coverage gap" 3 "$PAIRS" --duration 6s --max-drops 100 --port 5999
check "$BACKEND verify: gap names the netns" "$(jq -r '.netns_with_gaps | length' <<<"$SUMMARY")" 1

# interrupted before --duration: incomplete
topo_up
start_verify --duration 60s && { sleep 1; kill -INT "$VERIFY_PID"; wait "$VERIFY_PID"; check "$BACKEND verify: interrupted early exits 3" "$?" 3; }
topo_down

# usage errors: exit 2, one line
"$TRACER" verify >/dev/null 2>"$WORK/err"; check "$BACKEND verify: no --duration exits 2" "$?" 2
"$TRACER" verify --duration 5s --max-drops -3 >/dev/null 2>"$WORK/err"; check "$BACKEND verify: bad --max-drops exits 2" "$?" 2
check "$BACKEND verify: usage error is one line" "$(wc -l <"$WORK/err")" 1

# stats records and --group flow in one traced run
tag="$BACKEND stats"
topo_up && queue_after_nat && start_listener 200 || not_ok "$tag: setup failed"
if0=$(ct_stat insert_failed)
start_tracer "$BACKEND" --stats-interval 1s --group flow
pairs_traffic 4 "$PAIRS" 48000 48000 >/dev/null
sleep 2.5
stop_tracer
if1=$(ct_stat insert_failed)
n_stats=$(jq -c 'select(.type == "stats")' "$WORK/trace.json" | wc -l)
[ "$n_stats" -ge 3 ] && ok "$tag: a stats record per second ($n_stats)" || not_ok "$tag: only $n_stats stats records"
sum_if=$(jq -s '[.[] | select(.type == "stats") | .netns[].conntrack_delta.insert_failed // 0] | add' "$WORK/trace.json")
check "$tag: Σ stats insert_failed deltas == Δinsert_failed" "$sum_if" $((if1 - if0))
sum_ev=$(jq -s '[.[] | select(.type == "stats") | .events.confirm_drop // 0] | add' "$WORK/trace.json")
last_total=$(jq -s '[.[] | select(.type == "summary")][0].events.confirm_drop' "$WORK/trace.json")
[ "$sum_ev" -le "$last_total" ] && ok "$tag: Σ per-interval confirm_drop ($sum_ev) <= total ($last_total)" || not_ok "$tag: interval counts exceed the total"
comm=$(jq -r 'select(.type == "stats") | .netns[].queues[] | select(.queue == '"$QUEUE"') | .listener.processes[0].comm' "$WORK/trace.json" | tail -n 1)
check "$tag: listener of queue $QUEUE named" "$comm" nfq_hold
pid=$(jq -r 'select(.type == "stats") | .netns[].queues[] | select(.queue == '"$QUEUE"') | .listener.processes[0].pid' "$WORK/trace.json" | tail -n 1)
check "$tag: listener pid" "$pid" "$(head -n 1 "$WORK/nfq.ready")"
check "$tag: --group flow: no per-event lines" "$(events_of_type confirm_drop | wc -l)" 0
check "$tag: --group flow: one row per losing flow" \
	"$(jq -r 'select(.type == "flows") | [.flows[] | select(.losses == 1)] | length' "$WORK/trace.json")" $((if1 - if0))
ino=$(netns_inode "$RTR")
check "$tag: every stats entry of the router names it" "$(jq -s '[.[] | select(.type == "stats") | .netns[] | select(.netns == '"$ino"')]
	| length > 0 and all(.netns_info.label == "netns:'"$RTR"'")' "$WORK/trace.json")" true
check "$tag: --group flow: every row names the router" "$(jq -r 'select(.type == "flows") | .flows | length > 0 and
	all(.netns == '"$ino"' and .netns_info.label == "netns:'"$RTR"'" and .netns_info.names == ["'"$RTR"'"])' "$WORK/trace.json")" true
topo_down

finish
