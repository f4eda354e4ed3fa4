// Names people know for a network namespace inode: its iproute2 name (/run/netns), the processes in it,
// and the container and Kubernetes pod those processes belong to (from their cgroup paths and kubelet's
// pod log directories). The parsers are pure and unit-tested on captured samples; NetnsNamer scans /proc.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <nlohmann/json.hpp>

namespace ctct {

// "net:[4026531840]" (readlink of /proc/PID/ns/net) -> 4026531840
std::optional<uint32_t> parse_netns_link(std::string_view link);

// A container as its runtime names its cgroup: systemd driver (…/cri-containerd-<id>.scope,
// crio-<id>.scope, docker-<id>.scope) or cgroupfs driver (/kubepods/<qos>/pod<uid>/<id>, /docker/<id>).
struct CgroupContainer {
	std::string runtime;      // "containerd", "cri-o", "docker"; "" when only the id's shape is known
	std::string container_id; // 64 hex digits; "" when the path names a pod but no container in it
	std::string pod_uid;      // with dashes, as the API server has it; "" outside a kubelet pod
};
// One cgroup path (the part after "0::" or "N:controllers:"). nullopt: no container layout found.
std::optional<CgroupContainer> parse_cgroup_path(std::string_view path);
// /proc/PID/cgroup text: the unified ("0::") line first, then the v1 lines in order.
std::optional<CgroupContainer> parse_proc_cgroup(std::string_view text);

// kubelet's pod log directory name "<namespace>_<name>_<uid>" (names are DNS labels: no '_').
struct PodRef {
	std::string pod_namespace, pod_name, pod_uid;
};
std::optional<PodRef> parse_pod_log_dir(std::string_view dirname);

struct NetnsProcess {
	int pid = 0;
	std::string comm;
};

// What is known about one netns. Empty fields: not found (never guessed).
struct NetnsInfo {
	std::vector<std::string> names;       // /run/netns entries whose bind mount is this netns, sorted
	bool host = false;                    // the netns of PID 1 (as this tracer's /proc shows it)
	std::vector<NetnsProcess> processes;  // lowest pids first, at most kMaxProcesses
	uint32_t process_count = 0;           // all processes (thread-group leaders) in it
	std::optional<CgroupContainer> container; // of the lowest-pid process
	std::optional<PodRef> pod;            // namespace and name: kubelet's /var/log/pods, matched by pod_uid
	static constexpr size_t kMaxProcesses = 3;
};

// The short name of the text output and of netns_info.label: host, pod:NS/NAME, pod:UID,
// container:ID12, netns:NAME, pid:PID/COMM; "" when nothing is known.
std::string netns_label(const NetnsInfo &info);
nlohmann::json netns_info_json(const NetnsInfo &info);

// Every netns found in one pass: /run/netns, /proc/*/ns/net, the lowest pid's cgroup, /var/log/pods.
// The roots are parameters so that unit tests can scan a tree they built.
struct NamingRoots {
	std::string proc = "/proc";
	std::string run_netns = "/run/netns";
	std::string pod_logs = "/var/log/pods";
};
std::map<uint32_t, NetnsInfo> scan_netns_names(const NamingRoots &roots = {});

// What opens each netns, in one pass over proc/*/ns/net (readlink) and run_netns: the pids in it and its
// /run/netns names, both sorted. A name counts only if it is on the nsfs device of proc/self/ns/net (the
// mount point of a deleted name is a tmpfs file whose inode number means nothing). The naming scan and
// list_netns (netns.hpp) share it.
struct NetnsHandles {
	std::vector<int> pids;
	std::vector<std::string> names;
};
std::map<uint32_t, NetnsHandles> walk_netns(const NamingRoots &roots = {});

// The cache the event loop asks, by inode. A scan resolves every netns at once; it is run when an event
// names an inode the cache does not know or when the cache is older than max_age_ns (an inode number is
// handed out again once its netns is gone) or when what named it (its lowest pid, its first /run/netns
// name) no longer points at it -- checked at most once per min_interval_ns per inode. Scans never come
// closer than min_interval_ns: a burst of new namespaces costs one scan per interval, and their events
// go out unnamed (or, for an entry found wrong, as unknown) rather than wait.
class NetnsNamer {
public:
	struct Entry {
		NetnsInfo info;
		std::string label;
		std::string json_text; // netns_info_json(info).dump() as the JSON line writes it
		nlohmann::json json;
		uint64_t checked_ns = 0; // when still_valid() last held for it
		uint64_t miss_ns = 0;    // a scan asked for it found nothing: when
	};
	explicit NetnsNamer(NamingRoots roots = {}, uint64_t min_interval_ns = 200000000ULL,
			    uint64_t max_age_ns = 10000000000ULL);
	// Called once per event before it is formatted: scans if needed and allowed (now_ns: CLOCK_MONOTONIC).
	void observe(uint32_t netns_ino, uint64_t now_ns);
	// The entry for an inode: an empty one ("not found") when the last scan did not see it.
	const Entry &get(uint32_t netns_ino) const;
	uint64_t scans() const { return scans_; }
	uint64_t longest_scan_ns() const { return longest_scan_ns_; }

private:
	NamingRoots roots_;
	uint64_t min_interval_ns_, max_age_ns_;
	uint64_t last_scan_ns_ = 0, scans_ = 0, longest_scan_ns_ = 0;
	bool scanned_ = false;
	std::map<uint32_t, Entry> entries_;
	Entry empty_;
	void rescan(uint64_t now_ns);
	bool still_valid(uint32_t netns_ino, const Entry &e) const;
};

} // namespace ctct
