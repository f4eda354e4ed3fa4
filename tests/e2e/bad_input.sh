#!/usr/bin/env bash
# Every flag with a wrong value must give the documented usage exit code (2) and exactly one stderr line
# starting with "ctconfirm-trace:" -- never a crash (exit >= 128), a stack trace, or a trace that starts.
# Runs as root (so that validation, not the root check, is what refuses) and once as nobody.
# Usage: tests/e2e/bad_input.sh   (binary: $CTCT_BUILD/ctconfirm-trace)
set -uo pipefail
CTCT_BUILD=${CTCT_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
TRACER=${TRACER:-$CTCT_BUILD/ctconfirm-trace}
[ "$(id -u)" -eq 0 ] || { echo "bad_input.sh: run as root" >&2; exit 2; }
[ -x "$TRACER" ] || { echo "bad_input.sh: no $TRACER (build first)" >&2; exit 2; }

# One case per line: the arguments as shell words. Add a line per new flag or subcommand.
# Every case expects exit 2; a case that wrongly starts tracing is stopped by the timeout (exit 124).
CASES=$(cat <<'END'
--bogus
-x
frobnicate
--json=maybe
-v=3
--backend
--backend ''
--backend bogus
--backend FENTRY
--backend 'kprobe tracepoint'
--duration
-d ''
-d abc
-d -1s
-d 0
-d 0s
-d 1.5s
-d 10x
-d 1d
-d 1S
-d ' 1s'
-d '1s '
-d 999999999999h
-d 18446744073709551617
-d $'1\n2s'
-d $'1s\e[2J'
--ringbuf-kb
--ringbuf-kb ''
--ringbuf-kb abc
--ringbuf-kb -1
--ringbuf-kb 0
--ringbuf-kb 2
--ringbuf-kb 3
--ringbuf-kb 1000
--ringbuf-kb 4.5
--ringbuf-kb 2097152
--ringbuf-kb 4194304
--ringbuf-kb 2147483648
--ringbuf-kb 4294967296
--ringbuf-kb 99999999999999999999
--netns
--netns ''
--netns abc
--netns -1
--netns 1.5
--netns 4294967296
--netns 99999999999999999999
--netns $'1\n2'
--stats-interval
--stats-interval ''
--stats-interval abc
--stats-interval -1s
--group
--group ''
--group bogus
--group FLOW
--proto
--proto ''
--proto bogus
--proto 256
--proto -1
--addr
--addr ''
--addr 1.2.3
--addr 10.0.0.0/33
--addr 10.0.0.0/-1
--addr 10.0.0.0/
--addr fd00::/129
--addr abc/8
--addr 300.1.1.1
--port
--port ''
--port abc
--port 65536
--port -1
--port 5000-5001
--queue
--queue ''
--queue abc
--queue 65536
--queue -3
--backend tracepoint --queue 3
--no-queue-hooks --queue 3
--no-queue-hooks --exact-queue-errors
--no-queue-hooks --verdict-hook
--verdict-hook=maybe
verify -d 1s --verdict-hook --no-queue-hooks
--exact-queue-errors=maybe
--metrics-listen
--metrics-listen ''
--metrics-listen 9477
--metrics-listen 127.0.0.1
--metrics-listen 127.0.0.1:0
--metrics-listen 127.0.0.1:65536
--metrics-listen localhost:9477
--metrics-listen 300.1.1.1:9477
--metrics-listen ::1:9477
--metrics-listen $'127.0.0.1:9477\n'
--metrics-listen 192.0.2.1:9477
--metrics-textfile ''
--metrics-textfile /nonexistent/dir/ct.prom
--metrics-textfile-interval 0
--metrics-textfile-interval abc
--metrics-netns-label
--quiet=maybe
features --bogus
features --json=maybe
features extra
features --backend kprobe
selftest --bogus
selftest extra
selftest --backend
selftest --backend ''
selftest --backend bogus
selftest --pairs
selftest --pairs ''
selftest --pairs abc
selftest --pairs 0
selftest --pairs -1
selftest --pairs 1001
selftest --pairs 4294967297
selftest --pairs 99999999999999999999
selftest --hold-ms ''
selftest --hold-ms abc
selftest --hold-ms 0
selftest --hold-ms 9
selftest --hold-ms -200
selftest --hold-ms 10001
selftest --hold-ms 4294967306
selftest --hold-ms 1e3
selftest --json=maybe
verify
verify --bogus
verify extra -d 1s
verify -d ''
verify -d abc
verify -d 0
verify -d 1s --max-drops
verify -d 1s --max-drops ''
verify -d 1s --max-drops abc
verify -d 1s --max-drops -3
verify -d 1s --max-drops 1.5
verify -d 1s --max-drops 99999999999999999999
verify -d 1s --port 70000
verify -d 1s --addr nope
verify -d 1s --ringbuf-kb 3
verify -d 1s --netns ''
verify -d 1s --backend tracepoint --queue 1
doctor --bogus
doctor extra
doctor --json=maybe
END
)

PASS=0 FAIL=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# expect_usage_error "label" [runner...] -- args...
run_case() {
	local label=$1; shift
	timeout 20 "$@" >"$work/out" 2>"$work/err" </dev/null
	local rc=$? lines first
	lines=$(wc -l <"$work/err")
	first=$(head -c 200 "$work/err" | head -1)
	if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && [[ $first == ctconfirm-trace:* ]] && [ ! -s "$work/out" ]; then
		PASS=$((PASS + 1)); echo "ok - $label: $first"
	else
		FAIL=$((FAIL + 1))
		echo "not ok - $label: exit $rc, $lines stderr lines, stdout $(wc -c <"$work/out") bytes"
		sed 's/^/    /' "$work/err" | head -5
	fi
}

while IFS= read -r line; do
	[ -n "$line" ] || continue
	eval "args=($line)"
	run_case "$line" "$TRACER" "${args[@]}"
done <<<"$CASES"

# Not root: refused before anything is opened, for the trace and for each subcommand.
nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
for sub in "" features selftest "verify -d 1s"; do
	run_case "as nobody: ${sub:-trace}" "${nobody[@]}" "$TRACER" $sub
done
run_case "as nobody: --json -d 1s" "${nobody[@]}" "$TRACER" --json -d 1s

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
