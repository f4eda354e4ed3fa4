// Network namespaces as the loader sees them: find them by inode, read their /proc/net files, and
// snapshot the kernel's own counters (conntrack stats, NFQUEUE queues) for comparison with events.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include "kernel_text.hpp"
#include "listeners.hpp"

namespace ctct {

// inode -> one path that opens that netns: our own, every process's, iproute2's /run/netns names.
std::map<uint32_t, std::string> list_netns();

// Read files (paths under /proc/thread-self/...) from inside a netns; a file that cannot be read is
// nullopt. setns() moves only the calling thread, so this runs in a short-lived thread.
// Cookies of netns made and dropped at once, one on each CPU this process may run on. A netns takes its
// cookie from its CPU's current batch (5.12+), so one born later has a larger cookie than its CPU's mark
// or one in a newer batch. Empty if unknown (no CAP_SYS_ADMIN, no SO_NETNS_COOKIE before 5.14).
std::vector<uint64_t> fresh_netns_cookies();
// The batch a cookie came from: batches start at multiples of 4096, their first cookie one above.
inline uint64_t netns_cookie_batch(uint64_t cookie) { return (cookie - 1) >> 12; }

// With `cookie`, also the netns' cookie (SO_NETNS_COOKIE, 5.14+; 0 if unknown): unique per boot, while
// inode numbers are handed out again as soon as a netns is gone.
std::vector<std::optional<std::string>> read_in_netns(const std::string &ns_path, const std::vector<std::string> &files,
						      uint64_t *cookie = nullptr);

// One netns' counters at one moment.
struct NetnsCounters {
	uint64_t cookie = 0; // which netns had this inode (0: unknown)
	bool has_conntrack = false;
	std::map<std::string, uint64_t> conntrack; // /proc/net/stat/nf_conntrack totals over CPUs
	bool has_nfqueue = false;
	std::vector<QueueStat> queues;             // /proc/net/netfilter/nfnetlink_queue
	std::vector<NetlinkSocket> netlink;        // /proc/net/netlink: the listeners' sockets
};
using CountersByNetns = std::map<uint32_t, NetnsCounters>;
// Whether two snapshots under one inode are of the same netns (either cookie unknown: assume so).
inline bool same_netns(const NetnsCounters &a, const NetnsCounters &b)
{
	return !a.cookie || !b.cookie || a.cookie == b.cookie;
}

NetnsCounters read_counters(const std::string &ns_path);
// Every netns in `which` (list_netns() for all reachable ones).
CountersByNetns snapshot_counters(const std::map<uint32_t, std::string> &which);

} // namespace ctct
