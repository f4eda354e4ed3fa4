#!/bin/bash
# VM smoke test: run INSIDE the VM via scripts/vm/run.sh. Checks that the guest
# kernel has what ctconfirm-trace needs and that host tools work in it.
# Writes $VM_OUT/facts.txt; exits non-zero if an essential check fails.
set -uo pipefail
: "${VM_OUT:?run me via scripts/vm/run.sh}"
facts=$VM_OUT/facts.txt
: > "$facts"
failed=0
fact() { echo "$*" | tee -a "$facts"; }
# essential NAME CMD...: records ok/FAIL, output goes to facts too.
essential() {
  local name=$1; shift
  local o; o=$("$@" 2>&1); local rc=$?
  [ -n "$o" ] && printf '%s\n' "$o" | sed "s/^/  /" | tee -a "$facts"
  if [ $rc -eq 0 ]; then fact "ok: $name"; else fact "FAIL: $name (rc $rc)"; failed=1; fi
}

fact "uname -r: $(uname -r)"
essential "modprobe netfilter modules" \
  modprobe -a nf_conntrack nfnetlink_queue nf_nat nft_chain_nat nft_masq xt_NFQUEUE nft_compat nft_queue
essential "btf vmlinux" test -e /sys/kernel/btf/vmlinux
essential "btf nf_conntrack" test -e /sys/kernel/btf/nf_conntrack

fact "kallsyms:"
for s in nf_reinject nfqnl_reinject __nf_conntrack_confirm nf_ct_resolve_clash; do
  if l=$(grep -w "$s" /proc/kallsyms | head -n3); [ -n "$l" ]; then
    printf '%s\n' "$l" | sed 's/^/  /' | tee -a "$facts"
  else
    fact "  (absent) $s"
  fi
done
# The confirm hook is the project's whole point; one of the reinject paths must exist.
essential "kallsyms __nf_conntrack_confirm" grep -qw __nf_conntrack_confirm /proc/kallsyms
essential "kallsyms nf_reinject|nfqnl_reinject" grep -qw -e nf_reinject -e nfqnl_reinject /proc/kallsyms

ke=
for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do
  [ -e "$d/kprobe_events" ] && { ke=$d/kprobe_events; break; }
done
essential "kprobe_events exists${ke:+ ($ke)}" test -n "$ke"
# Existence is not enough (lockdown hides nothing from the file); really register one.
essential "kprobe on __nf_conntrack_confirm registers" sh -c \
  "echo 'p:ctct_smoke __nf_conntrack_confirm' >> $ke && echo '-:ctct_smoke' >> $ke"
fact "lockdown: $(cat /sys/kernel/security/lockdown 2>/dev/null || echo n/a)"

# One probe run only: it takes seconds under TCG.
probe=$(bpftool feature probe kernel 2>&1 | grep -i -e kprobe -e tracing | grep -v -i helpers)
fact "bpftool feature probe (kprobe/tracing):"
printf '%s\n' "$probe" | sed 's/^/  /' | tee -a "$facts"
essential "bpftool probe: kprobe prog type" grep -q "program_type kprobe is available" <<<"$probe"
essential "bpftool probe: tracing prog type" grep -q "program_type tracing is available" <<<"$probe"

essential "ip netns add/del" sh -c 'ip netns add ctct-smoke && ip netns del ctct-smoke'
essential "iptables-nft -V" iptables-nft -V
essential "nft --version" nft --version

fact "result: $([ $failed -eq 0 ] && echo PASS || echo FAIL)"
exit $failed
