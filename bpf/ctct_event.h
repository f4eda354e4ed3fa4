/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Event and config layout shared by the BPF programs and the C++ loader.
 * Fixed-width types and explicit padding only: the loader static_asserts the sizes. */
#ifndef CTCT_EVENT_H
#define CTCT_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CTCT_SCHEMA_VERSION 3

enum ctct_event_type {
	CTCT_EV_CONFIRM_DROP = 1,   /* __nf_conntrack_confirm returned NF_DROP */
	CTCT_EV_CLASH_RESOLVED = 2, /* nf_ct_resolve_clash kept the packet */
	CTCT_EV_VERDICT_DROP = 3,   /* the listener gave verdict NF_DROP */
	CTCT_EV_QUEUE_DROP = 4,     /* the packet could not be queued and was freed (cause says why) */
	CTCT_EV_QUEUE_BYPASS = 5,   /* no listener, but the rule's --queue-bypass let the packet go on */
	CTCT_EV_FAIL_OPEN = 6,      /* queue full or socket full, the queue's fail-open flag accepted it */
};

/* Why confirm dropped the packet; only CLASH is the NFQUEUE race, the rest are rarer kernel paths. */
enum ctct_cause {
	CTCT_CAUSE_UNKNOWN = 0,
	CTCT_CAUSE_CLASH = 1,         /* lost the race to an entry already in the hash */
	CTCT_CAUSE_OTHER = 2,         /* dying ct, invalid extension or chain too long */
	CTCT_CAUSE_INSERT_FAILED = 3, /* tracepoint mode: the netns' insert_failed grew */
	/* queue_drop / queue_bypass causes, from nfqnl_enqueue_packet's return value */
	CTCT_CAUSE_QUEUE_FULL = 4,         /* -ENOSPC: queue_total reached queue_maxlen (queue_dropped) */
	CTCT_CAUSE_SOCKET_OVERFLOW = 5,    /* -ENOBUFS from netlink: listener's receive buffer full (user_dropped) */
	CTCT_CAUSE_NO_LISTENER = 6,        /* -ESRCH: no process bound to the queue */
	CTCT_CAUSE_UNCONFIRMED_SHARED = 7, /* unconfirmed conntrack shared with a clone (nf_ct_drop_unconfirmed) */
	CTCT_CAUSE_ENQUEUE_ERROR = 8,      /* any other error; enqueue_error has the errno */
	CTCT_CAUSE_LISTENER_VERDICT = 9,   /* verdict_drop */
	/* tracepoint mode, verdict_drop: freed where the reinject function frees a packet that will not go
	 * on, which is the listener's NF_DROP or an NF_DROP from a hook after the queue on the same path */
	CTCT_CAUSE_VERDICT_OR_LATER_HOOK = 10,
};

/* Which mechanism produced the event. */
enum ctct_source {
	CTCT_SRC_CONFIRM_HOOK = 1, /* fentry/fexit or kprobe/kretprobe on __nf_conntrack_confirm */
	CTCT_SRC_FREE_HEURISTIC = 2, /* tracepoint mode: skb:kfree_skb + per-CPU insert_failed */
	CTCT_SRC_QUEUE_HOOK = 3,     /* nfqnl_enqueue_packet return or reinject entry */
	CTCT_SRC_FREE_LOCATION = 4,  /* tracepoint mode: freed inside nf_queue or the reinject function */
};

enum ctct_event_flags {
	CTCT_F_LOSER_QUEUED = 1 << 0,  /* loser_queue is valid */
	CTCT_F_HAS_WINNER = 1 << 1,    /* winner is valid */
	CTCT_F_WINNER_QUEUED = 1 << 2, /* winner_queue and winner_confirm_ns are valid */
	CTCT_F_FREED = 1 << 3,         /* the skb was seen dying in kfree_skb: drop_reason, drop_location valid */
	CTCT_F_IPV6 = 1 << 4,
	CTCT_F_NO_CONNTRACK = 1 << 5,  /* the skb had no conntrack: loser tuples are empty */
};

struct ctct_tuple {
	__u8 src[16]; /* IPv4 uses the first 4 bytes, network order */
	__u8 dst[16];
	__u16 sport; /* network byte order as the kernel stores it; ICMP: id */
	__u16 dport; /* network byte order; ICMP: type << 8 | code */
	__u8 l3num;  /* AF_INET or AF_INET6 */
	__u8 protonum;
	__u8 _pad[2];
};

