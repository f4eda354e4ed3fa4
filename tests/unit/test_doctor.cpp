#include <gtest/gtest.h>
#include "doctor.hpp"

using namespace ctct;

static std::string sample(const char *name) { return read_file(std::string(CTCT_TEST_DATA) + "/" + name); }

static const QueueRule *find_rule(const std::vector<QueueRule> &rules, const std::string &chain)
{
	for (const auto &r : rules)
		if (r.rule.chain == chain)
			return &r;
	return nullptr;
}

static KernelInfo kernel(const std::string &release)
{
	return kernel_info(release, nullptr, true); // no kallsyms: version evidence
}

// Captured: iptables-legacy mangle POSTROUTING NFQUEUE 5, nat MASQUERADE, raw PREROUTING queue 11,
// filter USERQ (balance 9:10, fanout) jumped to from INPUT for ctstate NEW.
TEST(IptablesSave, LegacyRulesHooksAndJumps)
{
	auto t = parse_iptables_save(sample("iptables_legacy_save_v4.txt"), "ip");
	auto rules = collect_queue_rules(t, "legacy", true);
	ASSERT_EQ(rules.size(), 3u);
	auto *post = find_rule(rules, "POSTROUTING");
	ASSERT_NE(post, nullptr);
	EXPECT_EQ(post->source, "legacy");
	EXPECT_EQ(post->table, "mangle");
	EXPECT_EQ(*post->rule.queue_first, 5u);
	EXPECT_FALSE(post->rule.bypass);
	ASSERT_EQ(post->hooks.size(), 1u);
	EXPECT_EQ(post->hooks[0].hook, "postrouting");
	EXPECT_EQ(post->hooks[0].priority, -150);
	EXPECT_EQ(post->hooks[0].position, "before_confirm");

	auto *user = find_rule(rules, "USERQ");
	ASSERT_NE(user, nullptr);
	EXPECT_EQ(*user->rule.queue_first, 9u);
	EXPECT_EQ(*user->rule.queue_last, 10u);
	EXPECT_TRUE(user->rule.fanout);
	ASSERT_EQ(user->hooks.size(), 1u);
	EXPECT_EQ(user->hooks[0].via, "filter/INPUT");
	EXPECT_EQ(user->hooks[0].hook, "input");

	auto *raw = find_rule(rules, "PREROUTING");
	ASSERT_NE(raw, nullptr);
	EXPECT_EQ(raw->hooks[0].priority, -300);
	EXPECT_EQ(raw->hooks[0].position, "before_conntrack");

	unsigned snat = 0;
	for (const auto &x : t)
		snat += x.snat_rules;
	EXPECT_EQ(snat, 1u);
}

TEST(IptablesSave, Ip6BypassAndBalance)
{
	auto rules = collect_queue_rules(parse_iptables_save(sample("ip6tables_legacy_save.txt"), "ip6"), "legacy", false);
	ASSERT_EQ(rules.size(), 1u);
	EXPECT_EQ(rules[0].family, "ip6");
	EXPECT_TRUE(rules[0].rule.bypass);
	EXPECT_EQ(*rules[0].rule.queue_first, 2u);
	EXPECT_EQ(*rules[0].rule.queue_last, 3u);
	EXPECT_EQ(rules[0].hooks[0].hook, "forward");
}

TEST(IptablesSave, CtStateAndQuotes)
{
	auto t = parse_iptables_save("*filter\n:FORWARD ACCEPT [0:0]\n"
				     "-A FORWARD -m comment --comment \"a -j X\" -m conntrack --ctstate RELATED,ESTABLISHED "
				     "-j NFQUEUE --queue-num 2\n"
				     "-A FORWARD -m conntrack ! --ctstate NEW -j NFQUEUE\nCOMMIT\n",
				     "ip");
	auto rules = collect_queue_rules(t, "legacy", false);
	ASSERT_EQ(rules.size(), 2u);
	EXPECT_EQ(rules[0].rule.ct_state, "related,established");
	EXPECT_TRUE(rules[0].confirmed_only());
	EXPECT_EQ(rules[1].rule.ct_state, "!new");
	EXPECT_TRUE(rules[1].confirmed_only());
	EXPECT_EQ(*rules[1].rule.queue_first, 0u); // the target's default queue
}

