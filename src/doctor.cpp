#include "doctor.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctct_event.h"

namespace ctct {

using nlohmann::json;

namespace {

// iptables-save quotes arguments with spaces ("--comment \"a b\""); keep them as one token.
std::vector<std::string> tokenize(const std::string &line)
{
	std::vector<std::string> out;
	std::string cur;
	bool in_quote = false, have = false;
	for (size_t i = 0; i < line.size(); i++) {
		char c = line[i];
		if (in_quote) {
			if (c == '\\' && i + 1 < line.size())
				cur += line[++i];
			else if (c == '"')
				in_quote = false;
			else
				cur += c;
		} else if (c == '"') {
			in_quote = have = true;
		} else if (isspace((unsigned char)c)) {
			if (have)
				out.push_back(cur);
			cur.clear();
			have = false;
		} else {
			cur += c;
			have = true;
		}
	}
	if (have)
		out.push_back(cur);
	return out;
}

std::string lower(std::string s)
{
	std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)tolower(c); });
	return s;
}

const std::set<std::string> kBuiltinChains = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"};

// include/uapi/linux/netfilter_ipv4.h NF_IP_PRI_* (the IPv6 values are the same).
int iptables_priority(const std::string &table, const std::string &chain)
{
	if (table == "raw")
		return -300;
	if (table == "mangle")
		return -150;
	if (table == "nat")
		return (chain == "POSTROUTING" || chain == "INPUT") ? 100 : -100;
	if (table == "security")
		return 50;
	return 0; // filter
}

// nft's named priorities for the ip/ip6/inet families (nft(8) "CHAINS").
std::optional<int> nft_named_priority(const std::string &name)
{
	static const std::map<std::string, int> names = {{"raw", -300}, {"mangle", -150}, {"dstnat", -100},
							 {"filter", 0},   {"security", 50}, {"srcnat", 100}};
	auto it = names.find(name);
	if (it != names.end())
		return it->second;
	// "filter + 10", "srcnat - 5"
	auto words = tokenize(name);
	if (words.size() == 3 && names.count(words[0]) && (words[1] == "+" || words[1] == "-")) {
		try {
			int d = std::stoi(words[2]);
			return names.at(words[0]) + (words[1] == "+" ? d : -d);
		} catch (const std::exception &) {
		}
	}
	return std::nullopt;
}

bool states_confirmed_only(const std::string &ct_state)
{
	if (ct_state.empty())
		return false;
	if (ct_state == "!new")
		return true;
	if (ct_state[0] == '!')
		return false;
	std::stringstream ss(ct_state);
	std::string s;
	while (std::getline(ss, s, ','))
		if (s != "established" && s != "related")
			return false;
	return true;
}

} // namespace

bool QueueRule::confirmed_only() const { return states_confirmed_only(rule.ct_state); }

