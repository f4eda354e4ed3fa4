#include "probe.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "btf_names.hpp"
#include "ctct.skel.h"
#include "tracer.hpp"

namespace ctct {

static std::string module_hint(const std::string &fn)
{
	const char *mod = nullptr;
	if (fn.rfind("nfqnl_", 0) == 0)
		mod = "nfnetlink_queue";
	else if (fn.find("conntrack") != std::string::npos || fn.rfind("nf_ct_", 0) == 0)
		mod = "nf_conntrack";
	// /sys/module/NAME exists for a loaded module and for a built-in one with parameters (both of these)
	if (mod && access((std::string("/sys/module/") + mod).c_str(), F_OK) != 0)
		return std::string("module ") + mod + " is not loaded: it loads with the first rule that needs it, or modprobe " +
		       mod + ", then start again";
	return "renamed or inlined in this kernel?";
}

// What can be known before loading: the function exists (kallsyms), and a kprobe's arguments can be read.
static bool precheck(const HookSpec &spec, Attach a, const Kallsyms &ksyms, ProbeResult &r)
{
	if (a != Attach::TpBtf) {
		for (const auto &fn : spec.functions)
			if (ksyms.has_function(fn)) {
				r.function = fn;
				break;
			}
		if (r.function.empty()) {
			std::string names;
			for (const auto &fn : spec.functions)
				names += (names.empty() ? "" : " or ") + fn;
			auto clones = ksyms.clones_of(spec.functions.front());
			r.error = ENOENT;
			r.message = std::string(attach_name(a)) + ": " + names + " not in /proc/kallsyms (" +
				    (clones.empty() ? module_hint(spec.functions.front())
						    : "only compiler clone " + clones.front() + ", whose arguments may differ") +
				    ")";
			return false;
		}
	} else {
		r.function = spec.functions.front();
	}
	if (a == Attach::Kprobe && spec.kprobe_args_need_btf && !btf_has_function(r.function, ksyms.module_of(r.function))) {
		r.error = ENOENT;
		r.message = "kprobe: " + r.function + " has no BTF prototype on this kernel (its calling convention was "
			    "optimised), so its arguments cannot be read reliably";
		return false;
	}
	return true;
}

static std::string program_for(const HookSpec &spec, Attach a)
{
	return a == Attach::Fentry ? spec.fentry_prog : a == Attach::Kprobe ? spec.kprobe_prog : spec.tp_prog;
}

// A probe's maps hold nothing anyone reads: the smallest sizes, so that creating them (a preallocated hash
// zeroes every entry) costs next to nothing.
static SkelPtr open_probe_skeleton(const std::vector<std::string> &programs)
{
	SkelPtr skel = open_skeleton(programs);
	struct bpf_map *m;
	bpf_object__for_each_map(m, skel->obj) {
		if (bpf_map__is_internal(m))
			continue;
		bpf_map__set_max_entries(m, bpf_map__type(m) == BPF_MAP_TYPE_RINGBUF ? (uint32_t)getpagesize() : 1);
	}
	return skel;
}

static void attach_one(struct ::ctct_bpf *skel, const HookSpec &spec, Attach a, ProbeResult &r,
		       std::vector<LinkPtr> &links)
{
	try {
		links.push_back(attach_program(skel, {spec.name, a, r.function, program_for(spec, a)}, spec.is_return));
		r.ok = true;
		r.message = std::string(attach_name(a)) + ": ok";
	} catch (const std::exception &e) {
		r.error = errno ? errno : EINVAL;
		r.message = std::string(attach_name(a)) + ": " + e.what();
	}
}

static ProbeResult probe_one(const HookSpec &spec, Attach a, const Kallsyms &ksyms)
{
	ProbeResult r;
	if (!precheck(spec, a, ksyms, r))
		return r;
	std::string prog = program_for(spec, a);
	try {
		SkelPtr skel = open_probe_skeleton({prog});
		struct bpf_program *p = bpf_object__find_program_by_name(skel->obj, prog.c_str());
		if (a == Attach::Fentry && bpf_program__set_attach_target(p, 0, r.function.c_str())) {
			r.error = errno;
			r.message = std::string("fentry: ") + r.function + ": " + strerror(r.error) + attach_hint(a, r.error);
			return r;
		}
		if (int err = ctct_bpf__load(skel.get())) {
			r.error = -err;
			r.message = std::string(attach_name(a)) + ": loading " + prog + " for " + r.function + " failed: " +
				    strerror(r.error) + attach_hint(a, r.error);
			return r;
		}
		std::vector<LinkPtr> links;
		attach_one(skel.get(), spec, a, r, links);
	} catch (const std::exception &e) {
		r.error = errno ? errno : EINVAL;
		r.message = std::string(attach_name(a)) + ": " + e.what();
	}
	return r;
}

// The hooks `specs` with attach type `a` in one object: one load (one parse of the kernel's BTF, one
// verification pass per program) instead of one per hook. If that load fails, each hook is probed alone,
// so every result and message is the one a probe of that hook alone gives.
static void probe_together(const std::vector<const HookSpec *> &specs, Attach a, const Kallsyms &ksyms,
			   ProbeResults &out)
{
	std::vector<const HookSpec *> ready;
	for (const HookSpec *spec : specs) {
		ProbeResult r;
		if (precheck(*spec, a, ksyms, r))
			ready.push_back(spec);
		out[spec->name][a] = r;
	}
	bool together = ready.size() > 1;
	if (together) {
		try {
			std::vector<std::string> progs;
			for (const HookSpec *spec : ready)
				progs.push_back(program_for(*spec, a));
			SkelPtr skel = open_probe_skeleton(progs);
			std::vector<const HookSpec *> loadable;
			for (const HookSpec *spec : ready) {
				ProbeResult &r = out[spec->name][a];
				struct bpf_program *p = bpf_object__find_program_by_name(skel->obj, program_for(*spec, a).c_str());
				if (a == Attach::Fentry && bpf_program__set_attach_target(p, 0, r.function.c_str())) {
					// no BTF for the function (6.1: nf_ct_resolve_clash): what probe_one says
					r.error = errno;
					r.message = std::string("fentry: ") + r.function + ": " + strerror(r.error) + attach_hint(a, r.error);
					bpf_program__set_autoload(p, false);
				} else {
					loadable.push_back(spec);
				}
			}
			ready = loadable;
			if (ready.empty())
				return;
			if (ctct_bpf__load(skel.get()) == 0) {
				std::vector<LinkPtr> links;
				for (const HookSpec *spec : ready)
					attach_one(skel.get(), *spec, a, out[spec->name][a], links);
				return;
			}
		} catch (const std::exception &) {
		}
	}
	for (const HookSpec *spec : ready)
		out[spec->name][a] = probe_one(*spec, a, ksyms);
}

ProbeResults probe_for(Backend backend, const Kallsyms &ksyms, bool verbose, bool exhaustive,
		       const PlanOptions *plan_options)
{
	ProbeResults out;
	// libbpf prints its own lines for every failed attempt; probing expects failures, so silence it
	// unless asked.
	libbpf_print_fn_t old = libbpf_set_print(nullptr);
	if (verbose)
		libbpf_set_print(old);
	std::vector<const HookSpec *> functions;
	for (const auto &spec : hook_table())
		if (plan_options && hook_unused(spec.name, *plan_options))
			continue;
		else if (!spec.tp_prog.empty())
			out[spec.name][Attach::TpBtf] = probe_one(spec, Attach::TpBtf, ksyms);
		else
			functions.push_back(&spec);
	// Each probe loads and attaches a program (a trampoline costs an RCU-tasks grace period), so
	// tracing tries a hook's next attach type only where the previous failed; `features` tries them all.
	for (Attach a : exhaustive ? std::vector<Attach>{Attach::Fentry, Attach::Kprobe} : allowed_attaches(backend)) {
		std::vector<const HookSpec *> todo;
		for (const HookSpec *spec : functions) {
			auto it = out.find(spec->name);
			bool done = false;
			if (it != out.end())
				for (const auto &kv : it->second)
					done |= kv.second.ok;
			if (exhaustive || !done)
				todo.push_back(spec);
		}
		if (!todo.empty())
			probe_together(todo, a, ksyms, out);
	}
	libbpf_set_print(old);
	return out;
}

SystemFacts gather_facts(const Kallsyms &ksyms)
{
	SystemFacts f;
	struct utsname u;
	if (uname(&u) == 0)
		f.kernel_release = u.release;
	f.vmlinux_btf = access("/sys/kernel/btf/vmlinux", R_OK) == 0;
	for (const char *m : {"nf_conntrack", "nfnetlink_queue", "nf_nat"})
		if (access((std::string("/sys/kernel/btf/") + m).c_str(), R_OK) == 0)
			f.module_btf.push_back(m);
	try {
		std::string l = read_file("/sys/kernel/security/lockdown");
		auto a = l.find('['), b = l.find(']');
		f.lockdown = a != std::string::npos && b > a ? l.substr(a + 1, b - a - 1) : "unknown";
	} catch (const std::exception &) {
		f.lockdown = "unknown (no /sys/kernel/security/lockdown)";
	}
	f.root = geteuid() == 0;
	f.kallsyms_addresses = ksyms.size() && !ksyms.addresses_hidden();
	f.drop_reasons = DropReasons::load().size();
	return f;
}

nlohmann::json features_json(const SystemFacts &f, const ProbeResults &p, const Plan &plan)
{
	nlohmann::json j;
	j["type"] = "features";
	j["schema"] = CTCT_SCHEMA_VERSION;
	j["kernel"] = f.kernel_release;
	j["vmlinux_btf"] = f.vmlinux_btf;
	j["module_btf"] = f.module_btf;
	j["lockdown"] = f.lockdown;
	j["root"] = f.root;
	j["kallsyms_addresses"] = f.kallsyms_addresses;
	j["drop_reason_names"] = f.drop_reasons;
	for (const auto &[hook, by] : p)
		for (const auto &[a, r] : by)
			j["hooks"][hook][attach_name(a)] = {{"ok", r.ok}, {"function", r.function},
							    {"errno", r.error ? nlohmann::json(strerror(r.error)) : nlohmann::json(nullptr)},
							    {"message", r.message}};
	nlohmann::json chosen = nlohmann::json::array();
	for (const auto &h : plan.hooks)
		chosen.push_back({{"hook", h.hook}, {"attach", attach_name(h.attach)}, {"function", h.function}});
	j["auto"] = {{"mode", plan.error.empty() ? (plan.detect_at_free ? "tracepoint" : "function") : "none"},
		     {"hooks", chosen}, {"notes", plan.notes}, {"error", plan.error}};
	return j;
}

std::string features_text(const SystemFacts &f, const ProbeResults &p, const Plan &plan)
{
	std::string s = "kernel " + f.kernel_release + "\n";
	s += std::string("vmlinux BTF: ") + (f.vmlinux_btf ? "yes" : "NO (CO-RE impossible)") + "\n";
	std::string mods;
	for (const auto &m : f.module_btf)
		mods += " " + m;
	s += "module BTF:" + (mods.empty() ? std::string(" none (netfilter built in, or modules not loaded)") : mods) + "\n";
	s += "lockdown: " + f.lockdown + "\n";
	s += std::string("root: ") + (f.root ? "yes" : "no") + "\n";
	s += std::string("kallsyms addresses: ") + (f.kallsyms_addresses ? "visible" : "hidden") + "\n";
	s += "drop reason names from BTF: " + std::to_string(f.drop_reasons) + "\n\nhooks:\n";
	for (const auto &spec : hook_table()) {
		auto it = p.find(spec.name);
		if (it == p.end())
			continue;
		for (const auto &[a, r] : it->second) {
			char line[512];
			snprintf(line, sizeof(line), "  %-15s %-7s %-4s %s\n", spec.name.c_str(), attach_name(a), r.ok ? "ok" : "FAIL",
				 r.ok ? r.function.c_str() : r.message.c_str());
			s += line;
		}
	}
	s += "\nauto backend: ";
	if (!plan.error.empty())
		s += "none: " + plan.error + "\n";
	else
		s += std::string(plan.detect_at_free ? "tracepoint mode" : "function hooks") + "\n";
	for (const auto &h : plan.hooks)
		s += "  " + h.hook + " -> " + attach_name(h.attach) + " " + h.function + "\n";
	for (const auto &n : plan.notes)
		s += "  note: " + n + "\n";
	return s;
}

} // namespace ctct
