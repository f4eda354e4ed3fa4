// Prometheus metrics of a tracing run (docs/metrics.md): counters of the events the session counts, the
// BPF-side loss counters, the time in queue of reported packets, and what was attached. Serving them
// (--metrics-listen) and the textfile (--metrics-textfile) are in metrics_export.cpp; this part is
// prometheus-cpp core only, unit-tested without a kernel or a socket.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "event.hpp"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T> class Family;
} // namespace prometheus

namespace ctct {

// --metrics-listen: "127.0.0.1:9477", "[::1]:9477", ":9477" (every IPv4 address). Numeric addresses only:
// a name would be resolved once, at start, to an address the operator did not see.
struct ListenAddress {
	std::string host; // "" for every address; IPv6 without brackets
	uint16_t port = 0;
	bool ipv6 = false;
	std::string civetweb() const; // the listening_ports value civetweb takes: "127.0.0.1:9477", "[::1]:9477"
	std::string to_string() const;
};
// Throws std::invalid_argument with a one-line message naming the flag.
ListenAddress parse_listen_address(const std::string &text);

// Upper bounds of the queue-time histogram (seconds): 1-2.5-5 steps from 10 us to 10 s.
const std::vector<double> &queue_time_buckets();

struct MetricsOptions {
	bool netns_label = false;
	std::vector<std::string> loss_names; // the BPF loss counters, as the JSON `losses` names them
};

class Metrics {
public:
	// Past this many distinct netns label values, further namespaces are counted under netns="other".
	static constexpr size_t kMaxNetnsLabels = 1024;
	static constexpr uint32_t kNoQueue = 0x10000; // the event has no queue number: queue="unknown"

	explicit Metrics(const MetricsOptions &o);
	~Metrics();
	Metrics(const Metrics &) = delete;
	Metrics &operator=(const Metrics &) = delete;

	// What this run is: version and schema, the backend asked for and the mode chosen, one series per hook.
	void set_run_info(const std::string &version, const std::string &backend, const std::string &mode,
			  const std::vector<std::map<std::string, std::string>> &hooks, double start_time_s);
	// One event as the session counts it (after queue-drop classification): on the per-event path.
	void add(const ctct_event &e);
	// The BPF counters' totals since start, by name: the counters grow by the difference.
	void set_losses(const std::map<std::string, uint64_t> &totals);
	void set_longest_write_seconds(double s);

	// The exposition text of everything (prometheus-cpp's TextSerializer).
	std::string text() const;
	std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
	size_t netns_label_values() const { return netns_seen_.size(); }

	// The label value of an event's netns: its inode, or "other" once kMaxNetnsLabels are in use.
	std::string netns_label_value(uint32_t netns);

private:
	MetricsOptions o_;
	std::shared_ptr<prometheus::Registry> registry_;
	prometheus::Family<prometheus::Counter> *confirm_, *clash_, *verdict_, *queue_drop_, *bypass_, *other_, *losses_;
	prometheus::Family<prometheus::Histogram> *queue_time_;
	prometheus::Family<prometheus::Gauge> *info_, *backend_, *hook_, *start_time_, *longest_write_;
	prometheus::Gauge *longest_write_gauge_;
	std::map<std::string, prometheus::Counter *> loss_counters_;
	std::map<std::string, uint64_t> loss_last_;
	// Family::Add looks labels up in a std::map under a mutex: the series of an event are kept by a
	// packed key instead (type, cause, queue, netns), and the last one is tried first.
	std::unordered_map<uint64_t, prometheus::Counter *> counters_;
	std::unordered_map<uint64_t, prometheus::Histogram *> histograms_;
	std::unordered_set<uint32_t> netns_seen_;
	uint64_t last_key_ = ~0ULL;
	prometheus::Counter *last_counter_ = nullptr;

	prometheus::Counter &counter_for(const ctct_event &e, uint32_t queue, uint64_t key);
	prometheus::Histogram &histogram_for(const ctct_event &e, uint32_t queue, uint64_t key);
	std::map<std::string, std::string> common_labels(const ctct_event &e, uint32_t queue, bool with_cause);
};

// The series key of an event: its family and labels packed. netns is 0 unless the netns label is on.
uint64_t metrics_series_key(uint32_t type, uint32_t cause, uint32_t queue, uint32_t netns);

} // namespace ctct
