// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* NFQUEUE path: a packet enters a queue (or fails to), and userspace hands it back.
 * The reinject function is nf_reinject before 6.9 and nfqnl_reinject from 6.9 on (commit
 * "netfilter: nf_queue: remove excess nf_reinject"); the loader picks the target at runtime.
 * Enqueue (and, with --verdict-hook, reinject) runs for every queued packet, established flows included: no
 * map helper there, records are written into their array slots in place (enqueue.bpf.h). */
#include "common.bpf.h"
#include "enqueue.bpf.h"

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
	CTCT_FLOOR();
	return handle_enqueue(entry, 0, ctx, queuenum, true, false);
}

SEC("kprobe")
int BPF_KPROBE(enqueue_kprobe, struct nf_queue_entry *entry, unsigned int queuenum)
{
	CTCT_FLOOR();
	return handle_enqueue(entry, (__u64)entry, NULL, queuenum, false, false);
}

SEC("fexit")
int BPF_PROG(enqueue_fexit, struct nf_queue_entry *entry, unsigned int queuenum, int ret)
{
	__u64 entryv = 0;

	CTCT_FLOOR();
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
	CTCT_FLOOR();
	return handle_enqueue_exit(ret);
}

SEC("fentry")
int BPF_PROG(reinject_fentry, struct nf_queue_entry *entry, unsigned int verdict)
{
	__u64 entryv = 0;

	CTCT_FLOOR();
	bpf_get_func_arg(ctx, 0, &entryv);
	return handle_reinject(entry, entryv, verdict, true);
}

SEC("kprobe")
int BPF_KPROBE(reinject_kprobe, struct nf_queue_entry *entry, unsigned int verdict)
{
	CTCT_FLOOR();
	return handle_reinject(entry, (__u64)entry, verdict, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
