#!/usr/bin/env bash
# The container definitions, tested without a container runtime (none runs on this machine): the DaemonSet
# parses and asks for the privileges docs/install.md names, the same capabilities as the systemd unit, the
# same arguments as the Containerfile and /etc/default; then the portable binary traces with exactly those
# capabilities (setpriv --bounding-set) and seeds its baselines, as it would in the pod.
# usage: manifests.sh BINARY   (root)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BIN=${1:?portable binary}
src=$(cd "$(dirname "$0")/../.." && pwd)
trap cleanup EXIT INT TERM
# Debian's python3 (python3-yaml), whatever python3 is first on PATH
facts=$(/usr/bin/python3 - "$src/deploy/daemonset.yaml" <<'PY'
import sys, yaml, json
docs = list(yaml.safe_load_all(open(sys.argv[1])))
ds = docs[0]
spec = ds["spec"]["template"]["spec"]
c = spec["containers"][0]
sc = c["securityContext"]
print(json.dumps({"kind": ds["kind"], "docs": len(docs), "hostPID": spec.get("hostPID", False),
  "hostNetwork": spec.get("hostNetwork", False), "privileged": sc.get("privileged", False),
  "drop": sc["capabilities"]["drop"], "add": sorted(sc["capabilities"]["add"]), "args": c["args"],
  "mounts": sorted(m["mountPath"] for m in c["volumeMounts"])}))
PY
)
check "daemonset.yaml parses" "$?" 0
echo "# $facts"
check "one DaemonSet" "$(jq -r '"\(.docs) \(.kind)"' <<<"$facts")" "1 DaemonSet"
check "hostPID, no hostNetwork, not privileged" "$(jq -r '"\(.hostPID) \(.hostNetwork) \(.privileged)"' <<<"$facts")" "true false false"
check "drops ALL" "$(jq -c .drop <<<"$facts")" '["ALL"]'
unit_caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$src/packaging/ctconfirm-trace.service" | tr ' ' '\n' | sed 's/^CAP_//' | sort | paste -sd,)
check "capabilities == the systemd unit's" "$(jq -r '.add | join(",")' <<<"$facts")" "$unit_caps"
check "mounts" "$(jq -r '.mounts | join(" ")' <<<"$facts")" "/run/netns /sys/kernel/btf"
cf_args=$(sed -n 's/^CMD //p' "$src/Containerfile" | jq -r 'join(" ")')
check "args == the Containerfile's CMD" "$(jq -r '.args | join(" ")' <<<"$facts")" "$cf_args"
. "$src/packaging/default"
check "args == /etc/default's CTCT_ARGS" "$cf_args" "$CTCT_ARGS"
bounding=-all,$(jq -r '.add | map(ascii_downcase | "+" + .) | join(",")' <<<"$facts")
out=$(setpriv --bounding-set="$bounding" -- "$BIN" --json --backend tracepoint --duration 1s --stats-interval 0)
check "traces with only the DaemonSet's capabilities ($bounding)" "$?" 0
check "  and seeds the kernel-counter baselines" "$(jq -r 'select(.type == "start") | .baselines_seeded > 0' <<<"$out")" true
out=$(setpriv --bounding-set=-all,+bpf,+perfmon -- "$BIN" --json --backend tracepoint --duration 1s --stats-interval 0)
check "without SYS_ADMIN no baseline is seeded (so it is needed)" "$(jq -r 'select(.type == "start") | .baselines_seeded' <<<"$out")" 0
# a netns held by another user's process: opening its /proc/PID/ns/net takes CAP_SYS_PTRACE
setpriv --reuid=65534 --regid=65534 --clear-groups unshare -U -n sleep 20 &
holder=$!
sleep 0.3
seeded() { setpriv --bounding-set="$1" -- "$BIN" --json --backend tracepoint --duration 1s --stats-interval 0 |
	jq -r 'select(.type == "start") | .baselines_seeded'; }
with=$(seeded "$bounding") without=$(seeded "${bounding/,+sys_ptrace/}")
kill $holder; wait $holder 2>/dev/null
check "without SYS_PTRACE another user's netns is not seeded (so it is needed)" "$((with - without))" 1
setpriv --bounding-set=-all,+perfmon -- "$BIN" --json --backend tracepoint --duration 1s >/dev/null 2>&1
check "without BPF it cannot trace (so it is needed)" "$(( $? != 0 ))" 1
finish