std::vector<TableRules> parse_iptables_save(const std::string &text, const std::string &family)
{
	std::vector<TableRules> tables;
	std::istringstream is(text);
	std::string line;
	TableRules *cur = nullptr;
	while (std::getline(is, line)) {
		if (line.empty() || line[0] == '#')
			continue;
		if (line[0] == '*') {
			tables.push_back({});
			cur = &tables.back();
			cur->family = family;
			cur->name = line.substr(1);
			continue;
		}
		if (!cur)
			continue;
		if (line == "COMMIT") {
			cur = nullptr;
			continue;
		}
		auto w = tokenize(line);
		if (line[0] == ':' && !w.empty()) {
			ChainNode c;
			c.name = w[0].substr(1);
			// A built-in chain has a policy; a user chain has "-".
			if (w.size() > 1 && w[1] != "-" && kBuiltinChains.count(c.name)) {
				c.hook = lower(c.name);
				c.priority = iptables_priority(cur->name, c.name);
			}
			cur->chains[c.name] = c;
			continue;
		}
		if (w.size() < 2 || w[0] != "-A")
			continue;
		const std::string &chain = w[1];
		std::string target;
		RawQueueRule q;
		q.chain = chain;
		q.text = line;
		for (size_t i = 2; i < w.size(); i++) {
			const std::string &t = w[i];
			bool has_arg = i + 1 < w.size();
			if ((t == "-j" || t == "--jump" || t == "-g" || t == "--goto") && has_arg) {
				target = w[i + 1];
				if (cur->chains.count(target))
					cur->chains[chain].jumps.push_back(target);
			} else if ((t == "--ctstate" || t == "--state") && has_arg) {
				q.ct_state = (i > 0 && w[i - 1] == "!" ? "!" : "") + lower(w[i + 1]);
			} else if (t == "--queue-num" && has_arg) {
				q.queue_first = q.queue_last = (uint32_t)std::stoul(w[i + 1]);
			} else if (t == "--queue-balance" && has_arg) {
				auto colon = w[i + 1].find(':');
				q.queue_first = (uint32_t)std::stoul(w[i + 1]);
				q.queue_last = colon == std::string::npos ? *q.queue_first
									  : (uint32_t)std::stoul(w[i + 1].substr(colon + 1));
			} else if (t == "--queue-bypass") {
				q.bypass = true;
			} else if (t == "--queue-cpu-fanout") {
				q.fanout = true;
			} else if (t == "--fail-open") {
				q.fail_open = true;
			}
		}
		cur->chains[chain].name = chain;
		if (target == "NFQUEUE") {
			if (!q.queue_first)
				q.queue_first = q.queue_last = 0; // the target's default
			cur->queue_rules.push_back(q);
		} else if (cur->name == "nat" && (target == "SNAT" || target == "MASQUERADE")) {
			cur->snat_rules++;
		} else if (cur->name == "nat" && (target == "DNAT" || target == "REDIRECT")) {
			cur->dnat_rules++;
		}
	}
	return tables;
}

namespace {

void collect_jumps(const json &j, std::vector<std::string> &out)
{
	if (j.is_object()) {
		for (const char *k : {"jump", "goto"}) {
			auto it = j.find(k);
			if (it != j.end() && it->is_object() && it->contains("target") && (*it)["target"].is_string())
				out.push_back((*it)["target"].get<std::string>());
		}
		for (const auto &kv : j.items())
			collect_jumps(kv.value(), out);
	} else if (j.is_array()) {
		for (const auto &e : j)
			collect_jumps(e, out);
	}
}

void collect_strings(const json &j, std::vector<std::string> &out)
{
	if (j.is_string())
		out.push_back(j.get<std::string>());
	else if (j.is_array() || j.is_object())
		for (const auto &kv : j.items())
			collect_strings(kv.value(), out);
}

std::string join(const std::vector<std::string> &v, const std::string &sep)
{
	std::string s;
	for (const auto &x : v)
		s += (s.empty() ? "" : sep) + x;
	return s;
}

} // namespace

