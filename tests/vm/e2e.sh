#!/bin/bash
# End-to-end tests on a real distribution kernel: run INSIDE the VM via scripts/vm/run.sh.
# Every backend this kernel offers (fentry, kprobe, tracepoint) runs the same kernel tests as the host.
# Ends with "N passed, N failed" counting the suites; exit 0 only if all passed.
# usage (host): scripts/vm/run.sh --kernel 6.12 --out DIR -- tests/vm/e2e.sh [RUNS] [PAIRS] [all|smoke|kernel[+SUITE,...]]
# all (default): every suite. smoke: for a kernel flavour (-rt, -cloud) that differs from a fully tested one
# in config and locking only: auto's choice, selftest with every backend, one confirm-drop run (every
# backend's tracer on its traffic). kernel: the suites whose outcome depends on the kernel (its hooks,
# reinject, clash resolution, counters, netns numbering); +SUITE adds suites that test the tracer's own
# logic with fentry (doctor, portable, verify, metrics, lifecycle, flood): scripts/test.sh gives each of
# them to one of the two full kernels rather than both, each asserting the same kernel counters there.
set -uo pipefail
: "${VM_OUT:?run me via scripts/vm/run.sh}"
here=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-1}
PAIRS=${2:-20}
PROFILE=${3:-all}
SMOKE=$([ "$PROFILE" = smoke ] && echo 1 || echo 0)
case $PROFILE in
all) EXTRA=doctor,portable,verify,metrics,lifecycle,flood ;;
smoke | kernel) EXTRA= ;;
kernel+*) EXTRA=${PROFILE#kernel+} ;;
*) echo "e2e.sh: unknown profile '$PROFILE' (all, smoke, kernel, kernel+SUITE,...)" >&2; exit 2 ;;
esac
for s in ${EXTRA//,/ }; do
	case $s in doctor | portable | verify | metrics | lifecycle | flood) ;; *) echo "e2e.sh: unknown suite '$s'" >&2; exit 2 ;; esac
done
with() { [[ ",$EXTRA," == *",$1,"* ]]; }
TRACER=${CTCT_BUILD:-$here/../build}/ctconfirm-trace
passed=0 failed=0
suite() { # suite NAME COMMAND...
	local name=$1; shift
	local t0=$SECONDS
	echo "=== $(uname -r): $name"
	if "$@"; then passed=$((passed + 1)); echo "=== $name: PASS ($((SECONDS - t0)) s)"; else failed=$((failed + 1)); echo "=== $name: FAIL ($((SECONDS - t0)) s)"; fi
}

# A real kernel has kprobes and BPF trampolines: auto must choose fentry for the confirm step. Other
# hooks may fall back per hook (6.1: nf_ct_resolve_clash has no BTF, so neither fentry nor a trusted
# kprobe); the report says which, and why.
auto_is_fentry() {
	modprobe -a nf_conntrack nfnetlink_queue || return 1
	local f
	f=$("$TRACER" features --json) || return 1
	echo "$f" | jq -c '{kernel, module_btf, lockdown, auto: [.auto.hooks[] | "\(.hook)=\(.attach):\(.function)"], notes: .auto.notes}'
	[ "$(echo "$f" | jq -r '.auto.mode')" = function ] &&
		[ "$(echo "$f" | jq -r '[.auto.hooks[] | select(.hook | test("^(confirm|confirm_return|enqueue|reinject)$")) | .attach] | unique | join(",")')" = fentry ]
}

# The program on every queued packet loads through bpf_rdonly_cast() where the kernel has that kfunc (6.2+):
# the kprobe backend the entry's fields and the conntrack's status, fentry the status (a one-way flow's
# packets are IP_CT_NEW and need it); else through bpf_probe_read_kernel(). The one the kernel runs is the
# one its BTF allows. usage: enqueue_program fentry|kprobe
enqueue_program() {
	local backend=$1 want=enqueue_$1 out pid names
	# grep -c reads to the end: grep -q would leave bpftool a SIGPIPE, a failed pipeline under pipefail
	[ "$(bpftool btf dump file /sys/kernel/btf/vmlinux | grep -c "FUNC 'bpf_rdonly_cast'")" -gt 0 ] &&
		want=${want}_cast
	out=$(mktemp -d)
	"$TRACER" --backend "$backend" --json >"$out/trace.json" 2>"$out/err" &
	pid=$!
	for _ in $(seq 300); do grep -q '"type":"start"' "$out/trace.json" 2>/dev/null && break; sleep 0.1; done
	names=$(grep -h '^prog_id:' /proc/$pid/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u |
		while read -r id; do bpftool -j prog show id "$id" | jq -r .name; done | grep "^enqueue_$backend")
	kill -INT $pid; wait $pid
	echo "want $want, loaded: ${names:-none} ($(head -c 300 "$out/err"))"
	rm -rf "$out"
	# the kernel keeps 15 characters of a program's name (enqueue_kprobe_cast is enqueue_kprobe_), bpftool
	# shows the whole one from BTF where it can
	case $want in
	*_cast) [[ $names == "enqueue_${backend}_"* ]] ;;
	*) [ "$names" = "$want" ] ;;
	esac
}

