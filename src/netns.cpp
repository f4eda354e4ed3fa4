#include "netns.hpp"
#include "netns_names.hpp"

#include <fcntl.h>
#include <sched.h>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace ctct {

std::map<uint32_t, std::string> list_netns()
{
	struct stat self_ns;
	if (stat("/proc/self/ns/net", &self_ns) != 0)
		return {};
	std::map<uint32_t, std::string> out = {{(uint32_t)self_ns.st_ino, "/proc/self/ns/net"}};
	// a name before a pid: a bind mount outlives the processes that happen to be in the netns
	for (const auto &[ino, h] : walk_netns())
		out.emplace(ino, h.names.empty() ? "/proc/" + std::to_string(h.pids.front()) + "/ns/net"
						 : "/run/netns/" + h.names.front());
	return out;
}

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static uint64_t this_netns_cookie()
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 0;
	if (getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len))
		cookie = 0;
	close(s);
	return cookie;
}

std::vector<uint64_t> fresh_netns_cookies()
{
	cpu_set_t allowed;
	CPU_ZERO(&allowed);
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return {};
	std::vector<int> cpus;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &allowed))
			cpus.push_back(cpu);
	std::vector<uint64_t> cookies(cpus.size(), 0);
	std::vector<std::thread> threads;
	// at once: netns creation takes a few ms each; unshare() moves only its thread, the netns goes with it
	for (size_t i = 0; i < cpus.size(); i++)
		threads.emplace_back([&, i] {
			cpu_set_t one;
			CPU_ZERO(&one);
			CPU_SET(cpus[i], &one);
			// the cookie is taken on the CPU that runs setup_net(): pinned, that is this one
			if (sched_setaffinity(0, sizeof(one), &one) == 0 && unshare(CLONE_NEWNET) == 0)
				cookies[i] = this_netns_cookie();
		});
	for (auto &t : threads)
		t.join();
	std::vector<uint64_t> out;
	for (auto c : cookies)
		if (c)
			out.push_back(c);
	// a CPU left unmarked is one whose later netns are not known new: safe, only less exact
	return out;
}

std::vector<std::optional<std::string>> read_in_netns(const std::string &ns_path, const std::vector<std::string> &files,
						      uint64_t *cookie)
{
	std::vector<std::optional<std::string>> out(files.size());
	int fd = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return out;
	std::thread t([&] {
		if (setns(fd, CLONE_NEWNET))
			return;
		if (cookie)
			*cookie = this_netns_cookie();
		for (size_t i = 0; i < files.size(); i++) {
			try {
				out[i] = read_file(files[i]);
			} catch (const std::exception &) {
			}
		}
	});
	t.join();
	close(fd);
	return out;
}

NetnsCounters read_counters(const std::string &ns_path)
{
	NetnsCounters c;
	auto texts = read_in_netns(ns_path, {"/proc/thread-self/net/stat/nf_conntrack",
					     "/proc/thread-self/net/netfilter/nfnetlink_queue",
					     "/proc/thread-self/net/netlink"},
				   &c.cookie);
	if (texts[0]) {
		try {
			c.conntrack = parse_conntrack_stat(*texts[0]).totals();
			c.has_conntrack = true;
		} catch (const std::exception &) {
		}
	}
	if (texts[1]) {
		try {
			c.queues = parse_nfqueue(*texts[1]);
			c.has_nfqueue = true;
		} catch (const std::exception &) {
		}
	}
	if (texts[2] && !c.queues.empty()) {
		try {
			c.netlink = parse_proc_net_netlink(*texts[2]);
		} catch (const std::exception &) {
		}
	}
	return c;
}

CountersByNetns snapshot_counters(const std::map<uint32_t, std::string> &which)
{
	CountersByNetns out;
	for (const auto &[ino, path] : which)
		out[ino] = read_counters(path);
	return out;
}

} // namespace ctct
