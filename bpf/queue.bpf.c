// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* NFQUEUE path: a packet enters a queue (or fails to), and userspace hands it back.
 * The reinject function is nf_reinject before 6.9 and nfqnl_reinject from 6.9 on (commit
 * "netfilter: nf_queue: remove excess nf_reinject"); the loader picks the target at runtime.
 * Enqueue (and, with --verdict-hook, reinject) runs for every queued packet, established flows included: no
 * map helper there, records are written into their array slots in place (common.bpf.h). */
#include "common.bpf.h"

/* direct: an fentry program, whose arguments are BTF pointers it may load through (a faulting load gives
 * 0); one instruction per field instead of a bpf_probe_read_kernel() call. A kprobe gets plain numbers
 * and reads through the helper. The entry's address itself, a key to hash, comes as a number either way
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

static __always_inline int handle_enqueue(struct nf_queue_entry *entry, __u64 entryv, __u32 queuenum,
					  const bool direct)
{
	__u32 netns = CTCT_RD(direct, state.net->ns.inum, entry, state.net, ns.inum);
	struct enqueuing_rec *rec = NULL;
	struct ctct_queue q = {};
	struct enqueue_failure *f;
	__u32 zero = 0;

	if (!enqueue_exit_has_args) {
		rec = bpf_map_lookup_elem(&enqueuing, &zero);
		if (rec) {
			/* filtered out below: entry 0 tells the return (or the free) to stay quiet */
			if (!queue_drop_at_free)
				rec->task = task_key();
			rec->entry = 0;
			/* fentry: a load; the skb is only compared, never hashed */
			rec->skb = direct ? (__u64)entry->skb : entry_skb(entry);
		}
	}
	if (targ_netns && netns != targ_netns)
		return 0;
	if (targ_queue_set && queuenum != targ_queue)
		return 0;
	/* A failed enqueue whose skb nf_queue() did not free: the rule's bypass flag let it go on. */
	if (n_enqueue_failed) {
		__u64 key = task_key();

		f = bpf_map_lookup_elem(&enqueue_failed, &key);
		if (f) {
			f->ev.type = CTCT_EV_QUEUE_BYPASS;
			submit(&f->ev);
			delete_counted(&enqueue_failed, &key, &n_enqueue_failed);
		}
	}
	if (verdict_drop_at_free) {
		/* No reinject hook: the only program on every queued packet. An established flow's packet
		 * costs the loads above and this one; a record is made only for a packet that may meet confirm
		 * (confirm or the free of a verdict drop closes it). A failed enqueue is timed at its free. */
		unsigned long nfct = direct ? entry->skb->_nfct : BPF_CORE_READ(entry, skb, _nfct);

		if (rec) {
			rec->entry = entryv;
			rec->start_ns = 0;
			rec->netns_ino = netns;
			rec->queue_num = queuenum;
			if (!queue_drop_at_free) {
				rec->hook = CTCT_RD(direct, state.hook, entry, state.hook);
				rec->pf = CTCT_RD(direct, state.pf, entry, state.pf);
			}
		}
		if (!may_meet_confirm(nfct))
			return 0;
		/* a later packet of a flow that has seen no reply is still IP_CT_NEW, its conntrack confirmed */
		if (BPF_CORE_READ((struct nf_conn *)(nfct & NFCT_PTRMASK), status) & CTCT_IPS_CONFIRMED)
			return 0;
		q.enqueue_ns = bpf_ktime_get_ns();
		q.queue_num = queuenum;
		q.hook = CTCT_RD(direct, state.hook, entry, state.hook);
		q.pf = CTCT_RD(direct, state.pf, entry, state.pf);
		cslot_store(nfct & NFCT_PTRMASK, direct ? (__u64)entry->skb : entry_skb(entry), &q, q.enqueue_ns);
		if (rec)
			rec->start_ns = q.enqueue_ns;
		return 0;
	}
	q.enqueue_ns = bpf_ktime_get_ns();
	q.queue_num = queuenum;
	q.hook = CTCT_RD(direct, state.hook, entry, state.hook);
	q.pf = CTCT_RD(direct, state.pf, entry, state.pf);
	qslot_store(entryv, &q);
	if (rec) {
		rec->entry = entryv;
		rec->start_ns = q.enqueue_ns;
		rec->netns_ino = netns;
		rec->queue_num = queuenum;
	}
	return 0;
}

