// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The confirm step: __nf_conntrack_confirm() entry and return, and nf_ct_resolve_clash(), whose
 * h argument is the entry that won the race. Its result is the result of confirm, so the outcome
 * (dropped or resolved) is read once, at confirm's return. */
#include "common.bpf.h"

static __always_inline int handle_confirm_entry(struct sk_buff *skb)
{
	__u32 ctinfo;
	struct nf_conn *ct = skb_conn(skb, &ctinfo);
	struct inflight rec = {};
	__u64 key;

	/* confirm returns early for reply-direction packets; nothing can be dropped there */
	if (!ct || ctinfo >= IP_CT_IS_REPLY)
		return 0;
	if (targ_netns && conn_netns(ct) != targ_netns)
		return 0;
	rec.skb = (__u64)skb;
	rec.ct = (__u64)ct;
	/* Without the nf_ct_resolve_clash hook a resolved clash is seen only at return, when the loser may
	 * already be freed: keep its tuples now (only on such kernels, e.g. 6.1 where the function has no
	 * BTF and an optimised calling convention). */
	if (!have_resolve_hook)
		read_conn(&rec.loser, ct);
	key = task_key();
	if (bpf_map_update_elem(&inflight, &key, &rec, BPF_ANY))
		count(CTCT_CNT_INFLIGHT_MAP_FULL);
	return 0;
}

/* nf_ct_resolve_clash(skb, h): h is the entry that won. With an fexit on confirm (which sees the skb
 * and its conntrack at return) there is no entry record: the clash is recorded here, for that return. */
static __always_inline int handle_resolve_clash(__u64 skb, struct nf_conntrack_tuple_hash *h)
{
	__u64 key = task_key();
	struct nf_conn *winner, *ct;
	struct inflight *rec;

	if (confirm_exit_has_args) {
		ct = skb_conn((struct sk_buff *)skb, NULL);
		if (!ct || (targ_netns && conn_netns(ct) != targ_netns))
			return 0;
		rec = (struct inflight *)scratch_wrapper();
		if (!rec)
			return 0;
		rec->skb = skb;
		rec->ct = (__u64)ct;
	} else {
		rec = bpf_map_lookup_elem(&inflight, &key);
		if (!rec || rec->skb != skb)
			return 0;
	}
	winner = tuplehash_to_conn(h);
	rec->winner_ct = (__u64)winner;
	rec->has_winner = 1;
	/* Read both now: on success the loser is released before confirm returns. */
	read_conn(&rec->loser, (struct nf_conn *)rec->ct);
	read_conn(&rec->winner, winner);
	if (confirm_exit_has_args && store_counted(&inflight, &key, rec, &n_inflight))
		count(CTCT_CNT_INFLIGHT_MAP_FULL);
	return 0;
}

/* The loser's queue record: reinjected with this conntrack, this skb, and not confirmed. */
static __always_inline void fill_queue(struct ctct_event *e, __u64 skb, __u64 ct)
{
	if (!cslot_take(ct, skb, &e->loser_queue)) {
		__builtin_memset(&e->loser_queue, 0, sizeof(e->loser_queue));
		return;
	}
	e->flags |= CTCT_F_LOSER_QUEUED;
	/* recorded at enqueue (no reinject hook): it left the queue before now */
	if (!e->loser_queue.reinject_ns) {
		e->loser_queue.reinject_ns = e->ts_ns;
		e->loser_queue.left = CTCT_LEFT_CONFIRM;
	}
}

/* The winner's record, if it came through a queue and was confirmed since (see remember_winner). */
static __always_inline void fill_winner(struct ctct_event *e, struct inflight *rec)
{
	struct cslot *s = cslot_of(rec->winner_ct, 0);

	e->winner = rec->winner;
	e->flags |= CTCT_F_HAS_WINNER;
	if (!s || !s->confirm_ns)
		return;
	e->winner_queue = s->q;
	e->winner_confirm_ns = s->confirm_ns;
	if (*(volatile __u64 *)&s->ct == rec->winner_ct)
		e->flags |= CTCT_F_WINNER_QUEUED;
}

/* A conntrack confirmed: if its packet came through a queue, its record stays as a winner's (a later
 * loser of a clash with it names its queue times). Any other record under this conntrack address is
 * an earlier conntrack's in the same memory: freed, so that no loser takes it for this one's. */
static __always_inline void remember_winner(__u64 skb, __u64 ct)
{
	struct cslot *s = cslot_of(ct, 0);

	if (!s)
		return;
	if (s->skb == skb && !s->confirm_ns) {
		__u64 now = bpf_ktime_get_ns();

		if (!s->q.reinject_ns) {
			s->q.reinject_ns = now;
			s->q.left = CTCT_LEFT_CONFIRM;
		}
		s->confirm_ns = now;
	} else
		__sync_val_compare_and_swap(&s->ct, ct, 0);
}

/* The outcome at confirm's return, for skb and the conntrack ct it carried in. rec: what the entry
 * probe and nf_ct_resolve_clash() recorded; NULL when an fexit found no clash recorded. */
