#!/bin/bash
# Build the busybox initramfs for one kernel dir prepared by fetch-kernel.sh.
# Usage: build-initramfs.sh <kerneldir>   -> prints the path of the initramfs.
set -euo pipefail
me=build-initramfs.sh
die() { echo "$me: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $me <kerneldir>"
kdir=$(cd "$1" && pwd) || die "no such dir: $1"
[ -f "$kdir/version" ] || die "$kdir is not a kernel dir (no version file)"
ver=$(cat "$kdir/version")
here=$(cd "$(dirname "$0")" && pwd)
bb=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"

out="$kdir/initramfs.cpio.gz"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,modules}
cp "$bb" "$stage/bin/busybox"
cp "$here/init.sh" "$stage/init"
chmod 755 "$stage/init"
# Kernel writes to /dev/console before /init can mount devtmpfs.
mknod -m 600 "$stage/dev/console" c 5 1

# Whatever of these is modular (varies per kernel) goes in, with deps, in load order.
# busybox insmod cannot read compressed modules, so unpack them here.
# A kernel without 9p (Debian's -cloud) gets virtiofs instead; run.sh makes the same choice (vmfs below).
fsmods="9pnet_virtio 9p"
[ "$("$here/vmfs.sh" "$kdir")" = virtiofs ] && fsmods=virtiofs
n=0
# shellcheck disable=SC2086 # fsmods is a list of module names
modprobe -d "$kdir" -S "$ver" -a --show-depends virtio_pci $fsmods overlay \
  | awk '$1 == "insmod" && !seen[$2]++ {print $2}' > "$stage/list" \
  || die "module dependency resolution failed for $ver"
while read -r ko; do
  n=$((n + 1))
  name=$(printf '%02d-%s.ko' "$n" "$(basename "$ko" | sed -E 's/\.ko(\.(xz|zst|gz))?$//')")
  case "$ko" in
    *.xz)  xz -dc "$ko" ;;
    *.zst) zstd -qdc "$ko" ;;
    *.gz)  gzip -dc "$ko" ;;
    *)     cat "$ko" ;;
  esac > "$stage/modules/$name"
  echo "$name" >> "$stage/modules/order"
done < "$stage/list"
rm "$stage/list"
touch "$stage/modules/order"

( cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -9 ) > "$out.tmp" \
  || die "cpio failed"
mv "$out.tmp" "$out"
echo "$out"
