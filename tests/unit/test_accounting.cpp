#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <cstring>
#include "accounting.hpp"
#include "cli_util.hpp"
#include "format.hpp"

using namespace ctct;

static QueueStat q(uint32_t num, uint32_t portid, uint64_t qd, uint64_t ud)
{
	QueueStat s;
	s.queue_num = num;
	s.portid = portid;
	s.queue_dropped = qd;
	s.user_dropped = ud;
	return s;
}

TEST(QueueDropClassifier, CreditsFromCounterGrowthInOrder)
{
	QueueDropClassifier c;
	c.observe(7, {q(3, 100, 10, 5)});
	EXPECT_FALSE(c.has_credit(7));
	c.observe(7, {q(3, 100, 12, 6)});
	ASSERT_TRUE(c.has_credit(7));
	auto a = c.classify(7), b = c.classify(7), d = c.classify(7), e = c.classify(7);
	EXPECT_EQ(a.cause, (uint32_t)CTCT_CAUSE_QUEUE_FULL);
	EXPECT_EQ(*a.queue, 3u);
	EXPECT_EQ(b.cause, (uint32_t)CTCT_CAUSE_QUEUE_FULL);
	EXPECT_EQ(d.cause, (uint32_t)CTCT_CAUSE_SOCKET_OVERFLOW);
	// nothing counted the fourth: no listener, and no queue number
	EXPECT_EQ(e.cause, (uint32_t)CTCT_CAUSE_NO_LISTENER);
	EXPECT_FALSE(e.queue.has_value());
}

TEST(QueueDropClassifier, UnknownNetnsAndRebinding)
{
	QueueDropClassifier c;
	EXPECT_EQ(c.classify(9).cause, (uint32_t)CTCT_CAUSE_UNKNOWN);
	c.observe(9, {q(1, 50, 100, 0)});
	// a new listener (portid) restarted the counters: all of them are growth
	c.observe(9, {q(1, 51, 2, 0)});
	EXPECT_EQ(c.classify(9).cause, (uint32_t)CTCT_CAUSE_QUEUE_FULL);
	EXPECT_EQ(c.classify(9).cause, (uint32_t)CTCT_CAUSE_QUEUE_FULL);
	EXPECT_EQ(c.classify(9).cause, (uint32_t)CTCT_CAUSE_NO_LISTENER);
}

static ctct_event drop_event(uint32_t type, uint16_t sport, uint64_t lat_ns)
{
	ctct_event e{};
	e.type = type;
	e.netns_ino = 42;
	e.loser.orig.l3num = AF_INET;
	e.loser.orig.protonum = 17;
	inet_pton(AF_INET, "10.0.0.1", e.loser.orig.src);
	inet_pton(AF_INET, "10.0.0.2", e.loser.orig.dst);
	e.loser.orig.sport = htons(sport);
	e.loser.orig.dport = htons(53);
	e.loser.reply = e.loser.orig;
	if (lat_ns) {
		e.flags |= CTCT_F_LOSER_QUEUED;
		e.loser_queue.enqueue_ns = 1000;
		e.loser_queue.reinject_ns = 1000 + lat_ns;
	}
	return e;
}

TEST(FlowTable, GroupsByFlowRanksByLosses)
{
	FlowTable t;
	t.add(drop_event(CTCT_EV_CLASH_RESOLVED, 1000, 5000000));
	t.add(drop_event(CTCT_EV_CONFIRM_DROP, 2000, 1000000));
	t.add(drop_event(CTCT_EV_CONFIRM_DROP, 2000, 3000000));
	ctct_event none = drop_event(CTCT_EV_QUEUE_DROP, 3000, 0);
	none.flags |= CTCT_F_NO_CONNTRACK;
	t.add(none); // no flow to group by
	ASSERT_EQ(t.size(), 2u);
	auto j = t.to_json();
	EXPECT_EQ(j[0]["orig"]["sport"], 2000);
	EXPECT_EQ(j[0]["losses"], 2);
	EXPECT_EQ(j[0]["events"]["confirm_drop"], 2);
	EXPECT_EQ(j[0]["queue_latency_ns"]["max"], 3000000);
	EXPECT_EQ(j[1]["losses"], 0);
	EXPECT_NE(t.to_text(10).find("udp 10.0.0.1:2000 -> 10.0.0.2:53"), std::string::npos);
}

