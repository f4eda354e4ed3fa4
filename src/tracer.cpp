#include "tracer.hpp"
#include "btf_names.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctct.skel.h"
#include "kernel_text.hpp"
#include "netns.hpp"

namespace ctct {

void SkelDeleter::operator()(struct ::ctct_bpf *s) const { ctct_bpf__destroy(s); }
void LinkDeleter::operator()(bpf_link *l) const { bpf_link__destroy(l); }
void RingDeleter::operator()(ring_buffer *r) const { ring_buffer__free(r); }

std::vector<std::string> counter_names()
{
	// order of enum ctct_counter; the assert catches a counter added to one side only (enqueue_map_full
	// was once reported under the name "events")
	static const char *const names[] = {"ringbuf_full", "queue_slot_evicted", "inflight_map_full", "pending_map_full",
					    "unseeded_baseline",
					    "enqueue_args_lost", "baseline_map_full", "netns_inode_reused", "unseeded_unclassified", "events"};
	static_assert(sizeof(names) / sizeof(names[0]) == CTCT_CNT_MAX, "one name per enum ctct_counter");
	return {std::begin(names), std::end(names)};
}

bool counter_is_loss(int idx)
{
	return idx != CTCT_CNT_EVENTS && idx != CTCT_CNT_UNSEEDED_BASELINE;
}

SkelPtr open_skeleton(const std::vector<std::string> &programs)
{
	SkelPtr skel(ctct_bpf__open());
	if (!skel)
		throw std::runtime_error(std::string("cannot open BPF object: ") + strerror(errno));
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, skel->obj) {
		bool want = false;
		for (const auto &p : programs)
			want |= p == bpf_program__name(prog);
		bpf_program__set_autoload(prog, want);
	}
	return skel;
}

std::string attach_hint(Attach a, int err)
{
	switch (a) {
	case Attach::Fentry:
		if (err == EPERM || err == EACCES)
			return " (kernel lockdown or an LSM refuses BPF trampolines?); retry with --backend=kprobe";
		if (err == ESRCH || err == ENOENT)
			return " (function not in kernel or module BTF)";
		if (err == ENOTSUP || err == EOPNOTSUPP)
			return " (no BPF trampoline support on this kernel/arch)";
		return "";
	case Attach::Kprobe:
		if (err == ENOENT || err == EOPNOTSUPP || err == ENOTSUP)
			return " (no kprobe support: CONFIG_KPROBES/KPROBE_EVENTS off, or the function is not traceable)";
		if (err == EPERM || err == EACCES)
			return " (kprobes refused: lockdown or missing CAP_PERFMON/CAP_SYS_ADMIN)";
		return "";
	case Attach::TpBtf:
		return err == EPERM ? " (need CAP_BPF and CAP_PERFMON, or root)" : "";
	}
	return "";
}

static struct bpf_program *find_prog(struct ::ctct_bpf *skel, const std::string &name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(skel->obj, name.c_str());
	if (!p)
		throw std::runtime_error("BPF object has no program " + name);
	return p;
}

LinkPtr attach_program(struct ::ctct_bpf *skel, const HookChoice &h, bool is_return)
{
	struct bpf_program *prog = find_prog(skel, h.program);
	bpf_link *link = h.attach == Attach::Kprobe ? bpf_program__attach_kprobe(prog, is_return, h.function.c_str())
						    : bpf_program__attach(prog);
	if (!link) {
		int err = errno;
		throw std::runtime_error(std::string(attach_name(h.attach)) + " attach to " + h.function + " failed: " +
					 strerror(err) + attach_hint(h.attach, err));
	}
	return LinkPtr(link);
}

static bool is_return_hook(const std::string &hook)
{
	for (const auto &s : hook_table())
		if (s.name == hook)
			return s.is_return;
	return false;
}

