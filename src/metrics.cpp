#include "metrics.hpp"

#include <arpa/inet.h>
#include <sstream>
#include <stdexcept>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "format.hpp"

namespace ctct {

std::string ListenAddress::civetweb() const
{
	std::string p = std::to_string(port);
	if (host.empty())
		return p; // civetweb: a bare port listens on every IPv4 address
	return ipv6 ? "[" + host + "]:" + p : host + ":" + p;
}

std::string ListenAddress::to_string() const { return host.empty() ? ":" + std::to_string(port) : civetweb(); }

ListenAddress parse_listen_address(const std::string &text)
{
	auto bad = [&](const std::string &why) {
		return std::invalid_argument("invalid --metrics-listen '" + text + "': " + why +
					     " (expected ADDR:PORT, e.g. 127.0.0.1:9477, [::1]:9477 or :9477)");
	};
	size_t colon = text.rfind(':');
	if (colon == std::string::npos)
		throw bad("no port");
	std::string host = text.substr(0, colon), port = text.substr(colon + 1);
	if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
		throw bad("the port must be a number 1..65535");
	unsigned long p = std::stoul(port);
	if (p < 1 || p > 65535)
		throw bad("the port must be a number 1..65535");
	ListenAddress a;
	a.port = (uint16_t)p;
	if (host.empty())
		return a;
	unsigned char buf[16];
	if (host.front() == '[') {
		if (host.size() < 3 || host.back() != ']')
			throw bad("an IPv6 address goes in brackets");
		a.host = host.substr(1, host.size() - 2);
		a.ipv6 = true;
		if (inet_pton(AF_INET6, a.host.c_str(), buf) != 1)
			throw bad("'" + a.host + "' is not an IPv6 address");
		return a;
	}
	if (host.find(':') != std::string::npos)
		throw bad("an IPv6 address goes in brackets");
	if (inet_pton(AF_INET, host.c_str(), buf) != 1)
		throw bad("'" + host + "' is not a numeric IPv4 address");
	a.host = host;
	return a;
}

const std::vector<double> &queue_time_buckets()
{
	static const std::vector<double> b = [] {
		std::vector<double> v;
		for (double decade = 1e-5; decade < 10; decade *= 10)
			for (double step : {1.0, 2.5, 5.0})
				v.push_back(decade * step);
		v.push_back(10);
		return v;
	}();
	return b;
}

uint64_t metrics_series_key(uint32_t type, uint32_t cause, uint32_t queue, uint32_t netns)
{
	// 7 + 8 + 17 + 32 bits; values past a field's range share its last value (never from this BPF side)
	uint64_t t = type < 127 ? type : 127, c = cause < 255 ? cause : 255, q = queue <= Metrics::kNoQueue ? queue : Metrics::kNoQueue;
	return t << 57 | c << 49 | q << 32 | netns;
}

namespace {

// The families of the event types the BPF side emits; anything else goes to other_events_total.
bool has_cause_label(uint32_t type) { return type == CTCT_EV_CONFIRM_DROP || type == CTCT_EV_VERDICT_DROP || type == CTCT_EV_QUEUE_DROP; }

} // namespace

Metrics::Metrics(const MetricsOptions &o) : o_(o), registry_(std::make_shared<prometheus::Registry>())
{
	using namespace prometheus;
	auto &r = *registry_;
	std::string by = o.netns_label ? "; by cause, queue and netns" : "; by cause and queue";
	confirm_ = &BuildCounter().Name("ctconfirm_trace_confirm_drops_total")
			    .Help("Packets dropped by __nf_conntrack_confirm (insert_failed), one per confirm_drop event" + by)
			    .Register(r);
	clash_ = &BuildCounter().Name("ctconfirm_trace_clash_resolved_total")
			  .Help("Packets that lost the confirm race but were merged into the winner's entry (clash_resolved events)")
			  .Register(r);
	verdict_ = &BuildCounter().Name("ctconfirm_trace_verdict_drops_total")
			    .Help("Queued packets freed at the reinject function (verdict_drop events)" + by)
			    .Register(r);
	queue_drop_ = &BuildCounter().Name("ctconfirm_trace_queue_drops_total")
			       .Help("Packets that could not be queued and were freed (queue_drop events)" + by)
			       .Register(r);
	bypass_ = &BuildCounter().Name("ctconfirm_trace_queue_bypasses_total")
			   .Help("Packets with no listener that --queue-bypass let through (queue_bypass events)")
			   .Register(r);
	other_ = &BuildCounter().Name("ctconfirm_trace_other_events_total")
			  .Help("Events of a type this version does not name")
			  .Register(r);
	losses_ = &BuildCounter().Name("ctconfirm_trace_losses_total")
			   .Help("The tracer's own losses and notices, by the JSON losses name (docs/metrics.md)")
			   .Register(r);
	queue_time_ = &BuildHistogram().Name("ctconfirm_trace_queue_time_seconds")
			       .Help("Time in NFQUEUE of each reported packet that was seen queued (the event's queue.latency_ns)")
			       .Register(r);
	info_ = &BuildGauge().Name("ctconfirm_trace_build_info").Help("Version and JSON schema of this binary (always 1)").Register(r);
	backend_ = &BuildGauge().Name("ctconfirm_trace_backend_info")
			    .Help("The backend asked for and the detection mode chosen (always 1)")
			    .Register(r);
	hook_ = &BuildGauge().Name("ctconfirm_trace_hook_info").Help("One per attached hook (always 1)").Register(r);
	start_time_ = &BuildGauge().Name("ctconfirm_trace_start_time_seconds").Help("When tracing started, Unix time").Register(r);
	longest_write_ = &BuildGauge().Name("ctconfirm_trace_output_write_longest_seconds")
				  .Help("The longest single write of the event output so far (the ring buffer waits meanwhile)")
				  .Register(r);
	longest_write_gauge_ = &longest_write_->Add({});
	// Known from the start: a loss shows as an increase from 0, not as a new series.
	for (const auto &n : o.loss_names) {
		loss_counters_[n] = &losses_->Add({{"reason", n}});
		loss_last_[n] = 0;
	}
}

Metrics::~Metrics() = default;

void Metrics::set_run_info(const std::string &version, const std::string &backend, const std::string &mode,
			   const std::vector<std::map<std::string, std::string>> &hooks, double start_time_s)
{
	info_->Add({{"version", version}, {"schema", std::to_string(CTCT_SCHEMA_VERSION)}}).Set(1);
	backend_->Add({{"backend", backend}, {"mode", mode}}).Set(1);
	for (const auto &h : hooks)
		hook_->Add(prometheus::Labels(h.begin(), h.end())).Set(1);
	start_time_->Add({}).Set(start_time_s);
}

std::string Metrics::netns_label_value(uint32_t netns)
{
	if (netns_seen_.count(netns))
		return std::to_string(netns);
	if (netns_seen_.size() >= kMaxNetnsLabels)
		return "other";
	netns_seen_.insert(netns);
	return std::to_string(netns);
}

std::map<std::string, std::string> Metrics::common_labels(const ctct_event &e, uint32_t queue, bool with_cause)
{
	std::map<std::string, std::string> l;
	l["queue"] = queue == kNoQueue ? "unknown" : std::to_string(queue);
	if (with_cause)
		l["cause"] = cause_name(e.cause < 255 ? e.cause : 255);
	if (o_.netns_label)
		l["netns"] = netns_label_value(e.netns_ino);
	return l;
}

prometheus::Counter &Metrics::counter_for(const ctct_event &e, uint32_t queue, uint64_t key)
{
	auto it = counters_.find(key);
	if (it != counters_.end())
		return *it->second;
	prometheus::Family<prometheus::Counter> *f = nullptr;
	switch (e.type) {
	case CTCT_EV_CONFIRM_DROP: f = confirm_; break;
	case CTCT_EV_CLASH_RESOLVED: f = clash_; break;
	case CTCT_EV_VERDICT_DROP: f = verdict_; break;
	case CTCT_EV_QUEUE_DROP: f = queue_drop_; break;
	case CTCT_EV_QUEUE_BYPASS: f = bypass_; break;
	default: f = other_; break;
	}
	auto labels = common_labels(e, queue, has_cause_label(e.type));
	if (f == other_)
		labels["type"] = event_type_name(e.type < 127 ? e.type : 127);
	prometheus::Counter *c = &f->Add(prometheus::Labels(labels.begin(), labels.end()));
	counters_[key] = c;
	return *c;
}

prometheus::Histogram &Metrics::histogram_for(const ctct_event &e, uint32_t queue, uint64_t key)
{
	auto it = histograms_.find(key);
	if (it != histograms_.end())
		return *it->second;
	auto labels = common_labels(e, queue, false);
	labels["type"] = event_type_name(e.type < 127 ? e.type : 127);
	prometheus::Histogram *h = &queue_time_->Add(prometheus::Labels(labels.begin(), labels.end()), queue_time_buckets());
	histograms_[key] = h;
	return *h;
}

void Metrics::add(const ctct_event &e)
{
	uint32_t queue = (e.flags & CTCT_F_LOSER_QUEUED) ? e.loser_queue.queue_num : kNoQueue;
	uint32_t ns = 0;
	if (o_.netns_label)
		ns = netns_seen_.count(e.netns_ino) || netns_seen_.size() < kMaxNetnsLabels ? e.netns_ino : 0;
	uint64_t key = metrics_series_key(e.type, has_cause_label(e.type) ? e.cause : 0, queue, ns);
	if (key != last_key_ || !last_counter_) {
		last_counter_ = &counter_for(e, queue, key);
		last_key_ = key;
	}
	last_counter_->Increment();
	int64_t lat = queue_latency_ns(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
	if (lat >= 0)
		histogram_for(e, queue, metrics_series_key(e.type, 0, queue, ns)).Observe((double)lat / 1e9);
}

void Metrics::set_losses(const std::map<std::string, uint64_t> &totals)
{
	for (const auto &[name, v] : totals) {
		auto it = loss_counters_.find(name);
		if (it == loss_counters_.end()) {
			it = loss_counters_.emplace(name, &losses_->Add({{"reason", name}})).first;
			loss_last_[name] = 0;
		}
		uint64_t &last = loss_last_[name];
		if (v > last) {
			it->second->Increment((double)(v - last));
			last = v;
		}
	}
}

void Metrics::set_longest_write_seconds(double s) { longest_write_gauge_->Set(s); }

std::string Metrics::text() const
{
	std::ostringstream out;
	prometheus::TextSerializer().Serialize(out, registry_->Collect());
	return out.str();
}

} // namespace ctct
