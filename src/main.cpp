// ctconfirm-trace: links conntrack confirm drops after NFQUEUE to their flow, netns, queue and time in queue.
#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <iostream>
#include <time.h>
#include <unistd.h>

#include "backend.hpp"
#include "btf_names.hpp"
#include "cli_util.hpp"
#include "format.hpp"
#include "kernel_text.hpp"
#include "output.hpp"
#include "probe.hpp"
#include "selftest.hpp"
#include "summary.hpp"
#include "tracer.hpp"

using namespace ctct;

namespace {

// Exit codes (README "Exit codes").
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

volatile sig_atomic_t g_stop = 0;
bool g_verbose = false;

void on_signal(int) { g_stop = 1; }

int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !g_verbose)
		return 0;
	if (level == LIBBPF_INFO && !g_verbose)
		return 0;
	fprintf(stderr, "libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

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
				"CO-RE programs cannot load, nothing can be traced");
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

struct TraceArgs {
	std::string backend = "auto";
	std::string duration;
	bool json = false;
	uint32_t netns = 0;
	uint32_t ringbuf_kb = 4096;
};

int run_features(bool json)
{
	require_environment();
	Kallsyms ksyms = load_kallsyms();
	ProbeResults probes = probe_for(Backend::Auto, ksyms, g_verbose, true);
	Plan plan = choose_plan(Backend::Auto, probes);
	SystemFacts facts = gather_facts(ksyms);
	if (json)
		std::cout << features_json(facts, probes, plan).dump() << std::endl;
	else
		std::cout << features_text(facts, probes, plan);
	return kExitOk;
}

Backend backend_arg(const std::string &s)
{
	Backend backend;
	if (!parse_backend(s, backend))
		die(kExitUsage, "invalid --backend '" + s + "': use auto, fentry, kprobe or tracepoint");
	return backend;
}

