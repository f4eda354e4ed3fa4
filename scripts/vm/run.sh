#!/bin/bash
# Boot a Debian kernel under qemu (TCG) with this machine's / as the VM's root
# (read-only, tmpfs overlay) and run one script inside. The host's trees are shared over 9p, or over
# virtiofs (virtiofsd instances this script starts and stops) for a kernel without 9p (vmfs.sh).
# Usage: run.sh --kernel SERIES (6.1, 6.12, 6.1-rt, 6.12-rt, 6.1-cloud, 6.12-cloud: fetch-kernel.sh) --out DIR [--timeout SEC] [--icount SHIFT] [--smp N] [--env K=V ...] -- SCRIPT [ARGS...]
# --icount SHIFT: the guest's clock counts instructions (2^SHIFT ns each; vCPUs run in turn, on one host
# thread), not the host's time: a rate measured inside then does not depend on what else the host does,
# so ratios of a few percent resolve (bench/datapath.sh). Idle time is skipped (sleep=off). With --smp 1
# everything runs on one vCPU: a packet rate is then the inverse of the instructions spent per packet.
# Exit: the script's exit code, or 125 if the VM never reported one.
set -euo pipefail
me=run.sh
die() { echo "$me: $*" >&2; exit 125; }
usage="usage: $me --kernel 6.1|6.12|6.1-rt|6.12-rt|6.1-cloud|6.12-cloud --out DIR [--timeout SEC] [--icount SHIFT] [--smp N] [--env K=V ...] -- SCRIPT [ARGS...]"

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
if [ ! -f "$initrd" ] || [ "$here/init.sh" -nt "$initrd" ] || [ "$here/build-initramfs.sh" -nt "$initrd" ] \
   || [ "$here/vmfs.sh" -nt "$initrd" ]; then
  "$here/build-initramfs.sh" "$kdir" >/dev/null || die "build-initramfs.sh failed"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/rc" "$out/console.log" "$out/output.log"
# The ctl share is mounted directly, so a directory under the host's /tmp is fine.
ctl=$(mktemp -d)
vfs=$(mktemp -d) vfs_pids=() qpid=''
# Every virtiofsd goes with the VM, however run.sh ends (qemu done, timed out, or run.sh killed).
# set +e: a virtiofsd that already left (it does when qemu disconnects) must not change run.sh's exit code.
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  set +e
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null
  [ ${#vfs_pids[@]} -eq 0 ] || { kill "${vfs_pids[@]}" 2>/dev/null; wait "${vfs_pids[@]}" 2>/dev/null; }
  rm -rf "$ctl" "$vfs"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
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

mem=2048
vmfs=$("$here/vmfs.sh" "$kdir") || die "$kver: no filesystem to share the host's / with this kernel"
# shellcheck disable=SC2054 # qemu's option values are comma lists
if [ "$vmfs" = 9p ]; then
  shares=(
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
    -virtfs local,path="$ctl",mount_tag=ctl,security_model=none
    -virtfs local,path="$out",mount_tag=out,security_model=none
  )
  append=''
else
  vfsd=/usr/lib/qemu/virtiofsd
  [ -x "$vfsd" ] || die "$kver has no 9p and $vfsd is missing (apt-get install qemu-system-common)"
  # vhost-user devices read guest memory directly: it must be a shared mapping.
  shares=(-object "memory-backend-memfd,id=mem,size=${mem}M,share=on" -numa node,memdev=mem)
  vfs_start() { # vfs_start TAG DIR [ro]
    local sock="$vfs/$1.sock" cache=auto
    [ -z "${3:-}" ] || cache=always   # the host tree is treated as static, as with 9p's cache=loose
    if [ -n "${3:-}" ]; then
      # qemu 7.2's virtiofsd (C) has no read-only export. It serves a recursive bind of DIR made read-only
      # mount by mount, in a mount namespace of its own: the host's mounts stay as they are, and the
      # namespace with the bind goes when virtiofsd does. init.sh checks that a write fails.
      unshare -m --propagation private bash -c '
        set -e; mnt=$1; shift; mkdir -p "$mnt"; mount --rbind "$0" "$mnt"
        findmnt -R -n -r -o TARGET "$mnt" | while read -r t; do
          mount -o remount,bind,ro "$(printf %b "$t")"; done
        exec "$@" -o source="$mnt"' "$2" "$vfs/$1.root" \
        "$vfsd" -f --socket-path="$sock" -o cache=$cache -o log_level=warn >>"$out/virtiofsd.log" 2>&1 &
    else
      "$vfsd" -f --socket-path="$sock" -o source="$2" -o cache=$cache -o log_level=warn \
        >>"$out/virtiofsd.log" 2>&1 &
    fi
    vfs_pids+=($!)
    shares+=(-chardev "socket,id=vfs-$1,path=$sock" -device "vhost-user-fs-pci,chardev=vfs-$1,tag=$1")
  }
  rm -f "$out/virtiofsd.log"
  vfs_start hostroot / ro
  vfs_start ctl "$ctl"
  vfs_start out "$out"
  for s in hostroot ctl out; do
    for _ in $(seq 100); do [ -S "$vfs/$s.sock" ] && break; sleep 0.1; done
    [ -S "$vfs/$s.sock" ] || die "virtiofsd for $s did not start, see $out/virtiofsd.log"
  done
  append=' ctct.fs=virtiofs'
fi

start=$(date +%s)
set +e
# -k: TCG qemu can ignore SIGTERM while wedged; make sure it dies. In the background so that a signal to
# run.sh reaches the trap (and the VM) at once.
timeout -k 10 "$timeout" qemu-system-x86_64 \
  "${accel[@]}" -cpu "$cpu" -m "$mem" -smp "$smp" \
  -nic none -display none -monitor none -no-reboot \
  -chardev stdio,id=con,signal=off,logfile="$out/console.log" -serial chardev:con \
  -kernel "$kdir/vmlinuz" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet$append" \
  "${shares[@]}" \
  </dev/null &
qpid=$!
wait "$qpid"
qrc=$?
qpid=''
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
