// Owner of the loaded BPF objects: skeleton, links, ring buffer. Order: open, configure, load, attach, poll.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include "backend.hpp"
#include "event.hpp"
#include "cli_util.hpp"
#include "kernel_text.hpp"

struct ctct_bpf;
struct bpf_link;
struct ring_buffer;

namespace ctct {

struct SkelDeleter { void operator()(struct ::ctct_bpf *s) const; };
struct LinkDeleter { void operator()(bpf_link *l) const; };
struct RingDeleter { void operator()(ring_buffer *r) const; };
using SkelPtr = std::unique_ptr<struct ::ctct_bpf, SkelDeleter>;
using LinkPtr = std::unique_ptr<bpf_link, LinkDeleter>;
using RingPtr = std::unique_ptr<ring_buffer, RingDeleter>;

// Open the skeleton with only `programs` autoloaded; throws std::runtime_error naming what failed.
SkelPtr open_skeleton(const std::vector<std::string> &programs);
// Attach one program as the hook says; returns the link or throws with errno text and a hint.
LinkPtr attach_program(struct ::ctct_bpf *skel, const HookChoice &h, bool is_return);
std::string attach_hint(Attach a, int err);

struct TextRange {
	uint64_t lo = 0, hi = 0;
};

struct TracerOptions {
	uint32_t netns = 0;
	uint32_t ringbuf_bytes = 1 << 22;
	FlowFilter filter;
	TextRange queue_text;       // nf_queue()
	TextRange reinject_text[2]; // nfqnl_reinject, nf_reinject
	TextRange hook_text;        // nf_hook_slow()
};
// Where the kernel frees packets that could not be queued or were dropped by the listener.
void set_text_ranges(TracerOptions &o, const Kallsyms &ksyms);

class Tracer {
public:
	using EventFn = std::function<void(const ctct_event &)>;
	Tracer(const Plan &plan, const TracerOptions &opts, EventFn on_event);
	// Drains the ring into a batch, then hands each event to on_event in ring order: the ring's space is
	// free again before any per-event work (output, /proc reads to classify a queue drop) is done.
	// Returns events consumed, or a negative errno (EINTR on a signal).
	int poll(int timeout_ms);
	// Summed per-CPU counters, indexed by enum ctct_counter.
	std::vector<uint64_t> counters() const;
	// One counter per possible CPU (index = CPU number), e.g. where ring-buffer reservations failed.
	std::vector<uint64_t> counter_per_cpu(uint32_t idx) const;
	// confirm_drop events whose skb was never seen in kfree_skb within `age_ns`: emit and forget them;
	// failed enqueues never freed: the packet went on (queue_bypass). (Queue records live in a fixed
	// array in the kernel and are overwritten, so nothing else can pile up.)
	void sweep_pending(uint64_t now_ns, uint64_t age_ns);
	// Tracepoint mode: write this CPU's current insert_failed for every netns we can enter.
	size_t seed_baselines();
	void set_netns_marks(const std::vector<uint64_t> &cookies);
	size_t seeded() const { return seeded_; }

private:
	SkelPtr skel_;
	std::vector<LinkPtr> links_;
	RingPtr ring_;
	EventFn on_event_;
	size_t seeded_ = 0;
	// At most this many events are copied out before they are handed on (about 1.6 MiB).
	static constexpr size_t kMaxBatch = 8192;
	std::vector<ctct_event> batch_;
	static int ring_cb(void *ctx, void *data, size_t size);
};

std::vector<std::string> counter_names();
// Counters that mean an event or a join record was lost (the others count events or facts).
bool counter_is_loss(int idx);

} // namespace ctct
