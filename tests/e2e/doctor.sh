#!/usr/bin/env bash
# Kernel test of `ctconfirm-trace doctor`: install rulesets in a private network namespace and assert what
# doctor --json reports (rules, placement, risk, listener). Read-only tool, so each case builds a fresh netns.
# usage: doctor.sh    (root; needs iptables-legacy, iptables-nft, nft, jq, and tests/helpers/nfq_hold)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
DNS=${NS}-doc
trap 'doc_cleanup' EXIT INT TERM

doc_cleanup() {
	[ -n "${LISTENER_PID:-}" ] && kill "$LISTENER_PID" 2>/dev/null && wait "$LISTENER_PID" 2>/dev/null
	ip netns del "$DNS" 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
fresh_ns() { ip netns del "$DNS" 2>/dev/null; ip netns add "$DNS"; }
# doctor CASE: runs doctor --json in the netns into $WORK/CASE.json; exit status must be 0.
doctor() {
	in_ns "$DNS" "$TRACER" doctor --json >"$WORK/$1.json" 2>"$WORK/$1.err"
	check "$1: doctor exit status" "$?" 0
	cp "$WORK/$1.json" "$WORK/last.json"
}
q() { jq -r "$@" "$WORK/last.json"; }
# rule QUEUE FILTER: a jq expression on the first queue rule whose queue_first is QUEUE
rule() { q --argjson n "$1" "[.queue_rules[] | select(.queue_first == \$n)][0] | $2"; }
# Before 6.12 the kernel re-looks-up the conntrack on reinject (low); after, same-flow TCP collisions drop.
before_confirm_risk=medium
[ "$(printf '%s\n' 6.12 "$(uname -r)" | sort -V | head -n 1)" = 6.12 ] || before_confirm_risk=low

load_modules
modprobe -q iptable_mangle 2>/dev/null; modprobe -q iptable_nat 2>/dev/null; modprobe -q ip6table_filter 2>/dev/null

# 1: nothing installed.
fresh_ns
doctor empty
check "empty: no queue rules" "$(q '.queue_rules | length')" 0
check "empty: risk" "$(q '.risk.level')" none
check "empty: kernel release" "$(q '.kernel.release')" "$(uname -r)"
check "empty: every tool ran" "$(q '[.tools[] | select(.status != "ok") | .name] | join(",")')" ""

# 2: iptables-legacy, mangle POSTROUTING (priority -150: before SNAT at 100) with MASQUERADE.
fresh_ns
in_ns "$DNS" iptables-legacy -t mangle -A POSTROUTING -j NFQUEUE --queue-num 5
in_ns "$DNS" iptables-legacy -t nat -A POSTROUTING -o lo -j MASQUERADE
doctor legacy
check "legacy: source" "$(rule 5 .source)" legacy
check "legacy: table/chain" "$(rule 5 '"\(.table)/\(.chain)"')" mangle/POSTROUTING
check "legacy: hook priority" "$(rule 5 '.hooks[0] | "\(.hook) \(.priority)"')" "postrouting -150"
check "legacy: position" "$(rule 5 '.hooks[0].position')" before_confirm
check "legacy: MASQUERADE seen" "$(q '.nat.snat_rules >= 1')" true
check "legacy: risk on $(uname -r)" "$(q '.risk.level')" "$before_confirm_risk"
check "legacy: no listener for queue 5" "$(q '[.findings[] | select(.code == "no_listener" and .queue == 5)] | length')" 1

# 3: iptables-nft FORWARD with --queue-bypass, and IPv6.
fresh_ns
in_ns "$DNS" iptables-nft -A FORWARD -p tcp -j NFQUEUE --queue-num 4 --queue-bypass
in_ns "$DNS" ip6tables-nft -A INPUT -j NFQUEUE --queue-num 6
doctor iptnft
check "iptables-nft: source" "$(rule 4 .source)" nft
check "iptables-nft: bypass" "$(rule 4 .bypass)" true
check "iptables-nft: hook" "$(rule 4 '.hooks[0] | "\(.hook) \(.priority) \(.position)"')" "forward 0 before_confirm"
check "ip6tables-nft: family and hook" "$(rule 6 '"\(.family) \(.hooks[0].hook) \(.bypass)"')" "ip6 input false"

# 4: the compat setup of lib.sh's queue_after_nat: nft base chain at postrouting 200 jumps to an
# iptables-nft user chain with NFQUEUE (invisible to iptables-nft-save alone), after nft masquerade.
fresh_ns
in_ns "$DNS" nft add table ip ctdoc_nat
in_ns "$DNS" nft add chain ip ctdoc_nat post '{ type nat hook postrouting priority srcnat; }'
in_ns "$DNS" nft add rule ip ctdoc_nat post oifname lo masquerade
in_ns "$DNS" iptables-nft -t mangle -N CTCTQ
in_ns "$DNS" iptables-nft -t mangle -A CTCTQ -p udp --dport 5000 -j NFQUEUE --queue-num 3
in_ns "$DNS" nft add chain ip mangle ctct_post '{ type filter hook postrouting priority 200; }'
in_ns "$DNS" nft add rule ip mangle ctct_post jump CTCTQ
doctor compat
check "compat: source" "$(rule 3 .source)" nft
check "compat: chain" "$(rule 3 '"\(.table)/\(.chain)"')" mangle/CTCTQ
check "compat: reached via" "$(rule 3 '.hooks[0].via')" mangle/ctct_post
check "compat: hook priority" "$(rule 3 '.hooks[0] | "\(.hook) \(.priority)"')" "postrouting 200"
check "compat: after SNAT" "$(rule 3 '.hooks[0].position')" after_snat
check "compat: risk" "$(q '.risk.level')" high
check "compat: no listener for queue 3" "$(q '[.findings[] | select(.code == "no_listener" and .queue == 3)] | length')" 1
# The native statement where the kernel has it (CONFIG_NFT_QUEUE; not on every kernel).
in_ns "$DNS" nft add table inet ctdoc_q
in_ns "$DNS" nft add chain inet ctdoc_q f '{ type filter hook forward priority 0; }'
if in_ns "$DNS" nft add rule inet ctdoc_q f queue num 7 bypass 2>"$WORK/nftq.err"; then
	doctor native
	check "native: source" "$(rule 7 .source)" nftables
	check "native: family, bypass, hook" "$(rule 7 '"\(.family) \(.bypass) \(.hooks[0].hook) \(.hooks[0].priority)"')" "inet true forward 0"
else
	echo "# skip native nft queue statement: kernel refused it ($(head -n 1 "$WORK/nftq.err"))"
fi

# 5: a listener on queue 3: doctor names its process; gone again: the no-listener finding.
rm -f "$WORK/ready" # (ip netns exec directly, not in_ns: $! must be the listener itself)
ip netns exec "$DNS" "$HELPERS/nfq_hold" --queue 3 --hold-ms 0 --ready-file "$WORK/ready" 2>"$WORK/nfq.log" &
LISTENER_PID=$!
if wait_for_file "$WORK/ready"; then
	doctor listener
	check "listener: pid" "$(q '.queues[] | select(.queue == 3) | .listeners[0].pid')" "$LISTENER_PID"
	check "listener: comm" "$(q '.queues[] | select(.queue == 3) | .listeners[0].comm')" nfq_hold
	check "listener: socket found" "$(q '.queues[] | select(.queue == 3) | .socket.inode > 0')" true
	check "listener: no finding for queue 3" "$(q '[.findings[] | select(.code == "no_listener" and .queue == 3)] | length')" 0
else
	not_ok "listener: nfq_hold did not start: $(cat "$WORK/nfq.log")"
fi
kill "$LISTENER_PID" 2>/dev/null; wait "$LISTENER_PID" 2>/dev/null; LISTENER_PID=
doctor unbound
check "unbound: queue 3 no longer bound" "$(q '[.queues[] | select(.queue == 3)] | length')" 0
check "unbound: no-listener finding" "$(q '[.findings[] | select(.code == "no_listener" and .queue == 3)] | .[0].text | test("dropped unless --queue-bypass")')" true

# Usage error.
in_ns "$DNS" "$TRACER" doctor --no-such-flag >/dev/null 2>&1
check "usage error exit status" "$?" 2
finish