std::vector<TableRules> parse_nft_json(const std::string &text)
{
	json j;
	try {
		j = json::parse(text);
	} catch (const std::exception &e) {
		throw std::runtime_error(std::string("nft -j: not JSON: ") + e.what());
	}
	if (!j.is_object() || !j.contains("nftables") || !j["nftables"].is_array())
		throw std::runtime_error("nft -j: no \"nftables\" array");
	std::vector<TableRules> tables;
	auto table = [&](const std::string &family, const std::string &name) -> TableRules & {
		for (auto &t : tables)
			if (t.family == family && t.name == name)
				return t;
		tables.push_back({});
		tables.back().family = family;
		tables.back().name = name;
		return tables.back();
	};
	for (const auto &obj : j["nftables"]) {
		if (obj.contains("table")) {
			const auto &t = obj["table"];
			table(t.value("family", ""), t.value("name", ""));
		} else if (obj.contains("chain")) {
			const auto &c = obj["chain"];
			auto &node = table(c.value("family", ""), c.value("table", "")).chains[c.value("name", "")];
			node.name = c.value("name", "");
			if (c.contains("hook") && c["hook"].is_string()) {
				node.hook = c["hook"].get<std::string>();
				if (c.contains("prio") && c["prio"].is_number_integer())
					node.priority = c["prio"].get<int>();
				else if (c.contains("prio") && c["prio"].is_string())
					node.priority = nft_named_priority(c["prio"].get<std::string>()).value_or(0);
			}
		} else if (obj.contains("rule")) {
			const auto &r = obj["rule"];
			auto &t = table(r.value("family", ""), r.value("table", ""));
			std::string chain = r.value("chain", "");
			auto &node = t.chains[chain];
			node.name = chain;
			if (!r.contains("expr") || !r["expr"].is_array())
				continue;
			collect_jumps(r["expr"], node.jumps);
			std::optional<RawQueueRule> q;
			std::string ct_state;
			std::vector<std::string> words;
			for (const auto &stmt : r["expr"]) {
				if (!stmt.is_object() || stmt.empty())
					continue;
				const std::string key = stmt.begin().key();
				const json &v = stmt.begin().value();
				if (key == "match" && v.is_object() && v.contains("left") && v["left"].is_object() &&
				    v["left"].contains("ct") && v["left"]["ct"].value("key", "") == "state") {
					std::vector<std::string> states;
					collect_strings(v.value("right", json()), states);
					ct_state = (v.value("op", "") == "!=" ? "!" : "") + join(states, ",");
					words.push_back("ct state " + ct_state);
				} else if (key == "queue") {
					RawQueueRule rq;
					rq.chain = chain;
					std::string desc = "queue";
					if (v.is_object() && v.contains("num")) {
						const json &n = v["num"];
						if (n.is_number_unsigned()) {
							rq.queue_first = rq.queue_last = n.get<uint32_t>();
						} else if (n.is_object() && n.contains("range") && n["range"].is_array() &&
							   n["range"].size() == 2 && n["range"][0].is_number_unsigned() &&
							   n["range"][1].is_number_unsigned()) {
							rq.queue_first = n["range"][0].get<uint32_t>();
							rq.queue_last = n["range"][1].get<uint32_t>();
						} // else an expression (e.g. a map): queue number decided per packet
					} else {
						rq.queue_first = rq.queue_last = 0;
					}
					std::vector<std::string> flags;
					if (v.is_object() && v.contains("flags"))
						collect_strings(v["flags"], flags);
					for (const auto &f : flags) {
						rq.bypass |= f == "bypass";
						rq.fanout |= f == "fanout";
					}
					if (rq.queue_first)
						desc += " num " + std::to_string(*rq.queue_first) +
							(*rq.queue_last != *rq.queue_first ? "-" + std::to_string(*rq.queue_last) : "");
					else
						desc += " num <expression>";
					if (!flags.empty())
						desc += " flags " + join(flags, ",");
					words.push_back(desc);
					q = rq;
				} else if (key == "xt" && v.is_object()) {
					std::string name = v.value("name", ""), type = v.value("type", "");
					words.push_back("xt " + type + " " + name);
					if (type == "target" && name == "NFQUEUE") {
						RawQueueRule rq;
						rq.chain = chain;
						rq.compat = true;
						q = rq;
					} else if (type == "target" && (name == "MASQUERADE" || name == "SNAT")) {
						t.snat_rules++;
					} else if (type == "target" && (name == "DNAT" || name == "REDIRECT")) {
						t.dnat_rules++;
					}
				} else if (key == "snat" || key == "masquerade") {
					t.snat_rules++;
				} else if (key == "dnat" || key == "redirect") {
					t.dnat_rules++;
				}
			}
			if (q) {
				q->ct_state = ct_state;
				q->text = join(words, " ");
				t.queue_rules.push_back(*q);
			}
		}
	}
	return tables;
}

