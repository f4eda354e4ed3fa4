#include <gtest/gtest.h>
#include "backend.hpp"
#include "cli_util.hpp"

using namespace ctct;

TEST(Duration, Units)
{
	EXPECT_EQ(parse_duration_ns("250ms"), 250000000ULL);
	EXPECT_EQ(parse_duration_ns("30s"), 30000000000ULL);
	EXPECT_EQ(parse_duration_ns("2"), 2000000000ULL);
	EXPECT_EQ(parse_duration_ns("5m"), 300000000000ULL);
	EXPECT_EQ(parse_duration_ns("1h"), 3600000000000ULL);
}

TEST(Duration, Rejects)
{
	for (const char *bad : {"", "s", "-1s", "1.5s", "10x", "0s", "9999999999999s", " 1s"})
		EXPECT_THROW(parse_duration_ns(bad), std::invalid_argument) << bad;
}

TEST(Backend, Names)
{
	Backend b;
	EXPECT_TRUE(parse_backend("kprobe", b));
	EXPECT_EQ(b, Backend::Kprobe);
	EXPECT_TRUE(parse_backend("tracepoint", b));
	EXPECT_FALSE(parse_backend("fexit", b));
	EXPECT_FALSE(parse_backend("", b));
}

// Found by tests/fuzz/fuzz_duration: 12 digits of hours wrapped around 2^64 into a short duration.
TEST(Duration, RejectsOverflowInsteadOfWrapping)
{
	EXPECT_THROW(parse_duration_ns("999999999999h"), std::invalid_argument);
	EXPECT_THROW(parse_duration_ns("5124096h"), std::invalid_argument); // 2^64 ns is 5124095.6 h
	EXPECT_EQ(parse_duration_ns("5124095h"), 5124095ULL * 3600000000000ULL);
	EXPECT_EQ(parse_duration_ns("999999999999ms"), 999999999999ULL * 1000000ULL);
}

// Found by tests/fuzz/fuzz_duration: the bad value was echoed raw, so "1\nx" made a two-line error.
TEST(Duration, ErrorIsOneLine)
{
	try {
		parse_duration_ns("1\n\x1b[2Jx");
		FAIL();
	} catch (const std::invalid_argument &e) {
		EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
		EXPECT_NE(std::string(e.what()).find("1\\n\\x1b[2Jx"), std::string::npos) << e.what();
	}
}

TEST(EscapeControl, OnlyControlBytes)
{
	EXPECT_EQ(escape_control("a b\tc\n\x7f\xc3\xa9"), "a b\\tc\\n\\x7f\xc3\xa9");
}