static __always_inline void confirm_outcome(__u64 skb, __u64 ctv, int ret, struct inflight *rec)
{
	bool clash = rec && rec->has_winner;
	struct nf_conn *ct = (struct nf_conn *)ctv;
	struct ctct_event *e;

	if (ret != NF_DROP && !clash) {
		remember_winner(skb, ctv);
		return;
	}
	e = scratch_event();
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->netns_ino = conn_netns(ct);
	e->source = CTCT_SRC_CONFIRM_HOOK;
	if (clash) {
		e->loser = rec->loser;
		fill_winner(e, rec);
		e->cause = CTCT_CAUSE_CLASH;
	} else {
		read_conn(&e->loser, ct);
		/* without the hook a lost clash cannot be told from the rarer drop reasons */
		e->cause = have_resolve_hook ? CTCT_CAUSE_OTHER : CTCT_CAUSE_UNKNOWN;
	}
	if (e->loser.orig.l3num == CTCT_AF_INET6)
		e->flags |= CTCT_F_IPV6;
	fill_queue(e, skb, ctv);
	if (!keep(e))
		return;
	if (ret == NF_DROP) {
		e->type = CTCT_EV_CONFIRM_DROP;
		/* kfree_skb completes and emits it; the loader sweeps what never gets freed */
		if (store_counted(&pending, &skb, e, &n_pending)) {
			count(CTCT_CNT_PENDING_MAP_FULL);
			submit(e);
		}
	} else {
		e->type = CTCT_EV_CLASH_RESOLVED;
		submit(e);
	}
}

/* kretprobe, or fexit without the resolve hook: the entry probe's record has the skb and its conntrack */
static __always_inline int handle_confirm_exit(int ret)
{
	__u64 key = task_key();
	struct inflight *rec = bpf_map_lookup_elem(&inflight, &key);

	if (!rec)
		return 0;
	if (!have_resolve_hook && ret != NF_DROP) {
		/* __nf_ct_resolve_clash() merges by pointing the skb at the entry that won. */
		struct nf_conn *now = skb_conn((struct sk_buff *)rec->skb, NULL);

		if (now && (__u64)now != rec->ct) {
			rec->winner_ct = (__u64)now;
			rec->has_winner = 1;
			read_conn(&rec->winner, now);
		}
	}
	confirm_outcome(rec->skb, rec->ct, ret, rec);
	bpf_map_delete_elem(&inflight, &key);
	return 0;
}

/* fexit with the resolve hook (no entry program): without a clash the skb still carries the conntrack it
 * came in with (inserted, or dropped); a resolved clash pointed it at the winner, which
 * nf_ct_resolve_clash() recorded. A new flow costs one load and a look at the queue record here. */
static __always_inline int handle_confirm_exit_args(struct sk_buff *skb, __u64 skbv, int ret)
{
	unsigned long nfct;
	struct nf_conn *ct;

	if (n_inflight) {
		__u64 key = task_key();
		struct inflight *rec = bpf_map_lookup_elem(&inflight, &key);

		if (rec) {
			bool mine = rec->skb == skbv;

			if (mine)
				confirm_outcome(rec->skb, rec->ct, ret, rec);
			delete_counted(&inflight, &key, &n_inflight);
			if (mine)
				return 0;
		}
	}
	nfct = skb->_nfct;
	ct = (struct nf_conn *)(nfct & NFCT_PTRMASK);
	/* confirm returns early for reply-direction packets; nothing can be dropped there */
	if (!ct || (nfct & 7) >= IP_CT_IS_REPLY)
		return 0;
	if (ret == NF_DROP && targ_netns && conn_netns(ct) != targ_netns)
		return 0;
	confirm_outcome(skbv, (__u64)ct, ret, NULL);
	return 0;
}

SEC("fentry")
int BPF_PROG(confirm_fentry, struct sk_buff *skb)
{
	CTCT_FLOOR();
	return handle_confirm_entry(skb);
}

SEC("kprobe")
int BPF_KPROBE(confirm_kprobe, struct sk_buff *skb)
{
	CTCT_FLOOR();
	return handle_confirm_entry(skb);
}

SEC("fexit")
int BPF_PROG(confirm_fexit, struct sk_buff *skb, int ret)
{
	__u64 skbv = 0;

	CTCT_FLOOR();
	/* the skb as a number (it is hashed); ctx[0] itself would be a BTF pointer */
	bpf_get_func_arg(ctx, 0, &skbv);
	return confirm_exit_has_args ? handle_confirm_exit_args(skb, skbv, ret) : handle_confirm_exit(ret);
}

SEC("kretprobe")
int BPF_KRETPROBE(confirm_kretprobe, int ret)
{
	CTCT_FLOOR();
	return handle_confirm_exit(ret);
}

SEC("fentry")
int BPF_PROG(resolve_clash_fentry, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	__u64 skbv = 0;

	CTCT_FLOOR();
	bpf_get_func_arg(ctx, 0, &skbv);
	return handle_resolve_clash(skbv, h);
}

SEC("kprobe")
int BPF_KPROBE(resolve_clash_kprobe, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	CTCT_FLOOR();
	return handle_resolve_clash((__u64)skb, h);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
