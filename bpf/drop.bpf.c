// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The drop path, skb:kfree_skb. Two jobs:
 *  - complete a confirm_drop recorded by confirm.bpf.c: the skb really died, with reason and place;
 *  - tracepoint mode (no kprobe, no fentry): classify the drop itself. A clash loser is freed with
 *    its unconfirmed conntrack still attached, right after __nf_conntrack_confirm bumped this CPU's
 *    insert_failed. An ordinary rule DROP of a new flow frees the same kind of skb at the same place,
 *    but leaves insert_failed alone, so growth of the netns' counter since the last look tells them apart. */
#define CTCT_DEFINE_GLOBALS
#include "common.bpf.h"
#include "enqueue.bpf.h"

#define CTCT_MAX_CPUS 1024

/* The netns' insert_failed summed over all CPUs. kallsyms has no data symbols on many kernels (no
 * __per_cpu_offset, and typed per-CPU ksyms fail to resolve), and the verifier refuses
 * bpf_per_cpu_ptr() on net->ct.stat reached through an untrusted pointer (6.18). A per-CPU array map
 * knows the offsets: bpf_map_lookup_percpu_elem() returns CPU n's copy of the element whose per-CPU
 * base address the map keeps in bpf_array->pptrs[0]. Summing (rather than reading this CPU only) keeps
 * the count right when the task that reinjects migrates between confirm and free.
 * The offsets (__per_cpu_offset[n]) are fixed after boot, so they are learnt once and cached: each
 * later look costs one read per CPU instead of a helper call and two reads (bench/datapath.sh 'drops'). */
static __u64 cpu_offset[CTCT_MAX_CPUS];
/* volatile: clang would otherwise shrink this set-once flag to a 1-byte bool, which leaves its BTF
 * (__u32) disagreeing with .bss and the kernel refusing the object's BTF (2400 lines of libbpf log) */
static volatile __u32 cpu_offsets_known;

static __always_inline int learn_cpu_offsets(void)
{
	void *map = &scratch;
	__u64 map_addr = 0, base = 0;
	__u32 zero = 0;

	/* pointers are read back as plain numbers: the verifier does not allow pointer - pointer */
	bpf_probe_read_kernel(&map_addr, sizeof(map_addr), &map);
	bpf_core_read(&base, sizeof(base), &((struct bpf_array *)map_addr)->pptrs[0]);
	for (__u32 cpu = 0; cpu < CTCT_MAX_CPUS && cpu < nr_cpus; cpu++) {
		void *elem = bpf_map_lookup_percpu_elem(&scratch, &zero, cpu);
		__u64 here = 0;

		if (!elem)
			return -1;
		bpf_probe_read_kernel(&here, sizeof(here), &elem);
		cpu_offset[cpu] = here - base;
	}
	/* racing learners on other CPUs store the same values */
	cpu_offsets_known = 1;
	return 0;
}

/* Sum of the netns' insert_failed over all CPUs; stat is net->ct.stat, the per-CPU base. */
static __always_inline int read_insert_failed(__u64 stat, __u32 *total, const bool direct)
{
	__u64 field = bpf_core_field_offset(struct ip_conntrack_stat, insert_failed);
	__u32 sum = 0;

	if (!cpu_offsets_known && learn_cpu_offsets())
		return -1;
	for (__u32 cpu = 0; cpu < CTCT_MAX_CPUS && cpu < nr_cpus; cpu++) {
		__u32 v = 0;

		if (direct)
			v = CTCT_CAST(stat + cpu_offset[cpu], struct ip_conntrack_stat)->insert_failed;
		else if (bpf_probe_read_kernel(&v, sizeof(v), (void *)(stat + cpu_offset[cpu] + field)))
			return -1;
		sum += v;
	}
	*total = sum;
	return 0;
}

/* Whether the netns with this cookie was born after the loader's marks, so its counters started at 0 with
 * the tracer about to watch: later in a marked batch than its mark, or in a batch taken after all of them.
 * A CPU without a mark (offline at start) hands out cookies of an older batch: told "not known new". */
static __always_inline bool born_after_start(__u64 cookie)
{
	__u64 batch = (cookie - 1) >> 12, *mark;

	if (!netns_marks_set)
		return false;
	mark = bpf_map_lookup_elem(&netns_marks, &batch);
	return mark ? cookie > *mark : batch > netns_mark_top_batch;
}

