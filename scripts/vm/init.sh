#!/bin/busybox sh
# shellcheck shell=dash
# /init of the VM initramfs (busybox only). Mounts the host's / read-only over
# virtio-9p (or virtiofs) under a tmpfs overlay, chroots into it, runs the job that run.sh
# left in the "ctl" share, stores its exit code, and powers off.
# Stays PID 1 (chroot, not switch_root) so it can record rc and power off
# even when the job kills everything it can reach.
/bin/busybox --install -s /bin
export PATH=/bin

log() { echo "ctct-vm: $*" > /dev/console; }
# Any failure here must still end the VM; otherwise qemu sits until run.sh's timeout.
fail() { log "FATAL: $*"; sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }

mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
echo 1 > /proc/sys/kernel/sysrq

for m in $(cat /modules/order); do
  insmod "/modules/$m" || fail "insmod $m"
done

# run.sh passes ctct.fs=virtiofs for a kernel without 9p (vmfs.sh); its virtiofsd instances serve the
# same three tags.
FS=9p
for a in $(cat /proc/cmdline); do case "$a" in ctct.fs=*) FS=${a#ctct.fs=} ;; esac; done
P9="trans=virtio,version=9p2000.L,msize=262144"
share() { # share TAG DIR [ro]
  if [ "$FS" = virtiofs ]; then
    mount -t virtiofs "$1" "$2" || return 1
    [ -n "${3:-}" ] || return 0
    # virtiofsd cannot export read-only; run.sh gives it a read-only bind of the host's tree. Prove it
    # before anything runs as root here, with the guest's own mount still writable: a write that
    # reaches the host ends the VM.
    if touch "$2/.ctct-write-probe" 2>/dev/null; then
      rm -f "$2/.ctct-write-probe"; fail "host share $1 is writable through virtiofs"
    fi
    mount -o remount,ro "$2"
  elif [ -n "${3:-}" ]; then
    # cache=loose: the host tree is treated as static for the VM's lifetime; much faster lookups.
    mount -t 9p -o "$P9,ro,cache=loose" "$1" "$2"
  else
    mount -t 9p -o "$P9" "$1" "$2"
  fi
}
mkdir -p /lower /rw /newroot /ctl
share ctl /ctl || fail "mount ctl share"
# shellcheck disable=SC1091
. /ctl/vm.conf || fail "no vm.conf in ctl share"   # sets KVER KDIR OUT
share hostroot /lower ro || fail "mount host root"
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
# xino/index/redirect off: 9p lower has no stable file handles, overlay would refuse or warn.
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work,index=off,xino=off,redirect_dir=off,metacopy=off overlay /newroot \
  || fail "mount overlay"

R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
# devtmpfs has no /dev/fd: bash process substitution needs it.
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin; ln -sf /proc/self/fd/1 $R/dev/stdout; ln -sf /proc/self/fd/2 $R/dev/stderr
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs shm $R/dev/shm
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
mount -t securityfs securityfs $R/sys/kernel/security 2>/dev/null
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t bpf bpf $R/sys/fs/bpf
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
mount -t tmpfs -o mode=755 run $R/run
# /tmp stays the overlay (host's /tmp read-only below, writes in tmpfs above): a checkout or build under
# the host's /tmp (a CI clone, say) is visible to the job.
# The host's modules are for the host kernel; show the guest's own tree instead.
mkdir -p "$R/lib/modules/$KVER"
mount --bind "$R$KDIR/lib/modules/$KVER" "$R/lib/modules/$KVER" || fail "bind modules"
# bpftool/libbpf read /boot/config-$(uname -r); the host's /boot only has the host's.
if [ -f "$KDIR/config" ] || [ -f "$R$KDIR/config" ]; then
  mkdir -p $R/boot && touch "$R/boot/config-$KVER" && mount --bind "$R$KDIR/config" "$R/boot/config-$KVER"
fi
mkdir -p "$R$OUT"
share out "$R$OUT" || fail "mount out share"
cp /ctl/job.sh $R/run/ctct-job.sh
# The kernel runs its modprobe helper in PID 1's root (this initramfs), not in the chroot: point it at a
# wrapper so module autoloading (iptables extensions, nft expressions) works as on a real host.
printf '#!/bin/sh\nexec chroot %s /sbin/modprobe "$@"\n' "$R" > /bin/ctct-modprobe
chmod 755 /bin/ctct-modprobe
echo /bin/ctct-modprobe > /proc/sys/kernel/modprobe

log "running job at uptime $(cut -d' ' -f1 /proc/uptime)s"
set -o pipefail
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root TERM=dumb LANG=C.UTF-8 /bin/bash /run/ctct-job.sh < /dev/null 2>&1 \
  | tee "$R$OUT/output.log" > /dev/console
rc=$?
log "job exited rc=$rc at uptime $(cut -d' ' -f1 /proc/uptime)s"
echo $rc > /ctl/rc
sync
umount "$R$OUT" 2>/dev/null
umount /ctl 2>/dev/null
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
