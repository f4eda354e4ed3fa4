#!/usr/bin/env bash
# The whole test suite: unit tests (no root), kernel tests on this host, then end-to-end tests on Debian's
# 6.1 and 6.12 kernels booted under qemu, and a short run on their PREEMPT_RT flavours (root; downloads
# the four kernel packages once into ~/.cache).
# Ends with one line "N passed, N failed" counting the suites.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTCT_BUILD:-$root/build}
passed=0 failed=0 times=()
t_start=$SECONDS
suite() { # suite NAME COMMAND...
	local name=$1; shift
	local t0=$SECONDS
	echo "=== $name"
	if "$@"; then passed=$((passed + 1)); echo "=== $name: PASS"; else failed=$((failed + 1)); echo "=== $name: FAIL"; fi
	times+=("$(printf '%5d s  %s' $((SECONDS - t0)) "$name")")
}
# The VM suites. The full ones one after the other: side by side (tried, two vCPUs each) they took 50 and
# 52 min, against about 30 each in a row; with one vCPU each (tried) a suite took twice its time with two:
# under TCG the guests are CPU-bound on this 2-core machine.
# SMOKE=smoke: the short run for a flavour (tests/vm/e2e.sh), two at a time with one vCPU each (one host
# core each; the smoke's tests run one after the other anyway). Each VM writes its own log, printed whole.
# usage: vm_suites SERIES...
vm_report() { # vm_report SERIES RC SECONDS
	local k=$1 what="every backend: kernel suites + ${vm_extra[$1]:-all}"
	[ -z "${SMOKE:-}" ] || what="smoke: features, selftest per backend, one confirm-drop run"
	echo "=== VM $k: $what (tests/vm/e2e.sh)"
	cat "$build/vm-out/$k.log"
	if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "=== VM $k: PASS"; else failed=$((failed + 1)); echo "=== VM $k: FAIL"; fi
	# the guest's own per-suite times are in its log
	times+=("$(printf '%5d s  %s' "$3" "VM $k ($(grep -c '^=== .*: \(PASS\|FAIL\) (' "$build/vm-out/$k.log") suites)")")
}
# What each full kernel runs besides its kernel suites (tests/vm/e2e.sh kernel+...): the suites that test
# the tracer's own logic with fentry run on one of the two, not both (on 6.1 the oldest kernel the portable
# binary and the rulesets meet; on 6.12 the current one for verify, metrics and the flood).
declare -A vm_extra=([6.1]=doctor,portable,lifecycle [6.12]=verify,metrics,flood)
vm_run() { # vm_run SERIES SMP
	local profile=${SMOKE:-${vm_extra[$1]:+kernel+${vm_extra[$1]}}}
	"$root/scripts/vm/run.sh" --kernel "$1" --out "$build/vm-out/$1" --timeout 3600 --smp "$2" \
		--env CTCT_BUILD="$build" -- "$root/tests/vm/e2e.sh" 1 20 "${profile:-all}" >"$build/vm-out/$1.log" 2>&1
}
vm_suites() {
	local k rc rc2 t0 pid
	mkdir -p "$build/vm-out"
	if [ -z "${SMOKE:-}" ]; then
		for k in "$@"; do
			t0=$SECONDS
			vm_run "$k" 2
			rc=$?
			vm_report "$k" $rc $((SECONDS - t0))
		done
		return
	fi
	while [ $# -gt 0 ]; do
		t0=$SECONDS
		if [ $# -ge 2 ]; then
			vm_run "$2" 1 &
			pid=$!
		fi
		vm_run "$1" 1
		rc=$?
		vm_report "$1" $rc $((SECONDS - t0))
		if [ $# -ge 2 ]; then
			wait "$pid"
			rc2=$?
			vm_report "$2" $rc2 $((SECONDS - t0))
			shift
		fi
		shift
	done
}
"$root/scripts/install-deps.sh" || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }
"$root/scripts/build.sh" -DBUILD_TESTING=ON || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
# Debian's kernels for the VM suites (cached in ~/.cache after the first time): downloaded while the host
# suites run, which the network does not slow. A failed download is printed before any VM time is spent.
vm_kernels=(6.1 6.12 6.1-rt 6.12-rt 6.1-cloud 6.12-cloud)
fetch_pid=
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$build/vm-out"
	for k in "${vm_kernels[@]}"; do
		"$root/scripts/vm/fetch-kernel.sh" "$k" >/dev/null || echo "fetch-kernel.sh $k failed"
	done >"$build/vm-out/fetch.log" 2>&1 &
	fetch_pid=$!
fi
suite "unit tests (ctest)" ctest --test-dir "$build" --output-on-failure
suite "unit tests under ASan+UBSan (tests/sanitize.sh)" "$root/tests/sanitize.sh"
suite "fuzzers, ${CTCT_FUZZ_SECONDS:-10}s each (tests/fuzz/run.sh)" "$root/tests/fuzz/run.sh" "${CTCT_FUZZ_SECONDS:-10}"
if [ "$(id -u)" = 0 ]; then
	suite "CLI: bad input exits 2 with one line (tests/e2e/bad_input.sh)" \
		env CTCT_BUILD="$build" bash "$root/tests/e2e/bad_input.sh"
	# This host's kernel (CI: no kprobes, fentry refused): whatever auto picks, plus tracepoint forced.
	suite "host kernel: confirm drops, tracepoint backend" \
		timeout 900 env CTCT_BUILD="$build" bash "$root/tests/e2e/confirm_drop.sh" tracepoint 3 20
	suite "host kernel: resolved clashes, auto backend" \
		timeout 300 env CTCT_BUILD="$build" bash "$root/tests/e2e/clash_resolved.sh" auto 20
	suite "host kernel: queue losses (verdict, full, overflow, no listener, bypass) and filters" \
		timeout 600 env CTCT_BUILD="$build" bash "$root/tests/e2e/queue_losses.sh" auto 20
	suite "host kernel: verify exit codes, stats, --group flow" \
		timeout 300 env CTCT_BUILD="$build" bash "$root/tests/e2e/verify.sh" auto 5
	suite "host kernel: doctor" \
		timeout 120 env CTCT_BUILD="$build" bash "$root/tests/e2e/doctor.sh"
	suite "host kernel: lifecycle (SIGKILL leaves nothing, SIGTERM summary, two instances)" \
		timeout 300 env CTCT_BUILD="$build" bash "$root/tests/e2e/lifecycle.sh" tracepoint
	# ~1 million drops in the 10 s default-ring run at this host's 85-110k/s; reported + lost == kernel, none lost;
	# then a reader that stops for 2 s: the losses counted and the blocked write in the summary
	suite "host kernel: flood, tiny ring accounts for every drop, default ring loses none, a stuck reader is named" \
		timeout 600 env CTCT_BUILD="$build" TINY_SECS=5 bash "$root/tests/e2e/flood.sh" tracepoint 10
	suite "host kernel: a netns inode handed out again while tracing (tracepoint baselines)" \
		timeout 300 env CTCT_BUILD="$build" bash "$root/tests/e2e/netns_reuse.sh" tracepoint
	# ~15 s: netns the tracer could not seed (born after its start; older but hidden): confirm drops stay confirm drops
	suite "host kernel: netns born after the start, and one hidden from the seeding (tracepoint baselines)" \
		timeout 60 env CTCT_BUILD="$build" bash "$root/tests/e2e/netns_late.sh" tracepoint 5
	suite "host kernel: netns names: named, unnamed and a kubelet/containerd-like cgroup; drops == Δinsert_failed each" \
		timeout 90 env CTCT_BUILD="$build" bash "$root/tests/e2e/netns_names.sh" tracepoint
	suite "host kernel: no BTF (hidden in a mount namespace): one line, exit 2; doctor works" \
		timeout 120 env CTCT_BUILD="$build" bash "$root/tests/e2e/missing.sh"
	# ~9 s here: a real Prometheus scrapes the tracer; PromQL == Δinsert_failed, == Δqueue_dropped; the textfile
	suite "host kernel: Prometheus metrics (tests/e2e/metrics.sh)" \
		timeout 120 env CTCT_BUILD="$build" bash "$root/tests/e2e/metrics.sh" tracepoint
	suite "host kernel: selftest, auto backend" \
		timeout 300 env CTCT_BUILD="$build" bash "$root/tests/e2e/selftest.sh" auto 3
	# about 50 s to build on 2 cores, 4 s to run
	suite "portable binary: static, features and selftest in a chroot with no library (tests/e2e/portable.sh)" \
		timeout 300 sh -c 'CTCT_STATIC_BUILD="$1/static" "$2/scripts/build-static.sh" >/dev/null &&
			CTCT_BUILD="$1" bash "$2/tests/e2e/portable.sh" "$1/static/ctconfirm-trace"' sh "$build" "$root"
	suite "Debian package: cpack -G DEB, dpkg -i into an empty root, unit verified, selftest from it (tests/e2e/deb.sh)" \
		timeout 120 env CTCT_BUILD="$build" bash "$root/tests/e2e/deb.sh" "$build/static"
	suite "container: DaemonSet parses, its capabilities are the unit's and suffice (tests/e2e/manifests.sh)" \
		timeout 60 env CTCT_BUILD="$build" bash "$root/tests/e2e/manifests.sh" "$build/static/ctconfirm-trace"
	# Debian's own kernels under qemu: fentry, kprobe and tracepoint on 6.1 (nf_reinject era) and 6.12.
	# Then the PREEMPT_RT and -cloud flavours, short (-cloud has no 9p: run.sh boots it over virtiofs).
	t0=$SECONDS
	wait "$fetch_pid"
	cat "$build/vm-out/fetch.log"
	echo "=== kernels for the VMs: ready (waited $((SECONDS - t0)) s for the download)"
	vm_suites 6.1 6.12
	SMOKE=smoke vm_suites 6.1-rt 6.12-rt 6.1-cloud 6.12-cloud
else
	echo "not root: kernel tests skipped"
	failed=$((failed + 1))
fi
echo "--- time per suite"
printf '%s\n' "${times[@]}"
echo "--- total $(( (SECONDS - t_start) / 60 )) min $(( (SECONDS - t_start) % 60 )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
