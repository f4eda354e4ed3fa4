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
#define CTCT_IP_CT_ESTABLISHED 0 /* enum ip_conntrack_info, uapi: a reply was seen, so it is confirmed */
#define CTCT_IPS_CONFIRMED (1UL << 3) /* IPS_CONFIRMED_BIT, uapi and stable since 2.6 */
#define CTCT_AF_INET6 10
#define NF_VERDICT_MASK 0xff
#define CTCT_ESRCH 3
#define CTCT_ENOSPC 28
#define CTCT_ENOBUFS 105
#define CTCT_IPS_DYING (1UL << 9) /* IPS_DYING_BIT */
#define CTCT_WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#define CTCT_READ_ONCE(x) (*(volatile typeof(x) *)&(x))

/* Set by the loader before load. */
CTCT_GLOBAL const volatile __u32 targ_netns;     /* only this netns inode; 0: all */
CTCT_GLOBAL const volatile __u8 detect_at_free;  /* tracepoint mode: classify drops in kfree_skb */
CTCT_GLOBAL const volatile __u32 nr_cpus;        /* possible CPUs */
CTCT_GLOBAL const volatile __u8 have_resolve_hook; /* nf_ct_resolve_clash is attached */
/* nfqnl_enqueue_packet's return is an fexit, which sees the arguments: no per-task record at entry */
CTCT_GLOBAL const volatile __u8 enqueue_exit_has_args;
/* nfqnl_enqueue_packet's return is not hooked (the default: a return hook costs every queued packet a
 * second trampoline): a packet that could not be queued is found where nf_queue() frees it, and its
 * class comes from the queue's counters, as in tracepoint mode. --exact-queue-errors hooks the return. */
CTCT_GLOBAL const volatile __u8 queue_drop_at_free;
/* No reinject hook (the default of the function backends; --verdict-hook adds it): a free inside the
 * reinject function that no confirm drop waits for is a verdict drop (the listener's or a later hook's), as
 * in tracepoint mode. With the enqueue hook (not --no-queue-hooks) a packet that may meet confirm gets its
 * queue record (cslots) at enqueue, closed at confirm or at that free. */
CTCT_GLOBAL const volatile __u8 verdict_drop_at_free;
/* __nf_conntrack_confirm's return is an fexit and nf_ct_resolve_clash is hooked: no entry program */
CTCT_GLOBAL const volatile __u8 confirm_exit_has_args;
/* Flow filters (--proto, --addr, --port, --queue): an event is kept only if its flow matches. */
CTCT_GLOBAL const volatile __u8 targ_proto;       /* IPPROTO_*; 0: all */
CTCT_GLOBAL const volatile __u16 targ_port;       /* network order; either end of either tuple; 0: all */
CTCT_GLOBAL const volatile __u8 targ_addr_family; /* AF_INET or AF_INET6; 0: no address filter */
CTCT_GLOBAL const volatile __u8 targ_addr_prefix; /* prefix length in bits */
CTCT_GLOBAL const volatile __u8 targ_addr[16];    /* either end of either tuple */
CTCT_GLOBAL const volatile __u8 targ_queue_set;
CTCT_GLOBAL const volatile __u32 targ_queue;
/* Kernel text of nf_queue() (frees a packet that could not be queued) and of the reinject functions
 * (free a packet the listener dropped), from kallsyms: where kfree_skb was called tells why. 0: unknown. */
CTCT_GLOBAL const volatile __u64 queue_text_lo;
CTCT_GLOBAL const volatile __u64 queue_text_hi;
CTCT_GLOBAL const volatile __u64 reinject_text_lo[2];
CTCT_GLOBAL const volatile __u64 reinject_text_hi[2];
/* nf_hook_slow(): frees what a hook entry returned NF_DROP for, among them a confirm loser (the queue at
 * an earlier hook, or none). Tracepoint mode looks only at frees here, in nf_queue() and in the reinject
 * functions; 0: unknown, then at every free. */
CTCT_GLOBAL const volatile __u64 hook_text_lo;
CTCT_GLOBAL const volatile __u64 hook_text_hi;

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