// Probe, then decide; a backend that cannot work here is an environment error (exit 2).
Plan plan_for(Backend backend, const Kallsyms &ksyms)
{
	Plan plan = choose_plan(backend, probe_for(backend, ksyms, g_verbose, false));
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

struct SelftestArgs {
	std::string backend = "auto";
	unsigned pairs = 20;
	unsigned hold_ms = 200;
	bool json = false;
};

int run_selftest_cmd(const SelftestArgs &a)
{
	Backend backend = backend_arg(a.backend);
	if (a.pairs < 1 || a.pairs > 1000)
		die(kExitUsage, "invalid --pairs " + std::to_string(a.pairs) + ": must be 1..1000");
	if (a.hold_ms < 10 || a.hold_ms > 10000)
		die(kExitUsage, "invalid --hold-ms " + std::to_string(a.hold_ms) + ": must be 10..10000");
	require_environment();
	Kallsyms ksyms = load_kallsyms();
	Plan plan = plan_for(backend, ksyms);
	install_stop_handlers();
	SelftestOptions opts;
	opts.pairs = a.pairs;
	opts.hold_ms = a.hold_ms;
	opts.verbose = g_verbose;
	SelftestResult r;
	try {
		r = run_selftest(plan, opts, &g_stop);
	} catch (const std::exception &e) {
		die(kExitRuntime, e.what());
	}
	if (a.json)
		std::cout << r.to_json().dump() << std::endl;
	else
		std::cout << r.verdict_line() << std::endl;
	return r.agree() ? kExitOk : kExitRuntime;
}

int run_trace(const TraceArgs &a)
{
	Backend backend = backend_arg(a.backend);
	uint64_t duration_ns = 0;
	if (!a.duration.empty()) {
		try {
			duration_ns = parse_duration_ns(a.duration);
		} catch (const std::exception &e) {
			die(kExitUsage, e.what());
		}
	}
	// Above 1 GiB the byte count no longer fits the map's u32 max_entries (4 GiB wraps to 0).
	if (a.ringbuf_kb < 4 || a.ringbuf_kb > (1u << 20) || (a.ringbuf_kb & (a.ringbuf_kb - 1)))
		die(kExitUsage, "invalid --ringbuf-kb " + std::to_string(a.ringbuf_kb) + ": must be a power of two, 4..1048576");
	require_environment();

	Kallsyms ksyms = load_kallsyms();
	Plan plan = plan_for(backend, ksyms);

	DropReasons reasons = DropReasons::load();
	FormatContext ctx;
	ctx.realtime_offset_ns = realtime_offset_ns();
	ctx.drop_reason_name = [&](uint32_t v) { return reasons.name(v); };
	ctx.symbolize = [&](uint64_t addr) { return ksyms.symbolize(addr); };

	// Whole lines only, flushed once per poll; a closed stdout (EPIPE) stops the trace with a message.
	LineWriter::ignore_sigpipe();
	LineWriter out(STDOUT_FILENO);
	auto flush_or_die = [&] {
		if (!out.flush())
			die(kExitRuntime, "output closed (" + out.error() + "), stopping");
	};
	Summary summary;
	summary.queue_observable = !plan.detect_at_free;
	std::string line;
	auto on_event = [&](const ctct_event &e) {
		summary.add(e);
		if (a.json) {
			line.clear();
			append_event_json_line(line, e, ctx); // == event_json(e, ctx).dump(..., replace), 15x faster
			out.write_line(line);
		} else
			out.write_line(event_text(e, ctx));
	};

	TracerOptions opts;
	opts.netns = a.netns;
	opts.ringbuf_bytes = a.ringbuf_kb * 1024;
	std::unique_ptr<Tracer> tracer;
	try {
		tracer = std::make_unique<Tracer>(plan, opts, on_event);
	} catch (const std::exception &e) {
		die(kExitRuntime, e.what());
	}

	nlohmann::json start = {{"type", "start"}, {"schema", CTCT_SCHEMA_VERSION}, {"backend", a.backend},
				{"mode", plan.detect_at_free ? "tracepoint" : "function"}, {"notes", plan.notes},
				{"baselines_seeded", tracer->seeded()}};
	for (const auto &h : plan.hooks)
		start["hooks"].push_back({{"hook", h.hook}, {"attach", attach_name(h.attach)}, {"function", h.function}});
	if (a.json) {
		out.write_line(start.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
		flush_or_die();
	} else {
		std::string hooks;
		for (const auto &h : plan.hooks)
			hooks += " " + h.hook + "=" + attach_name(h.attach);
		fprintf(stderr, "tracing (%s mode:%s); Ctrl-C to stop\n", plan.detect_at_free ? "tracepoint" : "function",
			hooks.c_str());
		for (const auto &n : plan.notes)
			fprintf(stderr, "note: %s\n", n.c_str());
	}

	install_stop_handlers();

	const auto names = counter_names();
	std::vector<uint64_t> last(CTCT_CNT_MAX, 0);
	// Losses are printed as soon as they change, and again in the summary.
	auto report_losses = [&](bool final) {
		auto now = tracer->counters();
		bool changed = false;
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (counter_is_loss(i) && now[i] != last[i])
				changed = true;
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (i != CTCT_CNT_EVENTS)
				summary.losses[names[i]] = now[i];
		if (changed && !final) {
			nlohmann::json j = {{"type", "loss"}, {"schema", CTCT_SCHEMA_VERSION}, {"counters", summary.losses}};
			if (a.json) {
				out.write_line(j.dump());
				flush_or_die();
			} else
				fprintf(stderr, "warning: events lost: %s\n", j["counters"].dump().c_str());
		}
		last = now;
	};

	uint64_t start_ns = monotonic_ns(), last_tick = start_ns;
	while (!g_stop) {
		int n = tracer->poll(100);
		if (n < 0 && n != -EINTR)
			die(kExitRuntime, std::string("ring buffer poll failed: ") + strerror(-n));
		uint64_t now = monotonic_ns();
		if (now - last_tick >= 1000000000ULL) {
			tracer->sweep_pending(now, 1000000000ULL);
			report_losses(false);
			last_tick = now;
		}
		flush_or_die();
		if (duration_ns && now - start_ns >= duration_ns)
			break;
	}
	// Drain what is already in the ring, then finish drops still waiting for their free.
	tracer->poll(0);
	tracer->sweep_pending(monotonic_ns(), 0);
	report_losses(false);
	report_losses(true);
	out.write_line(a.json ? summary.to_json().dump() : summary.to_text());
	flush_or_die();
	return kExitOk;
}

} // namespace

int main(int argc, char **argv)
{
	libbpf_set_print(libbpf_log);
	CLI::App app{"ctconfirm-trace: find packets that conntrack's confirm step drops after NFQUEUE, with their flow "
		     "(original and reply tuple), netns, queue and time spent in the queue."};
	app.set_version_flag("--version", "ctconfirm-trace 0.1.0 (JSON schema " + std::to_string(CTCT_SCHEMA_VERSION) + ")");
	TraceArgs ta;
	// CLI11 reads an empty value as 0 for numbers: "--netns ''" would silently mean every namespace.
	const CLI::Validator non_empty([](std::string &s) { return s.empty() ? std::string("empty value") : std::string(); },
				       "", "non-empty");
	auto duration_ok = [](const std::string &s) {
		try {
			parse_duration_ns(s);
			return std::string();
		} catch (const std::exception &e) {
			return std::string(e.what());
		}
	};
	app.add_flag("-v,--verbose", g_verbose, "Print libbpf debug lines and the attach plan");
	auto *out = app.add_option_group("Output");
	out->add_flag("--json", ta.json, "JSON lines (docs/json-schema.md) instead of text");
	auto *tr = app.add_option_group("Tracing");
	tr->add_option("--backend", ta.backend, "auto|fentry|kprobe|tracepoint (default auto: best per hook)");
	tr->add_option("-d,--duration", ta.duration, "Stop after this long, e.g. 30s, 5m (default: until Ctrl-C)")
		->check(duration_ok);
	tr->add_option("--ringbuf-kb", ta.ringbuf_kb, "Ring buffer size in KiB, a power of two (default 4096)")
		->check(non_empty);
	auto *flt = app.add_option_group("Filters (in the kernel)");
	flt->add_option("--netns", ta.netns, "Only this network namespace inode (ls -L -i /proc/PID/ns/net)")
		->check(non_empty);

	bool features_json_flag = false;
	auto *features = app.add_subcommand("features", "Report which hooks and backends work on this kernel, and why not");
	features->add_flag("--json", features_json_flag, "One JSON object");

	SelftestArgs sa;
	auto *selftest = app.add_subcommand(
		"selftest", "Build a collision scenario in private network namespaces, send a burst, and check that "
			    "the tracer saw every packet the kernel dropped");
	selftest->add_option("--backend", sa.backend, "auto|fentry|kprobe|tracepoint (default auto)");
	selftest->add_option("--pairs", sa.pairs, "Colliding flow pairs to send, 1..1000 (default 20)")
		->check(non_empty);
	selftest->add_option("--hold-ms", sa.hold_ms, "How long the test listener holds each packet (default 200)")
		->check(non_empty);
	selftest->add_flag("--json", sa.json, "One JSON object");

	app.footer("EXIT CODES\n  0 ok (selftest: tracer and kernel agree), 1 runtime failure (selftest: they disagree),\n"
		   "  2 usage or environment error (bad flag, not root, no BTF, nothing attachable)\n\n"
		   "EXAMPLES\n"
		   "  ctconfirm-trace                      trace until Ctrl-C, human-readable\n"
		   "  ctconfirm-trace --json -d 60s        one minute of JSON lines for a log pipeline\n"
		   "  ctconfirm-trace --backend kprobe     force kprobes (e.g. where fentry is refused)\n"
		   "  ctconfirm-trace --netns 4026532281   only one network namespace\n"
		   "  ctconfirm-trace features             what this kernel allows, hook by hook\n"
		   "  ctconfirm-trace selftest             prove it on this kernel: lose packets on purpose, compare");
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		if (e.get_exit_code() == 0)
			return app.exit(e);
		fprintf(stderr, "ctconfirm-trace: %s (see --help)\n", escape_control(e.what()).c_str());
		return kExitUsage;
	}
	if (*features)
		return run_features(features_json_flag);
	if (*selftest)
		return run_selftest_cmd(sa);
	return run_trace(ta);
}
