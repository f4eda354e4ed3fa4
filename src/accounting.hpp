// Joins what the tracer saw with what the kernel counted: the class of tracepoint-mode queue drops,
// the per-flow view (--group flow) and the verify verdict. Pure logic, unit-tested without a kernel.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>
#include <nlohmann/json.hpp>
#include "event.hpp"
#include "kernel_text.hpp"
#include "netns_names.hpp"
#include "summary.hpp"

namespace ctct {

// Tracepoint mode sees a packet freed inside nf_queue() but not why. The queue's own counters say:
// queue_dropped grows on a full queue, user_dropped on a full listener socket, nothing on a missing
// listener. Growth becomes credits that the next events consume, in that order; exact in total.
class QueueDropClassifier {
public:
	struct Result {
		uint32_t cause = CTCT_CAUSE_UNKNOWN;
		std::optional<uint32_t> queue;
	};
	// Counters read now; the first look at a netns is its baseline.
	void observe(uint32_t netns, const std::vector<QueueStat> &now);
	bool has_baseline(uint32_t netns) const { return last_.count(netns) != 0; }
	bool has_credit(uint32_t netns) const;
	// `uncounted`: the cause when no counter grew (no_listener in tracepoint mode; with the queue hooks,
	// where a missing listener has its own errno, a refused shared unconfirmed conntrack).
	Result classify(uint32_t netns, uint32_t uncounted = CTCT_CAUSE_NO_LISTENER);

private:
	struct Credit {
		uint64_t queue_full = 0, socket_overflow = 0;
	};
	std::map<uint32_t, std::map<uint32_t, QueueStat>> last_;     // netns -> queue -> counters
	std::map<uint32_t, std::map<uint32_t, Credit>> credit_;       // netns -> queue -> unconsumed growth
};

// --group flow: per original tuple of the packet that was lost or nearly lost.
class FlowTable {
public:
	// names: what the netns was known as at the flow's first event (nullptr: naming is off)
	void add(const ctct_event &e, const NetnsNamer::Entry *names = nullptr);
	nlohmann::json to_json() const; // array of flows, most losses first
	std::string to_text(size_t max_rows) const;
	size_t size() const { return flows_.size(); }

private:
	struct Flow {
		ctct_tuple orig{};
		ctct_tuple reply{};
		uint32_t netns = 0;
		nlohmann::json netns_info; // null: naming off
		std::string netns_label;
		std::map<std::string, uint64_t> by_type;
		std::vector<int64_t> latency; // bounded: kMaxSamplesPerFlow
		uint64_t losses = 0;
	};
	static constexpr size_t kMaxFlows = 65536;
	static constexpr size_t kMaxSamplesPerFlow = 4096;
	std::map<std::string, Flow> flows_;
	uint64_t flows_not_kept_ = 0;
	std::vector<const Flow *> ranked() const;
};

// Events seen in one netns, by type and (for queue drops) cause.
struct SeenCounts {
	std::map<std::string, uint64_t> by_type;
	std::map<std::string, uint64_t> queue_drop_by_cause;
};

// The session's per-event bookkeeping: events by type this interval (stats) and per netns by type and
// queue-drop cause (verify). On the hot path, so fixed arrays and a one-netns cache; names only when read.
class EventTally {
public:
	void add(const ctct_event &e);
	std::map<std::string, uint64_t> interval() const; // by type name, non-zero only
	void new_interval() { interval_ = {}; }
	std::map<uint32_t, SeenCounts> seen() const;
	bool saw(uint32_t netns) const { return netns_.count(netns) != 0; }

private:
	static constexpr size_t kTypes = 8, kCauses = 16; // enum ctct_event_type, ctct_cause (bucket 0: other)
	struct PerNetns {
		std::array<uint64_t, kTypes> by_type{};
		std::array<uint64_t, kCauses> queue_drop_by_cause{};
	};
	std::array<uint64_t, kTypes> interval_{};
	// Hashed, not std::map: with events from many netns interleaved the tree walk was 5% of the per-event
	// path. seen() sorts by netns when it builds its answer.
	std::unordered_map<uint32_t, PerNetns> netns_;
	uint32_t last_netns_ = 0;
	PerNetns *last_ = nullptr; // unordered_map nodes stay put on rehash
};

struct VerifyOutcome {
	int exit_code = 0; // 0 ok, 1 drops over the threshold, 3 coverage incomplete
	std::string verdict;
	nlohmann::json summary;
};

// Compares events with the kernel's counters over the same window, per netns. A netns missing from
// `before` was created during the window (counters start at zero); one missing from `after` is gone
// and cannot be checked.
struct KernelWindow {
	std::map<uint32_t, std::map<std::string, uint64_t>> conntrack_before, conntrack_after;
	std::map<uint32_t, std::vector<QueueStat>> queues_before, queues_after;
};
VerifyOutcome evaluate_verify(const KernelWindow &k, const std::map<uint32_t, SeenCounts> &seen,
			      const std::map<std::string, uint64_t> &losses, uint64_t max_drops, double duration_s);

} // namespace ctct
