// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The drop path, skb:kfree_skb. Two jobs:
 *  - complete a confirm_drop recorded by confirm.bpf.c: the skb really died, with reason and place;
 *  - tracepoint mode (no kprobe, no fentry): classify the drop itself. A clash loser is freed with
 *    its unconfirmed conntrack still attached, right after __nf_conntrack_confirm bumped this CPU's
 *    insert_failed. An ordinary rule DROP of a new flow frees the same kind of skb at the same place,
 *    but leaves insert_failed alone, so growth of the netns' counter since the last look tells them apart. */
#define CTCT_DEFINE_GLOBALS
#include "common.bpf.h"

#define CTCT_MAX_CPUS 1024

/* The netns' insert_failed summed over all CPUs. kallsyms has no data symbols on many kernels (no
 * __per_cpu_offset, and typed per-CPU ksyms fail to resolve), and the verifier refuses
 * bpf_per_cpu_ptr() on net->ct.stat reached through an untrusted pointer (6.18). A per-CPU array map
 * knows the offsets: bpf_map_lookup_percpu_elem() returns CPU n's copy of the element whose per-CPU
 * base address the map keeps in bpf_array->pptrs[0]. Summing (rather than reading this CPU only) keeps
 * the count right when the task that reinjects migrates between confirm and free. */
static __always_inline int read_insert_failed(struct nf_conn *ct, __u32 *total)
{
	__u64 stat = (__u64)BPF_CORE_READ(ct, ct_net.net, ct.stat);
	__u64 field = bpf_core_field_offset(struct ip_conntrack_stat, insert_failed);
	void *map = &scratch;
	__u64 map_addr = 0, base = 0;
	__u32 zero = 0, sum = 0;

	if (!stat)
		return -1;
	/* pointers are read back as plain numbers: the verifier does not allow pointer - pointer */
	bpf_probe_read_kernel(&map_addr, sizeof(map_addr), &map);
	bpf_core_read(&base, sizeof(base), &((struct bpf_array *)map_addr)->pptrs[0]);
	for (__u32 cpu = 0; cpu < CTCT_MAX_CPUS && cpu < nr_cpus; cpu++) {
		void *elem = bpf_map_lookup_percpu_elem(&scratch, &zero, cpu);
		__u64 here = 0;
		__u32 v = 0;

		if (!elem)
			break;
		bpf_probe_read_kernel(&here, sizeof(here), &elem);
		if (bpf_probe_read_kernel(&v, sizeof(v), (void *)(stat + (here - base) + field)))
			return -1;
		sum += v;
	}
	*total = sum;
	return 0;
}

/* Tracepoint mode, no confirm drop: a packet freed inside nf_queue() could not be queued (no
 * listener, queue full or socket full: the loader tells which from the queue's counters), one freed
 * inside the reinject function was dropped by the listener's verdict. */
static __always_inline int detect_by_location(struct sk_buff *skb, __u32 netns, __u64 location, __u32 reason)
{
	struct ctct_event *e;
	__u32 type;

	if (in_text(location, queue_text_lo, queue_text_hi))
		type = CTCT_EV_QUEUE_DROP;
	else if (in_text(location, reinject_text_lo[0], reinject_text_hi[0]) ||
		 in_text(location, reinject_text_lo[1], reinject_text_hi[1]))
		type = CTCT_EV_VERDICT_DROP;
	else
		return 0;
	if (!netns)
		netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	if (targ_netns && netns != targ_netns)
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	e->type = type;
	e->cause = type == CTCT_EV_VERDICT_DROP ? CTCT_CAUSE_LISTENER_VERDICT : CTCT_CAUSE_UNKNOWN;
	e->source = CTCT_SRC_FREE_LOCATION;
	e->flags = CTCT_F_FREED;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = netns;
	e->drop_reason = reason;
	e->drop_location = location;
	fill_flow(e, skb);
	submit(e);
	return 0;
}

static __always_inline int detect(struct sk_buff *skb, __u64 location, __u32 reason)
{
	__u32 ctinfo, cur = 0, prev = 0, *base, key;
	struct nf_conn *ct = skb_conn(skb, &ctinfo);
	struct ctct_event *e;

	if (!ct)
		return detect_by_location(skb, 0, location, reason);
	key = conn_netns(ct);
	if (targ_netns && key != targ_netns)
		return 0;
	if (ctinfo >= IP_CT_IS_REPLY || read_insert_failed(ct, &cur))
		return detect_by_location(skb, key, location, reason);
	base = bpf_map_lookup_elem(&baselines, &key);
	if (base) {
		prev = *base;
		if (cur == prev)
			return detect_by_location(skb, key, location, reason);
		*base = cur;
	} else {
		/* a netns the loader did not seed (created after start): this first look is the baseline */
		count(CTCT_CNT_UNSEEDED_BASELINE);
		bpf_map_update_elem(&baselines, &key, &cur, BPF_ANY);
	}
	if (cur <= prev)
		return detect_by_location(skb, key, location, reason);
	e = scratch_event();
	if (!e)
		return 0;
	e->type = CTCT_EV_CONFIRM_DROP;
	e->cause = CTCT_CAUSE_INSERT_FAILED;
	e->source = CTCT_SRC_FREE_HEURISTIC;
	e->flags = CTCT_F_FREED;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = key;
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
	__u64 key = (__u64)skb, task = task_key();
	struct enqueue_failure *f = bpf_map_lookup_elem(&enqueue_failed, &task);
	struct ctct_event *e;

	if (f) {
		/* nf_queue() frees the skb right after a failed enqueue, on the same task; anything else means
		 * the packet went on (bypass) */
		if (f->skb == key && (!queue_text_lo || in_text(location, queue_text_lo, queue_text_hi))) {
			f->ev.flags |= CTCT_F_FREED;
			f->ev.drop_reason = reason;
			f->ev.drop_location = location;
			submit(&f->ev);
			bpf_map_delete_elem(&enqueue_failed, &task);
			return 0;
		}
		f->ev.type = CTCT_EV_QUEUE_BYPASS;
		submit(&f->ev);
		bpf_map_delete_elem(&enqueue_failed, &task);
	}
	e = bpf_map_lookup_elem(&pending, &key);
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
