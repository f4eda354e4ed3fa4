#include <arpa/inet.h>
#include <array>
#include <cstring>
#include <random>
#include <gtest/gtest.h>
#include "format.hpp"

using namespace ctct;

namespace {
ctct_tuple v4(const char *src, uint16_t sport, const char *dst, uint16_t dport, uint8_t proto = IPPROTO_UDP)
{
	ctct_tuple t = {};
	inet_pton(AF_INET, src, t.src);
	inet_pton(AF_INET, dst, t.dst);
	t.sport = htons(sport);
	t.dport = htons(dport);
	t.l3num = AF_INET;
	t.protonum = proto;
	return t;
}

ctct_event clash_drop()
{
	ctct_event e = {};
	e.type = CTCT_EV_CONFIRM_DROP;
	e.cause = CTCT_CAUSE_CLASH;
	e.source = CTCT_SRC_CONFIRM_HOOK;
	e.flags = CTCT_F_LOSER_QUEUED | CTCT_F_HAS_WINNER | CTCT_F_WINNER_QUEUED | CTCT_F_FREED;
	e.ts_ns = 5000000000ULL;
	e.netns_ino = 4026532281u;
	e.drop_reason = 12;
	e.drop_location = 0xffffffff81f81300ULL;
	e.loser.orig = v4("10.231.1.3", 40000, "10.231.2.2", 5000);
	e.loser.reply = v4("10.231.2.2", 5000, "10.231.2.1", 40000);
	e.winner.orig = v4("10.231.1.2", 40000, "10.231.2.2", 5000);
	e.winner.reply = v4("10.231.2.2", 5000, "10.231.2.1", 40000);
	e.loser_queue = {4000000000ULL, 4200000000ULL, 3, 2, 1, 4, 2, {}};
	e.winner_queue = {3999000000ULL, 4199000000ULL, 3, 1, 1, 4, 2, {}};
	e.winner_confirm_ns = 4999000000ULL;
	return e;
}

FormatContext ctx()
{
	FormatContext c;
	c.realtime_offset_ns = 1'700'000'000'000'000'000LL;
	c.drop_reason_name = [](uint32_t v) { return v == 12 ? std::string("NETFILTER_DROP") : std::to_string(v); };
	c.symbolize = [](uint64_t) { return std::string("nf_hook_slow+0x70"); };
	return c;
}
} // namespace

TEST(Format, Addresses)
{
	uint8_t a[16] = {};
	inet_pton(AF_INET6, "fd00:231::2", a);
	EXPECT_EQ(addr_to_string(a, AF_INET6), "fd00:231::2");
	inet_pton(AF_INET, "192.0.2.1", a);
	EXPECT_EQ(addr_to_string(a, AF_INET), "192.0.2.1");
	EXPECT_EQ(addr_to_string(a, 99), "?");
}

TEST(Format, TupleTextAndJson)
{
	EXPECT_EQ(tuple_to_string(v4("10.0.0.1", 53, "10.0.0.2", 40000)), "udp 10.0.0.1:53 -> 10.0.0.2:40000");
	ctct_tuple t6 = {};
	inet_pton(AF_INET6, "fd00::1", t6.src);
	inet_pton(AF_INET6, "fd00::2", t6.dst);
	t6.sport = htons(1);
	t6.dport = htons(443);
	t6.l3num = AF_INET6;
	t6.protonum = IPPROTO_TCP;
	EXPECT_EQ(tuple_to_string(t6), "tcp [fd00::1]:1 -> [fd00::2]:443");
	auto j = tuple_json(t6);
	EXPECT_EQ(j["family"], "ipv6");
	EXPECT_EQ(j["dport"], 443);
	ctct_tuple icmp = v4("10.0.0.1", 77, "10.0.0.2", (8 << 8) | 0, IPPROTO_ICMP);
	j = tuple_json(icmp);
	EXPECT_EQ(j["icmp_type"], 8);
	EXPECT_EQ(j["icmp_id"], 77);
	EXPECT_FALSE(j.contains("sport"));
}

TEST(Format, Iso8601)
{
	EXPECT_EQ(iso8601_ns(0), "1970-01-01T00:00:00.000000000Z");
	EXPECT_EQ(iso8601_ns(1'700'000'000'123'456'789LL), "2023-11-14T22:13:20.123456789Z");
}

