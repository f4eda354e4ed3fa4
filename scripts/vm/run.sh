#!/bin/bash
# Boot a Debian kernel under qemu (TCG) with this machine's / as the VM's root
# (read-only, tmpfs overlay) and run one script inside.
# Usage: run.sh --kernel SERIES (6.1, 6.12, 6.1-rt, 6.12-rt: fetch-kernel.sh) --out DIR [--timeout SEC] [--icount SHIFT] [--smp N] [--env K=V ...] -- SCRIPT [ARGS...]
# --icount SHIFT: the guest's clock counts instructions (2^SHIFT ns each; vCPUs run in turn, on one host
# thread), not the host's time: a rate measured inside then does not depend on what else the host does,
# so ratios of a few percent resolve (bench/datapath.sh). Idle time is skipped (sleep=off). With --smp 1
# everything runs on one vCPU: a packet rate is then the inverse of the instructions spent per packet.
# Exit: the script's exit code, or 125 if the VM never reported one.
set -euo pipefail
me=run.sh
die() { echo "$me: $*" >&2; exit 125; }
usage="usage: $me --kernel 6.1|6.12|6.1-rt|6.12-rt --out DIR [--timeout SEC] [--icount SHIFT] [--smp N] [--env K=V ...] -- SCRIPT [ARGS...]"

series='' out='' timeout=900 icount='' smp=2 envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel)  series=${2:?$usage}; shift 2 ;;
    --out)     out=${2:?$usage}; shift 2 ;;
    --timeout) timeout=${2:?$usage}; shift 2 ;;
    --icount)  icount=${2:?$usage}; shift 2 ;;
    --smp)     smp=${2:?$usage}; shift 2 ;;
    --env)     [[ ${2:-} == [A-Za-z_]*=* ]] || die "--env wants K=V, got '${2:-}'"; envs+=("$2"); shift 2 ;;
    --)        shift; break ;;
    *)         die "$usage" ;;
  esac
done
[ -n "$series" ] && [ -n "$out" ] && [ $# -ge 1 ] || die "$usage"
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout wants seconds, got '$timeout'"
[ -z "$icount" ] || [[ $icount =~ ^[0-9]$ ]] || die "--icount wants a shift of 0-9, got '$icount'"
[[ $smp =~ ^[1-8]$ ]] || die "--smp wants 1-8 vCPUs, got '$smp'"
accel=(-accel tcg) cpu=${CTCT_QEMU_CPU:-max}
# With icount and 2 vCPUs the guest crashed in 3 of 8 boots here (qemu 7.2; corrupt EFLAGS in its oopses,
# with -cpu max and qemu64); qemu64 with --smp 1 has not so far.
[ -n "$icount" ] && accel+=(-icount "shift=$icount,sleep=off,align=off") && cpu=${CTCT_QEMU_CPU:-qemu64}
[ -f "$1" ] || die "no such script: $1"
# The guest mounts a fresh tmpfs on /run, hiding whatever the host has there.
case "$(readlink -f "$1")" in /run/*) die "script $1 is under /run, which the VM cannot see" ;; esac
case "$PWD/" in /run/*) die "cwd $PWD is under /run, which the VM cannot see" ;; esac
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found"

here=$(cd "$(dirname "$0")" && pwd)
kdir=$("$here/fetch-kernel.sh" "$series") || die "fetch-kernel.sh $series failed"
kver=$(cat "$kdir/version")
initrd="$kdir/initramfs.cpio.gz"
# Rebuild when init.sh or the builder changed, so edits take effect without cache wiping.
if [ ! -f "$initrd" ] || [ "$here/init.sh" -nt "$initrd" ] || [ "$here/build-initramfs.sh" -nt "$initrd" ]; then
  "$here/build-initramfs.sh" "$kdir" >/dev/null || die "build-initramfs.sh failed"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/rc" "$out/console.log" "$out/output.log"
# The ctl share is mounted directly, so a directory under the host's /tmp is fine.
ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
cat > "$ctl/vm.conf" <<CONF
KVER=$(printf %q "$kver")
KDIR=$(printf %q "$kdir")
OUT=$(printf %q "$out")
CONF
{
  echo 'ip link set lo up 2>/dev/null || true'
  for e in "${envs[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
  printf 'export VM_OUT=%q VM_KERNEL=%q VM_ICOUNT=%q\n' "$out" "$kver" "$icount"
  printf 'cd %q || exit 125\n' "$PWD"
  printf 'exec bash'; printf ' %q' "$@"; echo
} > "$ctl/job.sh"

start=$(date +%s)
set +e
# -k: TCG qemu can ignore SIGTERM while wedged; make sure it dies.
timeout -k 10 "$timeout" qemu-system-x86_64 \
  "${accel[@]}" -cpu "$cpu" -m 2048 -smp "$smp" \
  -nic none -display none -monitor none -no-reboot \
  -chardev stdio,id=con,signal=off,logfile="$out/console.log" -serial chardev:con \
  -kernel "$kdir/vmlinuz" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$ctl",mount_tag=ctl,security_model=none \
  -virtfs local,path="$out",mount_tag=out,security_model=none \
  </dev/null
qrc=$?
set -e
wall=$(( $(date +%s) - start ))

if [ -s "$ctl/rc" ]; then
  rc=$(cat "$ctl/rc")
  echo "$rc" > "$out/rc"
  echo "$me: $kver: script exited $rc (VM wall time ${wall}s)" >&2
  exit "$rc"
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  die "$kver: VM timed out after ${timeout}s, see $out/console.log"
fi
die "$kver: VM ended (qemu rc $qrc) without reporting an exit code, see $out/console.log"
