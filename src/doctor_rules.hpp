// doctor, rule discovery: iptables-save text and `nft -j list ruleset` parsed into chains and NFQUEUE rules,
// jumps followed to their base chains, and where each queue sits relative to SNAT and confirm. Pure functions.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ctct {

// A chain as a graph node: a base chain has a hook; jumps/gotos lead to other chains of the same table.
struct ChainNode {
	std::string name;
	std::optional<std::string> hook; // prerouting, input, forward, output, postrouting, ingress, ...
	int priority = 0;
	std::vector<std::string> jumps;
};

// One NFQUEUE rule as written (iptables NFQUEUE target, nft `queue` statement, or xt NFQUEUE via nft_compat).
struct RawQueueRule {
	std::string chain;
	std::string text; // iptables-save line, or a short nft rendering
	std::optional<uint32_t> queue_first, queue_last; // unknown for an xt target seen only through nft -j
	bool bypass = false;
	bool fanout = false;
	bool fail_open = false;     // only if the rule shows it; normally the listener sets NFQA_CFG_F_FAIL_OPEN
	std::string ct_state;       // states the rule itself matches ("new", "established,related"), "" if none
	bool compat = false;        // nft: xt NFQUEUE target (made by iptables-nft) rather than a queue statement
};

struct TableRules {
	std::string family; // ip, ip6 (iptables-save), or the nft family
	std::string name;
	std::map<std::string, ChainNode> chains;
	std::vector<RawQueueRule> queue_rules;
	unsigned snat_rules = 0; // SNAT, MASQUERADE (and nft snat/masquerade)
	unsigned dnat_rules = 0; // DNAT, REDIRECT
};

// iptables-save / ip6tables-save output (legacy or nft flavour); FAMILY is "ip" or "ip6".
// Built-in chains get their table's hook priority (raw -300, mangle -150, nat -100/100, filter 0, security 50).
std::vector<TableRules> parse_iptables_save(const std::string &text, const std::string &family);
// `nft -j list ruleset`. Throws std::runtime_error if the text is not nft JSON.
std::vector<TableRules> parse_nft_json(const std::string &text);

// Where a queue sits relative to conntrack: see position_of.
struct HookPlacement {
	std::string via; // the base chain that reaches the rule's chain: "mangle/POSTROUTING"
	std::string hook;
	int priority = 0;
	std::string position; // before_conntrack | before_confirm | after_snat | outside_conntrack
	std::string explanation;
};
// HAS_SNAT: the namespace has SNAT/MASQUERADE rules (after_snat only matters then, but is reported anyway).
HookPlacement placement_of(const std::string &family, const std::string &hook, int priority, bool has_snat);

struct QueueRule {
	std::string source; // legacy | nft (iptables-nft, xt target) | nftables (queue statement)
	std::string family;
	std::string table;
	RawQueueRule rule;
	std::vector<HookPlacement> hooks; // every base chain that reaches the rule's chain (jumps followed)
	bool confirmed_only() const;      // the rule only queues established/related packets
};
// Queue rules of tables from one source, with their base chains. For nft tables, DETAILS (parsed
// iptables-nft-save output) supplies queue numbers and flags of xt NFQUEUE targets that nft -j does not show:
// the k-th NFQUEUE rule of a chain in nft -j is the k-th one of that chain in iptables-nft-save.
std::vector<QueueRule> collect_queue_rules(const std::vector<TableRules> &tables, const std::string &source,
					   bool has_snat, const std::vector<TableRules> &details = {});

// "queue 3-4 (nft ip filter/fwd)": how the report names a rule.
std::string rule_name(const QueueRule &r);
std::string join(const std::vector<std::string> &v, const std::string &sep);

} // namespace ctct