/* Queue records, in two arrays indexed by a hash of their key, two slots per bucket: the verifier inlines
 * the lookup and a record is written in place, so enqueue and reinject, which run for every queued packet,
 * call no map helper (a hash map cost each packet an update and a delete: bench/datapath-backends.sh).
 *  - qslots, by nf_queue_entry, only with the reinject hook: the packet is in a queue (for a verdict drop
 *    or a failed enqueue). Freed at reinject. A live record is overwritten only when both slots of its bucket are live: counted,
 *    queue_slot_evicted.
 *  - cslots, by conntrack: reinjected (without the reinject hook: enqueued) with a conntrack that may
 *    still be unconfirmed (ctinfo new or related), for confirm: the loser's record, or, once confirmed
 *    (confirm_ns), the record of a winner that a later loser names. Overwritten by newer ones (as an LRU would evict them); confirm checks that
 *    the record names its skb, so a conntrack or skb in reused memory is not taken for another. */
#define CTCT_SLOT_BITS 16
#define CTCT_QSLOT_LIVE_NS (60ULL * 1000000000ULL) /* a packet in a queue longer than this is gone */

struct qslot {
	__u64 entry; /* 0: free */
	struct ctct_queue q;
};

struct cslot {
	__u64 ct; /* 0: free */
	__u64 skb;
	__u64 confirm_ns; /* 0: not confirmed yet */
	struct ctct_queue q;
};

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << CTCT_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct qslot);
} qslots SEC(".maps");

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << CTCT_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct cslot);
} cslots SEC(".maps");

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

/* Tracepoint mode: netns inode -> struct ctct_baseline; seeded at start. */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct ctct_baseline);
} baselines SEC(".maps");

/* How many entries enqueue_failed and pending hold (the loader's sweep decrements too): while 0, the
 * per-packet paths (every enqueue, every kfree_skb) skip their lookups; failures are rare. */
CTCT_GLOBAL __u64 n_enqueue_failed;
CTCT_GLOBAL __u64 n_pending;
/* Tracepoint mode: cookies of netns the loader made just before seeding, one on each CPU it may run on.
 * A netns takes its cookie from its CPU's batch of 4096 (gen_cookie_next(), 5.12+: 6.18 here gave 2386,
 * 6692, 2387, 6693 on CPUs 0, 1, 0, 1), so order holds only within a batch: batch ((cookie - 1) >> 12)
 * -> the latest mark in it; netns_mark_top_batch: the newest marked batch (0 with no marks). */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} netns_marks SEC(".maps");
CTCT_GLOBAL __u64 netns_mark_top_batch;
CTCT_GLOBAL __u32 netns_marks_set;
/* confirm_exit_has_args: clashes recorded by nf_ct_resolve_clash and not yet seen by confirm's return */
CTCT_GLOBAL __u64 n_inflight;

static __always_inline long store_counted(void *map, void *key, void *val, __u64 *n)
{
	long err = bpf_map_update_elem(map, key, val, BPF_NOEXIST);

	if (!err) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	return bpf_map_update_elem(map, key, val, BPF_EXIST); /* replaces: already counted */
}

static __always_inline void delete_counted(void *map, void *key, __u64 *n)
{
	/* whoever deletes it (this program, another CPU, the loader's sweep) counts it */
	if (!bpf_map_delete_elem(map, key))
		__sync_fetch_and_add(n, -1);
}

struct enqueue_failure {
	__u64 skb;
	struct ctct_event ev;
};

/* resolve_clash builds an inflight record in the scratch room too */
_Static_assert(sizeof(struct inflight) <= sizeof(struct enqueue_failure), "scratch holds an inflight record");

/* Per-CPU room to build an event (too big for the BPF stack); wrapped so a failed enqueue can be
 * stored with its skb in one copy. */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enqueue_failure);
} scratch SEC(".maps");

/* nfqnl_enqueue_packet's arguments for its kretprobe, which has none, or (queue_drop_at_free) for
 * kfree_skb in nf_queue(), which frees the skb of a failed enqueue right after it, on the same CPU. Per
 * CPU, not per task: entry and return run on one CPU unless the task migrates or a softirq's enqueue nests
 * in a task's (both under the task's pid). The return clears the record, so the outer return of a nested
 * pair, or one on another CPU, finds none of its own and, only if its enqueue failed, counts
 * enqueue_args_lost. At a free the record must name the freed skb. */
struct enqueuing_rec {
	__u64 task;
	__u64 entry;
	__u64 skb;
	__u64 start_ns;
	__u32 netns_ino;
	__u32 queue_num;
	__u8 hook; /* only for the return hook (--exact-queue-errors) */
	__u8 pf;
	__u8 _pad[6];
};

CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enqueuing_rec);
} enqueuing SEC(".maps");

/* A failed enqueue, keyed by task, until nf_queue() frees the skb (a queue_drop) or the task goes on
 * without freeing it (--queue-bypass let it through: a queue_bypass). The loader sweeps stale ones. */
