#!/bin/bash
# Download and unpack a Debian kernel (vmlinuz + modules) for the VM harness.
# Usage: fetch-kernel.sh SERIES   -> prints the prepared kernel dir on stdout.
# SERIES: 6.1 or 6.12 (Debian's generic amd64 flavour), or 6.1-cloud, 6.1-rt, 6.12-cloud, 6.12-rt (the cloud
# flavour: a smaller config; rt: PREEMPT_RT, other locking).
set -euo pipefail
me=fetch-kernel.sh
die() { echo "$me: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $me 6.1|6.12|6.1-cloud|6.1-rt|6.12-cloud|6.12-rt"
flavour=
case "$1" in
  *-cloud|*-rt) flavour=${1#*-}- ;;
esac
case "$1" in
  6.1|6.1-cloud|6.1-rt)
    re="^linux-image-6\\.1\\.0-[0-9]+-${flavour}amd64-unsigned\$";      pat="linux-image-6.1.0-*-${flavour}amd64-unsigned" ;;
  6.12|6.12-cloud|6.12-rt)
    re="^linux-image-6\\.12\\.[0-9]+\\+deb12-${flavour}amd64-unsigned\$"; pat="linux-image-6.12.*+deb12-${flavour}amd64-unsigned" ;;
  *) die "unknown kernel series '$1' (want 6.1, 6.12, 6.1-cloud, 6.1-rt, 6.12-cloud or 6.12-rt)" ;;
esac

cache="${CTCT_CACHE:-$HOME/.cache/ctconfirm-trace}/kernels"
mkdir -p "$cache"

# apt-cache search matches descriptions too, so filter on the exact name; sort -V picks the newest ABI.
pkg=$(apt-cache search --names-only "$re" | awk '{print $1}' | grep -E "$re" | sort -V | tail -n1 || true)
[ -n "$pkg" ] || die "no kernel package matching $pat (try apt-get update)"

dir="$cache/$pkg"
if [ -f "$dir/.ready" ]; then echo "$dir"; exit 0; fi

rm -rf "$dir" "$dir.tmp"
mkdir -p "$dir.tmp/deb"
# apt-get download writes to the cwd; Sandbox::User=root because _apt cannot write to $HOME; keep the .deb in the cache so a re-unpack needs no network.
( cd "$cache" && ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2 ) \
  || die "apt-get download $pkg failed"
deb=$(ls "$cache/${pkg}"_*.deb | sort -V | tail -n1)
dpkg-deb -x "$deb" "$dir.tmp/root" || die "dpkg-deb -x $deb failed"

ver=$(ls "$dir.tmp/root/lib/modules" | head -n1)
[ -n "$ver" ] && [ -f "$dir.tmp/root/boot/vmlinuz-$ver" ] || die "unexpected layout in $deb"
# Modules are shipped without modules.dep; modprobe inside the VM needs it.
depmod -b "$dir.tmp/root" "$ver" || die "depmod failed for $ver"
mkdir -p "$dir.tmp/lib"
mv "$dir.tmp/root/lib/modules" "$dir.tmp/lib/modules"
mv "$dir.tmp/root/boot/vmlinuz-$ver" "$dir.tmp/vmlinuz"
cp "$dir.tmp/root/boot/config-$ver" "$dir.tmp/config" 2>/dev/null || true
rm -rf "$dir.tmp/root" "$dir.tmp/deb"
echo "$ver" > "$dir.tmp/version"
touch "$dir.tmp/.ready"
mv "$dir.tmp" "$dir"
echo "$dir"
