/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The enqueue side of the NFQUEUE path: the queue records' writers and the handler of nfqnl_enqueue_packet's
 * entry, for queue.bpf.c's programs. A header rather than part of queue.bpf.c because drop.bpf.c's
 * enqueue_kprobe_cast needs the handler too (why it lives there: see that program). */
#ifndef CTCT_ENQUEUE_BPF_H
#define CTCT_ENQUEUE_BPF_H

#include "common.bpf.h"

/* direct: an fentry program, whose arguments are BTF pointers it may load through (a faulting load gives
 * 0), or enqueue_kprobe_cast (6.2+) with the entry cast by bpf_rdonly_cast(); one instruction per field
 * instead of a bpf_probe_read_kernel() call. enqueue_kprobe (before 6.2) reads through the helper. The entry's address itself, a key to hash, comes as a number either way
 * (fentry: bpf_get_func_arg(), inlined; the verifier allows no arithmetic on a BTF pointer). */
#define CTCT_RD(direct, fields, src, ...) ((direct) ? (src)->fields : BPF_CORE_READ(src, __VA_ARGS__))

/* entry->skb as a number: the pending map's key (rare paths only: a helper call) */
static __always_inline __u64 entry_skb(struct nf_queue_entry *entry)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), __builtin_preserve_access_index(&entry->skb));
	return v;
}

static __always_inline bool qslot_live(const struct qslot *s, __u64 now)
{
	return s->entry && s->q.enqueue_ns + CTCT_QSLOT_LIVE_NS > now;
}

/* The record of a packet entering a queue, in a free slot of its bucket; with both live, the older is
 * overwritten and counted. */
static __always_inline void qslot_store(__u64 entry, const struct ctct_queue *q)
{
	__u32 i = slot_bucket(entry), j = i | 1;
	struct qslot *a = bpf_map_lookup_elem(&qslots, &i), *b = bpf_map_lookup_elem(&qslots, &j), *s;

	if (!a || !b)
		return;
	if (!qslot_live(a, q->enqueue_ns))
		s = a;
	else if (!qslot_live(b, q->enqueue_ns))
		s = b;
	else {
		count(CTCT_CNT_QUEUE_SLOT_EVICTED);
		s = a->q.enqueue_ns <= b->q.enqueue_ns ? a : b;
	}
	/* a reader copying this slot now sees entry change under it and drops its copy */
	CTCT_WRITE_ONCE(s->entry, 0);
	barrier();
	s->q = *q;
	barrier();
	CTCT_WRITE_ONCE(s->entry, entry);
}

/* A record still waiting for its packet's confirm (or free); older than a queue may hold a packet, it is
 * one whose end was not seen (a drop where nothing looked, 6.1's re-lookup at reinject) */
static __always_inline bool cslot_pending(const struct cslot *s, __u64 now)
{
	return s->ct && !s->confirm_ns && s->q.enqueue_ns + CTCT_QSLOT_LIVE_NS > now;
}

/* A packet that may still meet confirm as a new conntrack: its record, by conntrack, for confirm. The
 * same conntrack again (a second queue on its path) reuses its slot, else a free one, else one that no
 * packet waits for (a winner's, kept for later losers, or a stale one), else the older; overwriting a
 * record still pending is counted. */
static __always_inline void cslot_store(__u64 ct, __u64 skb, const struct ctct_queue *q, __u64 now)
{
	__u32 i = slot_bucket(ct), j = i | 1;
	struct cslot *a = bpf_map_lookup_elem(&cslots, &i), *b = bpf_map_lookup_elem(&cslots, &j), *s;
	bool pa, pb;

	if (!a || !b)
		return;
	pa = cslot_pending(a, now);
	pb = cslot_pending(b, now);
	if (a->ct == ct)
		s = a;
	else if (b->ct == ct)
		s = b;
	else if (!a->ct)
		s = a;
	else if (!b->ct)
		s = b;
	else if (pa != pb)
		s = pa ? b : a;
	else
		s = a->q.enqueue_ns <= b->q.enqueue_ns ? a : b;
	if (s->ct != ct && (s == a ? pa : pb))
		count(CTCT_CNT_QUEUE_SLOT_EVICTED);
	CTCT_WRITE_ONCE(s->ct, 0);
	barrier();
	s->skb = skb;
	s->confirm_ns = 0;
	s->q = *q;
	barrier();
	CTCT_WRITE_ONCE(s->ct, ct);
}

/* A packet that may still meet confirm (a new flow's) gets a queue record under its conntrack, closed by its
 * confirm or its free; returns its enqueue time, 0 if it got none. */
static __always_inline __u64 record_new_flow(struct nf_queue_entry *entry, struct sk_buff *skb, __u32 queuenum,
					     const bool direct, const bool cast)
{
	unsigned long nfct = direct ? skb->_nfct : BPF_CORE_READ(skb, _nfct);
	struct ctct_queue q = {};

	if (!may_meet_confirm(nfct))
		return 0;
	/* a later packet of a flow that has seen no reply is still IP_CT_NEW, its conntrack confirmed */
	if ((cast ? CTCT_CAST(nfct & NFCT_PTRMASK, struct nf_conn)->status
		  : BPF_CORE_READ((struct nf_conn *)(nfct & NFCT_PTRMASK), status)) & CTCT_IPS_CONFIRMED)
		return 0;
	q.enqueue_ns = bpf_ktime_get_ns();
	q.queue_num = queuenum;
	q.hook = CTCT_RD(direct, state.hook, entry, state.hook);
	q.pf = CTCT_RD(direct, state.pf, entry, state.pf);
	cslot_store(nfct & NFCT_PTRMASK, (__u64)skb, &q, q.enqueue_ns);
	return q.enqueue_ns;
}