TEST(FlowTable, KeepsTheNetnsNameOfTheFirstEvent)
{
	FlowTable t;
	NetnsNamer::Entry pod;
	pod.label = "pod:shop/cart-7f";
	pod.json = {{"label", pod.label}};
	NetnsNamer::Entry later;
	later.label = "pid:99/other";
	later.json = {{"label", later.label}};
	t.add(drop_event(CTCT_EV_CONFIRM_DROP, 2000, 0), &pod);
	t.add(drop_event(CTCT_EV_CONFIRM_DROP, 2000, 0), &later); // same flow: the first name stays
	t.add(drop_event(CTCT_EV_CONFIRM_DROP, 3000, 0));         // naming off: null, "-" in the text
	auto j = t.to_json();
	ASSERT_EQ(j.size(), 2u);
	EXPECT_EQ(j[0]["netns_info"]["label"], "pod:shop/cart-7f");
	EXPECT_TRUE(j[1]["netns_info"].is_null());
	std::string text = t.to_text(10);
	EXPECT_NE(text.find("NETNS_NAME\n"), std::string::npos);
	EXPECT_NE(text.find(" pod:shop/cart-7f\n"), std::string::npos);
	EXPECT_NE(text.find(" -\n"), std::string::npos);
	EXPECT_EQ(text.find("pid:99"), std::string::npos);
}

static KernelWindow window(uint64_t if0, uint64_t if1)
{
	KernelWindow k;
	k.conntrack_before[42] = {{"insert_failed", if0}, {"drop", if0}};
	k.conntrack_after[42] = {{"insert_failed", if1}, {"drop", if1}};
	return k;
}

TEST(Verify, ExitCodes)
{
	std::map<uint32_t, SeenCounts> seen;
	std::map<std::string, uint64_t> no_loss = {{"ringbuf_full", 0}};
	// nothing happened: pass
	EXPECT_EQ(evaluate_verify(window(5, 5), seen, no_loss, 0, 60).exit_code, 0);
	// 3 drops, all seen, threshold 0: fail
	seen[42].by_type["confirm_drop"] = 3;
	auto v = evaluate_verify(window(5, 8), seen, no_loss, 0, 60);
	EXPECT_EQ(v.exit_code, 1);
	EXPECT_EQ(v.summary["drops"], 3);
	EXPECT_EQ(v.summary["netns"][0]["confirm_coverage"], 1.0);
	// within the threshold
	EXPECT_EQ(evaluate_verify(window(5, 8), seen, no_loss, 3, 60).exit_code, 0);
	// the kernel counted 4, the tracer saw 3: incomplete (within threshold 10)
	v = evaluate_verify(window(5, 9), seen, no_loss, 10, 60);
	EXPECT_EQ(v.exit_code, 3);
	EXPECT_EQ(v.summary["drops"], 4); // the kernel's count where it is higher
	EXPECT_EQ(v.summary["netns_with_gaps"][0], "42");
	// lost events: incomplete
	EXPECT_EQ(evaluate_verify(window(5, 8), seen, {{"ringbuf_full", 2}}, 10, 60).exit_code, 3);
	// over the threshold wins over incomplete: the drops are certain
	EXPECT_EQ(evaluate_verify(window(5, 9), seen, no_loss, 1, 60).exit_code, 1);
	// verdict drops are reported, not counted
	seen[42].by_type["verdict_drop"] = 7;
	v = evaluate_verify(window(5, 8), seen, no_loss, 3, 60);
	EXPECT_EQ(v.exit_code, 0);
	EXPECT_EQ(v.summary["verdict_drops"], 7);
}

TEST(Verify, QueueCountersAndNewNetns)
{
	KernelWindow k;
	k.conntrack_after[7] = {{"insert_failed", 2}}; // created during the window: counters from zero
	k.queues_before[7] = {};
	k.queues_after[7] = {q(3, 100, 4, 1)};
	std::map<uint32_t, SeenCounts> seen;
	seen[7].by_type["confirm_drop"] = 2;
	seen[7].by_type["queue_drop"] = 5;
	auto v = evaluate_verify(k, seen, {}, 100, 1);
	EXPECT_EQ(v.exit_code, 0);
	EXPECT_EQ(v.summary["drops"], 7);
	EXPECT_EQ(v.summary["netns"][0]["created_during_window"], true);
	seen[7].by_type["queue_drop"] = 4; // the kernel counted 5 queue losses
	EXPECT_EQ(evaluate_verify(k, seen, {}, 100, 1).exit_code, 3);
}

