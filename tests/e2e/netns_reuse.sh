#!/usr/bin/env bash
# Kernel test: a netns inode number is handed out again as soon as its netns is gone (the kernel's ida
# gives the lowest free number). One tracer runs across two lives of the router netns:
#   life 1: FIRST colliding pairs -> Δinsert_failed == FIRST == confirm_drop events;
#   the topology is deleted and built again until the new router has the old router's inode;
#   life 2: SECOND (< FIRST) colliding pairs -> confirm_drop events == SECOND == the new netns' insert_failed.
# In tracepoint mode the tracer keeps a per-inode baseline of insert_failed; kept from life 1 (FIRST),
# the new netns' count (from 0 up to SECOND) never passes it and life 2's drops were not reported.
# The same --netns filter (an inode) selects both lives.
# usage: netns_reuse.sh BACKEND [FIRST] [SECOND]    (root)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:?backend}
FIRST=${2:-10}
SECOND=${3:-4}
HOLD_MS=200
trap 'cleanup; for f in /run/netns/$NS-fill*; do [ -e "$f" ] && ip netns del "${f##*/}"; done' EXIT INT TERM

life() { # life PAIRS SPORT_BASE: colliding pairs through the router; sets LOST and DIF (Δinsert_failed)
	local if0 if1 sent recv
	queue_after_nat && start_listener $HOLD_MS || return 1 # not in a subshell: topo_down stops the listener
	if0=$(ct_stat insert_failed)
	read -r sent recv < <(pairs_traffic 4 "$1" "$2" "$2")
	if1=$(ct_stat insert_failed)
	LOST=$((sent - recv)) DIF=$((${if1:-0} - ${if0:-0}))
}

# The kernel hands out the lowest free number (shared by every kind of namespace): hold fresh netns that
# get lower numbers under other names; one that gets a higher number means the old router is not freed
# yet (a kernel worker does that, later) or its number went elsewhere: give it back and wait; after 20 s
# start over with a new router (3 attempts), then say SKIP.
wait_reuse() { # wait_reuse INODE: sets reused=1 when $RTR has INODE
	local try got
	reused=0
	for try in $(seq 200); do
		ip netns add "$RTR" || return
		# the file itself: entering the netns to stat it could take a number from the same pool
		got=$(stat -L -c %i "/run/netns/$RTR")
		if [ "$got" = "$1" ]; then reused=1; return; fi
		if [ "$got" -lt "$1" ]; then
			fillers=$((fillers + 1))
			touch "/run/netns/$NS-fill$fillers" && mount --bind "/run/netns/$RTR" "/run/netns/$NS-fill$fillers"
		else
			sleep 0.1
		fi
		ip netns del "$RTR"
	done
}

reused=0 fillers=0
for attempt in 1 2 3; do
	topo_up || { not_ok "setup failed"; finish; }
	ino=$(netns_inode "$RTR")
	start_tracer "$BACKEND" || { not_ok "$BACKEND: tracer did not start"; finish; }
	life "$FIRST" 40000 || { not_ok "$BACKEND life 1: setup failed"; finish; }
	lost1=$LOST dif1=$DIF
	sleep 1.5 # pending drops without a free are swept after 1 s
	ev1=$(events_of_type confirm_drop | wc -l)
	# 6.18: a netns deleted with an nft table in it kept its number past 20 s in 2 of 2 tries, one whose
	# ruleset was flushed first was back in 2 s in 2 of 2; here that helps only sometimes (the router also
	# had conntrack and traffic; nothing in userspace holds it), hence the attempts and the SKIP
	in_ns "$RTR" nft flush ruleset
	topo_down
	wait_reuse "$ino"
	echo "# attempt $attempt: router netns inode $ino: reused $reused (other netns held: $fillers)"
	[ $reused = 1 ] && break
	ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -F "net:[$ino]" | sed 's/^/# held by an fd: /'
	for p in /proc/[0-9]*/fd/* /proc/[0-9]*/ns/*; do
		case "$(readlink "$p" 2>/dev/null)" in *":[$ino]") echo "# held: $p $(readlink "$p") $(cat "${p%/*/*}/comm")" ;; esac
	done
	stop_tracer
done
check "$BACKEND life 1: packets lost == pairs" "$lost1" "$FIRST"
check "$BACKEND life 1: Δinsert_failed == lost" "$dif1" "$lost1"
check "$BACKEND life 1: confirm_drop events == Δinsert_failed" "$ev1" "$dif1"
if [ $reused = 0 ]; then
	# Nothing here holds the old netns (no process, no fd); a kernel that keeps the number anyway:
	echo "# SKIP: the kernel did not hand the router's inode out again within 3 x 20 s; not tested this run"
	finish
	exit
fi
check "$BACKEND: the new router netns got the old inode (the case under test)" "$reused" 1
topo_up || not_ok "$BACKEND: setup of life 2 failed"
if [ $reused = 1 ]; then
	life "$SECOND" 42000 || not_ok "$BACKEND life 2: setup failed"
	lost2=$LOST dif2=$DIF
	check "$BACKEND life 2: packets lost == pairs" "${lost2:-}" "$SECOND"
	check "$BACKEND life 2: the new netns' insert_failed == lost" "$(ct_stat insert_failed)" "${lost2:-}"
	sleep 1.5
fi
stop_tracer || not_ok "$BACKEND: tracer exit status $?"
check "$BACKEND life 2: confirm_drop events == the new netns' insert_failed" \
	"$(($(events_of_type confirm_drop | wc -l) - ev1))" "${dif2:-x}"
check "$BACKEND life 2: every event is a flow of life 2 (source ports 42000+)" \
	"$(events_of_type confirm_drop | jq -r '.loser.orig.sport' | tail -n +$((ev1 + 1)) | awk '$1 < 42000' | wc -l)" 0
if [ "$(trace_mode)" = tracepoint ]; then
	check "$BACKEND: summary counts the reused inode" \
		"$(jq -r 'select(.type == "summary") | .losses.netns_inode_reused' "$WORK/trace.json")" 1
fi
finish
