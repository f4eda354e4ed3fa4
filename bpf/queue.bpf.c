// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* NFQUEUE path: when a packet enters a queue and when userspace hands it back.
 * The reinject function is nf_reinject before 6.9 and nfqnl_reinject from 6.9 on (commit
 * "netfilter: nf_queue: remove excess nf_reinject"); the loader picks the target at runtime. */
#include "common.bpf.h"

static __always_inline int handle_enqueue(struct nf_queue_entry *entry, __u32 queuenum)
{
	struct ctct_queue q = {};
	struct sk_buff *skbp = BPF_CORE_READ(entry, skb);
	__u64 skb = (__u64)skbp;
	struct nf_conn *ct;

	if (targ_netns && BPF_CORE_READ(entry, state.net, ns.inum) != targ_netns)
		return 0;
	/* A conntrack already confirmed stays so: its packet can never meet __nf_conntrack_confirm, so
	 * established traffic costs two reads here instead of an LRU update (and a delete at reinject). */
	ct = skb_conn(skbp, NULL);
	if (ct && (BPF_CORE_READ(ct, status) & CTCT_IPS_CONFIRMED))
		return 0;
	q.enqueue_ns = bpf_ktime_get_ns();
	q.queue_num = queuenum;
	q.hook = BPF_CORE_READ(entry, state.hook);
	q.pf = BPF_CORE_READ(entry, state.pf);
	if (bpf_map_update_elem(&queued, &skb, &q, BPF_ANY))
		count(CTCT_CNT_QUEUE_MAP_FULL);
	return 0;
}

static __always_inline int handle_reinject(struct nf_queue_entry *entry, __u32 verdict)
{
	struct sk_buff *skb = BPF_CORE_READ(entry, skb);
	__u64 key = (__u64)skb;
	struct ctct_queue *q = bpf_map_lookup_elem(&queued, &key);
	struct nf_conn *ct;

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