TEST(Format, ConfirmDropJsonSchemaV2)
{
	auto j = event_json(clash_drop(), ctx());
	EXPECT_EQ(j["type"], "confirm_drop");
	EXPECT_EQ(j["schema"], 3);
	EXPECT_EQ(j["ts_mono_ns"], 5000000000ULL);
	EXPECT_EQ(j["time"], "2023-11-14T22:13:25.000000000Z");
	EXPECT_EQ(j["netns"], 4026532281u);
	EXPECT_EQ(j["cause"], "clash");
	EXPECT_EQ(j["loser"]["orig"]["src"], "10.231.1.3");
	EXPECT_EQ(j["loser"]["reply"]["dst"], "10.231.2.1"); // NAT visible in the reply tuple
	EXPECT_EQ(j["queue"]["num"], 3);
	EXPECT_EQ(j["queue"]["hook"], "postrouting");
	EXPECT_EQ(j["queue"]["verdict"], "accept");
	EXPECT_EQ(j["queue"]["latency_ns"], 200000000);
	EXPECT_EQ(j["winner"]["orig"]["src"], "10.231.1.2");
	EXPECT_EQ(j["winner"]["confirmed_before_ns"], 1000000);
	EXPECT_EQ(j["winner"]["queue"]["packet_id"], 1);
	EXPECT_EQ(j["drop"]["reason"], "NETFILTER_DROP");
	EXPECT_EQ(j["drop"]["location"], "nf_hook_slow+0x70");
	EXPECT_FALSE(j.contains("insert_failed_delta"));
}

TEST(Format, TracepointModeSaysUnknownNotZero)
{
	ctct_event e = clash_drop();
	e.source = CTCT_SRC_FREE_HEURISTIC;
	e.cause = CTCT_CAUSE_INSERT_FAILED;
	e.flags = CTCT_F_FREED;
	e.insert_failed_delta = 1;
	auto j = event_json(e, ctx());
	EXPECT_TRUE(j["queue"].is_null());
	EXPECT_TRUE(j["winner"].is_null());
	EXPECT_EQ(j["source"], "free_heuristic");
	EXPECT_EQ(j["insert_failed_delta"], 1);
	EXPECT_NE(event_text(e, ctx()).find("in_queue=n/a"), std::string::npos);
}

TEST(Format, NotFreedDropHasNullReason)
{
	ctct_event e = clash_drop();
	e.flags &= ~CTCT_F_FREED;
	auto j = event_json(e, ctx());
	EXPECT_EQ(j["drop"]["freed"], false);
	EXPECT_TRUE(j["drop"]["reason"].is_null());
}

// A refused packet never got an id or a verdict; a queue number from the queue's counters (tracepoint
// mode) has no hook. Those fields are null, not "0" and "drop" and "prerouting" (seen before this test).
TEST(Format, QueueDropSaysWhatTheQueueDidNotKnow)
{
	ctct_event e = clash_drop();
	e.type = CTCT_EV_QUEUE_DROP;
	e.cause = CTCT_CAUSE_QUEUE_FULL;
	e.flags = CTCT_F_LOSER_QUEUED | CTCT_F_FREED;
	e.source = CTCT_SRC_FREE_LOCATION;
	e.loser_queue = {};
	e.loser_queue.queue_num = 3;
	auto j = event_json(e, ctx());
	EXPECT_EQ(j["queue"]["num"], 3);
	EXPECT_TRUE(j["queue"]["hook"].is_null());
	EXPECT_TRUE(j["queue"]["packet_id"].is_null());
	EXPECT_TRUE(j["queue"]["verdict"].is_null());
	EXPECT_TRUE(j["enqueue_error"].is_null());
	EXPECT_EQ(j["drop"]["freed"], true);
	EXPECT_EQ(event_text(e, ctx()).find(" id="), std::string::npos);

	e.source = CTCT_SRC_QUEUE_HOOK; // the enqueue hook saw it: hook known, still no id or verdict
	e.loser_queue.hook = 4;
	e.enqueue_error = -105;
	j = event_json(e, ctx());
	EXPECT_EQ(j["queue"]["hook"], "postrouting");
	EXPECT_TRUE(j["queue"]["verdict"].is_null());
	EXPECT_EQ(j["enqueue_error"], -105);

	e.type = CTCT_EV_VERDICT_DROP; // the listener had it
	e.cause = CTCT_CAUSE_LISTENER_VERDICT;
	e.loser_queue.packet_id = 9;
	j = event_json(e, ctx());
	EXPECT_EQ(j["queue"]["packet_id"], 9);
	EXPECT_EQ(j["queue"]["verdict"], "drop");
	EXPECT_FALSE(j.contains("enqueue_error"));
	std::string fast;
	append_event_json_line(fast, e, ctx());
	EXPECT_EQ(fast, j.dump());
}

