#!/usr/bin/env bash
# A kernel that lacks something: each case must give one line on stderr that names what is missing (and
# what still works), a documented exit code, and no crash.
#   no BTF: /sys/kernel/btf hidden by an empty tmpfs in a private mount namespace (what libbpf and the
#     tool see on a kernel built without CONFIG_DEBUG_INFO_BTF): trace, verify and features exit 2 with
#     one line; doctor, which needs no BPF, still works (exit 0).
#   netfilter modules not loaded (Debian's kernels before the first rule; run first in the VM): the
#     function backends exit 2 naming the module; auto falls back to tracepoint mode and says why.
#     Skipped where nf_conntrack is built in or already loaded (the host).
# usage: missing.sh    (root)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
trap cleanup EXIT INT TERM

one_line() { # one_line TAG EXPECTED_RC PATTERN CMD...: exit code, exactly one stderr line, matching PATTERN
	local tag=$1 want=$2 pat=$3 rc
	shift 3
	"$@" >"$WORK/out" 2>"$WORK/err"
	rc=$?
	check "$tag: exit code" "$rc" "$want"
	check "$tag: one line on stderr" "$(wc -l <"$WORK/err")" 1
	check "$tag: the line names it ($pat)" "$(grep -c -- "$pat" "$WORK/err")" 1
	echo "# $tag: $(head -c 300 "$WORK/err")"
}

# No BTF. The tmpfs lives in the unshared mount namespace only.
nobtf() { unshare -m sh -c 'mount -t tmpfs ctct-nobtf /sys/kernel/btf && exec "$@"' sh "$@"; }
one_line "no BTF: trace" 2 "no BTF.*doctor still works" nobtf "$TRACER" --json
one_line "no BTF: verify" 2 "no BTF" nobtf "$TRACER" verify --duration 1s
one_line "no BTF: features" 2 "no BTF" nobtf "$TRACER" features
nobtf "$TRACER" doctor >"$WORK/out" 2>"$WORK/err"
check "no BTF: doctor still works (exit code)" "$?" 0
check "no BTF: doctor printed a report" "$([ -s "$WORK/out" ] && echo yes)" yes

if [ -e /sys/module/nf_conntrack ]; then
	echo "# skip: nf_conntrack is loaded or built in here (the VM runs this first, before any rule)"
else
	one_line "nf_conntrack not loaded: --backend fentry" 2 "module nf_conntrack is not loaded" \
		"$TRACER" --json --backend fentry
	one_line "nf_conntrack not loaded: --backend kprobe" 2 "module nf_conntrack is not loaded" \
		"$TRACER" --json --backend kprobe
	# auto: tracepoint mode, which sees conntrack once it is loaded; the start line says why
	"$TRACER" --json --backend auto >"$WORK/trace.json" 2>"$WORK/trace.err" &
	TRACER_PID=$!
	if wait_started "$TRACER_PID" "$WORK/trace.json" "$WORK/trace.err"; then
		check "nf_conntrack not loaded: auto falls back to tracepoint mode" "$(trace_mode)" tracepoint
		check "nf_conntrack not loaded: auto's notes name the module" \
			"$(jq -r 'select(.type == "start") | .notes[]' "$WORK/trace.json" | grep -c "module nf_conntrack is not loaded")" 1
		stop_tracer
		check "nf_conntrack not loaded: auto exits 0 on SIGINT" "$?" 0
	else
		TRACER_PID=
		not_ok "nf_conntrack not loaded: auto did not start"
	fi
fi
finish
