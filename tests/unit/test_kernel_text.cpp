#include <gtest/gtest.h>
#include "kernel_text.hpp"

using namespace ctct;

static std::string sample(const char *name) { return read_file(std::string(CTCT_TEST_DATA) + "/" + name); }

TEST(ConntrackStat, SumsPerCpuRowsAndKeepsEntriesGlobal)
{
	auto st = parse_conntrack_stat(sample("nf_conntrack_stat_busy.txt"));
	ASSERT_EQ(st.per_cpu.size(), 2u);
	auto t = st.totals();
	EXPECT_EQ(t["insert_failed"], 5u + 11u);
	EXPECT_EQ(t["drop"], 16u);
	EXPECT_EQ(t["clashres"], 3u);
	EXPECT_EQ(t["entries"], 12u); // global, not summed
	EXPECT_EQ(st.cpu_value(1, "insert_failed").value(), 11u);
	EXPECT_FALSE(st.cpu_value(2, "insert_failed").has_value());
	EXPECT_FALSE(st.cpu_value(0, "no_such").has_value());
}

TEST(ConntrackStat, CapturedFromHost)
{
	auto st = parse_conntrack_stat(sample("nf_conntrack_stat_6.18.txt"));
	EXPECT_GE(st.per_cpu.size(), 1u);
	EXPECT_EQ(st.columns.size(), 17u);
}

TEST(ConntrackStat, RejectsMalformed)
{
	EXPECT_THROW(parse_conntrack_stat(""), std::runtime_error);
	EXPECT_THROW(parse_conntrack_stat("entries found\n1 2\n"), std::runtime_error); // no insert_failed
	EXPECT_THROW(parse_conntrack_stat("entries insert_failed\n1\n"), std::runtime_error);
	EXPECT_THROW(parse_conntrack_stat("entries insert_failed\n1 zz\n"), std::runtime_error);
}

TEST(NfQueue, ParsesEveryField)
{
	auto q = parse_nfqueue(sample("nfnetlink_queue.txt"));
	ASSERT_EQ(q.size(), 2u);
	EXPECT_EQ(q[0].queue_num, 3u);
	EXPECT_EQ(q[0].portid, 41231u);
	EXPECT_EQ(q[0].copy_range, 65531u);
	EXPECT_EQ(q[0].id_sequence, 12u);
	EXPECT_EQ(q[1].queue_total, 17u);
	EXPECT_EQ(q[1].queue_dropped, 4u);
	EXPECT_EQ(q[1].user_dropped, 9u);
	EXPECT_TRUE(parse_nfqueue("").empty());
	EXPECT_THROW(parse_nfqueue("1 2 3\n"), std::runtime_error);
	EXPECT_THROW(parse_nfqueue("1 2 3 4 5 6 x 8 1\n"), std::runtime_error);
}

TEST(Kallsyms, ResolvesExactNamesOnly)
{
	auto k = Kallsyms::parse(sample("kallsyms_6.18.txt"));
	EXPECT_TRUE(k.has_function("__nf_conntrack_confirm"));
	EXPECT_TRUE(k.has_function("nfqnl_reinject"));
	EXPECT_FALSE(k.has_function("nf_reinject")); // removed in 6.9
	EXPECT_FALSE(k.addresses_hidden());
}

TEST(Kallsyms, ModulesClonesAndSymbolize)
{
	auto k = Kallsyms::parse(sample("kallsyms_6.1_modules.txt"));
	EXPECT_TRUE(k.has_function("nf_reinject"));
	EXPECT_EQ(k.module_of("__nf_conntrack_confirm"), "nf_conntrack");
	EXPECT_EQ(k.module_of("nf_reinject"), "");
	EXPECT_FALSE(k.has_function("tcp_clone"));
	ASSERT_EQ(k.clones_of("tcp_clone").size(), 1u);
	EXPECT_FALSE(k.has_function("some_data")); // data symbols are not functions
	EXPECT_EQ(k.symbolize(0xffffffff81a01010ULL), "nf_hook_slow+0x10");
	EXPECT_EQ(k.symbolize(0x10), "0x10");
}

TEST(Kallsyms, HiddenAddresses)
{
	auto k = Kallsyms::parse("0000000000000000 T nf_hook_slow\n0000000000000000 t nfqnl_reinject\n");
	EXPECT_TRUE(k.addresses_hidden());
	EXPECT_TRUE(k.has_function("nfqnl_reinject"));
	EXPECT_EQ(k.symbolize(0xffffffff81a01010ULL), "0xffffffff81a01010");
}

// Found by tests/fuzz/fuzz_nfqueue: std::stoul stopped at trailing bytes ("1\0\0" read as 1) and also took
// "-1" (wrapping) and 2^32 (narrowed to 0 in a u32).
TEST(Nfqueue, RejectsSignsAndOutOfRange)
{
	const char *good = "    3  12345     0 2 65531     0     0        7  1\n";
	ASSERT_EQ(parse_nfqueue(good).size(), 1u);
	for (const char *bad : {"   -1  12345     0 2 65531     0     0        7  1\n",
				" 4294967296  12345     0 2 65531     0     0        7  1\n",
				"    3  +1     0 2 65531     0     0        7  1\n",
				"    3  12345     0 2 65531x     0     0        7  1\n",
				"    3  12345     0 2 65531     0     0  18446744073709551616  1\n"})
		EXPECT_THROW(parse_nfqueue(bad), std::runtime_error) << bad;
	EXPECT_EQ(parse_nfqueue("4294967295 0 0 0 0 0 0 18446744073709551615\n")[0].queue_num, 4294967295u);
}

// Found by tests/fuzz/fuzz_conntrack_stat: "-000000b" was read as 2^64-11 and summed.
TEST(ConntrackStat, RejectsSignedAndPrefixedNumbers)
{
	EXPECT_THROW(parse_conntrack_stat("entries insert_failed\n1 -1\n"), std::runtime_error);
	EXPECT_THROW(parse_conntrack_stat("entries insert_failed\n1 0x1\n"), std::runtime_error);
	EXPECT_THROW(parse_conntrack_stat("entries insert_failed\n1 11111111111111111\n"), std::runtime_error);
	EXPECT_EQ(parse_conntrack_stat("entries insert_failed\n1 ffffffffffffffff\n").totals()["insert_failed"],
		  ~0ULL);
}

TEST(Kallsyms, ModuleNeedsClosingBracketAndAddressMustBeHex)
{
	auto k = Kallsyms::parse("ffffffffc0001000 t nfqnl_reinject\t[nfnetlink_queue]\n"
				 "-ffffffff81000000 T bogus\n"
				 "ffffffffc0002000 t half\t[nfnetlink\n");
	EXPECT_EQ(k.module_of("nfqnl_reinject"), "nfnetlink_queue");
	EXPECT_FALSE(k.has_function("bogus"));
	EXPECT_EQ(k.module_of("half"), "");
}
