#include <gtest/gtest.h>
#include "summary.hpp"

using namespace ctct;

TEST(Percentiles, NearestRank)
{
	std::vector<int64_t> v;
	for (int i = 100; i >= 1; i--)
		v.push_back(i);
	auto p = percentiles(v);
	EXPECT_EQ(p.count, 100u);
	EXPECT_EQ(p.p50, 50);
	EXPECT_EQ(p.p90, 90);
	EXPECT_EQ(p.p99, 99);
	EXPECT_EQ(p.max, 100);
	EXPECT_EQ(percentiles({7}).p50, 7);
	EXPECT_EQ(percentiles({}).count, 0u);
}

TEST(Summary, CountsAndLatency)
{
	Summary s;
	ctct_event e = {};
	e.type = CTCT_EV_CONFIRM_DROP;
	e.cause = CTCT_CAUSE_CLASH;
	e.flags = CTCT_F_LOSER_QUEUED | CTCT_F_FREED;
	e.loser_queue.enqueue_ns = 100;
	e.loser_queue.reinject_ns = 300;
	s.add(e);
	e.type = CTCT_EV_CLASH_RESOLVED;
	e.flags = 0;
	s.add(e);
	s.losses["ringbuf_full"] = 3;
	auto j = s.to_json();
	EXPECT_EQ(j["events"]["confirm_drop"], 1);
	EXPECT_EQ(j["events"]["clash_resolved"], 1);
	EXPECT_EQ(j["queue_latency_ns"]["count"], 1);
	EXPECT_EQ(j["queue_latency_ns"]["max"], 200);
	EXPECT_EQ(j["losses"]["ringbuf_full"], 3);
	EXPECT_NE(s.to_text().find("lost events: 3 ringbuf_full=3"), std::string::npos) << s.to_text();
}

TEST(Summary, TracepointModeLatencyIsNull)
{
	Summary s;
	s.queue_observable = false;
	EXPECT_TRUE(s.to_json()["queue_latency_ns"].is_null());
	EXPECT_NE(s.to_text().find("not observable"), std::string::npos);
}

// Counts are kept by raw value and named when read: unknown causes (small, large, 0) are one "unknown".
TEST(Summary, CountsByNameIncludingUnknownValues)
{
	Summary s;
	ctct_event e = {};
	e.type = CTCT_EV_QUEUE_DROP;
	for (uint32_t cause : {(uint32_t)CTCT_CAUSE_QUEUE_FULL, (uint32_t)CTCT_CAUSE_QUEUE_FULL, 0u, 29u, 77u, 0x80000000u}) {
		e.cause = cause;
		s.add(e);
	}
	e.type = 1000;
	s.add(e);
	EXPECT_EQ(s.count("queue_drop"), 6u);
	EXPECT_EQ(s.count("unknown_1000"), 1u);
	EXPECT_EQ(s.count("confirm_drop"), 0u);
	auto j = s.to_json();
	EXPECT_EQ(j["by_cause"], (nlohmann::json{{"queue_full", 2}, {"unknown", 5}}));
	EXPECT_EQ(j["events"]["queue_drop"], 6);
}
