#include "doctor_rules.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>

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

std::string join(const std::vector<std::string> &v, const std::string &sep)
{
	std::string s;
	for (const auto &x : v)
		s += (s.empty() ? "" : sep) + x;
	return s;
}

std::string rule_name(const QueueRule &r)
{
	std::string q = "queue ?";
	if (r.rule.queue_first)
		q = "queue " + std::to_string(*r.rule.queue_first) +
		    (*r.rule.queue_last != *r.rule.queue_first ? "-" + std::to_string(*r.rule.queue_last) : "");
	return q + " (" + r.source + " " + r.family + " " + r.table + "/" + r.rule.chain + ")";
}

} // namespace ctct
