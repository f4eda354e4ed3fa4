#include "doctor.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctct_event.h"

namespace ctct {

using nlohmann::json;

namespace {

std::string find_in_path(const std::string &name)
{
	std::string path = getenv("PATH") ? getenv("PATH") : "";
	path += ":/usr/sbin:/sbin:/usr/bin:/bin";
	std::stringstream ss(path);
	std::string dir;
	while (std::getline(ss, dir, ':')) {
		if (dir.empty())
			continue;
		std::string p = dir + "/" + name;
		if (access(p.c_str(), X_OK) == 0)
			return p;
	}
	return "";
}

// Runs ARGV, returns its stdout; TOOL gets the status and, on failure, the first line of stderr.
std::string run_tool(const std::vector<std::string> &argv, Tool &tool)
{
	tool.name = argv[0];
	for (size_t i = 1; i < argv.size(); i++)
		tool.name += " " + argv[i];
	std::string exe = find_in_path(argv[0]);
	if (exe.empty()) {
		tool.status = "missing";
		return "";
	}
	int out[2];
	FILE *err = tmpfile();
	if (pipe(out) != 0 || !err) {
		tool.status = "failed";
		tool.error = strerror(errno);
		if (err)
			fclose(err);
		return "";
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(fileno(err), 2);
		close(out[0]);
		close(out[1]);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		execv(exe.c_str(), args.data());
		_exit(127);
	}
	close(out[1]);
	std::string text;
	char buf[65536];
	ssize_t n;
	while ((n = read(out[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0)
			text.append(buf, n);
	close(out[0]);
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		tool.status = "failed";
		rewind(err);
		char line[512] = "";
		if (!fgets(line, sizeof(line), err))
			line[0] = 0;
		std::string e = line;
		while (!e.empty() && (e.back() == '\n' || e.back() == '\r'))
			e.pop_back();
		tool.error = (pid < 0 ? std::string("fork: ") + strerror(errno)
				      : "exit status " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1)) +
			     (e.empty() ? "" : ": " + e);
	} else {
		tool.status = "ok";
	}
	fclose(err);
	return text;
}

std::optional<uint64_t> read_number(const std::string &path)
{
	try {
		return std::stoull(read_file(path));
	} catch (const std::exception &) {
		return std::nullopt;
	}
}

void append(std::vector<TableRules> &to, std::vector<TableRules> from)
{
	for (auto &t : from)
		to.push_back(std::move(t));
}

unsigned count(const std::vector<TableRules> &tables, unsigned TableRules::*field)
{
	unsigned n = 0;
	for (const auto &t : tables)
		n += t.*field;
	return n;
}

} // namespace

int run_doctor(bool json_output)
{
	DoctorInput in;
	struct utsname u;
	uname(&u);
	struct stat st;
	if (stat("/proc/self/ns/net", &st) == 0)
		in.netns_inode = st.st_ino;
	std::optional<Kallsyms> ksyms;
	try {
		ksyms = Kallsyms::parse(read_file("/proc/kallsyms"));
	} catch (const std::exception &) {
	}
	in.kernel = kernel_info(u.release, ksyms ? &*ksyms : nullptr, access("/sys/kernel/btf/vmlinux", R_OK) == 0);

	// iptables (legacy and nft flavours), then nftables itself; a missing tool is reported, not fatal.
	std::vector<TableRules> legacy, nft_save, nft;
	const std::vector<std::pair<std::string, std::string>> saves = {{"iptables-legacy-save", "ip"},
									{"ip6tables-legacy-save", "ip6"},
									{"iptables-nft-save", "ip"},
									{"ip6tables-nft-save", "ip6"}};
	for (const auto &[cmd, family] : saves) {
		Tool t;
		std::string text = run_tool({cmd}, t);
		if (t.status == "ok") {
			try {
				append(cmd.find("legacy") != std::string::npos ? legacy : nft_save,
				       parse_iptables_save(text, family));
			} catch (const std::exception &e) { // a number we could not read: say so, keep going
				t.status = "failed";
				t.error = std::string("cannot parse its output: ") + e.what();
			}
		}
		in.tools.push_back(t);
	}
	Tool nft_tool;
	std::string nft_text = run_tool({"nft", "-j", "list", "ruleset"}, nft_tool);
	bool have_nft = nft_tool.status == "ok";
	if (have_nft) {
		try {
			nft = parse_nft_json(nft_text);
		} catch (const std::exception &e) {
			nft_tool.status = "failed";
			nft_tool.error = e.what();
			have_nft = false;
		}
	}
	in.tools.push_back(nft_tool);
	// nft -j sees every nf_tables chain (also base chains iptables-nft-save cannot show) but not the
	// arguments of xt targets; iptables-nft-save fills those in. Without nft, iptables-nft-save alone.
	const auto &nf_tables = have_nft ? nft : nft_save;
	in.snat_rules = count(legacy, &TableRules::snat_rules) + count(nf_tables, &TableRules::snat_rules);
	in.dnat_rules = count(legacy, &TableRules::dnat_rules) + count(nf_tables, &TableRules::dnat_rules);
	bool has_snat = in.snat_rules > 0;
	in.rules = collect_queue_rules(legacy, "legacy", has_snat);
	auto more = have_nft ? collect_queue_rules(nft, "nftables", has_snat, nft_save)
			     : collect_queue_rules(nft_save, "nft", has_snat);
	in.rules.insert(in.rules.end(), more.begin(), more.end());

	std::vector<QueueStat> queues;
	try {
		queues = parse_nfqueue(read_file("/proc/net/netfilter/nfnetlink_queue"));
	} catch (const std::exception &e) {
		in.queue_error = std::string(e.what()) + " (nfnetlink_queue not loaded: no queue is bound)";
	}
	std::vector<NetlinkSocket> sockets;
	try {
		sockets = parse_proc_net_netlink(read_file("/proc/net/netlink"));
	} catch (const std::exception &e) {
		in.netlink_error = e.what();
	}
	std::set<uint64_t> inodes;
	for (const auto &q : queues)
		if (auto s = find_netlink_socket(sockets, kNetlinkNetfilter, q.portid))
			inodes.insert(s->inode);
	in.listeners = map_queue_listeners(queues, sockets, scan_socket_owners(inodes));

	try {
		in.conntrack_stat = parse_conntrack_stat(read_file("/proc/net/stat/nf_conntrack")).totals();
	} catch (const std::exception &) {
	}
	in.conntrack_count = read_number("/proc/sys/net/netfilter/nf_conntrack_count");
	in.conntrack_max = read_number("/proc/sys/net/netfilter/nf_conntrack_max");

	Assessment a = assess(in);
	if (json_output)
		std::cout << doctor_json(in, a).dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
	else
		std::cout << doctor_text(in, a);
	return 0;
}

} // namespace ctct
