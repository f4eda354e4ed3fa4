#include "netns_names.hpp"

#include <algorithm>
#include <cctype>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kernel_text.hpp"

namespace ctct {

std::optional<uint32_t> parse_netns_link(std::string_view link)
{
	constexpr std::string_view prefix = "net:[";
	if (link.size() <= prefix.size() + 1 || link.substr(0, prefix.size()) != prefix || link.back() != ']')
		return std::nullopt;
	std::string_view digits = link.substr(prefix.size(), link.size() - prefix.size() - 1);
	if (digits.size() > 10)
		return std::nullopt;
	uint64_t v = 0;
	for (char c : digits) {
		if (c < '0' || c > '9')
			return std::nullopt;
		v = v * 10 + (uint64_t)(c - '0');
	}
	if (v > 0xffffffffULL)
		return std::nullopt;
	return (uint32_t)v;
}

namespace {

bool all_hex(std::string_view s)
{
	return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return isxdigit((unsigned char)c) && !isupper((unsigned char)c); });
}

bool is_container_id(std::string_view s) { return s.size() == 64 && all_hex(s); }

// API-server UIDs are UUIDs (36 with dashes); static pods' are a 32-digit hash of the manifest.
bool is_pod_uid(std::string_view s)
{
	if (s.size() == 32)
		return all_hex(s);
	if (s.size() != 36)
		return false;
	for (size_t i = 0; i < s.size(); i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !(isxdigit((unsigned char)s[i]) && !isupper((unsigned char)s[i])))
			return false;
	}
	return true;
}

bool strip_suffix(std::string_view &s, std::string_view suffix)
{
	if (s.size() < suffix.size() || s.substr(s.size() - suffix.size()) != suffix)
		return false;
	s.remove_suffix(suffix.size());
	return true;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

} // namespace

std::optional<CgroupContainer> parse_cgroup_path(std::string_view path)
{
	// systemd driver: a scope unit per container named by the runtime; cgroupfs driver: the bare id
	static constexpr std::pair<std::string_view, std::string_view> scope_prefixes[] = {
		{"cri-containerd-", "containerd"}, {"crio-", "cri-o"}, {"docker-", "docker"}, {"libpod-", "podman"}};
	CgroupContainer c;
	std::string_view parent;
	while (!path.empty()) {
		size_t slash = path.find('/');
		std::string_view comp = path.substr(0, slash);
		path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
		if (comp.empty())
			continue;
		std::string_view unit = comp;
		if (strip_suffix(unit, ".slice")) {
			// kubepods-pod<uid>.slice (guaranteed QoS) or kubepods-<qos>-pod<uid>.slice, prefixed when
			// the kubelet's cgroup root is nested (kind: kubelet-kubepods-...); systemd unit
			// names cannot hold '-' inside a component, so the kubelet writes the uid's dashes as '_'
			size_t at = unit.rfind("-pod");
			if (unit.find("kubepods") != std::string_view::npos && at != std::string_view::npos) {
				std::string uid(unit.substr(at + 4));
				std::replace(uid.begin(), uid.end(), '_', '-');
				if (is_pod_uid(uid))
					c.pod_uid = uid;
			}
		} else if (strip_suffix(unit, ".scope")) {
			for (const auto &[prefix, runtime] : scope_prefixes)
				if (starts_with(unit, prefix) && is_container_id(unit.substr(prefix.size()))) {
					c.container_id = std::string(unit.substr(prefix.size()));
					c.runtime = std::string(runtime);
				}
		} else if (starts_with(comp, "pod") && is_pod_uid(comp.substr(3)) && parent != "") {
			c.pod_uid = std::string(comp.substr(3)); // cgroupfs: /kubepods[/<qos>]/pod<uid>
		} else if (is_container_id(comp)) {
			c.container_id = std::string(comp);
			// /docker/<id> is Docker's own; under a kubepods pod the id alone does not say which runtime
			c.runtime = parent == "docker" ? "docker" : parent == "libpod_parent" ? "podman" : "";
		} else {
			for (const auto &[prefix, runtime] : scope_prefixes) // cri-o with cgroupfs: crio-<id>
				if (starts_with(comp, prefix) && is_container_id(comp.substr(prefix.size()))) {
					c.container_id = std::string(comp.substr(prefix.size()));
					c.runtime = std::string(runtime);
				}
		}
		parent = comp;
	}
	if (c.container_id.empty() && c.pod_uid.empty())
		return std::nullopt;
	return c;
}

std::optional<CgroupContainer> parse_proc_cgroup(std::string_view text)
{
	// "hierarchy-id:controllers:path" per line; on a hybrid host the unified line may be "/" while the
	// v1 lines name the container, so every line is tried, the unified one first
	std::vector<std::string_view> v1;
	std::optional<CgroupContainer> unified;
	while (!text.empty()) {
		size_t nl = text.find('\n');
		std::string_view line = text.substr(0, nl);
		text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
		size_t c1 = line.find(':');
		size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
		if (c2 == std::string_view::npos)
			continue;
		std::string_view path = line.substr(c2 + 1);
		if (line.substr(0, c2) == "0:") {
			if ((unified = parse_cgroup_path(path)))
				return unified;
		} else {
			v1.push_back(path);
		}
	}
	for (auto p : v1)
		if (auto c = parse_cgroup_path(p))
			return c;
	return std::nullopt;
}

