#!/bin/bash
# Which filesystem the VM harness shares the host's trees over, for one kernel dir (fetch-kernel.sh):
# prints 9p, or virtiofs for a kernel built without 9p (Debian's -cloud flavour). Read from the kernel's
# config, not its name, so a flavour that changes its config changes the choice with it.
# Usage: vmfs.sh <kerneldir>; exit 1 when the kernel has neither.
set -euo pipefail
cfg="$1/config"
# No config shipped: the generic flavours have always had 9p.
[ -f "$cfg" ] || { echo 9p; exit 0; }
if grep -Eq '^CONFIG_NET_9P_VIRTIO=[ym]$' "$cfg" && grep -Eq '^CONFIG_9P_FS=[ym]$' "$cfg"; then
  echo 9p
elif grep -Eq '^CONFIG_VIRTIO_FS=[ym]$' "$cfg"; then
  echo virtiofs
else
  echo "vmfs.sh: $cfg has neither 9p over virtio nor virtiofs" >&2; exit 1
fi
