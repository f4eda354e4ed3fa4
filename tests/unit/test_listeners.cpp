#include <gtest/gtest.h>
#include "listeners.hpp"

using namespace ctct;

static std::string sample(const char *name) { return read_file(std::string(CTCT_TEST_DATA) + "/" + name); }

// Captured in a scratch netns with two nfq_hold listeners (queues 3 and 4).
TEST(Netlink, ParsesCapturedTable)
{
	auto s = parse_proc_net_netlink(sample("proc_net_netlink_nfq.txt"));
	ASSERT_EQ(s.size(), 10u);
	auto q3 = find_netlink_socket(s, kNetlinkNetfilter, 22321);
	ASSERT_TRUE(q3.has_value());
	EXPECT_EQ(q3->inode, 75039u);
	EXPECT_EQ(q3->drops, 0u);
	EXPECT_FALSE(find_netlink_socket(s, 0, 22321).has_value()); // the protocol must match too
	EXPECT_FALSE(find_netlink_socket(s, kNetlinkNetfilter, 1).has_value());
}

TEST(Netlink, ReadsEveryColumnAndRejectsMalformed)
{
	const char *text = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
			   "00000000242a2012 12  22322      0000001f 4352     0        0     2        17       75040   \n";
	auto s = parse_proc_net_netlink(text);
	ASSERT_EQ(s.size(), 1u);
	EXPECT_EQ(s[0].protocol, 12u);
	EXPECT_EQ(s[0].portid, 22322u);
	EXPECT_EQ(s[0].groups, 0x1fu);
	EXPECT_EQ(s[0].rmem_bytes, 4352u);
	EXPECT_EQ(s[0].drops, 17u);
	EXPECT_EQ(s[0].inode, 75040u);
	EXPECT_TRUE(parse_proc_net_netlink("").empty());
	EXPECT_THROW(parse_proc_net_netlink("00 12 1 0 0\n"), std::runtime_error);
	EXPECT_THROW(parse_proc_net_netlink("00 12 x 0 0 0 0 2 0 5\n"), std::runtime_error);
}

TEST(Netlink, SocketLinks)
{
	EXPECT_EQ(parse_socket_link("socket:[75039]").value(), 75039u);
	EXPECT_FALSE(parse_socket_link("pipe:[75039]").has_value());
	EXPECT_FALSE(parse_socket_link("socket:[]").has_value());
	EXPECT_FALSE(parse_socket_link("socket:[12a]").has_value());
	EXPECT_FALSE(parse_socket_link("/dev/null").has_value());
}

TEST(Netlink, MapsQueuesToProcesses)
{
	auto queues = parse_nfqueue(sample("nfnetlink_queue_two.txt"));
	auto sockets = parse_proc_net_netlink(sample("proc_net_netlink_nfq.txt"));
	SocketOwners owners = {{75039, {{4242, "nfq_hold"}}}};
	auto l = map_queue_listeners(queues, sockets, owners);
	ASSERT_EQ(l.size(), 2u);
	EXPECT_EQ(l[0].queue.queue_num, 3u);
	ASSERT_TRUE(l[0].socket.has_value());
	ASSERT_EQ(l[0].owners.size(), 1u);
	EXPECT_EQ(l[0].owners[0].pid, 4242);
	EXPECT_EQ(l[0].owners[0].comm, "nfq_hold");
	EXPECT_TRUE(l[1].socket.has_value()); // queue 4: socket known, owner not found
	EXPECT_TRUE(l[1].owners.empty());
	QueueStat stale;
	stale.queue_num = 9;
	stale.portid = 777;
	EXPECT_FALSE(map_queue_listeners({stale}, sockets, owners)[0].socket.has_value());
}

TEST(Netlink, ScanFindsOwnSocket)
{
	// This process's stdin is not a socket; an empty inode set scans nothing.
	EXPECT_TRUE(scan_socket_owners({}).empty());
	EXPECT_TRUE(scan_socket_owners({1}, "/nonexistent").empty());
}
