#include "doctor_render.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>

#include "ctct_event.h"

namespace ctct {

using nlohmann::json;

json doctor_json(const DoctorInput &in, const Assessment &a)
{
	auto mitigation = [](const Mitigation &m) {
		json j = {{"present", m.present}, {"evidence", m.evidence}};
		if (!m.note.empty())
			j["note"] = m.note;
		return j;
	};
	const auto &k = in.kernel;
	json j = {{"type", "doctor"}, {"schema", CTCT_SCHEMA_VERSION}, {"netns_inode", in.netns_inode}};
	j["kernel"] = {{"release", k.release},
		       {"btf", k.btf},
		       {"kallsyms_readable", k.kallsyms_readable},
		       {"conntrack_in_kallsyms", k.conntrack_in_kallsyms},
		       {"reinject_function", k.reinject_function.empty() ? json() : json(k.reinject_function)},
		       {"mitigations",
			{{"reinject_relookup", mitigation(k.reinject_relookup)},
			 {"udp_clash_resolution", mitigation(k.udp_clash_resolution)},
			 {"clash_resolution_harder", mitigation(k.clash_resolution_harder)}}}};
	j["tools"] = json::array();
	for (const auto &t : in.tools) {
		json tj = {{"name", t.name}, {"status", t.status}};
		if (!t.error.empty())
			tj["error"] = t.error;
		j["tools"].push_back(tj);
	}
	j["queue_rules"] = json::array();
	for (const auto &r : in.rules) {
		json rj = {{"source", r.source},
			   {"family", r.family},
			   {"table", r.table},
			   {"chain", r.rule.chain},
			   {"rule", r.rule.text},
			   {"queue_first", r.rule.queue_first ? json(*r.rule.queue_first) : json()},
			   {"queue_last", r.rule.queue_last ? json(*r.rule.queue_last) : json()},
			   {"bypass", r.rule.bypass},
			   {"fanout", r.rule.fanout},
			   {"fail_open", r.rule.fail_open ? json(true) : json()},
			   {"ct_state", r.rule.ct_state.empty() ? json() : json(r.rule.ct_state)},
			   {"confirmed_only", r.confirmed_only()},
			   {"hooks", json::array()}};
		for (const auto &h : r.hooks)
			rj["hooks"].push_back({{"via", h.via},
					       {"hook", h.hook},
					       {"priority", h.priority},
					       {"position", h.position},
					       {"explanation", h.explanation}});
		j["queue_rules"].push_back(rj);
	}
	j["nat"] = {{"snat_rules", in.snat_rules}, {"dnat_rules", in.dnat_rules}};
	j["queues"] = json::array();
	for (const auto &l : in.listeners) {
		const auto &q = l.queue;
		json qj = {{"queue", q.queue_num},	   {"portid", q.portid},	 {"queue_total", q.queue_total},
			   {"copy_mode", q.copy_mode},	   {"copy_range", q.copy_range}, {"queue_dropped", q.queue_dropped},
			   {"user_dropped", q.user_dropped}, {"id_sequence", q.id_sequence}};
		qj["socket"] = l.socket ? json{{"inode", l.socket->inode},
					       {"rmem_bytes", l.socket->rmem_bytes},
					       {"drops", l.socket->drops}}
					: json();
		qj["listeners"] = json::array();
		for (const auto &o : l.owners)
			qj["listeners"].push_back({{"pid", o.pid}, {"comm", o.comm}});
		j["queues"].push_back(qj);
	}
	if (!in.queue_error.empty())
		j["queues_error"] = in.queue_error;
	if (!in.netlink_error.empty())
		j["netlink_error"] = in.netlink_error;
	json ct = {{"count", in.conntrack_count ? json(*in.conntrack_count) : json()},
		   {"max", in.conntrack_max ? json(*in.conntrack_max) : json()},
		   {"stat", in.conntrack_stat ? json(*in.conntrack_stat) : json()}};
	for (const char *c : {"insert_failed", "drop", "clash_resolve", "clashres"}) {
		if (in.conntrack_stat && in.conntrack_stat->count(c))
			ct[c] = in.conntrack_stat->at(c);
	}
	j["conntrack"] = ct;
	j["findings"] = json::array();
	for (const auto &f : a.findings)
		j["findings"].push_back(
			{{"code", f.code}, {"queue", f.queue ? json(*f.queue) : json()}, {"text", f.text}});
	j["risk"] = {{"level", a.risk}, {"reasons", a.reasons}, {"fixes", a.fixes}};
	return j;
}

std::string doctor_text(const DoctorInput &in, const Assessment &a)
{
	std::ostringstream o;
	const auto &k = in.kernel;
	auto mit = [&](const char *name, const Mitigation &m) {
		o << "  " << name << ": " << (m.present ? "yes" : "no") << " (" << m.evidence
		  << (m.note.empty() ? "" : ": " + m.note) << ")\n";
	};
	o << "RISK: " << a.risk << "\n";
	for (const auto &r : a.reasons)
		o << "  - " << r << "\n";
	o << "\nkernel " << k.release << " (netns " << in.netns_inode << "), BTF " << (k.btf ? "yes" : "no")
	  << ", reinject function " << (k.reinject_function.empty() ? "not found" : k.reinject_function) << "\n";
	mit("reinject re-lookup", k.reinject_relookup);
	mit("UDP clash resolution", k.udp_clash_resolution);
	mit("harder clash resolution", k.clash_resolution_harder);
	o << "\nNFQUEUE rules: " << (in.rules.empty() ? "none" : std::to_string(in.rules.size())) << "\n";
	for (const auto &r : in.rules) {
		o << "  " << rule_name(r) << (r.rule.bypass ? " bypass" : "") << (r.rule.fanout ? " fanout" : "")
		  << (r.rule.ct_state.empty() ? "" : " ct state " + r.rule.ct_state) << "\n    " << r.rule.text << "\n";
		for (const auto &h : r.hooks)
			o << "    via " << h.via << ": " << h.position << ": " << h.explanation << "\n";
		if (r.hooks.empty())
			o << "    not reached from a base chain\n";
	}
	o << "NAT: " << in.snat_rules << " SNAT/MASQUERADE, " << in.dnat_rules << " DNAT/REDIRECT rules\n";
	o << "\nqueues bound: " << (in.listeners.empty() ? "none" : "") << in.queue_error << "\n";
	for (const auto &l : in.listeners) {
		const auto &q = l.queue;
		o << "  queue " << q.queue_num << ": portid " << q.portid << ", waiting " << q.queue_total << ", copy mode "
		  << q.copy_mode << " range " << q.copy_range << ", queue_dropped " << q.queue_dropped << ", user_dropped "
		  << q.user_dropped << ", id " << q.id_sequence;
		if (l.socket)
			o << "; socket inode " << l.socket->inode << " rmem " << l.socket->rmem_bytes << " B, drops "
			  << l.socket->drops;
		for (const auto &ow : l.owners)
			o << "; pid " << ow.pid << " (" << ow.comm << ")";
		o << "\n";
	}
	o << "\nconntrack: count " << (in.conntrack_count ? std::to_string(*in.conntrack_count) : "n/a") << " / max "
	  << (in.conntrack_max ? std::to_string(*in.conntrack_max) : "n/a");
	if (in.conntrack_stat)
		for (const char *c : {"insert_failed", "drop", "clash_resolve", "clashres"})
			if (in.conntrack_stat->count(c))
				o << ", " << c << " " << in.conntrack_stat->at(c);
	o << "\n";
	if (!a.findings.empty()) {
		o << "\nfindings:\n";
		for (const auto &f : a.findings)
			o << "  - " << f.text << "\n";
	}
	if (!a.fixes.empty()) {
		o << "\nfixes:\n";
		for (const auto &f : a.fixes)
			o << "  - " << f << "\n";
	}
	std::vector<std::string> missing;
	for (const auto &t : in.tools)
		if (t.status != "ok")
			missing.push_back(t.name + " " + t.status + (t.error.empty() ? "" : " (" + t.error + ")"));
	if (!missing.empty())
		o << "\ntools not used: " << join(missing, "; ") << "\n";
	return o.str();
}

} // namespace ctct