// Captured: iptables-nft filter FORWARD queue 4 bypass, nat MASQUERADE, mangle user chain CTCTQ (queue 3)
// jumped to from an nft base chain at postrouting 200 (invisible to iptables-nft-save), ip6 INPUT queue 6.
TEST(NftJson, CompatRulesGetDetailsFromIptablesNftSave)
{
	auto nft = parse_nft_json(sample("nft_compat_1.0.6.json"));
	auto details = parse_iptables_save(sample("iptables_nft_save_v4.txt"), "ip");
	auto d6 = parse_iptables_save(sample("ip6tables_nft_save.txt"), "ip6");
	details.insert(details.end(), d6.begin(), d6.end());
	unsigned snat = 0;
	for (const auto &t : nft)
		snat += t.snat_rules;
	EXPECT_EQ(snat, 2u); // xt MASQUERADE and the inet snat statement
	auto rules = collect_queue_rules(nft, "nftables", true, details);
	ASSERT_EQ(rules.size(), 3u);

	auto *q = find_rule(rules, "CTCTQ");
	ASSERT_NE(q, nullptr);
	EXPECT_EQ(q->source, "nft");
	EXPECT_EQ(*q->rule.queue_first, 3u);
	ASSERT_EQ(q->hooks.size(), 1u);
	EXPECT_EQ(q->hooks[0].via, "mangle/ctct_post");
	EXPECT_EQ(q->hooks[0].hook, "postrouting");
	EXPECT_EQ(q->hooks[0].priority, 200);
	EXPECT_EQ(q->hooks[0].position, "after_snat");

	auto *fwd = find_rule(rules, "FORWARD");
	ASSERT_NE(fwd, nullptr);
	EXPECT_TRUE(fwd->rule.bypass);
	EXPECT_EQ(*fwd->rule.queue_first, 4u);

	auto *in6 = find_rule(rules, "INPUT");
	ASSERT_NE(in6, nullptr);
	EXPECT_EQ(in6->family, "ip6");
	EXPECT_EQ(*in6->rule.queue_first, 6u);

	// Without iptables-nft-save the rule is still found, its queue number unknown.
	auto bare = collect_queue_rules(nft, "nftables", true);
	EXPECT_FALSE(find_rule(bare, "CTCTQ")->rule.queue_first.has_value());
}

// The native statement as nft's json.c prints it (queue_stmt_json): one flag as a string, several as an array.
TEST(NftJson, QueueStatement)
{
	const char *text = R"({"nftables": [
	  {"table": {"family": "inet", "name": "t", "handle": 1}},
	  {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
	  {"chain": {"family": "inet", "table": "t", "name": "p", "handle": 2, "type": "filter", "hook": "prerouting", "prio": "raw", "policy": "accept"}},
	  {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 3, "expr": [{"queue": {"num": 7, "flags": "bypass"}}]}},
	  {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 4, "expr": [
	     {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
	     {"queue": {"num": {"range": [8, 9]}, "flags": ["bypass", "fanout"]}}]}},
	  {"rule": {"family": "inet", "table": "t", "chain": "p", "handle": 5, "expr": [{"queue": null}]}}
	]})";
	auto rules = collect_queue_rules(parse_nft_json(text), "nftables", false);
	ASSERT_EQ(rules.size(), 3u);
	EXPECT_EQ(rules[0].source, "nftables");
	EXPECT_EQ(*rules[0].rule.queue_first, 7u);
	EXPECT_TRUE(rules[0].rule.bypass);
	EXPECT_FALSE(rules[0].rule.fanout);
	EXPECT_EQ(rules[0].hooks[0].position, "before_confirm");
	EXPECT_EQ(*rules[1].rule.queue_last, 9u);
	EXPECT_TRUE(rules[1].rule.fanout);
	EXPECT_TRUE(rules[1].confirmed_only());
	EXPECT_EQ(*rules[2].rule.queue_first, 0u);
	EXPECT_EQ(rules[2].hooks[0].priority, -300);
	EXPECT_EQ(rules[2].hooks[0].position, "before_conntrack");
	EXPECT_THROW(parse_nft_json("not json"), std::runtime_error);
	EXPECT_THROW(parse_nft_json("{}"), std::runtime_error);
}

TEST(Placement, RelativeToNatAndConfirm)
{
	EXPECT_EQ(placement_of("ip", "postrouting", 200, true).position, "after_snat");
	EXPECT_NE(placement_of("ip", "postrouting", 200, true).explanation.find("priority 200 > 100"), std::string::npos);
	EXPECT_EQ(placement_of("ip", "postrouting", 100, true).position, "before_confirm");
	EXPECT_EQ(placement_of("ip6", "output", -250, false).position, "before_conntrack");
	EXPECT_EQ(placement_of("inet", "prerouting", -200, false).position, "before_confirm");
	EXPECT_EQ(placement_of("netdev", "ingress", 0, false).position, "outside_conntrack");
	EXPECT_EQ(placement_of("bridge", "forward", 0, false).position, "outside_conntrack");
}

