#include "app.hpp"

#include <cstdio>
#include <time.h>
#include <unistd.h>

#include "cli_util.hpp"
#include "probe.hpp"

namespace ctct {

volatile sig_atomic_t g_stop = 0;
bool g_verbose = false;

namespace {
void on_signal(int) { g_stop = 1; }
} // namespace

[[noreturn]] void die(int code, const std::string &msg)
{
	// Messages quote user values: escape control bytes so the error is always exactly one line.
	fprintf(stderr, "ctconfirm-trace: %s\n", escape_control(msg).c_str());
	exit(code);
}

void require_environment()
{
	if (geteuid() != 0)
		die(kExitUsage, "must run as root (needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)");
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
		die(kExitUsage, "this kernel has no BTF (/sys/kernel/btf/vmlinux missing; CONFIG_DEBUG_INFO_BTF=y needed): "
				"CO-RE programs cannot load, nothing can be traced (doctor still works: it needs no BPF)");
}

Kallsyms load_kallsyms()
{
	try {
		return Kallsyms::parse(read_file("/proc/kallsyms"));
	} catch (const std::exception &e) {
		die(kExitUsage, e.what());
	}
}

int64_t realtime_offset_ns()
{
	struct timespec rt, mono;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return ((int64_t)rt.tv_sec - mono.tv_sec) * 1000000000LL + (rt.tv_nsec - mono.tv_nsec);
}

Backend backend_arg(const std::string &s)
{
	Backend backend;
	if (!parse_backend(s, backend))
		die(kExitUsage, "invalid --backend '" + s + "': use auto, fentry, kprobe or tracepoint");
	return backend;
}

// Probe, then decide; a backend that cannot work here is an environment error (exit 2).
Plan plan_for(Backend backend, const Kallsyms &ksyms, bool exact_queue_errors, bool queue_hooks,
	      bool verdict_hook)
{
	PlanOptions options;
	options.exact_queue_errors = exact_queue_errors;
	options.queue_hooks = queue_hooks;
	options.verdict_hook = verdict_hook;
	options.queue_text_known = ksyms.range_of("nf_queue").has_value();
	options.reinject_text_known =
		ksyms.range_of("nfqnl_reinject").has_value() || ksyms.range_of("nf_reinject").has_value();
	Plan plan = choose_plan(backend, probe_for(backend, ksyms, g_verbose, false, &options), options);
	if (!plan.error.empty())
		die(kExitUsage, plan.error);
	return plan;
}

void install_stop_handlers()
{
	struct sigaction sa = {};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
}

} // namespace ctct
