// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* NFQUEUE path: a packet enters a queue (or fails to), and userspace hands it back.
 * The reinject function is nf_reinject before 6.9 and nfqnl_reinject from 6.9 on (commit
 * "netfilter: nf_queue: remove excess nf_reinject"); the loader picks the target at runtime. */
#include "common.bpf.h"

static __always_inline int handle_enqueue(struct nf_queue_entry *entry, __u32 queuenum)
{
	struct ctct_queue q = {};
	struct enqueuing_rec rec = {};
	__u64 skb = (__u64)BPF_CORE_READ(entry, skb);
	__u32 netns = BPF_CORE_READ(entry, state.net, ns.inum);
	__u64 key = task_key();
	struct enqueue_failure *f;

	if (targ_netns && netns != targ_netns)
		return 0;
	if (targ_queue_set && queuenum != targ_queue)
		return 0;
	/* A failed enqueue whose skb nf_queue() did not free: the rule's bypass flag let it go on. */
	f = n_enqueue_failed ? bpf_map_lookup_elem(&enqueue_failed, &key) : NULL;
	if (f) {
		f->ev.type = CTCT_EV_QUEUE_BYPASS;
		submit(&f->ev);
		delete_counted(&enqueue_failed, &key, &n_enqueue_failed);
	}
	q.enqueue_ns = bpf_ktime_get_ns();
	q.queue_num = queuenum;
	q.hook = BPF_CORE_READ(entry, state.hook);
	q.pf = BPF_CORE_READ(entry, state.pf);
	if (bpf_map_update_elem(&queued, &skb, &q, BPF_ANY))
		count(CTCT_CNT_QUEUE_MAP_FULL);
	if (enqueue_exit_has_args)
		return 0;
	rec.skb = skb;
	rec.start_ns = q.enqueue_ns;
	rec.netns_ino = netns;
	rec.queue_num = queuenum;
	if (bpf_map_update_elem(&enqueuing, &key, &rec, BPF_ANY))
		count(CTCT_CNT_ENQUEUE_MAP_FULL);
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
static __always_inline void enqueue_failure(__u64 task, __u64 skbv, __u32 netns, __u32 queuenum, __u64 start_ns,
					    int ret)
{
	struct enqueue_failure *w = scratch_wrapper();
	struct ctct_event *e;
	struct ctct_queue *q;

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
	q = bpf_map_lookup_elem(&queued, &skbv);
	if (q) {
		e->loser_queue = *q;
		bpf_map_delete_elem(&queued, &skbv);
	} else {
		e->loser_queue.queue_num = queuenum;
		e->loser_queue.enqueue_ns = start_ns;
	}
	e->flags |= CTCT_F_LOSER_QUEUED;
	if (!keep(e))
		return;
	if (store_counted(&enqueue_failed, &task, w, &n_enqueue_failed)) {
		count(CTCT_CNT_PENDING_MAP_FULL);
		submit(e);
	}
}

/* kretprobe: only the return value; the entry probe left the arguments in enqueuing */
static __always_inline int handle_enqueue_exit(int ret)
{
	__u64 key = task_key();
	struct enqueuing_rec *rec = bpf_map_lookup_elem(&enqueuing, &key);

	if (!rec)
		return 0;
	if (ret < 0)
		enqueue_failure(key, rec->skb, rec->netns_ino, rec->queue_num, rec->start_ns, ret);
	bpf_map_delete_elem(&enqueuing, &key);
	return 0;
}

/* fexit: arguments and return value together; a queued packet costs one comparison here */
static __always_inline int handle_enqueue_exit_args(struct nf_queue_entry *entry, __u32 queuenum, int ret)
{
	__u32 netns;

	if (ret >= 0)
		return 0;
	netns = BPF_CORE_READ(entry, state.net, ns.inum);
	if (targ_netns && netns != targ_netns)
		return 0;
	if (targ_queue_set && queuenum != targ_queue)
		return 0;
	enqueue_failure(task_key(), (__u64)BPF_CORE_READ(entry, skb), netns, queuenum, bpf_ktime_get_ns(), ret);
	return 0;
}

/* The listener said NF_DROP: nf_reinject frees the skb right away; kfree_skb completes the event. */
static __always_inline void verdict_drop(struct nf_queue_entry *entry, struct sk_buff *skb, struct ctct_queue *q,
					 __u32 verdict)
{
	__u32 netns = BPF_CORE_READ(entry, state.net, ns.inum);
	__u64 key = (__u64)skb;
	struct ctct_event *e;

	if (targ_netns && netns != targ_netns)
		return;
	e = scratch_event();
	if (!e)
		return;
	e->type = CTCT_EV_VERDICT_DROP;
	e->cause = CTCT_CAUSE_LISTENER_VERDICT;
	e->source = CTCT_SRC_QUEUE_HOOK;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = netns;
	fill_flow(e, skb);
	/* without the enqueue record the queue number is unknown (nf_queue_entry has none before 6.x) */
	if (q) {
		e->loser_queue = *q;
		e->flags |= CTCT_F_LOSER_QUEUED;
		bpf_map_delete_elem(&queued, &key);
	}
	e->loser_queue.hook = BPF_CORE_READ(entry, state.hook);
	e->loser_queue.pf = BPF_CORE_READ(entry, state.pf);
	e->loser_queue.reinject_ns = e->ts_ns;
	e->loser_queue.packet_id = BPF_CORE_READ(entry, id);
	e->loser_queue.verdict = verdict;
	if (!keep(e))
		return;
	if (store_counted(&pending, &key, e, &n_pending)) {
		count(CTCT_CNT_PENDING_MAP_FULL);
		submit(e);
	}
}

static __always_inline int handle_reinject(struct nf_queue_entry *entry, __u32 verdict)
{
	struct sk_buff *skb = BPF_CORE_READ(entry, skb);
	__u64 key = (__u64)skb;
	struct ctct_queue *q = bpf_map_lookup_elem(&queued, &key);
	struct nf_conn *ct;

	if ((verdict & NF_VERDICT_MASK) == NF_DROP) {
		verdict_drop(entry, skb, q, verdict);
		return 0;
	}
	if (!q)
		return 0;
	/* Only packets of unconfirmed conntracks can meet __nf_conntrack_confirm; drop the record of
	 * the rest now so established traffic does not churn the LRU. */
	ct = skb_conn(skb, NULL);
	if (!ct || (BPF_CORE_READ(ct, status) & CTCT_IPS_CONFIRMED)) {
		bpf_map_delete_elem(&queued, &key);
		return 0;
	}
	q->reinject_ns = bpf_ktime_get_ns();
	q->packet_id = BPF_CORE_READ(entry, id);
	q->verdict = verdict;
	return 0;
}

SEC("fentry")
int BPF_PROG(enqueue_fentry, struct nf_queue_entry *entry, unsigned int queuenum)
{
	return handle_enqueue(entry, queuenum);
}

SEC("kprobe")
int BPF_KPROBE(enqueue_kprobe, struct nf_queue_entry *entry, unsigned int queuenum)
{
	return handle_enqueue(entry, queuenum);
}

SEC("fexit")
int BPF_PROG(enqueue_fexit, struct nf_queue_entry *entry, unsigned int queuenum, int ret)
{
	return enqueue_exit_has_args ? handle_enqueue_exit_args(entry, queuenum, ret) : handle_enqueue_exit(ret);
}

SEC("kretprobe")
int BPF_KRETPROBE(enqueue_kretprobe, int ret)
{
	return handle_enqueue_exit(ret);
}

SEC("fentry")
int BPF_PROG(reinject_fentry, struct nf_queue_entry *entry, unsigned int verdict)
{
	return handle_reinject(entry, verdict);
}

SEC("kprobe")
int BPF_KPROBE(reinject_kprobe, struct nf_queue_entry *entry, unsigned int verdict)
{
	return handle_reinject(entry, verdict);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
