#!/usr/bin/env bash
# The portable binary (-DCTCT_STATIC=ON) where no library is installed: a chroot holding the binary alone,
# with /proc and /sys (BTF, tracefs, bpffs under it) bind-mounted, in a private mount namespace.
# 1. ldd: not a dynamic executable. 2. `features --json` there: the tracepoint backend usable.
# 3. --metrics-listen there: /metrics served. 4. `selftest --backend tracepoint` there: it runs ip, nft, iptables-nft and sysctl, so those tools and
#    their libraries are copied under /tools (found through PATH, LD_LIBRARY_PATH, XTABLES_LIBDIR, which only they read;
#    /lib and /usr/lib stay empty); its counts checked against the kernel's as tests/e2e/selftest.sh does.
# usage: portable.sh [BINARY]   (root; default $CTCT_STATIC_BIN, else ./build-static/ctconfirm-trace)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BIN=${1:-${CTCT_STATIC_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build-static/ctconfirm-trace}}
PAIRS=20
trap 'rm -rf "$root"; cleanup' EXIT INT TERM
[ -x "$BIN" ] || { echo "no portable binary at $BIN (scripts/build-static.sh)" >&2; exit 2; }
check "ldd: not a dynamic executable" "$(ldd "$BIN" 2>&1 | grep -c 'not a dynamic executable')" 1
# not under $WORK: in the VMs that is the 9p results share, where copying the tools took most of 2 minutes
root=$(mktemp -d /tmp/ctct-root.XXXXXX)
mkdir -p "$root/bin" "$root/proc" "$root/sys"
cp "$BIN" "$root/bin/ctconfirm-trace"
# The kernel loads modules with the host's modprobe (request_module), but load them first as lib.sh does.
load_modules
# in_chroot ENV... -- COMMAND...: a private mount namespace, so the mounts vanish with it. Call it in a
# subshell ($(...) or &): it execs, so a background one's $! is the command's pid and a signal reaches it.
in_chroot() {
	exec unshare -m --propagation private sh -c 'r=$1; shift
		mount --rbind /proc "$r/proc" && mount --rbind /sys "$r/sys" && exec chroot "$r" /usr/bin/env "$@"' \
		sh "$root" "$@"
}
# env is the only tool; as a static busybox it brings no library either
mkdir -p "$root/usr/bin"
cp /bin/busybox "$root/usr/bin/env"
check "chroot holds no library" "$(find "$root" -name '*.so*' | wc -l)" 0
feat=$(in_chroot PATH=/bin ctconfirm-trace features --json)
check "features in the empty chroot: exit status" "$?" 0
check "features: auto plan found, no error" "$(jq -r '.auto.error' <<<"$feat")" ""
check "features: BTF read (drop reason names > 0)" "$(jq -r '.drop_reason_names > 0' <<<"$feat")" true

# The metrics exposer (prometheus-cpp and civetweb, static) serves from the empty chroot too. A numeric
# address: a static glibc resolves names only with the NSS libraries of its build machine.
port=$(free_port)
in_chroot PATH=/bin ctconfirm-trace --backend tracepoint --quiet --metrics-listen "127.0.0.1:$port" --duration 60s \
	>/dev/null 2>"$WORK/metrics.err" &
mpid=$!
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/metrics" >"$WORK/metrics.txt" && break; sleep 0.2; done
check "metrics served from the empty chroot: build_info" "$(grep -c '^ctconfirm_trace_build_info{' "$WORK/metrics.txt" 2>/dev/null)" 1
check "metrics: the confirm-drop loss counters exported" "$(grep -c '^ctconfirm_trace_losses_total{' "$WORK/metrics.txt" 2>/dev/null | awk '{print ($1 > 0)}')" 1
kill -INT $mpid 2>/dev/null
for _ in $(seq 100); do kill -0 $mpid 2>/dev/null || break; sleep 0.2; done
kill -0 $mpid 2>/dev/null && { not_ok "metrics run: still running 20 s after SIGINT"; kill -KILL $mpid; }
wait $mpid
check "metrics run: exit status after SIGINT" "$?" 0

mkdir -p "$root/tools/bin" "$root/tools/lib" "$root/lib64"
for t in ip nft xtables-nft-multi sysctl; do
	p=$(command -v "$t") || { not_ok "no $t on the host"; continue; }
	cp "$p" "$root/tools/bin/"
	ldd "$p" | awk '/=> \//{print $3}' | xargs -r cp -t "$root/tools/lib/"
done
ln -sf xtables-nft-multi "$root/tools/bin/iptables-nft"
cp -r /usr/lib/x86_64-linux-gnu/xtables "$root/tools/xtables" # iptables' matches and targets
cp /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
check "no library outside /tools and the loader" "$(find "$root" -name '*.so*' ! -path "$root/tools/*" ! -path "$root/lib64/*" | wc -l)" 0
out=$(in_chroot PATH=/bin:/tools/bin LD_LIBRARY_PATH=/tools/lib XTABLES_LIBDIR=/tools/xtables \
	ctconfirm-trace selftest --json --backend tracepoint --pairs $PAIRS)
check "selftest in the chroot: exit status" "$?" 0
echo "# $out"
check "selftest: result" "$(jq -r .result <<<"$out")" pass
check "selftest: packets lost == pairs" "$(jq -r .packets.lost <<<"$out")" $PAIRS
check "selftest: kernel insert_failed == lost" "$(jq -r .kernel.insert_failed <<<"$out")" $PAIRS
check "selftest: tracer confirm_drop == lost" "$(jq -r .tracer.confirm_drop <<<"$out")" $PAIRS
finish
