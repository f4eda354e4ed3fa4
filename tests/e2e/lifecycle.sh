#!/usr/bin/env bash
# Kernel test of the tracer's life cycle:
#   SIGKILL: afterwards no program or link it held is left in the kernel, nothing new is pinned in bpffs;
#   SIGTERM: it ends with a `summary` line and exit status 0, and libbpf said nothing on stderr;
#   SIGINT while it starts (inherited ignored or default): the same summary and status 0;
#   two instances side by side on the same collision traffic: each reports events == Δinsert_failed.
# usage: lifecycle.sh BACKEND [PAIRS]     (root; BACKEND: auto|fentry|kprobe|tracepoint)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
PAIRS=${2:-20}
trap 'cleanup; [ -n "${SECOND_PID:-}" ] && kill "$SECOND_PID" 2>/dev/null' EXIT INT TERM

# The kernel objects a process holds, from its fdinfo: "prog 12" / "link 7" lines.
held_ids() { grep -h -E '^(prog|link)_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{sub(/_id:/, "", $1); print $1, $2}' | sort -u; }
# Of those, the ones still in the kernel.
still_there() {
	local kind id progs links
	progs=$(bpftool -j prog show | jq -r '.[].id') links=$(bpftool -j link show | jq -r '.[].id')
	while read -r kind id; do
		if [ "$kind" = prog ]; then grep -qx "$id" <<<"$progs" && echo "prog $id"; else grep -qx "$id" <<<"$links" && echo "link $id"; fi
	done
	true
}
pinned() { find /sys/fs/bpf -mindepth 1 2>/dev/null | sort; }

topo_up && queue_after_nat && start_listener 200 || { not_ok "setup failed"; finish; exit; }

# SIGKILL
pinned >"$WORK/pinned.0"
start_tracer "$BACKEND" || { not_ok "tracer did not start"; finish; exit; }
held_ids "$TRACER_PID" >"$WORK/held"
[ -s "$WORK/held" ] && ok "the tracer holds $(grep -c prog "$WORK/held") programs and $(grep -c link "$WORK/held") links" ||
	not_ok "cannot see the tracer's programs in its fdinfo"
kill -KILL "$TRACER_PID"
wait "$TRACER_PID" 2>/dev/null
TRACER_PID=
left=
for i in $(seq 50); do # the kernel releases them asynchronously (RCU), give it up to 5 s
	left=$(still_there <"$WORK/held")
	[ -z "$left" ] && break
	sleep 0.1
done
check "SIGKILL: programs and links left in the kernel" "$(echo -n "$left" | grep -c .)" 0
pinned >"$WORK/pinned.1"
check "SIGKILL: new entries under /sys/fs/bpf" "$(comm -13 "$WORK/pinned.0" "$WORK/pinned.1" | wc -l)" 0

# SIGTERM
start_tracer "$BACKEND" || { not_ok "tracer did not start"; finish; exit; }
kill -TERM "$TRACER_PID"
wait "$TRACER_PID"
check "SIGTERM: exit status" "$?" 0
TRACER_PID=
check "SIGTERM: last line is the summary" "$(tail -n 1 "$WORK/trace.json" | jq -r .type)" summary
# A normal start says nothing from libbpf (a refused object BTF once printed 2400 lines here).
check "a normal run writes no libbpf lines to stderr" "$(grep -c '^libbpf:' "$WORK/trace.err")" 0

# A stop signal during the start (the exposer answers before the programs load) ends the run with its summary
# and status 0, whatever disposition it inherited: a script's background job has SIGINT ignored, a shell with
# job control leaves it at default. It used to be lost (the run went on to --duration) or fatal (status 130).
for inherit in ignored default; do
	# explicit both ways: this script's INT trap decides what a plain background job inherits
	pre=(sh -c 'trap "" INT; exec "$@"' sh)
	[ "$inherit" = default ] && pre=(env --default-signal=INT)
	port=$(free_port)
	"${pre[@]}" "$TRACER" --json --backend "$BACKEND" --quiet --metrics-listen "127.0.0.1:$port" --duration 60s \
		>"$WORK/early.json" 2>"$WORK/early.err" &
	early=$!
	for _ in $(seq 400); do curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break; sleep 0.05; done
	kill -INT "$early"
	for _ in $(seq 100); do kill -0 "$early" 2>/dev/null || break; sleep 0.2; done
	kill -0 "$early" 2>/dev/null && { not_ok "SIGINT during the start ($inherit): still running 20 s later"; kill -KILL "$early"; }
	wait "$early"
	check "SIGINT during the start, SIGINT $inherit before: exit status" "$?" 0
	check "SIGINT during the start, SIGINT $inherit before: last line is the summary" \
		"$(tail -n 1 "$WORK/early.json" | jq -r .type 2>/dev/null)" summary
done

# Two instances on the same traffic
rm -f "$WORK/second.json"
"$TRACER" --json --backend "$BACKEND" --netns "$(netns_inode "$RTR")" >"$WORK/second.json" 2>"$WORK/second.err" &
SECOND_PID=$!
start_tracer "$BACKEND" || { not_ok "tracer did not start"; finish; exit; }
for i in $(seq 300); do grep -q '"type":"start"' "$WORK/second.json" 2>/dev/null && break; sleep 0.1; done
if0=$(ct_stat insert_failed)
read -r sent recv < <(pairs_traffic 4 "$PAIRS" 42000 42000)
sleep 1.5
if1=$(ct_stat insert_failed)
stop_tracer || not_ok "first instance exit status"
kill -INT "$SECOND_PID"
wait "$SECOND_PID" || not_ok "second instance exit status"
SECOND_PID=
dif=$((if1 - if0))
check "two instances: Δinsert_failed == pairs" "$dif" "$PAIRS"
check "two instances: first reports every drop" "$(events_of_type confirm_drop | wc -l)" "$dif"
check "two instances: second reports every drop" "$(jq -c 'select(.type == "confirm_drop")' "$WORK/second.json" | wc -l)" "$dif"
finish
