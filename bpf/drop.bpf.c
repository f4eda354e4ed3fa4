// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The drop path, skb:kfree_skb. Two jobs:
 *  - complete a confirm_drop recorded by confirm.bpf.c: the skb really died, with reason and place;
 *  - tracepoint mode (no kprobe, no fentry): classify the drop itself. A clash loser is freed with
 *    its unconfirmed conntrack still attached, right after __nf_conntrack_confirm bumped this CPU's
 *    insert_failed. An ordinary rule DROP of a new flow frees the same kind of skb at the same place,
 *    but leaves insert_failed alone, so growth of this CPU's counter since the last look tells them apart. */
#define CTCT_DEFINE_GLOBALS
#include "common.bpf.h"

/* This CPU's insert_failed of the skb's netns. kallsyms has no data symbols on many kernels, so the
 * per-CPU pointer is walked from the trusted tp_btf skb (dev->nd_net) and resolved with
 * bpf_this_cpu_ptr(), which the verifier allows on the __percpu-tagged net->ct.stat (5.17+). */
static __always_inline int read_insert_failed(struct sk_buff *skb, __u32 *netns_ino, __u32 *val)
{
	struct net_device *dev = skb->dev;
	struct ip_conntrack_stat *stat;
	struct net *net;

	if (!dev)
		return -1;
	net = dev->nd_net.net;
	if (!net)
		return -1;
	stat = bpf_this_cpu_ptr(net->ct.stat);
	*netns_ino = net->ns.inum;
	*val = stat->insert_failed;
	return 0;
}

static __always_inline int detect(struct sk_buff *skb, __u64 location, __u32 reason)
{
	__u32 ctinfo, cur = 0, prev = 0, *base;
	struct nf_conn *ct = skb_conn(skb, &ctinfo);
	struct baseline_key key = {};
	struct ctct_event *e;

	if (!ct || ctinfo >= IP_CT_IS_REPLY)
		return 0;
	if (read_insert_failed(skb, &key.netns_ino, &cur))
		return 0;
	if (targ_netns && key.netns_ino != targ_netns)
		return 0;
	key.cpu = bpf_get_smp_processor_id();
	base = bpf_map_lookup_elem(&baselines, &key);
	if (base) {
		prev = *base;
		if (cur == prev)
			return 0;
		*base = cur;
	} else {
		/* a netns created after start begins at zero; one the loader did not seed is counted */
		count(CTCT_CNT_UNSEEDED_BASELINE);
		bpf_map_update_elem(&baselines, &key, &cur, BPF_ANY);
	}
	if (cur <= prev)
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	e->type = CTCT_EV_CONFIRM_DROP;
	e->cause = CTCT_CAUSE_INSERT_FAILED;
	e->source = CTCT_SRC_FREE_HEURISTIC;
	e->flags = CTCT_F_FREED;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = key.cpu;
	e->netns_ino = key.netns_ino;
	e->drop_reason = reason;
	e->drop_location = location;
	e->insert_failed_delta = cur - prev;
	read_conn(&e->loser, ct);
	if (e->loser.orig.l3num == CTCT_AF_INET6)
		e->flags |= CTCT_F_IPV6;
	submit(e);
	return 0;
}

static __always_inline int handle_free(struct sk_buff *skb, __u64 location, __u32 reason)
{
	__u64 key = (__u64)skb;
	struct ctct_event *e = bpf_map_lookup_elem(&pending, &key);

	if (e) {
		e->flags |= CTCT_F_FREED;
		e->drop_reason = reason;
		e->drop_location = location;
		submit(e);
		bpf_map_delete_elem(&pending, &key);
		return 0;
	}
	if (detect_at_free)
		return detect(skb, location, reason);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return handle_free(skb, (__u64)location, reason);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
