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

// Probe the hooks with the attach types `backend` allows, in order of preference, stopping at the first
// that works; `exhaustive` tries every type (what `features` prints). With `plan_options`, only the hooks
// a plan with those options may attach (each probe of a function hook is a load and an attach).
ProbeResults probe_for(Backend backend, const Kallsyms &ksyms, bool verbose, bool exhaustive,
		       const PlanOptions *plan_options = nullptr);

nlohmann::json features_json(const SystemFacts &f, const ProbeResults &p, const Plan &auto_plan);
std::string features_text(const SystemFacts &f, const ProbeResults &p, const Plan &auto_plan);

} // namespace ctct
