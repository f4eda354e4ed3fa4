#!/usr/bin/env bash
# Kernel test: each event names its netns (netns_info). Three routers, a confirm-drop collision in each:
#   named:     the router is an `ip netns add` name (and 300 extra processes make the /proc scan's cost
#              visible in the summary's netns_naming.longest_scan_ms);
#   unnamed:   the name is deleted once the listener holds the netns: only the process can name it;
#   container: the listener is moved into a cgroup laid out as the kubelet and containerd make one
#              (systemd driver), with kubelet's pod log directory: container id, pod uid, namespace, name.
# Per router: confirm_drop events == Δinsert_failed == pairs, and every event's netns_info is what the
# test set up. usage: netns_names.sh BACKEND [PAIRS]   (root; cgroup v2 mounted somewhere)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
PAIRS=${2:-8}
HOLD_MS=200
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
POD_UID=$(cat /proc/sys/kernel/random/uuid)
CTR_ID=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
POD_NS=ctct-e2e POD_NAME=names-$$
CG_PATH=kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_UID//-/_}.slice/cri-containerd-$CTR_ID.scope
POD_LOG=/var/log/pods/${POD_NS}_${POD_NAME}_$POD_UID
SLEEPERS=()

# the router by a path other than its name, once the name is gone (ct_stat and netns_inode use in_ns)
RTR_PATH=
in_ns() {
	local ns=$1; shift
	if [ "$ns" = "$RTR" ] && [ -n "$RTR_PATH" ]; then nsenter --net="$RTR_PATH" "$@"; else nsenter --net="/run/netns/$ns" "$@"; fi
}