HookPlacement placement_of(const std::string &family, const std::string &hook, int priority, bool has_snat)
{
	HookPlacement p;
	p.hook = hook;
	p.priority = priority;
	std::string at = hook + " priority " + std::to_string(priority);
	const std::string queued = "new-flow packets are queued with an unconfirmed conntrack (confirm runs last, at "
				   "postrouting/input)";
	if (family != "ip" && family != "ip6" && family != "inet") {
		p.position = "outside_conntrack";
		p.explanation = family + " " + hook + ": not an IP conntrack hook, no confirm race from this queue";
	} else if (hook == "prerouting" || hook == "output") {
		if (priority < -200) {
			p.position = "before_conntrack";
			p.explanation = at + " < -200 (conntrack): packets are not tracked yet when queued; their "
					     "conntrack is created after the verdict";
		} else {
			p.position = "before_confirm";
			p.explanation = at + ", after conntrack (-200)" + (priority > -100 ? " and DNAT (-100)" : "") + ": " + queued;
		}
	} else if (hook == "forward" || hook == "input") {
		p.position = "before_confirm";
		p.explanation = at + ": " + queued;
	} else if (hook == "postrouting") {
		if (priority > 100) {
			p.position = "after_snat";
			p.explanation = "postrouting after SNAT (priority " + std::to_string(priority) +
					" > 100): different flows that SNAT to one tuple collide at confirm" +
					(has_snat ? "" : " (no SNAT/MASQUERADE rule found now)");
		} else {
			p.position = "before_confirm";
			p.explanation = at + ", before SNAT (100): " + queued;
		}
	} else {
		p.position = "outside_conntrack";
		p.explanation = hook + ": not an IP conntrack hook, no confirm race from this queue";
	}
	return p;
}

std::vector<QueueRule> collect_queue_rules(const std::vector<TableRules> &tables, const std::string &source,
					   bool has_snat, const std::vector<TableRules> &details)
{
	std::vector<QueueRule> out;
	for (const auto &t : tables) {
		// chain -> base chains that reach it, by a walk from each base chain over jumps and gotos
		std::map<std::string, std::vector<std::string>> reached_from;
		for (const auto &[name, node] : t.chains) {
			if (!node.hook)
				continue;
			std::set<std::string> seen{name};
			std::vector<std::string> todo{name};
			while (!todo.empty()) {
				std::string c = todo.back();
				todo.pop_back();
				reached_from[c].push_back(name);
				auto it = t.chains.find(c);
				if (it == t.chains.end())
					continue;
				for (const auto &j : it->second.jumps)
					if (seen.insert(j).second)
						todo.push_back(j);
			}
		}
		const TableRules *detail = nullptr;
		for (const auto &d : details)
			if (d.family == t.family && d.name == t.name)
				detail = &d;
		std::map<std::string, size_t> compat_seen; // chain -> xt NFQUEUE rules seen so far
		for (const auto &raw : t.queue_rules) {
			QueueRule r;
			r.source = raw.compat ? "nft" : source;
			r.family = t.family;
			r.table = t.name;
			r.rule = raw;
			if (raw.compat) {
				size_t k = compat_seen[raw.chain]++;
				std::vector<const RawQueueRule *> same_chain;
				if (detail)
					for (const auto &d : detail->queue_rules)
						if (d.chain == raw.chain)
							same_chain.push_back(&d);
				if (k < same_chain.size()) {
					r.rule = *same_chain[k];
					r.rule.compat = true;
				} else {
					r.rule.text = "xt target NFQUEUE (nft_compat; queue number not shown by nft -j, "
						      "iptables-nft-save did not list it)";
				}
			}
			for (const auto &base : reached_from[raw.chain]) {
				const ChainNode &b = t.chains.at(base);
				HookPlacement p = placement_of(t.family, *b.hook, b.priority, has_snat);
				p.via = t.name + "/" + base;
				r.hooks.push_back(p);
			}
			out.push_back(r);
		}
	}
	return out;
}

namespace {

std::pair<int, int> kernel_version(const std::string &release)
{
	int major = 0, minor = 0;
	if (sscanf(release.c_str(), "%d.%d", &major, &minor) < 2)
		return {0, 0};
	return {major, minor};
}

bool version_at_least(const std::string &release, int major, int minor)
{
	auto v = kernel_version(release);
	return v.first > major || (v.first == major && v.second >= minor);
}

bool has_symbol(const Kallsyms &k, const std::string &name) { return k.has_function(name) || !k.clones_of(name).empty(); }

} // namespace

