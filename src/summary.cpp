#include "summary.hpp"

#include <algorithm>
#include "format.hpp"

namespace ctct {

Percentiles percentiles(std::vector<int64_t> v)
{
	Percentiles p;
	p.count = v.size();
	if (v.empty())
		return p;
	std::sort(v.begin(), v.end());
	auto rank = [&](double q) {
		size_t idx = (size_t)(q * v.size() + 0.999999999);
		return v[std::min(v.size(), std::max<size_t>(idx, 1)) - 1];
	};
	p.p50 = rank(0.50);
	p.p90 = rank(0.90);
	p.p99 = rank(0.99);
	p.max = v.back();
	return p;
}

void Summary::add(const ctct_event &e)
{
	by_type_.add(e.type);
	by_cause_.add(e.cause);
	if (e.type == CTCT_EV_CONFIRM_DROP && !(e.flags & CTCT_F_FREED))
		unfreed_++;
	int64_t lat = queue_latency_ns(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
	if (lat >= 0) {
		if (queue_latency_.size() < kMaxSamples)
			queue_latency_.push_back(lat);
		else
			latency_dropped_samples_++;
	}
}

std::map<std::string, uint64_t> Summary::CountByValue::by_name(std::string (*name)(uint32_t)) const
{
	std::map<std::string, uint64_t> m;
	for (uint32_t v = 0; v < small.size(); v++)
		if (small[v])
			m[name(v)] += small[v];
	for (const auto &[v, n] : large)
		m[name(v)] += n;
	return m;
}

uint64_t Summary::count(const std::string &type) const
{
	auto m = by_type_.by_name(event_type_name);
	auto it = m.find(type);
	return it == m.end() ? 0 : it->second;
}

nlohmann::json Summary::to_json() const
{
	nlohmann::json j;
	j["type"] = "summary";
	j["schema"] = CTCT_SCHEMA_VERSION;
	j["events"] = {{"confirm_drop", count("confirm_drop")}, {"clash_resolved", count("clash_resolved")},
		       {"verdict_drop", count("verdict_drop")}, {"queue_drop", count("queue_drop")},
		       {"queue_bypass", count("queue_bypass")}};
	j["by_cause"] = by_cause_.by_name(cause_name);
	j["confirm_drop_not_freed"] = unfreed_;
	j["losses"] = losses;
	if (!queue_observable) {
		j["queue_latency_ns"] = nullptr;
	} else {
		Percentiles p = percentiles(queue_latency_);
		j["queue_latency_ns"] = {{"count", p.count}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max},
					 {"samples_not_kept", latency_dropped_samples_}};
	}
	return j;
}

std::string Summary::to_text() const
{
	std::string s = "summary: confirm_drop=" + std::to_string(count("confirm_drop")) +
			" clash_resolved=" + std::to_string(count("clash_resolved"));
	for (const char *t : {"verdict_drop", "queue_drop", "queue_bypass"})
		if (count(t))
			s += std::string(" ") + t + "=" + std::to_string(count(t));
	if (unfreed_)
		s += " (not seen freed: " + std::to_string(unfreed_) + ")";
	if (!queue_observable) {
		s += "; time in queue: not observable with this backend";
	} else {
		Percentiles p = percentiles(queue_latency_);
		char buf[160];
		if (p.count)
			snprintf(buf, sizeof(buf), "; time in queue (n=%zu) p50=%.3fms p90=%.3fms p99=%.3fms max=%.3fms", p.count,
				 p.p50 / 1e6, p.p90 / 1e6, p.p99 / 1e6, p.max / 1e6);
		else
			snprintf(buf, sizeof(buf), "; time in queue: no queued drops seen");
		s += buf;
	}
	uint64_t lost = 0;
	for (auto &[k, v] : losses)
		lost += v;
	s += "; lost events: " + std::to_string(lost);
	for (auto &[k, v] : losses)
		if (v)
			s += " " + k + "=" + std::to_string(v);
	return s;
}

} // namespace ctct