std::optional<PodRef> parse_pod_log_dir(std::string_view d)
{
	size_t a = d.find('_');
	size_t b = a == std::string_view::npos ? a : d.find('_', a + 1);
	if (b == std::string_view::npos || a == 0 || b == a + 1 || d.find('_', b + 1) != std::string_view::npos)
		return std::nullopt;
	PodRef p{std::string(d.substr(0, a)), std::string(d.substr(a + 1, b - a - 1)), std::string(d.substr(b + 1))};
	if (!is_pod_uid(p.pod_uid))
		return std::nullopt;
	return p;
}

std::string netns_label(const NetnsInfo &i)
{
	if (i.host)
		return "host";
	if (i.pod && !i.pod->pod_name.empty())
		return "pod:" + i.pod->pod_namespace + "/" + i.pod->pod_name;
	if (i.container && !i.container->pod_uid.empty())
		return "pod:" + i.container->pod_uid;
	if (i.container && !i.container->container_id.empty())
		return "container:" + i.container->container_id.substr(0, 12);
	if (!i.names.empty())
		return "netns:" + i.names.front();
	if (!i.processes.empty())
		return "pid:" + std::to_string(i.processes.front().pid) + "/" + i.processes.front().comm;
	return "";
}

nlohmann::json netns_info_json(const NetnsInfo &i)
{
	using json = nlohmann::json;
	auto or_null = [](const std::string &s) { return s.empty() ? json(nullptr) : json(s); };
	json procs = json::array();
	for (const auto &p : i.processes)
		procs.push_back({{"pid", p.pid}, {"comm", p.comm}});
	json container = nullptr, pod = nullptr;
	if (i.container && !i.container->container_id.empty())
		container = {{"id", i.container->container_id}, {"runtime", or_null(i.container->runtime)}};
	if (i.container && !i.container->pod_uid.empty()) {
		bool named = i.pod && i.pod->pod_uid == i.container->pod_uid;
		pod = {{"uid", i.container->pod_uid}, {"namespace", named ? json(i.pod->pod_namespace) : json(nullptr)},
		       {"name", named ? json(i.pod->pod_name) : json(nullptr)}};
	}
	std::string label = netns_label(i);
	return {{"label", or_null(label)}, {"names", i.names}, {"host", i.host}, {"processes", procs},
		{"process_count", i.process_count}, {"container", container}, {"pod", pod}};
}

namespace {

std::string read_small(const std::string &path)
{
	try {
		return read_file(path);
	} catch (const std::exception &) {
		return "";
	}
}

std::optional<uint32_t> netns_of(const std::string &proc_dir)
{
	char buf[64];
	ssize_t n = readlink((proc_dir + "/ns/net").c_str(), buf, sizeof(buf) - 1);
	if (n <= 0)
		return std::nullopt;
	return parse_netns_link(std::string_view(buf, (size_t)n));
}

} // namespace

std::map<uint32_t, NetnsHandles> walk_netns(const NamingRoots &roots)
{
	std::map<uint32_t, NetnsHandles> out;
	if (DIR *d = opendir(roots.proc.c_str())) {
		while (struct dirent *de = readdir(d)) {
			if (de->d_name[0] < '1' || de->d_name[0] > '9')
				continue;
			if (auto ino = netns_of(roots.proc + "/" + de->d_name))
				out[*ino].pids.push_back(atoi(de->d_name));
		}
		closedir(d);
	}
	struct stat self_ns;
	bool have_dev = stat((roots.proc + "/self/ns/net").c_str(), &self_ns) == 0;
	if (DIR *d = have_dev ? opendir(roots.run_netns.c_str()) : nullptr) {
		while (struct dirent *de = readdir(d)) {
			if (de->d_name[0] == '.')
				continue;
			struct stat st;
			if (stat((roots.run_netns + "/" + de->d_name).c_str(), &st) == 0 && st.st_dev == self_ns.st_dev)
				out[(uint32_t)st.st_ino].names.push_back(de->d_name);
		}
		closedir(d);
	}
	for (auto &[ino, h] : out) {
		std::sort(h.pids.begin(), h.pids.end());
		std::sort(h.names.begin(), h.names.end());
	}
	return out;
}