KernelInfo kernel_info(const std::string &release, const Kallsyms *ksyms, bool btf)
{
	KernelInfo k;
	k.release = release;
	k.btf = btf;
	k.kallsyms_readable = ksyms && ksyms->size() > 0;
	k.conntrack_in_kallsyms = k.kallsyms_readable && has_symbol(*ksyms, "__nf_conntrack_confirm");
	if (k.kallsyms_readable) {
		if (ksyms->has_function("nfqnl_reinject"))
			k.reinject_function = "nfqnl_reinject";
		else if (ksyms->has_function("nf_reinject"))
			k.reinject_function = "nf_reinject";
	}
	// No symbol marks the re-lookup (nf_conntrack_update's __nf_conntrack_update path before 6.12).
	k.reinject_relookup = {!version_at_least(release, 6, 12), "version",
			       "inferred from the kernel version: before 6.12 the reinject path looks the conntrack up "
			       "again, which rescues most same-flow collisions"};
	if (k.conntrack_in_kallsyms) {
		k.udp_clash_resolution = {has_symbol(*ksyms, "nf_ct_resolve_clash"), "kallsyms", ""};
		if (has_symbol(*ksyms, "nf_ct_resolve_clash_harder"))
			k.clash_resolution_harder = {true, "kallsyms", ""};
		else
			k.clash_resolution_harder = {version_at_least(release, 5, 6), "version",
						     "nf_ct_resolve_clash_harder not in kallsyms (static, usually inlined); "
						     "inferred from version >= 5.6"};
	} else {
		std::string why = k.kallsyms_readable ? "nf_conntrack not in kallsyms (module not loaded?)"
						      : "kallsyms not readable";
		k.udp_clash_resolution = {version_at_least(release, 4, 8), "version", why + "; inferred from version >= 4.8"};
		k.clash_resolution_harder = {version_at_least(release, 5, 6), "version", why + "; inferred from version >= 5.6"};
	}
	return k;
}

namespace {

std::string rule_name(const QueueRule &r)
{
	std::string q = "queue ?";
	if (r.rule.queue_first)
		q = "queue " + std::to_string(*r.rule.queue_first) +
		    (*r.rule.queue_last != *r.rule.queue_first ? "-" + std::to_string(*r.rule.queue_last) : "");
	return q + " (" + r.source + " " + r.family + " " + r.table + "/" + r.rule.chain + ")";
}

const char *kFixAfterSnat = "avoid NFQUEUE after SNAT/MASQUERADE: queue in forward, or at postrouting before SNAT "
			    "(priority < 100; iptables mangle POSTROUTING is -150)";
const char *kFixConfirmedOnly =
	"queue only after conntrack has confirmed: match `ct state established,related` on the queue rule "
	"(iptables: -m conntrack --ctstate ESTABLISHED,RELATED) and let new flows pass, or bypass new flows with a "
	"mark set by the listener";
const char *kFixListenerNew = "let the listener handle `ct state new` packets quickly (e.g. Suricata accepts or "
			      "marks them) so new flows do not wait in userspace";
const char *kFixKernel = "upgrade the kernel: conntrack clash resolution (nf_ct_resolve_clash, 4.8+; harder "
			 "resolution 5.6+) keeps UDP packets that lose the confirm race";
const char *kFixBypass = "add --queue-bypass (nft: queue ... bypass) so packets pass when no listener is bound, and "
			 "fail-open in the listener (NFQA_CFG_F_FAIL_OPEN) for a full queue";

int rank(const std::string &level)
{
	static const std::vector<std::string> order = {"none", "low", "medium", "high"};
	return (int)(std::find(order.begin(), order.end(), level) - order.begin());
}

} // namespace