/* -ESRCH is a missing listener. -ENOBUFS is ambiguous: __nfqnl_enqueue_packet returns it for a full
 * queue (queue_dropped++), a full listener socket (user_dropped++) and a refused shared unconfirmed
 * conntrack (nf_ct_drop_unconfirmed, no counter); the loader tells them apart by the queue's counters. */
static __always_inline __u32 enqueue_cause(int ret)
{
	if (ret == -CTCT_ESRCH)
		return CTCT_CAUSE_NO_LISTENER;
	if (ret == -CTCT_ENOBUFS || ret == -CTCT_ENOSPC)
		return CTCT_CAUSE_UNKNOWN;
	return CTCT_CAUSE_ENQUEUE_ERROR;
}

/* A failed enqueue: the event waits in enqueue_failed (per task) for nf_queue() to free the skb (a drop)
 * or for the packet to go on (bypass). */
static __always_inline void enqueue_failure(__u64 task, __u64 entryv, __u64 skbv, __u32 netns, __u32 queuenum,
					    __u64 start_ns, __u8 hook, __u8 pf, int ret)
{
	struct enqueue_failure *w = scratch_wrapper();
	struct ctct_event *e;

	if (!w)
		return;
	e = &w->ev;
	w->skb = skbv;
	e->type = CTCT_EV_QUEUE_DROP;
	e->cause = enqueue_cause(ret);
	e->source = CTCT_SRC_QUEUE_HOOK;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = netns;
	e->enqueue_error = ret;
	fill_flow(e, (struct sk_buff *)skbv);
	if (!qslot_take(entryv, &e->loser_queue)) {
		__builtin_memset(&e->loser_queue, 0, sizeof(e->loser_queue));
		e->loser_queue.queue_num = queuenum;
		e->loser_queue.enqueue_ns = start_ns ? start_ns : e->ts_ns;
		e->loser_queue.hook = hook;
		e->loser_queue.pf = pf;
	}
	if (verdict_drop_at_free) {
		/* a new flow's record from the enqueue hook: this packet never entered the queue */
		struct ctct_queue q;

		take_new_flow_record(BPF_CORE_READ((struct sk_buff *)skbv, _nfct), skbv, &q);
	}
	e->flags |= CTCT_F_LOSER_QUEUED;
	if (!keep(e))
		return;
	if (store_counted(&enqueue_failed, &task, w, &n_enqueue_failed)) {
		count(CTCT_CNT_PENDING_MAP_FULL);
		submit(e);
	}
}

/* kretprobe: only the return value; the entry probe left the arguments in this CPU's enqueuing record,
 * which every return clears (a nested enqueue's return must not leave its arguments to the outer one). */
static __always_inline int handle_enqueue_exit(int ret)
{
	__u32 zero = 0;
	struct enqueuing_rec *rec = bpf_map_lookup_elem(&enqueuing, &zero);
	__u64 key, task;

	if (!rec)
		return 0;
	task = rec->task;
	rec->task = 0;
	if (ret >= 0)
		return 0;
	key = task_key();
	if (task != key) {
		count(CTCT_CNT_ENQUEUE_ARGS_LOST);
		return 0;
	}
	if (!rec->entry)
		return 0;
	enqueue_failure(key, rec->entry, rec->skb, rec->netns_ino, rec->queue_num, rec->start_ns, rec->hook, rec->pf, ret);
	return 0;
}

/* fexit: arguments and return value together; a queued packet costs one comparison here */
static __always_inline int handle_enqueue_exit_args(struct nf_queue_entry *entry, __u64 entryv, __u32 queuenum,
						    int ret)
{
	__u32 netns;

	if (ret >= 0)
		return 0;
	netns = entry->state.net->ns.inum;
	if (targ_netns && netns != targ_netns)
		return 0;
	if (targ_queue_set && queuenum != targ_queue)
		return 0;
	enqueue_failure(task_key(), entryv, entry_skb(entry), netns, queuenum, bpf_ktime_get_ns(), entry->state.hook,
			entry->state.pf, ret);
	return 0;
}

