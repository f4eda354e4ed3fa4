// Probing: which hook attaches with which backend on this kernel, by loading and attaching the real
// program (Elastic's system_has_bpf_tramp approach), plus the facts a user needs to read the result.
#pragma once
#include <string>
#include <nlohmann/json.hpp>
#include "backend.hpp"
#include "kernel_text.hpp"

namespace ctct {

struct SystemFacts {
	std::string kernel_release;
	bool vmlinux_btf = false;
	std::vector<std::string> module_btf; // nf_conntrack, nfnetlink_queue when loaded as modules
	std::string lockdown;                // "none", "integrity", "confidentiality", or "unknown"
	bool root = false;
	bool kallsyms_addresses = false;
	size_t drop_reasons = 0;
};
SystemFacts gather_facts(const Kallsyms &ksyms);

// Probe every hook with every attach type (what `features` prints and `auto` chooses from).
ProbeResults probe_all(const Kallsyms &ksyms, bool verbose = false);

nlohmann::json features_json(const SystemFacts &f, const ProbeResults &p, const Plan &auto_plan);
std::string features_text(const SystemFacts &f, const ProbeResults &p, const Plan &auto_plan);

} // namespace ctct