Tracer::Tracer(const Plan &plan, const TracerOptions &opts, EventFn on_event) : on_event_(std::move(on_event))
{
	// Tracepoint mode reads the netns' counters on every free by netfilter, the kprobe backend the queue
	// entry on every queued packet: with bpf_rdonly_cast (6.2+) those are direct loads instead of helper
	// calls (bench/datapath.sh xtdrops; bench/README: enqueue_kprobe).
	std::vector<HookChoice> hooks = plan.hooks;
	const bool have_cast = btf_has_function("bpf_rdonly_cast", "");
	for (auto &h : hooks)
		if (h.program == "kfree_skb_btf" && plan.detect_at_free && have_cast)
			h.program = "kfree_skb_btf_cast";
		else if (h.program == "enqueue_kprobe" && have_cast)
			h.program = "enqueue_kprobe_cast";
		else if (h.program == "enqueue_fentry" && have_cast)
			h.program = "enqueue_fentry_cast";
	std::vector<std::string> progs;
	for (const auto &h : hooks)
		progs.push_back(h.program);
	skel_ = open_skeleton(progs);
	skel_->rodata->targ_netns = opts.netns;
	skel_->rodata->detect_at_free = plan.detect_at_free;
	skel_->rodata->nr_cpus = libbpf_num_possible_cpus();
	for (const auto &h : plan.hooks)
		if (h.hook == "resolve_clash")
			skel_->rodata->have_resolve_hook = 1;
		else if (h.hook == "enqueue_return" && h.attach == Attach::Fentry)
			skel_->rodata->enqueue_exit_has_args = 1;
	skel_->rodata->confirm_exit_has_args = plan.confirm_exit_has_args;
	skel_->rodata->queue_drop_at_free = plan.queue_drop_at_free;
	skel_->rodata->verdict_drop_at_free = plan.verdict_drop_at_free;
	const FlowFilter &f = opts.filter;
	skel_->rodata->targ_proto = f.proto;
	skel_->rodata->targ_port = htons(f.port);
	skel_->rodata->targ_addr_family = f.family;
	skel_->rodata->targ_addr_prefix = f.prefix_len;
	memcpy((void *)skel_->rodata->targ_addr, f.addr, sizeof(f.addr));
	skel_->rodata->targ_queue_set = f.has_queue;
	skel_->rodata->targ_queue = f.queue;
	skel_->rodata->queue_text_lo = opts.queue_text.lo;
	skel_->rodata->queue_text_hi = opts.queue_text.hi;
	for (int i = 0; i < 2; i++) {
		skel_->rodata->reinject_text_lo[i] = opts.reinject_text[i].lo;
		skel_->rodata->reinject_text_hi[i] = opts.reinject_text[i].hi;
	}
	skel_->rodata->hook_text_lo = opts.hook_text.lo;
	skel_->rodata->hook_text_hi = opts.hook_text.hi;
	bpf_map__set_max_entries(skel_->maps.events, opts.ringbuf_bytes);
	for (const auto &h : hooks)
		if (h.attach == Attach::Fentry)
			bpf_program__set_attach_target(find_prog(skel_.get(), h.program), 0, h.function.c_str());
	if (int err = ctct_bpf__load(skel_.get()))
		throw std::runtime_error(std::string("loading BPF programs failed: ") + strerror(-err) +
					 " (run with -v for the verifier log)");
	// Seed before attaching, so a drop right after start is compared with a real baseline.
	if (plan.detect_at_free) {
		// Before the seeding's scan: a netns it misses is then either born after the marks (counters at
		// 0) or was there to be found.
		set_netns_marks(fresh_netns_cookies());
		seeded_ = seed_baselines();
	}
	for (const auto &h : hooks)
		links_.push_back(attach_program(skel_.get(), h, is_return_hook(h.hook)));
	batch_.reserve(kMaxBatch);
	ring_.reset(ring_buffer__new(bpf_map__fd(skel_->maps.events), ring_cb, this, nullptr));
	if (!ring_)
		throw std::runtime_error(std::string("cannot open ring buffer: ") + strerror(errno));
}

// ring_cb's "batch full": libbpf stops consuming at a negative return, the record already consumed. Not an
// errno that epoll_wait returns.
static constexpr int kBatchFull = -ECANCELED;

int Tracer::ring_cb(void *ctx, void *data, size_t size)
{
	auto *t = static_cast<Tracer *>(ctx);
	ctct_event e;
	if (!decode_event(data, size, e))
		return 0; // cannot happen with one producer layout; never read past the record
	t->batch_.push_back(e);
	return t->batch_.size() >= kMaxBatch ? kBatchFull : 0;
}

int Tracer::poll(int timeout_ms)
{
	int n = ring_buffer__poll(ring_.get(), timeout_ms), total = 0;
	for (;;) {
		for (const auto &e : batch_)
			on_event_(e);
		total += (int)batch_.size();
		batch_.clear();
		if (n != kBatchFull)
			break;
		n = ring_buffer__consume(ring_.get()); // the rest, without waiting
	}
	return n < 0 ? n : total;
}

std::vector<uint64_t> Tracer::counters() const
{
	int ncpu = libbpf_num_possible_cpus();
	std::vector<uint64_t> sums(CTCT_CNT_MAX, 0), vals(ncpu > 0 ? ncpu : 1);
	int fd = bpf_map__fd(skel_->maps.counters);
	for (uint32_t i = 0; i < CTCT_CNT_MAX; i++) {
		if (bpf_map_lookup_elem(fd, &i, vals.data()))
			continue;
		for (auto v : vals)
			sums[i] += v;
	}
	return sums;
}

