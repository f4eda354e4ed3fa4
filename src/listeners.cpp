#include "listeners.hpp"

#include <dirent.h>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace ctct {

std::vector<NetlinkSocket> parse_proc_net_netlink(const std::string &text)
{
	std::vector<NetlinkSocket> out;
	std::istringstream is(text);
	std::string line;
	size_t lineno = 0;
	while (std::getline(is, line)) {
		lineno++;
		std::istringstream ls(line);
		std::vector<std::string> w;
		std::string s;
		while (ls >> s)
			w.push_back(s);
		if (w.empty() || w[0] == "sk")
			continue;
		// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
		if (w.size() < 10)
			throw std::runtime_error("/proc/net/netlink line " + std::to_string(lineno) + ": " +
						 std::to_string(w.size()) + " fields, expected 10");
		try {
			NetlinkSocket n;
			size_t used;
			auto num = [&](const std::string &v, int base) {
				uint64_t x = std::stoull(v, &used, base);
				if (used != v.size())
					throw std::invalid_argument(v);
				return x;
			};
			n.protocol = (uint32_t)num(w[1], 10);
			n.portid = (uint32_t)num(w[2], 10);
			n.groups = (uint32_t)num(w[3], 16);
			n.rmem_bytes = num(w[4], 10);
			n.wmem_bytes = num(w[5], 10);
			n.drops = num(w[8], 10);
			n.inode = num(w[9], 10);
			out.push_back(n);
		} catch (const std::logic_error &) {
			throw std::runtime_error("/proc/net/netlink line " + std::to_string(lineno) + ": not a number");
		}
	}
	return out;
}

std::optional<NetlinkSocket> find_netlink_socket(const std::vector<NetlinkSocket> &sockets, uint32_t protocol,
						 uint32_t portid)
{
	for (const auto &s : sockets)
		if (s.protocol == protocol && s.portid == portid)
			return s;
	return std::nullopt;
}

std::optional<uint64_t> parse_socket_link(const std::string &link)
{
	const std::string prefix = "socket:[";
	if (link.size() <= prefix.size() + 1 || link.compare(0, prefix.size(), prefix) != 0 || link.back() != ']')
		return std::nullopt;
	std::string digits = link.substr(prefix.size(), link.size() - prefix.size() - 1);
	if (digits.find_first_not_of("0123456789") != std::string::npos)
		return std::nullopt;
	return std::stoull(digits);
}

static std::string read_comm(const std::string &dir)
{
	try {
		std::string c = read_file(dir + "/comm");
		while (!c.empty() && c.back() == '\n')
			c.pop_back();
		return c;
	} catch (const std::exception &) {
		return "";
	}
}

SocketOwners scan_socket_owners(const std::set<uint64_t> &inodes, const std::string &proc_root)
{
	SocketOwners owners;
	if (inodes.empty())
		return owners;
	DIR *proc = opendir(proc_root.c_str());
	if (!proc)
		return owners;
	while (struct dirent *p = readdir(proc)) {
		std::string name = p->d_name;
		if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
			continue;
		std::string dir = proc_root + "/" + name;
		DIR *fds = opendir((dir + "/fd").c_str());
		if (!fds)
			continue;
		std::set<uint64_t> seen; // one entry per process even when it holds the socket in several fds
		while (struct dirent *f = readdir(fds)) {
			if (f->d_name[0] == '.')
				continue;
			char buf[64];
			ssize_t n = readlink((dir + "/fd/" + f->d_name).c_str(), buf, sizeof(buf) - 1);
			if (n <= 0)
				continue;
			buf[n] = 0;
			auto inode = parse_socket_link(buf);
			if (inode && inodes.count(*inode) && seen.insert(*inode).second)
				owners[*inode].push_back({std::stoi(name), read_comm(dir)});
		}
		closedir(fds);
	}
	closedir(proc);
	return owners;
}

std::vector<QueueListener> map_queue_listeners(const std::vector<QueueStat> &queues,
					       const std::vector<NetlinkSocket> &sockets, const SocketOwners &owners)
{
	std::vector<QueueListener> out;
	for (const auto &q : queues) {
		QueueListener l;
		l.queue = q;
		l.socket = find_netlink_socket(sockets, kNetlinkNetfilter, q.portid);
		if (l.socket) {
			auto it = owners.find(l.socket->inode);
			if (it != owners.end())
				l.owners = it->second;
		}
		out.push_back(l);
	}
	return out;
}

} // namespace ctct
