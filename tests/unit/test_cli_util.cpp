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
