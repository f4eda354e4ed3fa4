// Who listens on an NFQUEUE: queue -> netlink portid (/proc/net/netfilter/nfnetlink_queue) -> socket
// (/proc/net/netlink) -> process (/proc/PID/fd/* -> socket:[INODE]). The parsing and the joining are pure
// functions over text and tables, unit-tested on captured samples; only scan_socket_owners touches /proc.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kernel_text.hpp"

namespace ctct {

constexpr uint32_t kNetlinkNetfilter = 12; // NETLINK_NETFILTER, the "Eth" column of /proc/net/netlink

// One row of /proc/net/netlink (net/netlink/af_netlink.c netlink_seq_show); only the reader's netns.
struct NetlinkSocket {
	uint32_t protocol = 0; // "Eth"
	uint32_t portid = 0;   // "Pid": the netlink port id, not a process id
	uint32_t groups = 0;   // hex in the file
	uint64_t rmem_bytes = 0; // receive queue bytes in use now (sk_rmem_alloc), not the buffer size
	uint64_t wmem_bytes = 0;
	uint64_t drops = 0; // messages the socket could not take (receive buffer full)
	uint64_t inode = 0;
};
// Throws std::runtime_error on a malformed row; skips the header.
std::vector<NetlinkSocket> parse_proc_net_netlink(const std::string &text);
std::optional<NetlinkSocket> find_netlink_socket(const std::vector<NetlinkSocket> &sockets, uint32_t protocol,
						 uint32_t portid);

// "socket:[12345]" (readlink of /proc/PID/fd/N) -> 12345
std::optional<uint64_t> parse_socket_link(const std::string &link);

struct SocketOwner {
	int pid = 0;
	std::string comm;
};
using SocketOwners = std::map<uint64_t, std::vector<SocketOwner>>; // inode -> processes holding it

// Scans PROC_ROOT/[0-9]*/fd for the given socket inodes (a socket shared after fork has several owners).
// Processes that vanish or deny access are skipped. Not pure: reads /proc.
SocketOwners scan_socket_owners(const std::set<uint64_t> &inodes, const std::string &proc_root = "/proc");

struct QueueListener {
	QueueStat queue;
	std::optional<NetlinkSocket> socket; // none: the portid has no socket in this netns (stale or foreign)
	std::vector<SocketOwner> owners;     // empty: not found (another pid namespace, or no access)
};
std::vector<QueueListener> map_queue_listeners(const std::vector<QueueStat> &queues,
					       const std::vector<NetlinkSocket> &sockets, const SocketOwners &owners);

} // namespace ctct