/* The listener said NF_DROP: nf_reinject frees the skb right away; kfree_skb completes the event. */
static __always_inline void verdict_drop(struct nf_queue_entry *entry, __u64 entryv, __u32 verdict,
					 const bool direct)
{
	__u32 netns = CTCT_RD(direct, state.net->ns.inum, entry, state.net, ns.inum);
	struct ctct_event *e;
	__u64 key;

	if (targ_netns && netns != targ_netns) {
		struct ctct_queue q;

		qslot_take(entryv, &q);
		return;
	}
	e = scratch_event();
	if (!e)
		return;
	key = entry_skb(entry);
	e->type = CTCT_EV_VERDICT_DROP;
	e->cause = CTCT_CAUSE_LISTENER_VERDICT;
	e->source = CTCT_SRC_QUEUE_HOOK;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = netns;
	fill_flow(e, (struct sk_buff *)key);
	/* without the enqueue record the queue number is unknown (nf_queue_entry has none) */
	if (qslot_take(entryv, &e->loser_queue))
		e->flags |= CTCT_F_LOSER_QUEUED;
	else
		__builtin_memset(&e->loser_queue, 0, sizeof(e->loser_queue));
	e->loser_queue.hook = CTCT_RD(direct, state.hook, entry, state.hook);
	e->loser_queue.pf = CTCT_RD(direct, state.pf, entry, state.pf);
	e->loser_queue.reinject_ns = e->ts_ns;
	e->loser_queue.packet_id = CTCT_RD(direct, id, entry, id);
	e->loser_queue.verdict = verdict;
	if (!keep(e))
		return;
	if (store_counted(&pending, &key, e, &n_pending)) {
		count(CTCT_CNT_PENDING_MAP_FULL);
		submit(e);
	}
}

static __always_inline int handle_reinject(struct nf_queue_entry *entry, __u64 entryv, __u32 verdict,
					   const bool direct)
{
	struct qslot *s;
	struct ctct_queue q;
	unsigned long nfct;

	if ((verdict & NF_VERDICT_MASK) == NF_DROP) {
		verdict_drop(entry, entryv, verdict, direct);
		return 0;
	}
	s = qslot_of(entryv);
	if (!s)
		return 0;
	q = s->q;
	/* the packet leaves the queue; a torn copy (overwritten meanwhile) is not passed on. Plain loads and
	 * a plain store: this runs for every queued packet, and an atomic costs more. */
	if (CTCT_READ_ONCE(s->entry) != entryv)
		return 0;
	CTCT_WRITE_ONCE(s->entry, 0);
	nfct = direct ? entry->skb->_nfct : BPF_CORE_READ(entry, skb, _nfct);
	if (!may_meet_confirm(nfct))
		return 0;
	/* a later packet of a flow that has seen no reply is still IP_CT_NEW, its conntrack confirmed */
	if (BPF_CORE_READ((struct nf_conn *)(nfct & NFCT_PTRMASK), status) & CTCT_IPS_CONFIRMED)
		return 0;
	q.reinject_ns = bpf_ktime_get_ns();
	q.packet_id = CTCT_RD(direct, id, entry, id);
	q.verdict = verdict;
	cslot_store(nfct & NFCT_PTRMASK, direct ? (__u64)entry->skb : entry_skb(entry), &q, q.reinject_ns);
	return 0;
}

SEC("fentry")
int BPF_PROG(enqueue_fentry, struct nf_queue_entry *entry, unsigned int queuenum)
{
	__u64 entryv = 0;

	bpf_get_func_arg(ctx, 0, &entryv);
	return handle_enqueue(entry, entryv, queuenum, true);
}

SEC("kprobe")
int BPF_KPROBE(enqueue_kprobe, struct nf_queue_entry *entry, unsigned int queuenum)
{
	return handle_enqueue(entry, (__u64)entry, queuenum, false);
}

SEC("fexit")
int BPF_PROG(enqueue_fexit, struct nf_queue_entry *entry, unsigned int queuenum, int ret)
{
	__u64 entryv = 0;

	if (!enqueue_exit_has_args)
		return handle_enqueue_exit(ret);
	if (ret >= 0)
		return 0;
	bpf_get_func_arg(ctx, 0, &entryv);
	return handle_enqueue_exit_args(entry, entryv, queuenum, ret);
}

SEC("kretprobe")
int BPF_KRETPROBE(enqueue_kretprobe, int ret)
{
	return handle_enqueue_exit(ret);
}

SEC("fentry")
int BPF_PROG(reinject_fentry, struct nf_queue_entry *entry, unsigned int verdict)
{
	__u64 entryv = 0;

	bpf_get_func_arg(ctx, 0, &entryv);
	return handle_reinject(entry, entryv, verdict, true);
}

SEC("kprobe")
int BPF_KPROBE(reinject_kprobe, struct nf_queue_entry *entry, unsigned int verdict)
{
	return handle_reinject(entry, (__u64)entry, verdict, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