# The portable binary (scripts/build-static.sh) where no library is installed: features and a tracepoint
# selftest in a chroot (tests/e2e/portable.sh). Asked for and not built is a failed suite, not a skip. Not
# in smoke mode: the binary and the syscalls it makes are the same on a flavour.
STATIC_BIN=${CTCT_STATIC_BIN:-${CTCT_BUILD:-$here/../build}/static/ctconfirm-trace}
portable() {
	suite "portable binary in a chroot with no library" bash "$here/e2e/portable.sh" "$STATIC_BIN"
}

if [ "$SMOKE" = 1 ]; then
	suite "features: auto picks fentry for the confirm and queue hooks" auto_is_fentry
	for backend in fentry kprobe tracepoint; do
		suite "$backend: selftest" bash "$here/e2e/selftest.sh" "$backend" 1
	done
	suite "fentry, kprobe, tracepoint: confirm drops (one IPv4 run)" env ONE_RUN=1 TRACERS="fentry;kprobe;tracepoint" \
		bash "$here/e2e/confirm_drop.sh" fentry 1 "$PAIRS"
	echo "$(uname -r): $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
fi

# first, before anything loads the netfilter modules: what a kernel without them (or without BTF) says
suite "missing: no BTF, netfilter modules not loaded" bash "$here/e2e/missing.sh"
suite "features: auto picks fentry for the confirm and queue hooks" auto_is_fentry
# doctor needs no BPF: once, where it runs (both kernels have nft's queue statement, the host does not)
with doctor && suite "doctor: rules, placement, risk, listener" bash "$here/e2e/doctor.sh"
with portable && portable
for backend in fentry kprobe; do
	suite "$backend: the enqueue program loads through bpf_rdonly_cast where the kernel has it" \
		enqueue_program $backend
done
# The backends and flag sets as tracers side by side on the same traffic (TRACERS, tests/e2e/lib.sh): the
# kernel counts once per run and each tracer must account for it alone. One traffic run per case instead of
# one per tracer, the cost under emulation being mostly the topology, the traffic and its waits.
# --verdict-hook: queue records made at reinject (not at enqueue), verdicts seen. --no-queue-hooks: nothing
# on the per-packet queue path; confirm drops without queue records, queue and verdict drops found where
# they are freed.
suite "fentry, kprobe, tracepoint, fentry --verdict-hook, fentry --no-queue-hooks: confirm drops" \
	env TRACERS="fentry;kprobe;tracepoint;fentry --verdict-hook;fentry --no-queue-hooks" \
	bash "$here/e2e/confirm_drop.sh" fentry "$RUNS" "$PAIRS"
suite "fentry, kprobe, tracepoint: resolved clashes" env TRACERS="fentry;kprobe;tracepoint" \
	bash "$here/e2e/clash_resolved.sh" fentry "$PAIRS"
for backend in fentry kprobe tracepoint; do
	suite "$backend: selftest" bash "$here/e2e/selftest.sh" "$backend" 1
done
# By default the function backends hook only the enqueue of a queued packet: failed enqueues and verdict
# drops are seen at the free; the return and reinject hooks are options, tested together. kprobe only with
# them: its default (enqueue hook, failed enqueues seen at the free) repeats what fentry's asserts of the
# free. The filters are one BPF function whatever the attach type: once per kernel, as fentry tracers.
suite "fentry, tracepoint, fentry and kprobe --exact-queue-errors --verdict-hook, fentry --no-queue-hooks: queue losses, filters" \
	env FILTERS=1 TRACERS="fentry;tracepoint;fentry --exact-queue-errors --verdict-hook;kprobe --exact-queue-errors --verdict-hook;fentry --no-queue-hooks" \
	bash "$here/e2e/queue_losses.sh" fentry "$PAIRS"
suite "tracepoint: a netns inode handed out again while tracing" bash "$here/e2e/netns_reuse.sh" tracepoint
with verify && suite "fentry: verify, stats, --group flow" bash "$here/e2e/verify.sh" fentry 5
# the host (tracepoint) has no time in queue: here the queue-time histogram is checked with real values
with metrics && suite "fentry: Prometheus metrics scraped by a real Prometheus" bash "$here/e2e/metrics.sh" fentry
with lifecycle && suite "fentry: lifecycle" bash "$here/e2e/lifecycle.sh" fentry
# emulated CPUs: the default ring may overflow too; every loss must be counted
with flood && suite "fentry: flood" env ALLOW_LOSS=1 TINY_SECS=3 bash "$here/e2e/flood.sh" fentry 5
echo "$(uname -r): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
