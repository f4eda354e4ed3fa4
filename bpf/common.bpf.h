/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Maps, configuration and CO-RE helpers shared by queue.bpf.c, confirm.bpf.c and drop.bpf.c.
 * The objects are linked into one (bpftool gen object), so every map and config variable is
 * defined once (drop.bpf.c defines CTCT_DEFINE_GLOBALS) and declared extern elsewhere. The defining
 * object must come first on the link line: libbpf 1.1's linker leaves extern map relocations of
 * earlier objects unresolved otherwise (and __weak duplicates are kept, not merged). */
#ifndef CTCT_COMMON_BPF_H
#define CTCT_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "ctct_event.h"

#ifdef CTCT_DEFINE_GLOBALS
#define CTCT_GLOBAL
#else
#define CTCT_GLOBAL extern
#endif

#define NF_DROP 0
#define NF_ACCEPT 1
#define NFCT_PTRMASK (~7UL)
#define IP_CT_IS_REPLY 3
#define CTCT_IPS_CONFIRMED (1UL << 3) /* IPS_CONFIRMED_BIT, uapi and stable since 2.6 */
#define CTCT_AF_INET6 10

/* Set by the loader before load. */
CTCT_GLOBAL const volatile __u32 targ_netns;     /* only this netns inode; 0: all */
CTCT_GLOBAL const volatile __u8 detect_at_free;  /* tracepoint mode: classify drops in kfree_skb */
CTCT_GLOBAL const volatile __u32 nr_cpus;        /* possible CPUs */
CTCT_GLOBAL const volatile __u8 have_resolve_hook; /* nf_ct_resolve_clash is attached */

/* Confirm in flight, keyed by task (see task_key()). */
struct inflight {
	__u64 skb;
	__u64 ct;
	__u64 winner_ct;
	__u32 has_winner;
	__u32 _pad;
	struct ctct_conn loser;
	struct ctct_conn winner;
};

/* A ct that came through the queue and was confirmed: what we know if it later wins a clash. */
struct winner_rec {
	__u64 confirm_ns;
	struct ctct_queue queue;
	struct ctct_tuple orig; /* guards against a recycled nf_conn slab object */
};

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CTCT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* skb -> queue record, from enqueue until confirm (or LRU age-out for packets never confirmed). */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ctct_queue);
} queued SEC(".maps");

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct inflight);
} inflight SEC(".maps");

/* skb -> confirm_drop event waiting for kfree_skb; the loader sweeps entries that never get freed. */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct ctct_event);
} pending SEC(".maps");

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct winner_rec);
} winners SEC(".maps");

/* Tracepoint mode: netns inode -> its insert_failed (all CPUs) at the last look; seeded at start.
 * 64-bit only so that clang's default BPF CPU can compare-and-swap it (32-bit atomics need v3). */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
} baselines SEC(".maps");

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctct_event);
} scratch SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		(*v)++;
}

/* kretprobe has no arguments at return, so entry and exit meet on the task. In softirq on an idle
 * CPU every CPU's current task is pid 0, so the CPU number disambiguates there. */
static __always_inline __u64 task_key(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	if ((__u32)id == 0)
		return (1ULL << 63) | bpf_get_smp_processor_id();
	return id;
}

static __always_inline struct nf_conn *skb_conn(struct sk_buff *skb, __u32 *ctinfo)
{
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);

	if (ctinfo)
		*ctinfo = nfct & 7;
	return (struct nf_conn *)(nfct & NFCT_PTRMASK);
}

static __always_inline __u32 conn_netns(struct nf_conn *ct)
{
	return BPF_CORE_READ(ct, ct_net.net, ns.inum);
}

static __always_inline void read_tuple(struct ctct_tuple *out, const struct nf_conntrack_tuple *t)
{
	bpf_core_read(out->src, sizeof(out->src), &t->src.u3);
	bpf_core_read(out->dst, sizeof(out->dst), &t->dst.u3);
	out->sport = BPF_CORE_READ(t, src.u.all);
	out->dport = BPF_CORE_READ(t, dst.u.all);
	out->l3num = BPF_CORE_READ(t, src.l3num);
	out->protonum = BPF_CORE_READ(t, dst.protonum);
}

static __always_inline void read_conn(struct ctct_conn *out, struct nf_conn *ct)
{
	read_tuple(&out->orig, __builtin_preserve_access_index(&ct->tuplehash[0].tuple));
	read_tuple(&out->reply, __builtin_preserve_access_index(&ct->tuplehash[1].tuple));
	out->status = BPF_CORE_READ(ct, status);
	/* mark and zone only exist with CONFIG_NF_CONNTRACK_MARK / _ZONES */
	if (bpf_core_field_exists(ct->mark))
		out->mark = BPF_CORE_READ(ct, mark);
	if (bpf_core_field_exists(ct->zone))
		out->zone = BPF_CORE_READ(ct, zone.id);
}

/* nf_ct_tuplehash_to_ctrack(): h is tuplehash[dir] inside struct nf_conn. */
static __always_inline struct nf_conn *tuplehash_to_conn(struct nf_conntrack_tuple_hash *h)
{
	__u8 dir = BPF_CORE_READ(h, tuple.dst.dir);
	__u64 off = bpf_core_field_offset(struct nf_conn, tuplehash) +
		    (dir & 1) * bpf_core_type_size(struct nf_conntrack_tuple_hash);

	return (struct nf_conn *)((void *)h - off);
}

static __always_inline struct ctct_event *scratch_event(void)
{
	__u32 zero = 0;
	struct ctct_event *e = bpf_map_lookup_elem(&scratch, &zero);

	if (e)
		__builtin_memset(e, 0, sizeof(*e));
	return e;
}

static __always_inline void submit(struct ctct_event *e)
{
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0)) {
		count(CTCT_CNT_RINGBUF_FULL);
		return;
	}
	count(CTCT_CNT_EVENTS);
}

#endif