undo_fakes() {
	[ ${#SLEEPERS[@]} -gt 0 ] && kill "${SLEEPERS[@]}" 2>/dev/null
	SLEEPERS=()
	local d
	# leaf first; the listener that was in it is gone with the topology
	if [ -n "$CG2" ]; then
		for d in "$CG_PATH" "${CG_PATH%/*}" "${CG_PATH%/*/*}"; do
			[ -d "$CG2/$d" ] && rmdir "$CG2/$d" 2>/dev/null
		done
		# the two upper slices are left only if this test made them (another kubelet-like user may exist)
		[ -n "${MADE_KUBEPODS:-}" ] && rmdir "$CG2/kubepods.slice" 2>/dev/null
	fi
	rm -rf "$POD_LOG"
	[ -n "${MADE_POD_LOGS:-}" ] && rmdir /var/log/pods 2>/dev/null
	true
}
trap 'cleanup; undo_fakes' EXIT INT TERM

# collision PAIRS [SPORT_BASE]: colliding pairs through the router with the tracer on it; sets LOST DIF EVENTS INO
collision() {
	local if0 if1 sent recv
	INO=$(netns_inode "$RTR")
	if0=$(ct_stat insert_failed)
	start_tracer "$BACKEND" || return 1
	local text_pid=
	if [ -n "${TEXT_TOO:-}" ]; then # a second tracer beside it, text output (each has its own ring)
		"$TRACER" --backend "$BACKEND" --netns "$INO" >"$WORK/trace.txt" 2>"$WORK/trace.txt.err" &
		text_pid=$!
		for _ in $(seq 300); do grep -q '^tracing' "$WORK/trace.txt.err" && break; sleep 0.1; done
	fi
	read -r sent recv < <(pairs_traffic 4 "$1" "${2:-40000}" "${2:-40000}")
	sleep 1.5 # drops without a free are swept after 1 s
	stop_tracer || not_ok "tracer exit status $?"
	[ -z "$text_pid" ] || { kill -INT "$text_pid"; wait "$text_pid"; }
	if1=$(ct_stat insert_failed)
	LOST=$((sent - recv)) DIF=$((if1 - if0)) EVENTS=$(events_of_type confirm_drop | wc -l)
}

counts() { # counts TAG
	check "$1: packets lost == pairs" "$LOST" "$PAIRS"
	check "$1: confirm_drop events == Δinsert_failed" "$EVENTS" "$DIF"
}

# events whose netns_info does not satisfy the jq condition
bad_events() { events_of_type confirm_drop | jq -c "select(($1) | not) | .netns_info" | wc -l; }

# --- named
tag="$BACKEND named netns"
for _ in $(seq 300); do sleep 60 & SLEEPERS+=($!); done
if topo_up && queue_after_nat && start_listener $HOLD_MS && TEXT_TOO=1 collision "$PAIRS"; then
	counts "$tag"
	check "$tag: text lines with owner=netns:NAME" "$(grep -c " confirm_drop netns=$INO owner=netns:$RTR udp " "$WORK/trace.txt")" "$EVENTS"
	check "$tag: netns_info names the netns and its listener" "$(bad_events '.netns == '"$INO"' and .netns_info.names == ["'"$RTR"'"]
		and .netns_info.label == "netns:'"$RTR"'" and .netns_info.host == false and .netns_info.container == null
		and .netns_info.pod == null and .netns_info.processes[0].pid == '"$LISTENER_PID"'
		and .netns_info.processes[0].comm == "nfq_hold"')" 0
	scan_ms=$(jq -r 'select(.type == "summary") | .netns_naming.longest_scan_ms' "$WORK/trace.json")
	echo "# $tag: processes on the host during the scan: $(find /proc -maxdepth 1 -name "[0-9]*" | wc -l); longest /proc scan ${scan_ms} ms," \
		"scans $(jq -r 'select(.type == "summary") | .netns_naming.scans' "$WORK/trace.json")"
	check "$tag: a /proc scan with 300+ processes under 100 ms" "$(jq -r 'select(.type == "summary") | .netns_naming.longest_scan_ms | type == "number" and . < 100' "$WORK/trace.json")" true
else
	not_ok "$tag: setup failed: $(cat "$WORK/trace.err" 2>/dev/null)"
fi
topo_down
kill "${SLEEPERS[@]}" 2>/dev/null
SLEEPERS=()

# --- unnamed: the listener keeps the netns alive after `ip netns del`
tag="$BACKEND unnamed netns"
if topo_up && queue_after_nat && start_listener $HOLD_MS; then
	RTR_PATH=/proc/$LISTENER_PID/ns/net
	ip netns del "$RTR"
	if [ ! -e "/run/netns/$RTR" ] && collision "$PAIRS"; then
		counts "$tag"
		check "$tag: netns_info names it by its only process" "$(bad_events '.netns == '"$INO"' and .netns_info.names == []
			and .netns_info.label == "pid:'"$LISTENER_PID"'/nfq_hold" and .netns_info.process_count >= 1
			and .netns_info.processes[0].pid == '"$LISTENER_PID"' and .netns_info.container == null and .netns_info.pod == null')" 0
	else
		not_ok "$tag: setup failed"
	fi
else
	not_ok "$tag: setup failed"
fi
topo_down
RTR_PATH=

# --- container: a kubelet pod's container cgroup (systemd driver, containerd) and the pod's log directory
tag="$BACKEND container netns"
if [ -z "$CG2" ]; then
	not_ok "$tag: no cgroup2 mount on this host"
else
	[ -d "$CG2/kubepods.slice" ] || MADE_KUBEPODS=1
	[ -d /var/log/pods ] || MADE_POD_LOGS=1
	if topo_up && queue_after_nat && start_listener $HOLD_MS && mkdir -p "$CG2/$CG_PATH" &&
		echo "$LISTENER_PID" >"$CG2/$CG_PATH/cgroup.procs" && mkdir -p "$POD_LOG"; then
		echo "# $tag: listener $LISTENER_PID cgroup: $(tr '\n' ' ' <"/proc/$LISTENER_PID/cgroup")"
		if collision "$PAIRS"; then
			counts "$tag"
			check "$tag: netns_info has the container and the pod" "$(bad_events '.netns == '"$INO"'
				and .netns_info.label == "pod:'"$POD_NS/$POD_NAME"'"
				and .netns_info.container == {"id": "'"$CTR_ID"'", "runtime": "containerd"}
				and .netns_info.pod == {"uid": "'"$POD_UID"'", "namespace": "'"$POD_NS"'", "name": "'"$POD_NAME"'"}
				and .netns_info.processes[0].pid == '"$LISTENER_PID"' and .netns_info.names == ["'"$RTR"'"]')" 0
		else
			not_ok "$tag: tracer did not start"
		fi
		# without the kubelet's directory the pod has its uid only: namespace and name null, never guessed
		rm -rf "$POD_LOG"
		if collision 2 42000; then
			check "$tag, no pod log dir: packets lost" "$LOST" 2
			check "$tag, no pod log dir: Δinsert_failed == lost" "$DIF" "$LOST"
			check "$tag, no pod log dir: pod namespace and name null" "$(bad_events '.netns_info.label == "pod:'"$POD_UID"'"
				and .netns_info.pod == {"uid": "'"$POD_UID"'", "namespace": null, "name": null}')" 0
			check "$tag, no pod log dir: confirm_drop events == Δinsert_failed" "$EVENTS" "$DIF"
		fi
	else
		not_ok "$tag: setup failed"
	fi
fi
topo_down
undo_fakes
finish