/* The default function mode (no return hook, no reinject hook): the only program on every queued packet,
 * so its path for an established flow's packet is kept to what that needs: the per-CPU record that names a
 * queue drop's queue at its free, and the conntrack's state. A packet that may still meet confirm (a new
 * flow's) gets its queue record too, closed by its confirm or its free. A failed enqueue is timed at its
 * free. The lookup of key 0 of a one-element array cannot fail; the verifier wants the check. */
static __always_inline int enqueue_default(struct nf_queue_entry *entry, __u32 queuenum, const bool direct,
					   const bool cast)
{
	__u32 netns = CTCT_RD(direct, state.net->ns.inum, entry, state.net, ns.inum);
	struct sk_buff *skb = direct ? entry->skb : (struct sk_buff *)entry_skb(entry);
	struct enqueuing_rec *rec;
	__u32 zero = 0;

	rec = bpf_map_lookup_elem(&enqueuing, &zero);
	if (!rec)
		return 0;
	rec->skb = (__u64)skb;
	rec->netns_ino = netns;
	rec->queue_num = queuenum;
	if ((targ_netns && netns != targ_netns) || (targ_queue_set && queuenum != targ_queue)) {
		/* filtered out: entry 0 tells the free to stay quiet */
		rec->entry = 0;
		rec->start_ns = 0;
		return 0;
	}
	/* only stored (a marker; qslots are keyed by it with --verdict-hook): the pointer itself will do */
	rec->entry = (__u64)entry;
	rec->start_ns = record_new_flow(entry, skb, queuenum, direct, cast);
	return 0;
}

/* cast: the conntrack's status is loaded through bpf_rdonly_cast() (6.2+) instead of a helper call; only
 * drop.bpf.c's programs pass true (see enqueue_kprobe_cast there for why).
 * fctx: an fentry program's ctx, NULL for kprobes. A qslot's key is the entry's address as a number: a
 * kprobe has it in entryv (a register); fentry fetches it with bpf_get_func_arg() (~10 instructions, the
 * verifier allows no arithmetic on the BTF pointer), only on the path that hashes it (--verdict-hook).
 * Everywhere else the entry is only stored, as the pointer itself. */
static __always_inline int handle_enqueue(struct nf_queue_entry *entry, __u64 entryv, void *fctx, __u32 queuenum,
					  const bool direct, const bool cast)
{
	if (verdict_drop_at_free && queue_drop_at_free)
		return enqueue_default(entry, queuenum, direct, cast);

	__u32 netns = CTCT_RD(direct, state.net->ns.inum, entry, state.net, ns.inum);
	struct sk_buff *skb = direct ? entry->skb : (struct sk_buff *)entry_skb(entry);
	bool kept = (!targ_netns || netns == targ_netns) && (!targ_queue_set || queuenum == targ_queue);
	struct enqueuing_rec *rec = NULL;
	struct ctct_queue q = {};
	struct enqueue_failure *f;
	__u32 zero = 0;

	if (fctx)
		entryv = (__u64)entry;
	if (!enqueue_exit_has_args) {
		/* the queue-drop free (or the kretprobe) reads it back on this CPU */
		rec = bpf_map_lookup_elem(&enqueuing, &zero);
		if (rec) {
			if (!queue_drop_at_free) {
				rec->task = task_key();
				rec->hook = CTCT_RD(direct, state.hook, entry, state.hook);
				rec->pf = CTCT_RD(direct, state.pf, entry, state.pf);
			}
			/* filtered out: entry 0 tells the return (or the free) to stay quiet */
			rec->entry = kept ? entryv : 0;
			rec->skb = (__u64)skb;
			rec->start_ns = 0;
			rec->netns_ino = netns;
			rec->queue_num = queuenum;
		}
	}
	if (!kept)
		return 0;
	/* A failed enqueue whose skb nf_queue() did not free: the rule's bypass flag let it go on. Only the
	 * return hooks (not attached when queue drops are found at the free) make such records. */
	if (!queue_drop_at_free && n_enqueue_failed) {
		__u64 key = task_key();

		f = bpf_map_lookup_elem(&enqueue_failed, &key);
		if (f) {
			f->ev.type = CTCT_EV_QUEUE_BYPASS;
			submit(&f->ev);
			delete_counted(&enqueue_failed, &key, &n_enqueue_failed);
		}
	}
	if (verdict_drop_at_free) {
		/* no reinject hook (with the return hook, --exact-queue-errors): only new flows' packets */
		__u64 start = record_new_flow(entry, skb, queuenum, direct, cast);

		if (rec)
			rec->start_ns = start;
		return 0;
	}
	if (fctx)
		bpf_get_func_arg(fctx, 0, &entryv);
	q.enqueue_ns = bpf_ktime_get_ns();
	q.queue_num = queuenum;
	q.hook = CTCT_RD(direct, state.hook, entry, state.hook);
	q.pf = CTCT_RD(direct, state.pf, entry, state.pf);
	qslot_store(entryv, &q);
	if (rec)
		rec->start_ns = q.enqueue_ns;
	return 0;
}

#endif /* CTCT_ENQUEUE_BPF_H */
