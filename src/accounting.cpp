#include "accounting.hpp"

#include <algorithm>
#include "format.hpp"

namespace ctct {

void EventTally::add(const ctct_event &e)
{
	size_t type = e.type < kTypes ? e.type : 0;
	interval_[type]++;
	if (!last_ || last_netns_ != e.netns_ino) {
		last_ = &netns_[e.netns_ino];
		last_netns_ = e.netns_ino;
	}
	last_->by_type[type]++;
	if (e.type == CTCT_EV_QUEUE_DROP)
		last_->queue_drop_by_cause[e.cause < kCauses ? e.cause : 0]++;
}

std::map<std::string, uint64_t> EventTally::interval() const
{
	std::map<std::string, uint64_t> m;
	for (size_t t = 0; t < kTypes; t++)
		if (interval_[t])
			m[t ? event_type_name(t) : "unknown"] += interval_[t];
	return m;
}

std::map<uint32_t, SeenCounts> EventTally::seen() const
{
	std::map<uint32_t, SeenCounts> out;
	for (const auto &[ns, p] : netns_) {
		SeenCounts &s = out[ns];
		for (size_t t = 0; t < kTypes; t++)
			if (p.by_type[t])
				s.by_type[t ? event_type_name(t) : "unknown"] += p.by_type[t];
		for (size_t c = 0; c < kCauses; c++)
			if (p.queue_drop_by_cause[c])
				s.queue_drop_by_cause[cause_name(c)] += p.queue_drop_by_cause[c];
	}
	return out;
}

void QueueDropClassifier::observe(uint32_t netns, const std::vector<QueueStat> &now)
{
	auto first = last_.find(netns) == last_.end();
	auto &prev = last_[netns];
	for (const auto &q : now) {
		auto it = prev.find(q.queue_num);
		// a queue that appeared, or was rebound (counters restart): its counters now are all growth
		// only if we had seen the netns before
		bool known = it != prev.end() && it->second.portid == q.portid && q.queue_dropped >= it->second.queue_dropped &&
			     q.user_dropped >= it->second.user_dropped;
		if (!first) {
			auto &c = credit_[netns][q.queue_num];
			c.queue_full += q.queue_dropped - (known ? it->second.queue_dropped : 0);
			c.socket_overflow += q.user_dropped - (known ? it->second.user_dropped : 0);
		}
		prev[q.queue_num] = q;
	}
}

bool QueueDropClassifier::has_credit(uint32_t netns) const
{
	auto it = credit_.find(netns);
	if (it == credit_.end())
		return false;
	for (const auto &[q, c] : it->second)
		if (c.queue_full || c.socket_overflow)
			return true;
	return false;
}

QueueDropClassifier::Result QueueDropClassifier::classify(uint32_t netns, uint32_t uncounted)
{
	Result r;
	if (!has_baseline(netns))
		return r;
	for (auto &[q, c] : credit_[netns])
		if (c.queue_full) {
			c.queue_full--;
			return {CTCT_CAUSE_QUEUE_FULL, q};
		}
	for (auto &[q, c] : credit_[netns])
		if (c.socket_overflow) {
			c.socket_overflow--;
			return {CTCT_CAUSE_SOCKET_OVERFLOW, q};
		}
	// nothing counted it
	r.cause = uncounted;
	return r;
}

static std::string flow_key(const ctct_event &e)
{
	return std::to_string(e.netns_ino) + " " + tuple_to_string(e.loser.orig);
}

void FlowTable::add(const ctct_event &e, const NetnsNamer::Entry *names)
{
	if (e.flags & CTCT_F_NO_CONNTRACK)
		return;
	std::string key = flow_key(e);
	auto it = flows_.find(key);
	if (it == flows_.end()) {
		if (flows_.size() >= kMaxFlows) {
			flows_not_kept_++;
			return;
		}
		it = flows_.emplace(key, Flow{}).first;
		it->second.orig = e.loser.orig;
		it->second.reply = e.loser.reply;
		it->second.netns = e.netns_ino;
		if (names) {
			it->second.netns_info = names->json;
			it->second.netns_label = names->label;
		}
	}
	Flow &f = it->second;
	f.by_type[event_type_name(e.type)]++;
	if (event_is_drop(e.type))
		f.losses++;
	int64_t lat = queue_latency_ns(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
	if (lat >= 0 && f.latency.size() < kMaxSamplesPerFlow)
		f.latency.push_back(lat);
}

std::vector<const FlowTable::Flow *> FlowTable::ranked() const
{
	std::vector<const Flow *> v;
	for (const auto &[k, f] : flows_)
		v.push_back(&f);
	std::stable_sort(v.begin(), v.end(), [](const Flow *a, const Flow *b) {
		if (a->losses != b->losses)
			return a->losses > b->losses;
		uint64_t na = 0, nb = 0;
		for (auto &[t, n] : a->by_type)
			na += n;
		for (auto &[t, n] : b->by_type)
			nb += n;
		return na > nb;
	});
	return v;
}

nlohmann::json FlowTable::to_json() const
{
	nlohmann::json out = nlohmann::json::array();
	for (const Flow *f : ranked()) {
		Percentiles p = percentiles(f->latency);
		out.push_back({{"netns", f->netns},
			       {"netns_info", f->netns_info},
			       {"orig", tuple_json(f->orig)},
			       {"reply", tuple_json(f->reply)},
			       {"events", f->by_type},
			       {"losses", f->losses},
			       {"queue_latency_ns", p.count ? nlohmann::json{{"count", p.count}, {"p50", p.p50}, {"p99", p.p99},
									{"max", p.max}}
							    : nlohmann::json(nullptr)}});
	}
	return out;
}

std::string FlowTable::to_text(size_t max_rows) const
{
	std::string s;
	char line[512];
	snprintf(line, sizeof(line), "%-12s %-56s %6s %6s %6s %6s %9s %9s %9s %s\n", "NETNS", "FLOW (original tuple)", "CONFRM",
		 "CLASH", "VERDCT", "QUEUE", "P50_MS", "P99_MS", "MAX_MS", "NETNS_NAME");
	s += line;
	size_t n = 0;
	for (const Flow *f : ranked()) {
		if (n++ == max_rows) {
			s += "... " + std::to_string(flows_.size() - max_rows) + " more flows\n";
			break;
		}
		auto get = [&](const char *t) {
			auto it = f->by_type.find(t);
			return it == f->by_type.end() ? 0UL : (unsigned long)it->second;
		};
		Percentiles p = percentiles(f->latency);
		auto msf = [&](int64_t ns) {
			char b[32];
			if (p.count)
				snprintf(b, sizeof(b), "%.3f", ns / 1e6);
			else
				snprintf(b, sizeof(b), "-");
			return std::string(b);
		};
		snprintf(line, sizeof(line), "%-12u %-56s %6lu %6lu %6lu %6lu %9s %9s %9s ", f->netns,
			 tuple_to_string(f->orig).c_str(), get("confirm_drop"), get("clash_resolved"), get("verdict_drop"),
			 get("queue_drop"), msf(p.p50).c_str(), msf(p.p99).c_str(), msf(p.max).c_str());
		s += line;
		s += (f->netns_label.empty() ? "-" : f->netns_label) + "\n"; // last: a pod name has no fixed width
	}
	if (flows_not_kept_)
		s += "(" + std::to_string(flows_not_kept_) + " events of flows beyond the table's bound not shown)\n";
	return s;
}

static uint64_t get(const std::map<std::string, uint64_t> &m, const std::string &k)
{
	auto it = m.find(k);
	return it == m.end() ? 0 : it->second;
}

VerifyOutcome evaluate_verify(const KernelWindow &k, const std::map<uint32_t, SeenCounts> &seen,
			      const std::map<std::string, uint64_t> &losses, uint64_t max_drops, double duration_s)
{
	VerifyOutcome out;
	nlohmann::json per = nlohmann::json::array();
	uint64_t drops = 0, lost_events = 0, verdict_drops = 0;
	bool gap = false;
	std::vector<std::string> gaps;
	for (const auto &[name, v] : losses)
		lost_events += v;

	std::map<uint32_t, bool> all;
	for (const auto &[ns, c] : k.conntrack_after)
		all[ns] = true;
	for (const auto &[ns, s] : seen)
		all[ns] = true;
	for (const auto &[ns, unused] : all) {
		static const SeenCounts none;
		auto sit = seen.find(ns);
		const SeenCounts &s = sit == seen.end() ? none : sit->second;
		nlohmann::json j = {{"netns", ns}};
		uint64_t confirm_events = get(s.by_type, "confirm_drop");
		uint64_t queue_events = get(s.by_type, "queue_drop");
		verdict_drops += get(s.by_type, "verdict_drop");
		auto after = k.conntrack_after.find(ns);
		auto before = k.conntrack_before.find(ns);
		bool created = before == k.conntrack_before.end();
		nlohmann::json kern = nullptr;
		uint64_t d_insert_failed = 0;
		bool ct_known = after != k.conntrack_after.end();
		if (ct_known) {
			auto delta = [&](const char *col) -> uint64_t {
				uint64_t a = get(after->second, col), b = created ? 0 : get(before->second, col);
				return a >= b ? a - b : 0;
			};
			d_insert_failed = delta("insert_failed");
			kern = {{"insert_failed", d_insert_failed}, {"drop", delta("drop")}, {"clash_resolve", delta("clashres")}};
		}
		// queue counters: matched by queue number and listener; a queue unbound since the start lost them
		uint64_t d_qd = 0, d_ud = 0;
		bool queues_known = true;
		auto qa = k.queues_after.find(ns);
		auto qb = k.queues_before.find(ns);
		if (qa != k.queues_after.end())
			for (const auto &q : qa->second) {
				const QueueStat *b = nullptr;
				if (qb != k.queues_before.end())
					for (const auto &x : qb->second)
						if (x.queue_num == q.queue_num)
							b = &x;
				if (b && (b->portid != q.portid || q.queue_dropped < b->queue_dropped))
					queues_known = false;
				d_qd += q.queue_dropped - (b && queues_known ? b->queue_dropped : 0);
				d_ud += q.user_dropped - (b && queues_known ? b->user_dropped : 0);
			}
		if (qb != k.queues_before.end())
			for (const auto &b : qb->second) {
				bool still = false;
				if (qa != k.queues_after.end())
					for (const auto &q : qa->second)
						still |= q.queue_num == b.queue_num;
				queues_known &= still;
			}
		if (kern.is_object()) {
			kern["queue_dropped"] = d_qd;
			kern["user_dropped"] = d_ud;
			kern["queue_counters_complete"] = queues_known;
		}
		j["kernel"] = kern;
		j["seen"] = s.by_type;
		j["queue_drop_by_cause"] = s.queue_drop_by_cause;
		j["created_during_window"] = created && ct_known;
		// coverage: confirm drops seen / Δinsert_failed; queue drops seen vs the queue counters
		nlohmann::json cov = nullptr;
		if (ct_known && d_insert_failed)
			cov = (double)confirm_events / (double)d_insert_failed;
		j["confirm_coverage"] = cov;
		bool netns_gap = ct_known && confirm_events < d_insert_failed;
		if (queues_known && queue_events < d_qd + d_ud)
			netns_gap = true;
		if (netns_gap) {
			gap = true;
			gaps.push_back(std::to_string(ns));
		}
		uint64_t confirm_drops = std::max(confirm_events, d_insert_failed);
		uint64_t queue_drops = std::max(queue_events, d_qd + d_ud);
		j["drops"] = confirm_drops + queue_drops;
		drops += confirm_drops + queue_drops;
		if (j["drops"] == 0 && s.by_type.empty() && (!kern.is_object() || (kern["drop"] == 0 && kern["clash_resolve"] == 0)))
			continue; // quiet netns: keep the summary about the ones that matter
		per.push_back(j);
	}
	bool lost = lost_events != 0;
	if (drops > max_drops)
		out.exit_code = 1;
	else if (lost || gap)
		out.exit_code = 3;
	char line[512];
	const char *word = out.exit_code == 0 ? "PASS" : out.exit_code == 1 ? "FAIL" : "INCOMPLETE";
	snprintf(line, sizeof(line), "verify %s: %llu unintended drops in %.0fs (max %llu)%s%s%s", word,
		 (unsigned long long)drops, duration_s, (unsigned long long)max_drops,
		 verdict_drops ? (", " + std::to_string(verdict_drops) + " listener verdict drops (not counted)").c_str() : "",
		 lost ? (", tracer lost " + std::to_string(lost_events) + " events").c_str() : "",
		 gap ? ", the kernel counted drops the tracer did not see" : "");
	out.verdict = line;
	std::string gap_list;
	for (const auto &g : gaps)
		gap_list += (gap_list.empty() ? "" : ",") + g;
	out.summary = {{"type", "verify"},          {"schema", CTCT_SCHEMA_VERSION}, {"result", word},
		       {"exit_code", out.exit_code},  {"duration_s", duration_s},      {"drops", drops},
		       {"max_drops", max_drops},      {"verdict_drops", verdict_drops}, {"lost_events", lost_events},
		       {"losses", losses},            {"coverage_complete", !gap && !lost},
		       {"netns_with_gaps", gaps},     {"netns", per}};
	return out;
}

} // namespace ctct
