#!/usr/bin/env bash
# How long a tracer run takes around its work: exec to the "start" line (probe, load, attach, seeding) and
# the whole run of --duration 100ms (start plus detach and exit), per backend, for one or more builds
# taken in turns in one run; prints medians and, with two builds, the second over the first.
# usage: start_time.sh ROUNDS BACKEND...    (root; CTCT_BUILDS="DIR [DIR2]", default $CTCT_BUILD)
# In a VM: scripts/vm/run.sh --kernel 6.12 --out /tmp/vm --env CTCT_BUILDS="$OLD $NEW" -- bench/start_time.sh 5 fentry kprobe tracepoint
set -uo pipefail
ROUNDS=${1:?rounds}
shift
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || { echo "usage: start_time.sh ROUNDS BACKEND..." >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "start_time.sh: ROUNDS must be a positive integer, not '$ROUNDS'" >&2; exit 2; }
read -r -a BUILDS <<<"${CTCT_BUILDS:-${CTCT_BUILD:?CTCT_BUILD or CTCT_BUILDS}}"
for b in "${BUILDS[@]}"; do
	[ -x "$b/ctconfirm-trace" ] || { echo "start_time.sh: no $b/ctconfirm-trace" >&2; exit 2; }
done
# the functions' modules, as the first rule would load them
modprobe -a nf_conntrack nfnetlink_queue 2>/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
now() { date +%s%N; }

# one_run BIN BACKEND: prints "START_MS TOTAL_MS"
one_run() {
	local t0 t1 t2 pid
	rm -f "$out/run.json"
	t0=$(now)
	"$1" --json --quiet --backend "$2" --duration 100ms >"$out/run.json" 2>"$out/run.err" &
	pid=$!
	t1=
	while kill -0 "$pid" 2>/dev/null; do
		if [ -z "$t1" ] && grep -q '"type":"start"' "$out/run.json" 2>/dev/null; then t1=$(now); fi
		sleep 0.01
	done
	wait "$pid" || { echo "start_time.sh: $1 --backend $2 failed: $(head -c 300 "$out/run.err")" >&2; return 1; }
	t2=$(now)
	[ -n "$t1" ] || t1=$t2
	echo "$(((t1 - t0) / 1000000)) $(((t2 - t0) / 1000000))"
}
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

for be in "${BACKENDS[@]}"; do
	for r in $(seq "$ROUNDS"); do
		for i in "${!BUILDS[@]}"; do
			# alternate which build goes first, so that a trend over the run falls on both
			k=$(((r % 2) ? i : ${#BUILDS[@]} - 1 - i))
			one_run "${BUILDS[$k]}/ctconfirm-trace" "$be" >>"$out/$be.$k" || exit 1
		done
	done
	line="$be:"
	for i in "${!BUILDS[@]}"; do
		s[i]=$(cut -d' ' -f1 "$out/$be.$i" | median) t[i]=$(cut -d' ' -f2 "$out/$be.$i" | median)
		line+=" build$((i + 1)) start ${s[i]} ms, run ${t[i]} ms;"
	done
	if [ ${#BUILDS[@]} -eq 2 ]; then
		line+=$(awk -v a="${s[0]}" -v b="${s[1]}" -v c="${t[0]}" -v d="${t[1]}" \
			'BEGIN {printf " build2/build1: start %.2f, run %.2f", b / a, d / c}')
	fi
	echo "$line"
done