struct ctct_conn {
	struct ctct_tuple orig;
	struct ctct_tuple reply;
	__u64 status; /* enum ip_conntrack_status bits */
	__u32 mark;
	__u16 zone;
	__u8 _pad[2];
};

/* Where a queued packet was last seen leaving the queue. With the reinject hook (--verdict-hook) that is the
 * reinject function, with packet id and verdict. Without it (the default: one hook per queued packet) a
 * record is made at enqueue only for a packet whose conntrack may still meet confirm, and it is closed at
 * confirm or where the reinject function frees the packet: reinject_ns is then that time, which is the
 * reinject plus the hooks after the queue (microseconds), and packet id and verdict are unknown. */
enum ctct_queue_left {
	CTCT_LEFT_REINJECT = 0,
	CTCT_LEFT_CONFIRM = 1,
	CTCT_LEFT_FREE = 2,
};

struct ctct_queue {
	__u64 enqueue_ns; /* bpf_ktime_get_ns() at nfqnl_enqueue_packet */
	__u64 reinject_ns; /* at nf_reinject/nfqnl_reinject */
	__u32 queue_num;
	__u32 packet_id; /* nf_queue_entry->id, as userspace saw it */
	__u32 verdict;
	__u8 hook; /* NF_INET_* */
	__u8 pf;   /* NFPROTO_* */
	__u8 left; /* enum ctct_queue_left: what reinject_ns is the time of */
	__u8 _pad;
};

struct ctct_event {
	__u32 type;  /* enum ctct_event_type */
	__u32 cause; /* enum ctct_cause */
	__u32 source; /* enum ctct_source */
	__u32 flags; /* enum ctct_event_flags */
	__u64 ts_ns; /* bpf_ktime_get_ns() of the outcome (CLOCK_MONOTONIC) */
	__u32 netns_ino;
	__u32 cpu;
	__u32 drop_reason; /* enum skb_drop_reason value; name comes from the running kernel's BTF */
	__u32 insert_failed_delta; /* tracepoint mode: growth of the netns' insert_failed; else 0 */
	__u64 drop_location; /* kernel text address that freed the skb */
	__u64 winner_confirm_ns; /* when the winner was confirmed */
	struct ctct_conn loser;
	struct ctct_conn winner;
	struct ctct_queue loser_queue;
	struct ctct_queue winner_queue;
	__s32 enqueue_error; /* queue_drop/queue_bypass: nfqnl_enqueue_packet's negative errno; else 0 */
	__u32 _pad;
};

/* Tracepoint mode, per netns inode: the netns' insert_failed (all CPUs) at the last look. Inode numbers
 * are reused as soon as a netns is gone, so the entry also names its netns by cookie (unique per boot);
 * a stranger's inode restarts from its first look. count is 64-bit only so that clang's default BPF CPU
 * can compare-and-swap it (32-bit atomics need v3). */
struct ctct_baseline {
	__u64 count;
	__u64 cookie; /* net->net_cookie; 0: seeded by the loader without one, not looked at yet */
	__u64 stat;   /* net->ct.stat (per-CPU base), cached by the first look */
};

/* Per-CPU loss and health counters, index into the counters array map. */
enum ctct_counter {
	CTCT_CNT_RINGBUF_FULL = 0,    /* bpf_ringbuf_reserve failed: event lost */
	CTCT_CNT_QUEUE_SLOT_EVICTED,  /* a queued packet's record was overwritten while it waited (both slots pending) */
	CTCT_CNT_INFLIGHT_MAP_FULL,   /* confirm entry record could not be stored */
	CTCT_CNT_PENDING_MAP_FULL,    /* drop waiting for kfree_skb could not be stored */
	CTCT_CNT_UNSEEDED_BASELINE,   /* tracepoint mode: first look at a netns that predates the start, not seeded */
	CTCT_CNT_ENQUEUE_ARGS_LOST,   /* kprobe mode, --exact-queue-errors: a failed enqueue whose arguments another task's overwrote */
	CTCT_CNT_BASELINE_MAP_FULL,   /* tracepoint mode: a netns' insert_failed baseline could not be stored */
	CTCT_CNT_NETNS_REUSED,        /* tracepoint mode: a baseline's netns inode now names a new netns */
	CTCT_CNT_UNSEEDED_UNCLASSIFIED, /* tracepoint mode: a drop in such a netns, its insert_failed not 0 at the first look: not reported */
	CTCT_CNT_EVENTS,              /* events submitted */
	CTCT_CNT_MAX,
};

#endif