TEST(CliFilters, Values)
{
	EXPECT_EQ(parse_proto("udp"), 17);
	EXPECT_EQ(parse_proto("132"), 132);
	EXPECT_THROW(parse_proto("0"), std::invalid_argument);
	EXPECT_THROW(parse_proto("256"), std::invalid_argument);
	EXPECT_THROW(parse_proto("udpp"), std::invalid_argument);
	EXPECT_EQ(parse_port("53"), 53);
	EXPECT_THROW(parse_port("0"), std::invalid_argument);
	EXPECT_THROW(parse_port("65536"), std::invalid_argument);
	EXPECT_THROW(parse_port("-1"), std::invalid_argument);
	FlowFilter f;
	parse_addr_prefix("10.1.0.0/16", f);
	EXPECT_EQ(f.family, AF_INET);
	EXPECT_EQ(f.prefix_len, 16);
	EXPECT_EQ(f.addr[0], 10);
	EXPECT_EQ(f.addr[1], 1);
	parse_addr_prefix("fd00::1", f);
	EXPECT_EQ(f.family, AF_INET6);
	EXPECT_EQ(f.prefix_len, 128);
	EXPECT_THROW(parse_addr_prefix("10.1.2.3/16", f), std::invalid_argument); // host bits
	EXPECT_THROW(parse_addr_prefix("10.1.0.0/33", f), std::invalid_argument);
	EXPECT_THROW(parse_addr_prefix("example.com", f), std::invalid_argument);
	EXPECT_THROW(parse_addr_prefix("10.0.0.0/", f), std::invalid_argument);
}

TEST(Format, NewEventTypes)
{
	FormatContext ctx;
	ctct_event e = drop_event(CTCT_EV_QUEUE_DROP, 1000, 0);
	e.cause = CTCT_CAUSE_QUEUE_FULL;
	e.source = CTCT_SRC_QUEUE_HOOK;
	e.enqueue_error = -28;
	auto j = event_json(e, ctx);
	EXPECT_EQ(j["type"], "queue_drop");
	EXPECT_EQ(j["cause"], "queue_full");
	EXPECT_EQ(j["source"], "queue_hook");
	EXPECT_EQ(j["enqueue_error"], -28);
	EXPECT_EQ(j["drop"]["freed"], false);
	e.flags |= CTCT_F_NO_CONNTRACK;
	EXPECT_TRUE(event_json(e, ctx)["loser"].is_null());
	EXPECT_NE(event_text(e, ctx).find("queue_drop cause=queue_full"), std::string::npos);
	EXPECT_EQ(event_type_name(CTCT_EV_VERDICT_DROP), "verdict_drop");
	EXPECT_EQ(event_type_name(CTCT_EV_QUEUE_BYPASS), "queue_bypass");
	EXPECT_TRUE(event_is_drop(CTCT_EV_VERDICT_DROP));
	EXPECT_FALSE(event_is_drop(CTCT_EV_QUEUE_BYPASS));
}

TEST(EventTally, ByTypePerIntervalAndByNetnsForVerify)
{
	EventTally t;
	ctct_event e = {};
	e.netns_ino = 7;
	e.type = CTCT_EV_CONFIRM_DROP;
	t.add(e);
	t.add(e);
	e.type = CTCT_EV_QUEUE_DROP;
	e.cause = CTCT_CAUSE_QUEUE_FULL;
	t.add(e);
	e.netns_ino = 9; // another netns, then back: the one-netns cache must not mix them up
	e.cause = CTCT_CAUSE_NO_LISTENER;
	t.add(e);
	e.netns_ino = 7;
	e.type = 200; // a type this build does not know still counts
	t.add(e);
	auto i = t.interval();
	EXPECT_EQ(i["confirm_drop"], 2u);
	EXPECT_EQ(i["queue_drop"], 2u);
	EXPECT_EQ(i["unknown"], 1u);
	EXPECT_EQ(i.size(), 3u);
	auto s = t.seen();
	EXPECT_EQ(s[7].by_type["confirm_drop"], 2u);
	EXPECT_EQ(s[7].queue_drop_by_cause["queue_full"], 1u);
	EXPECT_EQ(s[9].queue_drop_by_cause["no_listener"], 1u);
	EXPECT_EQ(s[9].by_type.count("confirm_drop"), 0u);
	EXPECT_TRUE(t.saw(9));
	EXPECT_FALSE(t.saw(8));
	t.new_interval();
	EXPECT_TRUE(t.interval().empty());
	EXPECT_EQ(t.seen()[7].by_type["confirm_drop"], 2u); // verify's counts span the whole run
}