std::map<uint32_t, NetnsInfo> scan_netns_names(const NamingRoots &roots)
{
	std::map<uint32_t, NetnsInfo> out;
	for (auto &[ino, h] : walk_netns(roots)) {
		NetnsInfo &i = out[ino];
		i.names = std::move(h.names);
		if (h.pids.empty())
			continue;
		const auto &list = h.pids;
		i.process_count = (uint32_t)list.size();
		for (size_t k = 0; k < list.size() && k < NetnsInfo::kMaxProcesses; k++) {
			std::string comm = read_small(roots.proc + "/" + std::to_string(list[k]) + "/comm");
			while (!comm.empty() && comm.back() == '\n')
				comm.pop_back();
			i.processes.push_back({list[k], comm});
		}
		// the lowest pid has, as a rule, held the netns longest: for a pod, its sandbox ("pause")
		i.container = parse_proc_cgroup(read_small(roots.proc + "/" + std::to_string(list[0]) + "/cgroup"));
	}
	if (auto pid1 = netns_of(roots.proc + "/1"))
		out[*pid1].host = true;
	bool want_pods = std::any_of(out.begin(), out.end(),
				     [](const auto &kv) { return kv.second.container && !kv.second.container->pod_uid.empty(); });
	if (want_pods) {
		std::map<std::string, PodRef> by_uid;
		if (DIR *d = opendir(roots.pod_logs.c_str())) {
			while (struct dirent *de = readdir(d))
				if (auto p = parse_pod_log_dir(de->d_name))
					by_uid[p->pod_uid] = *p;
			closedir(d);
		}
		for (auto &[ino, i] : out)
			if (i.container && by_uid.count(i.container->pod_uid))
				i.pod = by_uid[i.container->pod_uid];
	}
	return out;
}

static uint64_t now_monotonic_ns()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static NetnsNamer::Entry make_entry(NetnsInfo info)
{
	NetnsNamer::Entry e;
	e.label = netns_label(info);
	e.json = netns_info_json(info);
	e.json_text = e.json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
	e.info = std::move(info);
	return e;
}

void NetnsNamer::rescan(uint64_t now_ns)
{
	uint64_t t0 = now_monotonic_ns();
	auto found = scan_netns_names(roots_);
	std::map<uint32_t, Entry> next;
	for (auto &[ino, info] : found)
		next.emplace(ino, make_entry(std::move(info)));
	// misses are kept until the cache is old: two netns nothing visible holds must not take turns
	// asking for a scan
	for (auto &[ino, e] : entries_)
		if (e.miss_ns && now_ns - e.miss_ns < max_age_ns_ && !next.count(ino))
			next.emplace(ino, std::move(e));
	entries_ = std::move(next);
	uint64_t took = now_monotonic_ns() - t0;
	longest_scan_ns_ = std::max(longest_scan_ns_, took);
	scans_++;
	scanned_ = true;
	last_scan_ns_ = now_ns;
}

// Whether what named the netns still does: its lowest pid, or else its first /run/netns name, still
// points at this inode. Catches an inode number handed to a new netns since the scan.
bool NetnsNamer::still_valid(uint32_t ino, const Entry &e) const
{
	if (!e.info.processes.empty()) {
		char buf[64];
		std::string link = roots_.proc + "/" + std::to_string(e.info.processes.front().pid) + "/ns/net";
		ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
		return n > 0 && parse_netns_link(std::string_view(buf, (size_t)n)) == ino;
	}
	if (!e.info.names.empty()) {
		struct stat st;
		return stat((roots_.run_netns + "/" + e.info.names.front()).c_str(), &st) == 0 && (uint32_t)st.st_ino == ino;
	}
	return true; // nothing to check: a miss, retried when the cache is old
}

void NetnsNamer::observe(uint32_t ino, uint64_t now_ns)
{
	auto it = entries_.find(ino);
	if (it != entries_.end() && now_ns - it->second.checked_ns < min_interval_ns_)
		return;
	bool valid = it != entries_.end() && still_valid(ino, it->second);
	bool old = !scanned_ || now_ns - last_scan_ns_ >= max_age_ns_;
	if (!valid || old) {
		if (!scanned_ || now_ns - last_scan_ns_ >= min_interval_ns_) {
			rescan(now_ns);
			it = entries_.find(ino);
			if (it == entries_.end()) { // nothing a scan can see holds it: remember the miss until old
				it = entries_.emplace(ino, empty_).first;
				it->second.miss_ns = now_ns;
			}
		} else if (it != entries_.end() && !valid) {
			// its names were the netns' that had the inode before: unknown until the next scan, not wrong
			entries_.erase(it);
			it = entries_.end();
		}
	}
	if (it != entries_.end())
		it->second.checked_ns = now_ns;
}

const NetnsNamer::Entry &NetnsNamer::get(uint32_t ino) const
{
	auto it = entries_.find(ino);
	return it == entries_.end() ? empty_ : it->second;
}

NetnsNamer::NetnsNamer(NamingRoots roots, uint64_t min_interval_ns, uint64_t max_age_ns)
	: roots_(std::move(roots)), min_interval_ns_(min_interval_ns), max_age_ns_(max_age_ns),
	  empty_(make_entry(NetnsInfo{}))
{
}

} // namespace ctct