// Without the reinject hook a record ends at confirm (or at the free of a verdict drop): its latency says
// so, and packet id and verdict, which only the reinject hook sees, are null rather than 0 and "drop".
TEST(Format, QueueRecordWithoutTheReinjectHook)
{
	ctct_event e = clash_drop();
	auto j = event_json(e, ctx());
	EXPECT_EQ(j["queue"]["latency_to"], "reinject");
	e.loser_queue.left = CTCT_LEFT_CONFIRM;
	e.winner_queue.left = CTCT_LEFT_CONFIRM;
	j = event_json(e, ctx());
	EXPECT_EQ(j["queue"]["num"], 3);
	EXPECT_EQ(j["queue"]["hook"], "postrouting");
	EXPECT_EQ(j["queue"]["latency_ns"], 200000000);
	EXPECT_EQ(j["queue"]["latency_to"], "confirm");
	EXPECT_TRUE(j["queue"]["packet_id"].is_null());
	EXPECT_TRUE(j["queue"]["verdict"].is_null());
	EXPECT_TRUE(j["winner"]["queue"]["packet_id"].is_null());
	EXPECT_EQ(j["winner"]["queue"]["latency_to"], "confirm");
	std::string fast;
	append_event_json_line(fast, e, ctx());
	EXPECT_EQ(fast, j.dump());
	std::string text = event_text(e, ctx());
	EXPECT_EQ(text.find(" id="), std::string::npos) << text;
	EXPECT_NE(text.find("in_queue=200.000ms (to confirm)"), std::string::npos) << text;

	// a verdict drop found at its free, with the enqueue record of a new flow's packet: hook known
	e.type = CTCT_EV_VERDICT_DROP;
	e.cause = CTCT_CAUSE_VERDICT_OR_LATER_HOOK;
	e.source = CTCT_SRC_FREE_LOCATION;
	e.flags = CTCT_F_LOSER_QUEUED | CTCT_F_FREED;
	e.loser_queue.left = CTCT_LEFT_FREE;
	j = event_json(e, ctx());
	EXPECT_EQ(j["queue"]["hook"], "postrouting");
	EXPECT_EQ(j["queue"]["latency_to"], "free");
	EXPECT_TRUE(j["queue"]["verdict"].is_null());
	fast.clear();
	append_event_json_line(fast, e, ctx());
	EXPECT_EQ(fast, j.dump());
}

TEST(Format, ClashResolvedHasNoDropObject)
{
	ctct_event e = clash_drop();
	e.type = CTCT_EV_CLASH_RESOLVED;
	auto j = event_json(e, ctx());
	EXPECT_EQ(j["type"], "clash_resolved");
	EXPECT_FALSE(j.contains("drop"));
}

TEST(Format, TextLine)
{
	std::string s = event_text(clash_drop(), ctx());
	EXPECT_NE(s.find("confirm_drop netns=4026532281 udp 10.231.1.3:40000 -> 10.231.2.2:5000"), std::string::npos) << s;
	EXPECT_NE(s.find("reply 10.231.2.2:5000 -> 10.231.2.1:40000"), std::string::npos) << s;
	EXPECT_NE(s.find("in_queue=200.000ms"), std::string::npos) << s;
	EXPECT_NE(s.find("confirmed 1.000ms earlier"), std::string::npos) << s;
	EXPECT_NE(s.find("reason=NETFILTER_DROP at nf_hook_slow+0x70"), std::string::npos) << s;
}

TEST(Format, QueueLatencyGuards)
{
	ctct_queue q = {};
	q.enqueue_ns = 10;
	EXPECT_EQ(queue_latency_ns(q, CTCT_F_LOSER_QUEUED, CTCT_F_LOSER_QUEUED), -1); // never reinjected
	q.reinject_ns = 5;
	EXPECT_EQ(queue_latency_ns(q, CTCT_F_LOSER_QUEUED, CTCT_F_LOSER_QUEUED), -1); // clock went backwards
	q.reinject_ns = 25;
	EXPECT_EQ(queue_latency_ns(q, 0, CTCT_F_LOSER_QUEUED), -1);
	EXPECT_EQ(queue_latency_ns(q, CTCT_F_LOSER_QUEUED, CTCT_F_LOSER_QUEUED), 15);
}