TEST(Kernel, SymbolsBeforeVersion)
{
	auto k = kernel_info("6.18.0", nullptr, true);
	EXPECT_FALSE(k.reinject_relookup.present);
	EXPECT_EQ(k.udp_clash_resolution.evidence, "version");
	EXPECT_TRUE(kernel_info("6.1.0-28-amd64", nullptr, false).reinject_relookup.present);
	EXPECT_FALSE(kernel_info("4.4.0", nullptr, false).udp_clash_resolution.present);

	auto ks = Kallsyms::parse(sample("kallsyms_6.18.txt"));
	auto k2 = kernel_info("6.18.0", &ks, true);
	EXPECT_TRUE(k2.conntrack_in_kallsyms);
	EXPECT_EQ(k2.reinject_function, "nfqnl_reinject");
	EXPECT_TRUE(k2.udp_clash_resolution.present);
	EXPECT_EQ(k2.udp_clash_resolution.evidence, "kallsyms");
	EXPECT_EQ(k2.reinject_relookup.evidence, "version");
	// Symbols beat the version: a kernel that claims 6.18 but has no nf_ct_resolve_clash.
	auto bare = Kallsyms::parse("ffffffff81f8e260 T __nf_conntrack_confirm\nffffffff81a00000 T nf_reinject\n");
	auto k3 = kernel_info("6.18.0", &bare, true);
	EXPECT_FALSE(k3.udp_clash_resolution.present);
	EXPECT_EQ(k3.reinject_function, "nf_reinject");
}

static DoctorInput input_from(const std::string &iptables_save, const std::string &release, bool conntrack = true)
{
	DoctorInput in;
	in.kernel = kernel(release);
	auto t = parse_iptables_save(iptables_save, "ip");
	for (const auto &x : t)
		in.snat_rules += x.snat_rules;
	in.rules = collect_queue_rules(t, "legacy", in.snat_rules > 0);
	if (conntrack)
		in.conntrack_count = 0;
	return in;
}

TEST(Assess, RiskLevels)
{
	EXPECT_EQ(assess(input_from("", "6.18.0")).risk, "none");

	const std::string after_snat = "*mangle\n:POSTROUTING ACCEPT [0:0]\n:CTQ - [0:0]\n-A POSTROUTING -j CTQ\n"
				       "-A CTQ -j NFQUEUE --queue-num 5\nCOMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\n"
				       "-A POSTROUTING -j MASQUERADE\nCOMMIT\n";
	// mangle POSTROUTING is -150: before SNAT. Not after_snat; kernel decides.
	auto a = assess(input_from(after_snat, "6.18.0"));
	EXPECT_EQ(a.risk, "medium");
	EXPECT_EQ(assess(input_from(after_snat, "6.1.0")).risk, "low");

	DoctorInput high = input_from("", "6.1.0");
	high.snat_rules = 1;
	high.rules = collect_queue_rules(parse_nft_json(sample("nft_compat_1.0.6.json")), "nftables", true);
	auto h = assess(high);
	EXPECT_EQ(h.risk, "high"); // after SNAT collides on every kernel
	bool fix_after_snat = false;
	for (const auto &f : h.fixes)
		fix_after_snat |= f.find("avoid NFQUEUE after SNAT") != std::string::npos;
	EXPECT_TRUE(fix_after_snat);

	// No conntrack loaded: no confirm step now.
	EXPECT_EQ(assess(input_from(after_snat, "6.18.0", false)).risk, "low");
	// Only established packets queued.
	EXPECT_EQ(assess(input_from("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m state --state ESTABLISHED -j NFQUEUE\n"
				    "COMMIT\n",
				    "6.18.0"))
			  .risk,
		  "low");
}

TEST(Assess, ListenerFindings)
{
	DoctorInput in = input_from("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j NFQUEUE --queue-balance 3:4\nCOMMIT\n",
				    "6.18.0");
	QueueListener l;
	l.queue.queue_num = 3;
	l.queue.portid = 100;
	l.socket = NetlinkSocket{};
	l.socket->drops = 7;
	in.listeners = {l};
	auto a = assess(in);
	std::vector<std::string> codes;
	for (const auto &f : a.findings)
		codes.push_back(f.code + ":" + std::to_string(f.queue.value_or(999)));
	EXPECT_EQ(codes, (std::vector<std::string>{"no_listener:4", "socket_drops:3"}));
	auto j = doctor_json(in, a);
	EXPECT_EQ(j["type"], "doctor");
	EXPECT_EQ(j["queues"][0]["socket"]["drops"], 7);
	EXPECT_EQ(j["queue_rules"][0]["queue_first"], 3);
	EXPECT_EQ(j["risk"]["level"], "medium");
	EXPECT_FALSE(doctor_text(in, a).empty());
}

TEST(IptablesSave, MalformedNumberThrows)
{
	// run_doctor turns this into a failed tool instead of dying.
	EXPECT_THROW(parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NFQUEUE --queue-num x\nCOMMIT\n", "ip"),
		     std::exception);
}