CTCT_GLOBAL struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct enqueue_failure);
} enqueue_failed SEC(".maps");

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

/* A build with -DCTCT_BENCH_FLOOR (cmake -DCTCT_BENCH_FLOOR=ON; bench/README) has every program on the queue
 * and confirm paths return at once: the datapath benchmark then measures what attaching alone costs (a
 * trampoline, a kprobe), the floor under any program. Never for use: it reports nothing. */
#ifdef CTCT_BENCH_FLOOR
#define CTCT_FLOOR() return 0
#else
#define CTCT_FLOOR() do { } while (0)
#endif

/* 6.2+: bpf_rdonly_cast() turns an address into a pointer the program may load through directly (a
 * faulting load becomes 0, as bpf_probe_read_kernel() would), so a read is one instruction instead of a
 * helper call. The loader picks the *_cast programs (kfree_skb_btf_cast, enqueue_kprobe_cast, enqueue_fentry_cast) when the
 * kernel's BTF has the kfunc; the weak extern leaves the older kernels' programs unaffected. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define CTCT_CAST(addr, type) ((type *)bpf_rdonly_cast((void *)(addr), bpf_core_type_id_kernel(type)))

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

/* struct nf_conntrack_tuple as every kernel since 2.6.x lays it out (checked against BTF below). */
struct ctct_raw_tuple {
	__u8 src[16];
	__u16 sport;
	__u16 l3num;
	__u8 dst[16];
	__u16 dport;
	__u8 protonum;
	__u8 dir;
};

static __always_inline void read_tuple(struct ctct_tuple *out, const struct nf_conntrack_tuple *t)
{
	struct ctct_raw_tuple raw;

	/* One helper call for the whole tuple where the running kernel's layout is the usual one (the
	 * relocated offsets are constants to the verifier, so the other branch is dropped at load). */
	if (bpf_core_type_size(struct nf_conntrack_tuple) == sizeof(raw) &&
	    bpf_core_field_offset(struct nf_conntrack_tuple, src.u3) == 0 &&
	    bpf_core_field_offset(struct nf_conntrack_tuple, src.u) == 16 &&
	    bpf_core_field_offset(struct nf_conntrack_tuple, src.l3num) == 18 &&
	    bpf_core_field_offset(struct nf_conntrack_tuple, dst.u3) == 20 &&
	    bpf_core_field_offset(struct nf_conntrack_tuple, dst.u) == 36 &&
	    bpf_core_field_offset(struct nf_conntrack_tuple, dst.protonum) == 38) {
		if (bpf_probe_read_kernel(&raw, sizeof(raw), t))
			__builtin_memset(&raw, 0, sizeof(raw));
		__builtin_memcpy(out->src, raw.src, sizeof(out->src));
		__builtin_memcpy(out->dst, raw.dst, sizeof(out->dst));
		out->sport = raw.sport;
		out->dport = raw.dport;
		out->l3num = raw.l3num;
		out->protonum = raw.protonum;
		return;
	}
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

static __always_inline __u32 slot_bucket(__u64 key)
{
	/* Fibonacci hashing: entries, skbs and conntracks are slab objects a power of two apart */
	return (__u32)((key * 0x9E3779B97F4A7C15ULL) >> (64 - CTCT_SLOT_BITS)) & ~1U;
}

/* entry's record while it is in a queue, else NULL */
static __always_inline struct qslot *qslot_of(__u64 entry)
{
	__u32 i = slot_bucket(entry);
	struct qslot *s = bpf_map_lookup_elem(&qslots, &i);

	if (s && s->entry == entry)
		return s;
	i |= 1;
	s = bpf_map_lookup_elem(&qslots, &i);
	if (s && s->entry == entry)
		return s;
	return NULL;
}

/* Copies entry's record into out and frees it; false if there is none or it was overwritten meanwhile. */
static __always_inline bool qslot_take(__u64 entry, struct ctct_queue *out)
{
	struct qslot *s = qslot_of(entry);

	if (!s)
		return false;
	*out = s->q;
	/* compare-and-swap: of two takers, one owns it */
	return __sync_val_compare_and_swap(&s->entry, entry, 0) == entry;
}

/* ct's record if it names skb too */
static __always_inline struct cslot *cslot_of(__u64 ct, __u64 skb)
{
	__u32 i = slot_bucket(ct);
	struct cslot *s = bpf_map_lookup_elem(&cslots, &i);

	if (s && s->ct == ct && (!skb || s->skb == skb))
		return s;
	i |= 1;
	s = bpf_map_lookup_elem(&cslots, &i);
	if (s && s->ct == ct && (!skb || s->skb == skb))
		return s;
	return NULL;
}

/* Copies the record of skb's unconfirmed conntrack ct into out and frees it; false if there is none, it is a
 * winner's (confirmed), or it was overwritten meanwhile (a torn copy is not used). */
static __always_inline bool cslot_take(__u64 ct, __u64 skb, struct ctct_queue *out)
{
	struct cslot *s = cslot_of(ct, skb);

	if (!s || s->confirm_ns)
		return false;
	*out = s->q;
	/* compare-and-swap: of two takers, one owns it */
	return __sync_val_compare_and_swap(&s->ct, ct, 0) == ct;
}

/* Only a conntrack not yet confirmed can meet __nf_conntrack_confirm: new or related, original direction
 * (established means a reply was seen; a queue before conntrack leaves none). */
static __always_inline bool may_meet_confirm(unsigned long nfct)
{
	__u32 ctinfo = nfct & 7;

	return (nfct & NFCT_PTRMASK) && ctinfo != CTCT_IP_CT_ESTABLISHED && ctinfo < IP_CT_IS_REPLY;
}

/* Takes the record a new flow's packet got at its enqueue (with --verdict-hook: at its reinject), kept under
 * its unconfirmed conntrack until confirm; nfct is the skb's _nfct. false if there is none. */
static __always_inline bool take_new_flow_record(unsigned long nfct, __u64 skb, struct ctct_queue *out)
{
	return may_meet_confirm(nfct) && cslot_take(nfct & NFCT_PTRMASK, skb, out);
}

static __always_inline struct enqueue_failure *scratch_wrapper(void)
{
	__u32 zero = 0;
	struct enqueue_failure *w = bpf_map_lookup_elem(&scratch, &zero);

	if (w)
		__builtin_memset(w, 0, sizeof(*w));
	return w;
}

static __always_inline struct ctct_event *scratch_event(void)
{
	struct enqueue_failure *w = scratch_wrapper();

	return w ? &w->ev : NULL;
}

static __always_inline bool in_text(__u64 addr, __u64 lo, __u64 hi)
{
	return lo && addr >= lo && addr < hi;
}

static __always_inline bool addr_match(const __u8 *a)
{
	__u32 bits = targ_addr_prefix;

#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u8 mask = bits >= 8 ? 0xff : (__u8)(0xff00 >> bits);

		if ((a[i] ^ targ_addr[i]) & mask)
			return false;
		bits = bits >= 8 ? bits - 8 : 0;
	}
	return true;
}