/* The netns' baseline, claimed for this netns (by cookie) and with its counters' address cached; NULL if
 * the map is full, or (with *unclassified set) when this free cannot be told. A netns the loader did not
 * seed starts from 0 when it is known to be born after the start (by its cookie: its counters started
 * at 0) or when its counter is still 0; one that predates the start (not reachable
 * from /proc or /run/netns) with failures already counted starts from its count now, and this free, which
 * may be one of them, is counted as unclassified rather than reported as another kind of drop. */
static __always_inline struct ctct_baseline *baseline_of(struct net *net, __u32 key, const bool direct,
							 bool *unclassified)
{
	struct ctct_baseline *b = bpf_map_lookup_elem(&baselines, &key), init = {};
	bool has_cookie = bpf_core_field_exists(net->net_cookie);
	__u64 cookie, old;

	if (!has_cookie)
		cookie = (__u64)net;
	else if (direct)
		cookie = net->net_cookie;
	else
		cookie = BPF_CORE_READ(net, net_cookie);
	if (!b) {
		__u32 cur32 = 0;
		int err;

		init.cookie = cookie;
		init.stat = (__u64)BPF_CORE_READ(net, ct.stat);
		if (!init.stat)
			return NULL;
		if (!(has_cookie && born_after_start(cookie))) {
			if (read_insert_failed(init.stat, &cur32, direct))
				return NULL;
			init.count = cur32;
			count(CTCT_CNT_UNSEEDED_BASELINE);
		}
		err = bpf_map_update_elem(&baselines, &key, &init, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&baselines, &key);
		if (!b) {
			if (err)
				count(CTCT_CNT_BASELINE_MAP_FULL);
			return NULL;
		}
		if (!err && init.count) {
			count(CTCT_CNT_UNSEEDED_UNCLASSIFIED);
			*unclassified = true;
			return NULL;
		}
		if (!err)
			return b;
		/* another CPU stored it first: its entry, looked at as any other */
	}
	old = b->cookie;
	if (old == cookie) {
		/* seeded by the loader, which knew the cookie: the first look caches the address */
		if (!b->stat)
			b->stat = (__u64)BPF_CORE_READ(net, ct.stat);
	} else {
		/* Seeded by the loader without a cookie (0), or the inode is reused. Either way the netns named
		 * by the entry before is gone or this one, so whoever gets here stores the right address; before
		 * the cookie, so that a matching cookie never comes with another netns' address. */
		b->stat = (__u64)BPF_CORE_READ(net, ct.stat);
		if (__sync_val_compare_and_swap(&b->cookie, old, cookie) == old && old) {
			count(CTCT_CNT_NETNS_REUSED);
			b->count = 0;
		}
	}
	return b;
}

/* Tracepoint mode, no confirm drop: a packet freed inside nf_queue() could not be queued (no
 * listener, queue full or socket full: the loader tells which from the queue's counters), one freed
 * inside the reinject function was dropped by the listener's verdict or by a later entry of the same
 * hook that returned NF_DROP (an xt DROP; nft frees its own drops in nft_do_chain): the same kfree_skb
 * call, so the cause says both. */
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
	e->cause = type == CTCT_EV_VERDICT_DROP ? CTCT_CAUSE_VERDICT_OR_LATER_HOOK : CTCT_CAUSE_UNKNOWN;
	e->source = CTCT_SRC_FREE_LOCATION;
	e->flags = CTCT_F_FREED;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = netns;
	e->drop_reason = reason;
	e->drop_location = location;
	fill_flow(e, skb);
	/* function mode without the reinject hook: a packet that may have met confirm has a queue record
	 * from its enqueue (new flows only) */
	if (type == CTCT_EV_VERDICT_DROP && !detect_at_free) {
		/* tp_btf: a trusted skb, read directly */
		if (take_new_flow_record(skb->_nfct, (__u64)skb, &e->loser_queue)) {
			e->flags |= CTCT_F_LOSER_QUEUED;
			e->loser_queue.reinject_ns = e->ts_ns;
			e->loser_queue.left = CTCT_LEFT_FREE;
		}
	}
	submit(e);
	return 0;
}

/* Tracepoint mode classifies only frees by netfilter's own code: nf_hook_slow() (a hook returned NF_DROP,
 * confirm losers among them), nf_queue() and the reinject functions. Every other drop on the host (a
 * closed port, a full socket, nft's DROP freed in nft_do_chain) then costs these compares instead of a
 * read of the netns' counters. With a range unknown (kallsyms hidden) every free is looked at. */
