// Counts and queue-latency percentiles over a run, for the exit summary.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>
#include "event.hpp"

namespace ctct {

struct Percentiles {
	size_t count = 0;
	int64_t p50 = 0, p90 = 0, p99 = 0, max = 0;
};
// Nearest-rank percentiles; sorts a copy.
Percentiles percentiles(std::vector<int64_t> samples);

class Summary {
public:
	void add(const ctct_event &e);
	uint64_t count(const std::string &type) const;
	nlohmann::json to_json() const;
	std::string to_text() const;
	// Loss counters as read from the BPF side, by name.
	std::map<std::string, uint64_t> losses;
	bool queue_observable = true;

private:
	// Counts by the event's raw type and cause, named only when read: add() is on the per-event path,
	// where two std::string keys and map lookups were a tenth of the time. Values past the array: the map.
	struct CountByValue {
		std::array<uint64_t, 32> small{};
		std::map<uint32_t, uint64_t> large;
		void add(uint32_t v)
		{
			if (v < small.size())
				small[v]++;
			else
				large[v]++;
		}
		// by name(v), non-zero only; values whose names are equal ("unknown") are summed
		std::map<std::string, uint64_t> by_name(std::string (*name)(uint32_t)) const;
	};
	CountByValue by_type_, by_cause_;
	uint64_t unfreed_ = 0;
	static constexpr size_t kMaxSamples = 1 << 20; // bounds memory on a long run
	std::vector<int64_t> queue_latency_;
	uint64_t latency_dropped_samples_ = 0;
};

} // namespace ctct