Assessment assess(const DoctorInput &in)
{
	Assessment a;
	a.risk = "none";
	auto raise = [&](const std::string &level) {
		if (rank(level) > rank(a.risk))
			a.risk = level;
	};
	auto fix = [&](const std::string &f) {
		if (std::find(a.fixes.begin(), a.fixes.end(), f) == a.fixes.end())
			a.fixes.push_back(f);
	};
	const auto &k = in.kernel;
	bool has_snat = in.snat_rules > 0;
	if (in.rules.empty())
		a.reasons.push_back("no NFQUEUE rule in this network namespace");
	for (const auto &r : in.rules) {
		std::string name = rule_name(r);
		if (r.confirmed_only()) {
			a.reasons.push_back(name + " only queues ct state " + r.rule.ct_state +
					    " packets: their conntrack is already confirmed");
			raise("low");
			continue;
		}
		if (r.hooks.empty()) {
			a.findings.push_back({"unreached", r.rule.queue_first,
					      name + ": chain not reached from any base chain (inactive, or its base chain "
						     "is invisible to the tools that ran)"});
			raise("low");
		}
		for (const auto &h : r.hooks) {
			std::string where = name + " via " + h.via + ": " + h.explanation;
			if (h.position == "after_snat" && has_snat) {
				raise("high");
				a.reasons.push_back(where + "; the later one is dropped at confirm (insert_failed), on every kernel");
				fix(kFixAfterSnat);
				fix(kFixConfirmedOnly);
			} else if (h.position == "before_confirm" || h.position == "after_snat") {
				if (k.reinject_relookup.present) {
					raise("low");
					a.reasons.push_back(where + "; this kernel re-looks-up the conntrack on reinject (< 6.12, " +
							    k.reinject_relookup.evidence + "), which rescues most same-flow collisions");
				} else if (k.udp_clash_resolution.present) {
					raise("medium");
					a.reasons.push_back(where + "; without the reinject re-lookup (6.12+), a second packet of a "
								    "new flow queued while the first waits collides at confirm: "
								    "UDP is resolved (nf_ct_resolve_clash, " +
							    k.udp_clash_resolution.evidence + "), TCP is dropped");
				} else {
					raise("high");
					a.reasons.push_back(where + "; this kernel neither re-looks-up on reinject nor resolves "
								    "clashes: every same-flow collision is dropped");
				}
				fix(kFixConfirmedOnly);
				fix(kFixListenerNew);
			} else {
				raise("low");
				a.reasons.push_back(where);
			}
		}
	}
	if (!in.rules.empty() && !in.conntrack_count) {
		if (rank(a.risk) > rank("low"))
			a.risk = "low";
		a.reasons.push_back("nf_conntrack is not loaded here (no /proc/sys/net/netfilter/nf_conntrack_count): no "
				    "confirm step now; the risk applies once conntrack or NAT is used");
	}
	if (in.conntrack_stat) {
		auto it = in.conntrack_stat->find("insert_failed");
		if (it != in.conntrack_stat->end() && it->second > 0) {
			a.findings.push_back({"insert_failed", std::nullopt,
					      "conntrack insert_failed is " + std::to_string(it->second) +
						      " in this network namespace: confirm has dropped packets"});
			if (!in.rules.empty())
				raise("medium");
		}
	}
	if (rank(a.risk) >= rank("medium") && !k.udp_clash_resolution.present)
		fix(kFixKernel);

	// Listener health: every queue a rule sends to should have a bound listener.
	std::map<uint32_t, const QueueListener *> bound;
	for (const auto &l : in.listeners)
		bound[l.queue.queue_num] = &l;
	std::set<uint32_t> reported;
	for (const auto &r : in.rules) {
		if (!r.rule.queue_first)
			continue;
		for (uint64_t q = *r.rule.queue_first; q <= *r.rule.queue_last && q < *r.rule.queue_first + 256u; q++) {
			if (bound.count((uint32_t)q) || !reported.insert((uint32_t)q).second)
				continue;
			a.findings.push_back({"no_listener", (uint32_t)q,
					      "queue " + std::to_string(q) + " has no listener: packets to queue " +
						      std::to_string(q) + " are dropped unless --queue-bypass" +
						      (r.rule.bypass ? " (" + rule_name(r) + " has bypass: they pass uninspected)"
								     : " (" + rule_name(r) + " has no bypass: they are dropped)")});
			if (!r.rule.bypass)
				fix(kFixBypass);
		}
	}
	for (const auto &l : in.listeners) {
		uint32_t q = l.queue.queue_num;
		if (!l.socket)
			a.findings.push_back({"no_socket", q,
					      "queue " + std::to_string(q) + " is bound to netlink port " +
						      std::to_string(l.queue.portid) + " but no such socket is in /proc/net/netlink"});
		else if (l.socket->drops > 0)
			a.findings.push_back({"socket_drops", q,
					      "listener socket of queue " + std::to_string(q) + " dropped " +
						      std::to_string(l.socket->drops) + " messages (receive buffer full; " +
						      std::to_string(l.socket->rmem_bytes) + " bytes queued now)"});
		if (l.queue.queue_dropped > 0)
			a.findings.push_back({"queue_dropped", q,
					      "queue " + std::to_string(q) + " dropped " + std::to_string(l.queue.queue_dropped) +
						      " packets because it was full (queue-maxlen)"});
		if (l.queue.user_dropped > 0)
			a.findings.push_back({"user_dropped", q,
					      "queue " + std::to_string(q) + " dropped " + std::to_string(l.queue.user_dropped) +
						      " packets it could not deliver to the listener's socket"});
	}
	return a;
}

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

