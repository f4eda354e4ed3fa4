// One tracing run (the default command and verify): the tracer, the kernel's counters at the start and
// every --stats-interval, and the joins on top (summary, per-flow table, queue-drop classes, verify).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

#include "accounting.hpp"
#include "app.hpp"
#include "btf_names.hpp"
#include "format.hpp"
#include "listeners.hpp"
#include "metrics.hpp"
#include "metrics_export.hpp"
#include "netns.hpp"
#include "output.hpp"
#include "summary.hpp"
#include "tracer.hpp"

namespace ctct {

struct TraceArgs {
	std::string backend = "auto";
	std::string duration;
	bool json = false;
	uint32_t netns = 0;
	uint32_t ringbuf_kb = 16384; // 16 MiB: ~50k events of 328 bytes, 0.5 s of a 100k/s flood
	std::string proto, addr, port, queue;
	std::string stats_interval = "10s";
	std::string group;
	bool exact_queue_errors = false;
	bool no_queue_hooks = false;
	bool verdict_hook = false;
	bool no_netns_names = false;
	bool quiet = false; // no event lines, stats or tables: counted (summary, metrics) only
	std::string metrics_listen, metrics_textfile;
	std::string metrics_textfile_interval = "15s";
	bool metrics_netns_label = false;
	// verify
	std::string max_drops = "0";
};

// One tracing run: tracer, kernel counters, the joins on top. Used by the default command and verify.
class Session {
public:
	Session(const TraceArgs &a, bool verify_mode) : a_(a), verify_(verify_mode) {}
	int run();

private:
	const TraceArgs &a_;
	bool verify_;
	Plan plan_;
	Kallsyms ksyms_;
	DropReasons reasons_;
	FormatContext ctx_;
	Summary summary_;
	FlowTable flows_;
	QueueDropClassifier classifier_;
	std::map<uint32_t, std::string> netns_paths_;
	EventTally tally_;
	CountersByNetns counters_start_, counters_prev_;
	std::unique_ptr<Tracer> tracer_;
	NetnsNamer namer_;
	std::unique_ptr<Metrics> metrics_;
	std::unique_ptr<MetricsExposer> exposer_;
	std::string textfile_error_; // the last failure, printed once per new error
	void write_textfile(bool at_start);
	std::map<uint64_t, std::vector<SocketOwner>> owners_; // socket inode -> processes, scanned once per socket

	void on_event(ctct_event e);
	nlohmann::json listener_json(const NetnsCounters &c, const QueueStat &q);
	std::map<uint32_t, std::string> watched_netns();
	nlohmann::json netns_info_now(uint32_t ino);
	void classify_queue_drop(ctct_event &e);
	nlohmann::json stats_record(const CountersByNetns &now, double interval_s);
	// Whole lines only, flushed once per poll; a closed stdout (EPIPE) stops the run with a message.
	LineWriter out_{STDOUT_FILENO};
	void emit(const nlohmann::json &j) { out_.write_line(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)); }
	void emit_text(const std::string &text) // a block of text lines (tables): one write_line per line
	{
		size_t from = 0;
		while (from < text.size()) {
			size_t nl = text.find('\n', from);
			if (nl == std::string::npos)
				nl = text.size();
			out_.write_line(std::string_view(text).substr(from, nl - from));
			from = nl + 1;
		}
	}
	void flush_or_die()
	{
		if (!out_.flush())
			die(kExitRuntime, "output closed (" + out_.error() + "), stopping");
	}
	// A write(2) of our output that blocked this long also kept the ring buffer from being drained.
	double longest_write_ms() const { return (double)(out_.longest_write_ns() / 1000) / 1000.0; }
	nlohmann::json summary_json() const
	{
		nlohmann::json j = summary_.to_json();
		j["losses_per_cpu"]["ringbuf_full"] = tracer_->counter_per_cpu(CTCT_CNT_RINGBUF_FULL);
		j["longest_write_ms"] = longest_write_ms();
		// what naming the netns cost the event loop (a scan runs inside the ring buffer's callback)
		j["netns_naming"] = a_.no_netns_names ? nlohmann::json(nullptr)
						      : nlohmann::json{{"scans", namer_.scans()},
								       {"longest_scan_ms", (double)(namer_.longest_scan_ns() / 1000) / 1000.0}};
		return j;
	}
};

} // namespace ctct
