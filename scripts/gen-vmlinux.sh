#!/usr/bin/env bash
# Regenerates the checked-in CO-RE type header. Run by hand when a newer kernel adds types we use;
# the build itself never reads the build host's BTF.
# usage: scripts/gen-vmlinux.sh [BTF-file] (default /sys/kernel/btf/vmlinux; needs netfilter built in or
# pass a module-merged BTF so nf_conn, nf_queue_entry and friends are present)
set -euo pipefail
btf=${1:-/sys/kernel/btf/vmlinux}
arch=$(uname -m); [ "$arch" = x86_64 ] && arch=x86
out="$(dirname "$0")/../vmlinux/$arch/vmlinux.h"
[ -r "$btf" ] || { echo "gen-vmlinux: cannot read BTF $btf" >&2; exit 1; }
bpftool btf dump file "$btf" format c > "$out.tmp"
for t in 'struct nf_conn {' 'struct nf_queue_entry {' 'struct ip_conntrack_stat {' 'enum skb_drop_reason {'; do
  grep -q "^$t" "$out.tmp" || { rm -f "$out.tmp"; echo "gen-vmlinux: $btf lacks '$t'" >&2; exit 1; }
done
mv "$out.tmp" "$out"
echo "wrote $out ($(wc -l < "$out") lines) from $btf ($(uname -r))"