static __always_inline bool port_match(const struct ctct_tuple *t)
{
	return t->sport == targ_port || t->dport == targ_port;
}

/* The filters, on an event about to be emitted: cheap, and events are rare next to packets. */
static __always_inline bool keep(const struct ctct_event *e)
{
	const struct ctct_conn *c = &e->loser;

	if (targ_queue_set && (!(e->flags & CTCT_F_LOSER_QUEUED) || e->loser_queue.queue_num != targ_queue))
		return false;
	if (!targ_proto && !targ_port && !targ_addr_family)
		return true;
	if (e->flags & CTCT_F_NO_CONNTRACK)
		return false;
	if (targ_proto && c->orig.protonum != targ_proto)
		return false;
	if (targ_port && !port_match(&c->orig) && !port_match(&c->reply))
		return false;
	if (targ_addr_family) {
		if (c->orig.l3num != targ_addr_family)
			return false;
		if (!addr_match(c->orig.src) && !addr_match(c->orig.dst) && !addr_match(c->reply.src) &&
		    !addr_match(c->reply.dst))
			return false;
	}
	return true;
}

/* The packet's flow, or NO_CONNTRACK; original-direction conntrack is what confirm inserts. */
static __always_inline void fill_flow(struct ctct_event *e, struct sk_buff *skb)
{
	struct nf_conn *ct = skb_conn(skb, NULL);

	if (!ct) {
		e->flags |= CTCT_F_NO_CONNTRACK;
		return;
	}
	read_conn(&e->loser, ct);
	if (e->loser.orig.l3num == CTCT_AF_INET6)
		e->flags |= CTCT_F_IPV6;
}

static __always_inline void submit(struct ctct_event *e)
{
	if (!keep(e))
		return;
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0)) {
		count(CTCT_CNT_RINGBUF_FULL);
		return;
	}
	count(CTCT_CNT_EVENTS);
}

#endif