namespace {

std::string find_in_path(const std::string &name)
{
	std::string path = getenv("PATH") ? getenv("PATH") : "";
	path += ":/usr/sbin:/sbin:/usr/bin:/bin";
	std::stringstream ss(path);
	std::string dir;
	while (std::getline(ss, dir, ':')) {
		if (dir.empty())
			continue;
		std::string p = dir + "/" + name;
		if (access(p.c_str(), X_OK) == 0)
			return p;
	}
	return "";
}

// Runs ARGV, returns its stdout; TOOL gets the status and, on failure, the first line of stderr.
std::string run_tool(const std::vector<std::string> &argv, Tool &tool)
{
	tool.name = argv[0];
	for (size_t i = 1; i < argv.size(); i++)
		tool.name += " " + argv[i];
	std::string exe = find_in_path(argv[0]);
	if (exe.empty()) {
		tool.status = "missing";
		return "";
	}
	int out[2];
	FILE *err = tmpfile();
	if (pipe(out) != 0 || !err) {
		tool.status = "failed";
		tool.error = strerror(errno);
		if (err)
			fclose(err);
		return "";
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(fileno(err), 2);
		close(out[0]);
		close(out[1]);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		execv(exe.c_str(), args.data());
		_exit(127);
	}
	close(out[1]);
	std::string text;
	char buf[65536];
	ssize_t n;
	while ((n = read(out[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			text.append(buf, n);
	close(out[0]);
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		tool.status = "failed";
		rewind(err);
		char line[512] = "";
		if (!fgets(line, sizeof(line), err))
			line[0] = 0;
		std::string e = line;
		while (!e.empty() && (e.back() == '\n' || e.back() == '\r'))
			e.pop_back();
		tool.error = (pid < 0 ? std::string("fork: ") + strerror(errno)
				      : "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1)) +
			     (e.empty() ? "" : ": " + e);
	} else {
		tool.status = "ok";
	}
	fclose(err);
	return text;
}

std::optional<uint64_t> read_number(const std::string &path)
{
	try {
		return std::stoull(read_file(path));
	} catch (const std::exception &) {
		return std::nullopt;
	}
}

void append(std::vector<TableRules> &to, std::vector<TableRules> from)
{
	for (auto &t : from)
		to.push_back(std::move(t));
}

unsigned count(const std::vector<TableRules> &tables, unsigned TableRules::*field)
{
	unsigned n = 0;
	for (const auto &t : tables)
		n += t.*field;
	return n;
}

} // namespace

int run_doctor(bool json_output)
{
	DoctorInput in;
	struct utsname u;
	uname(&u);
	struct stat st;
	if (stat("/proc/self/ns/net", &st) == 0)
		in.netns_inode = st.st_ino;
	std::optional<Kallsyms> ksyms;
	try {
		ksyms = Kallsyms::parse(read_file("/proc/kallsyms"));
	} catch (const std::exception &) {
	}
	in.kernel = kernel_info(u.release, ksyms ? &*ksyms : nullptr, access("/sys/kernel/btf/vmlinux", R_OK) == 0);

	// iptables (legacy and nft flavours), then nftables itself; a missing tool is reported, not fatal.
	std::vector<TableRules> legacy, nft_save, nft;
	const std::vector<std::pair<std::string, std::string>> saves = {{"iptables-legacy-save", "ip"},
									{"ip6tables-legacy-save", "ip6"},
									{"iptables-nft-save", "ip"},
									{"ip6tables-nft-save", "ip6"}};
	for (const auto &[cmd, family] : saves) {
		Tool t;
		std::string text = run_tool({cmd}, t);
		if (t.status == "ok") {
			try {
				append(cmd.find("legacy") != std::string::npos ? legacy : nft_save,
				       parse_iptables_save(text, family));
			} catch (const std::exception &e) { // a number we could not read: say so, keep going
				t.status = "failed";
				t.error = std::string("cannot parse its output: ") + e.what();
			}
		}
		in.tools.push_back(t);
	}
	Tool nft_tool;
	std::string nft_text = run_tool({"nft", "-j", "list", "ruleset"}, nft_tool);
	bool have_nft = nft_tool.status == "ok";
	if (have_nft) {
		try {
			nft = parse_nft_json(nft_text);
		} catch (const std::exception &e) {
			nft_tool.status = "failed";
			nft_tool.error = e.what();
			have_nft = false;
		}
	}
	in.tools.push_back(nft_tool);
	// nft -j sees every nf_tables chain (also base chains iptables-nft-save cannot show) but not the
	// arguments of xt targets; iptables-nft-save fills those in. Without nft, iptables-nft-save alone.
	const auto &nf_tables = have_nft ? nft : nft_save;
	in.snat_rules = count(legacy, &TableRules::snat_rules) + count(nf_tables, &TableRules::snat_rules);
	in.dnat_rules = count(legacy, &TableRules::dnat_rules) + count(nf_tables, &TableRules::dnat_rules);
	bool has_snat = in.snat_rules > 0;
	in.rules = collect_queue_rules(legacy, "legacy", has_snat);
	auto more = have_nft ? collect_queue_rules(nft, "nftables", has_snat, nft_save)
			     : collect_queue_rules(nft_save, "nft", has_snat);
	in.rules.insert(in.rules.end(), more.begin(), more.end());

	std::vector<QueueStat> queues;
	try {
		queues = parse_nfqueue(read_file("/proc/net/netfilter/nfnetlink_queue"));
	} catch (const std::exception &e) {
		in.queue_error = std::string(e.what()) + " (nfnetlink_queue not loaded: no queue is bound)";
	}
	std::vector<NetlinkSocket> sockets;
	try {
		sockets = parse_proc_net_netlink(read_file("/proc/net/netlink"));
	} catch (const std::exception &e) {
		in.netlink_error = e.what();
	}
	std::set<uint64_t> inodes;
	for (const auto &q : queues)
		if (auto s = find_netlink_socket(sockets, kNetlinkNetfilter, q.portid))
			inodes.insert(s->inode);
	in.listeners = map_queue_listeners(queues, sockets, scan_socket_owners(inodes));

	try {
		in.conntrack_stat = parse_conntrack_stat(read_file("/proc/net/stat/nf_conntrack")).totals();
	} catch (const std::exception &) {
	}
	in.conntrack_count = read_number("/proc/sys/net/netfilter/nf_conntrack_count");
	in.conntrack_max = read_number("/proc/sys/net/netfilter/nf_conntrack_max");

	Assessment a = assess(in);
	if (json_output)
		std::cout << doctor_json(in, a).dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
	else
		std::cout << doctor_text(in, a);
	return 0;
}

} // namespace ctct