static __always_inline bool netfilter_free(__u64 location)
{
	if (!hook_text_lo || !queue_text_lo || (!reinject_text_lo[0] && !reinject_text_lo[1]))
		return true;
	return in_text(location, hook_text_lo, hook_text_hi) || in_text(location, queue_text_lo, queue_text_hi) ||
	       in_text(location, reinject_text_lo[0], reinject_text_hi[0]) ||
	       in_text(location, reinject_text_lo[1], reinject_text_hi[1]);
}

static __always_inline int detect(struct sk_buff *skb, __u64 location, __u32 reason, const bool direct)
{
	/* tp_btf hands us a trusted skb: a direct load, not a bpf_probe_read_kernel() call */
	unsigned long nfct = skb->_nfct;
	__u32 ctinfo = nfct & 7, cur32 = 0, key;
	__u64 cur, prev = 0;
	struct nf_conn *ct = (struct nf_conn *)(nfct & NFCT_PTRMASK);
	struct ctct_baseline *b;
	bool unclassified = false;
	int claimed = 0;
	struct ctct_event *e;
	struct net *net;

	if (!netfilter_free(location))
		return 0;
	/* A packet freed inside nf_queue() could not be queued: it never met confirm. Its insert_failed check
	 * would claim another CPU's confirm loser's increment before that loser's own free (seen 25 times in
	 * 1.7 M flood drops: the loser then came out as verdict_drop, this packet as its confirm_drop). */
	if (!ct || in_text(location, queue_text_lo, queue_text_hi))
		return detect_by_location(skb, 0, location, reason);
	if (direct) {
		/* nf_conn itself cannot be cast (libbpf 1.1 finds struct nf_conn___init for its type id too):
		 * its ct_net.net is read as the one pointer of a struct llist_node */
		net = CTCT_CAST(CTCT_CAST((__u64)ct + bpf_core_field_offset(struct nf_conn, ct_net.net), struct llist_node)->next,
				struct net);
		key = net->ns.inum;
	} else {
		net = BPF_CORE_READ(ct, ct_net.net);
		key = BPF_CORE_READ(net, ns.inum);
	}
	if (targ_netns && key != targ_netns)
		return 0;
	/* IP_CT_ESTABLISHED means the entry has seen a reply, so it is in the table: never a clash loser */
	if (ctinfo == CTCT_IP_CT_ESTABLISHED || ctinfo >= IP_CT_IS_REPLY)
		return detect_by_location(skb, key, location, reason);
	b = baseline_of(net, key, direct, &unclassified);
	if (unclassified)
		return 0;
	if (!b || !b->stat || read_insert_failed(b->stat, &cur32, direct))
		return detect_by_location(skb, key, location, reason);
	cur = cur32;
	/* CPUs look at once, each with its own sum; a plain store let a stale sum move the baseline back and
	 * one failure be reported twice (tests/e2e/flood.sh, ~47k drops/s). Move it only forward, by
	 * compare-and-swap, so each increment is claimed by exactly one event. */
	for (int i = 0; i < 8 && !claimed; i++) {
		prev = *(volatile __u64 *)&b->count;
		if (cur <= prev)
			return detect_by_location(skb, key, location, reason);
		claimed = __sync_val_compare_and_swap(&b->count, prev, cur) == prev;
	}
	if (!claimed)
		return 0;
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

/* Function mode without a hook on nfqnl_enqueue_packet's return: a free inside nf_queue() is a packet that
 * could not be queued. The enqueue hook's per-CPU record, if it names this skb, gives its queue and time
 * and frees its queue record; the loader classes it from the queue's counters (cause unknown here). */
static __always_inline void queue_drop_freed(struct sk_buff *skb, __u64 location, __u32 reason)
{
	struct enqueuing_rec *rec;
	struct ctct_event *e;
	__u32 zero = 0;

	rec = bpf_map_lookup_elem(&enqueuing, &zero);
	if (!rec || rec->skb != (__u64)skb) {
		/* not this packet's record: a nested enqueue overwrote it, or the queue handler was missing
		 * and nfqnl_enqueue_packet never ran */
		detect_by_location(skb, 0, location, reason);
		return;
	}
	if (!rec->entry)
		return; /* filtered out at enqueue */
	e = scratch_event();
	if (!e)
		return;
	e->type = CTCT_EV_QUEUE_DROP;
	e->cause = CTCT_CAUSE_UNKNOWN;
	e->source = CTCT_SRC_FREE_LOCATION;
	e->flags = CTCT_F_FREED | CTCT_F_LOSER_QUEUED;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = rec->netns_ino;
	e->drop_reason = reason;
	e->drop_location = location;
	fill_flow(e, skb);
	if (!qslot_take(rec->entry, &e->loser_queue)) {
		__builtin_memset(&e->loser_queue, 0, sizeof(e->loser_queue));
		e->loser_queue.enqueue_ns = rec->start_ns ? rec->start_ns : e->ts_ns;
	}
	if (verdict_drop_at_free) {
		/* the enqueue hook's record for a new flow's packet: never queued, so never to be confirmed */
		struct ctct_queue q;

		take_new_flow_record(skb->_nfct, (__u64)skb, &q);
	}
	e->loser_queue.queue_num = rec->queue_num;
	rec->entry = 0;
	submit(e);
}

static __always_inline int handle_free(struct sk_buff *skb, __u64 location, __u32 reason, const bool direct)
{
	__u64 key = (__u64)skb, task;
	struct enqueue_failure *f;
	struct ctct_event *e;

	/* tracepoint mode attaches no confirm or queue hook, so nothing is ever pending: skip the lookups */
	if (detect_at_free)
		return detect(skb, location, reason, direct);
	if (queue_drop_at_free && in_text(location, queue_text_lo, queue_text_hi)) {
		queue_drop_freed(skb, location, reason);
		return 0;
	}
	task = task_key();
	f = n_enqueue_failed ? bpf_map_lookup_elem(&enqueue_failed, &task) : NULL;
	if (f) {
		/* nf_queue() frees the skb right after a failed enqueue, on the same task; anything else means
		 * the packet went on (bypass) */
		if (f->skb == key && (!queue_text_lo || in_text(location, queue_text_lo, queue_text_hi))) {
			f->ev.flags |= CTCT_F_FREED;
			f->ev.drop_reason = reason;
			f->ev.drop_location = location;
			submit(&f->ev);
			delete_counted(&enqueue_failed, &task, &n_enqueue_failed);
			return 0;
		}
		f->ev.type = CTCT_EV_QUEUE_BYPASS;
		submit(&f->ev);
		delete_counted(&enqueue_failed, &task, &n_enqueue_failed);
	}
	e = n_pending ? bpf_map_lookup_elem(&pending, &key) : NULL;
	if (e) {
		e->flags |= CTCT_F_FREED;
		e->drop_reason = reason;
		e->drop_location = location;
		submit(e);
		delete_counted(&pending, &key, &n_pending);
		return 0;
	}
	/* a confirm loser freed in the reinject function was just completed above */
	if (verdict_drop_at_free && (in_text(location, reinject_text_lo[0], reinject_text_hi[0]) ||
				     in_text(location, reinject_text_lo[1], reinject_text_hi[1]))) {
		detect_by_location(skb, 0, location, reason);
		return 0;
	}
	/* A new flow's packet has a queue record until its confirm (from its enqueue, or with --verdict-hook
	 * from its reinject): one dropped before (by a rule after the queue, say) ends here, so that only
	 * packets still on their way hold records that count as evicted when overwritten. */
	{
		struct ctct_queue q;

		take_new_flow_record(skb->_nfct, key, &q);
	}
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return handle_free(skb, (__u64)location, reason, false);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_btf_cast, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return handle_free(skb, (__u64)location, reason, true);
}

/* The kprobe backend's one program on every queued packet, on 6.2+: the entry's fields (and a new packet's
 * conntrack status) loaded through bpf_rdonly_cast(), instead of bpf_probe_read_kernel() calls (bench/README:
 * 271 instead of 676 instructions per established flow's packet). A queue program, but it lives in this
 * object: libbpf's linker before 1.5 fails on a kfunc extern in two objects ("do not resolve size on
 * duplicate FUNCs", 4b146e95da87; Debian 12 has 1.1), and kfree_skb_btf_cast calls it here already. */
SEC("kprobe")
int BPF_KPROBE(enqueue_kprobe_cast, struct nf_queue_entry *entry, unsigned int queuenum)
{
	CTCT_FLOOR();
	return handle_enqueue(CTCT_CAST(entry, struct nf_queue_entry), (__u64)entry, NULL, queuenum, true, true);
}

/* enqueue_fentry with the conntrack's status loaded through bpf_rdonly_cast() (6.2+): a packet of a confirmed
 * flow that has seen no reply yet (a one-way UDP stream) is still IP_CT_NEW and needs that load; the helper
 * call was ~80 of the program's ~220 instructions there (bench/README). Here for the same reason as above. */
SEC("fentry")
int BPF_PROG(enqueue_fentry_cast, struct nf_queue_entry *entry, unsigned int queuenum)
{
	CTCT_FLOOR();
	return handle_enqueue(entry, 0, ctx, queuenum, true, true);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