std::vector<uint64_t> Tracer::counter_per_cpu(uint32_t idx) const
{
	int ncpu = libbpf_num_possible_cpus();
	std::vector<uint64_t> vals(ncpu > 0 ? ncpu : 1, 0);
	if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.counters), &idx, vals.data()))
		std::fill(vals.begin(), vals.end(), 0);
	return vals;
}

void set_text_ranges(TracerOptions &o, const Kallsyms &ksyms)
{
	if (auto r = ksyms.range_of("nf_queue"))
		o.queue_text = {r->first, r->second};
	if (auto r = ksyms.range_of("nf_hook_slow"))
		o.hook_text = {r->first, r->second};
	const char *names[2] = {"nfqnl_reinject", "nf_reinject"};
	for (int i = 0; i < 2; i++)
		if (auto r = ksyms.range_of(names[i]))
			o.reinject_text[i] = {r->first, r->second};
}

// Delete map entries whose `stale` says so; the callback gets each deleted value. `live`, if given, is
// the BPF side's count of the map's entries (it skips lookups while 0): decremented per deletion here.
template <typename V, typename Stale, typename Done>
static void sweep_map(int fd, Stale stale, Done done, uint64_t *live = nullptr)
{
	uint64_t key, next;
	std::vector<uint64_t> keys;
	V v;
	void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(fd, &next, &v) == 0 && stale(v))
			keys.push_back(next);
		key = next;
		prev = &key;
	}
	for (uint64_t k : keys) {
		// Whoever deletes it owns it: the BPF side may have completed it meanwhile.
		if (bpf_map_lookup_elem(fd, &k, &v) == 0 && bpf_map_delete_elem(fd, &k) == 0) {
			if (live)
				__atomic_fetch_sub(live, 1, __ATOMIC_SEQ_CST);
			done(v);
		}
	}
}

struct EnqueueFailure {
	uint64_t skb;
	ctct_event ev;
};

void Tracer::sweep_pending(uint64_t now_ns, uint64_t age_ns)
{
	sweep_map<EnqueueFailure>(
		bpf_map__fd(skel_->maps.enqueue_failed), [&](const EnqueueFailure &f) { return f.ev.ts_ns + age_ns < now_ns; },
		[&](EnqueueFailure &f) {
			f.ev.type = CTCT_EV_QUEUE_BYPASS;
			on_event_(f.ev);
		},
		(uint64_t *)&skel_->bss->n_enqueue_failed);
	sweep_map<ctct_event>(
		bpf_map__fd(skel_->maps.pending), [&](const ctct_event &e) { return e.ts_ns + age_ns < now_ns; },
		[&](ctct_event &e) { on_event_(e); }, (uint64_t *)&skel_->bss->n_pending);
}

void Tracer::set_netns_marks(const std::vector<uint64_t> &cookies)
{
	std::map<uint64_t, uint64_t> latest; // batch -> the latest mark in it
	for (uint64_t c : cookies)
		latest[netns_cookie_batch(c)] = std::max(latest[netns_cookie_batch(c)], c);
	int fd = bpf_map__fd(skel_->maps.netns_marks);
	for (const auto &[batch, mark] : latest)
		if (bpf_map_update_elem(fd, &batch, &mark, BPF_ANY))
			return; // without all of them no netns is told new: safe, only less exact
	if (latest.empty())
		return;
	skel_->bss->netns_mark_top_batch = latest.rbegin()->first;
	skel_->bss->netns_marks_set = 1;
}

size_t Tracer::seed_baselines()
{
	int map_fd = bpf_map__fd(skel_->maps.baselines);
	size_t seeded = 0;
	for (const auto &[ino, path] : list_netns()) {
		uint64_t cookie = 0;
		auto text = read_in_netns(path, {"/proc/thread-self/net/stat/nf_conntrack"}, &cookie)[0];
		if (!text)
			continue; // netns without conntrack loaded: a later drop there starts from zero
		try {
			// the kernel counter is 32-bit per CPU and the BPF side sums it in 32 bits; the map value is
			// 64-bit only for the compare-and-swap
			// with its cookie, so that a netns gone before its first look and its inode reused is told apart
			ctct_baseline v{(uint32_t)parse_conntrack_stat(*text).totals()["insert_failed"], cookie, 0};
			if (bpf_map_update_elem(map_fd, &ino, &v, BPF_ANY) == 0)
				seeded++;
		} catch (const std::exception &) {
		}
	}
	return seeded;
}

} // namespace ctct