// Found by tests/fuzz/fuzz_event (UBSan): ts_ns + realtime offset was a signed add that overflows for a
// corrupt or far-future ts_ns; it now wraps as the u64 clock does.
TEST(Format, WallClockDoesNotOverflow)
{
	EXPECT_EQ(wall_clock_ns(~0ULL, 2), 1);
	EXPECT_EQ(wall_clock_ns(0x7fffffffffffffffULL, 1), INT64_MIN);
	ctct_event e = clash_drop();
	e.ts_ns = ~0ULL;
	FormatContext c = ctx();
	c.realtime_offset_ns = INT64_MAX;
	EXPECT_NO_THROW(event_json(e, c).dump());
	EXPECT_FALSE(event_text(e, c).empty());
}

// Found by tests/fuzz/fuzz_event: before 1970 the fraction printed as ".-00000001Z".
TEST(Format, Iso8601BeforeEpoch)
{
	EXPECT_EQ(iso8601_ns(-1), "1969-12-31T23:59:59.999999999Z");
	EXPECT_EQ(iso8601_ns(-1'000'000'000LL), "1969-12-31T23:59:59.000000000Z");
	EXPECT_EQ(iso8601_ns(INT64_MIN), "1677-09-21T00:12:43.145224192Z");
}

// Found by tests/fuzz/fuzz_event: a drop reason or symbol name with a newline split one event over two
// text lines (JSON escaped it already).
TEST(Format, TextLineStaysOneLine)
{
	FormatContext c = ctx();
	c.drop_reason_name = [](uint32_t) { return std::string("EVIL\nNAME\x1b[2J"); };
	c.symbolize = [](uint64_t) { return std::string("f\r+0x1"); };
	std::string s = event_text(clash_drop(), c);
	EXPECT_EQ(s.find_first_of("\n\r\x1b"), std::string::npos) << s;
	EXPECT_NE(s.find("reason=EVIL\\nNAME\\x1b[2J at f\\x0d+0x1"), std::string::npos) << s;
}

// The hot path writes the JSON line by hand; it must be byte for byte what main.cpp printed before
// (event_json().dump() with error_handler_t::replace): field names, order, number and null rendering,
// string escaping. Random events (random bytes, and realistic ones with random flags, families,
// protocols) and context strings with quotes, control bytes and invalid UTF-8.
TEST(Format, FastJsonLineEqualsEventJsonDump)
{
	std::mt19937_64 rng(7);
	const std::string names[] = {"NETFILTER_DROP", "", "q\"uote\\back", "nl\nesc\x1b", "caf\xc3\xa9", "bad\xff\xfe utf8",
				     "\x7f", std::string("nul\0in", 6)};
	for (int i = 0; i < 20000; i++) {
		ctct_event e;
		if (i % 2) {
			auto *b = reinterpret_cast<uint8_t *>(&e);
			for (size_t k = 0; k < sizeof(e); k++)
				b[k] = rng();
			if (i % 4 == 1) { // keep some random events close to real ones
				e.type = 1 + rng() % 5;
				e.source = 1 + rng() % 4;
			}
		} else {
			e = clash_drop();
			e.flags = rng() % 64;
			e.type = rng() % 7;
			e.source = rng() % 5;
			e.cause = rng() % 11;
			e.enqueue_error = rng() % 3 ? -(int32_t)(rng() % 120) : 0;
			for (ctct_tuple *t : {&e.loser.orig, &e.loser.reply, &e.winner.orig, &e.winner.reply}) {
				t->l3num = std::array<uint8_t, 3>{AF_INET, AF_INET6, 7}[rng() % 3];
				t->protonum = std::array<uint8_t, 6>{IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_GRE, 200}[rng() % 6];
				t->src[rng() % 16] = rng();
			}
			e.winner_confirm_ns = e.ts_ns + (int64_t)(rng() % 3) - 1;
			e.loser_queue.reinject_ns = rng() % 3 ? e.loser_queue.reinject_ns : 0;
		}
		FormatContext c;
		c.realtime_offset_ns = (int64_t)rng();
		if (i % 3) {
			std::string r = names[rng() % 8], l = names[rng() % 8];
			c.drop_reason_name = [r](uint32_t) { return r; };
			c.symbolize = [l](uint64_t) { return l; };
		}
		std::string fast;
		append_event_json_line(fast, e, c);
		ASSERT_EQ(fast, event_json(e, c).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) << i;
	}
}

// The hand-written IPv6 text in the JSON line must be inet_ntop's: zero runs, ties, ends, v4-mapped.
TEST(Format, FastJsonIpv6MatchesInetNtop)
{
	std::mt19937_64 rng(11);
	FormatContext c;
	for (int i = 0; i < 200000; i++) {
		ctct_event e = {};
		e.type = CTCT_EV_CLASH_RESOLVED;
		ctct_tuple &t = e.loser.orig;
		t.l3num = AF_INET6;
		for (int g = 0; g < 8; g++) { // mostly zero groups, so every run shape shows up
			uint16_t v = rng() % 3 ? 0 : (rng() % 4 ? 1 + rng() % 0xffff : 0xffff);
			t.src[2 * g] = v >> 8;
			t.src[2 * g + 1] = v & 0xff;
		}
		std::string line;
		append_event_json_line(line, e, c);
		std::string want = "\"src\":\"" + addr_to_string(t.src, AF_INET6) + "\"";
		ASSERT_NE(line.find(want), std::string::npos) << want << " in " << line;
	}
	for (const char *a : {"::", "::1", "1::", "::ffff:1.2.3.4", "::1.2.3.4", "1:0:0:2:0:0:0:3", "1:0:0:2:0:0:3:4",
			      "fd00:231:1::2", "0:0:1::", "::ffff:0:1.2.3.4", "64:ff9b::1.2.3.4"}) {
		ctct_event e = {};
		e.type = CTCT_EV_CLASH_RESOLVED;
		e.loser.orig.l3num = AF_INET6;
		ASSERT_EQ(inet_pton(AF_INET6, a, e.loser.orig.src), 1) << a;
		std::string line;
		append_event_json_line(line, e, c);
		std::string want = "\"src\":\"" + addr_to_string(e.loser.orig.src, AF_INET6) + "\"";
		EXPECT_NE(line.find(want), std::string::npos) << want << " in " << line;
	}
}

// The JSON line's own decimal writer: every digit count, both sides of each power of ten, the extremes.
TEST(Format, FastJsonNumbersAtDigitBoundaries)
{
	std::vector<uint64_t> values = {0, 1, 9, UINT64_MAX, UINT64_MAX - 1, (uint64_t)INT64_MAX, (uint64_t)INT64_MIN};
	for (uint64_t p = 10, k = 1; k <= 19; k++, p *= 10)
		for (uint64_t v : {p - 1, p, p + 1})
			values.push_back(v);
	for (uint64_t v : values) {
		ctct_event e = clash_drop();
		e.type = CTCT_EV_QUEUE_DROP; // enqueue_error: a signed number
		e.source = CTCT_SRC_FREE_HEURISTIC; // insert_failed_delta
		e.ts_ns = v;
		e.netns_ino = (uint32_t)v;
		e.cpu = (uint32_t)(v >> 32);
		int32_t err = -(int32_t)(v & 0x7fffffff);
		e.enqueue_error = err ? err : INT32_MIN;
		e.insert_failed_delta = v;
		e.loser_queue.packet_id = (uint32_t)v;
		e.loser_queue.enqueue_ns = 0;
		e.loser_queue.reinject_ns = v; // latency_ns = v - 0, an int64 that may be negative: null
		e.loser.mark = (uint32_t)v;
		e.loser.orig.sport = (uint16_t)v;
		std::string fast;
		append_event_json_line(fast, e, ctx());
		ASSERT_EQ(fast, event_json(e, ctx()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) << v;
	}
}

// With stable_names the JSON line keeps each location and reason, escaped, and asks once per value.
TEST(Format, FastJsonStableNamesAreAskedOncePerValue)
{
	int symbolize_calls = 0, reason_calls = 0;
	FormatContext c = ctx();
	c.symbolize = [&](uint64_t a) {
		symbolize_calls++;
		return a % 2 ? std::string("odd\"func\n+0x1") : std::string("even_func+0x70");
	};
	c.drop_reason_name = [&](uint32_t v) {
		reason_calls++;
		return v == 12 ? std::string("NETFILTER_DROP") : "caf\xc3\xa9\xff" + std::to_string(v);
	};
	FormatContext plain = c;
	c.stable_names = true;
	ctct_event e = clash_drop();
	for (int i = 0; i < 100; i++) {
		e.drop_location = 0xffffffff81000000ULL + i % 4;
		e.drop_reason = i % 3 ? 12 : 2;
		std::string fast;
		append_event_json_line(fast, e, c);
		ASSERT_EQ(fast, event_json(e, plain).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) << i;
	}
	EXPECT_EQ(symbolize_calls, 4 + 100); // 4 addresses through the memo, 100 through event_json
	EXPECT_EQ(reason_calls, 2 + 100);
}
