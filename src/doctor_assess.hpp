// doctor, assessment: the kernel's mitigations and the risk of confirm drops (none, low, medium, high) with
// its reasons and the fixes that apply, from what was gathered. Pure functions.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "doctor_rules.hpp"
#include "kernel_text.hpp"
#include "listeners.hpp"

namespace ctct {

struct Mitigation {
	bool present = false;
	std::string evidence; // kallsyms | version
	std::string note;
};
struct KernelInfo {
	std::string release;
	bool btf = false;
	bool kallsyms_readable = false;
	bool conntrack_in_kallsyms = false; // __nf_conntrack_confirm seen: absence of other symbols means something
	std::string reinject_function;      // nfqnl_reinject | nf_reinject | ""
	Mitigation reinject_relookup, udp_clash_resolution, clash_resolution_harder;
};
KernelInfo kernel_info(const std::string &release, const Kallsyms *ksyms, bool btf);

struct Tool {
	std::string name;
	std::string status; // ok | missing | failed
	std::string error;
};

struct DoctorInput {
	uint64_t netns_inode = 0;
	KernelInfo kernel;
	std::vector<Tool> tools;
	std::vector<QueueRule> rules;
	unsigned snat_rules = 0, dnat_rules = 0;
	std::vector<QueueListener> listeners; // one per bound queue
	std::string queue_error, netlink_error;
	std::optional<std::map<std::string, uint64_t>> conntrack_stat; // totals
	std::optional<uint64_t> conntrack_count, conntrack_max;
};

struct Finding {
	std::string code; // no_listener | socket_drops | queue_dropped | user_dropped | insert_failed | unreached
	std::optional<uint32_t> queue;
	std::string text;
};
struct Assessment {
	std::string risk; // none | low | medium | high
	std::vector<std::string> reasons;
	std::vector<std::string> fixes;
	std::vector<Finding> findings;
};
Assessment assess(const DoctorInput &in);

} // namespace ctct
