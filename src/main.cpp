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
#include "doctor.hpp"
#include "format.hpp"
#include "kernel_text.hpp"
#include "accounting.hpp"
#include "netns.hpp"
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
constexpr int kExitIncomplete = 3; // verify: the tracer could not see everything

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

struct TraceArgs {
	std::string backend = "auto";
	std::string duration;
	bool json = false;
	uint32_t netns = 0;
	uint32_t ringbuf_kb = 16384; // 16 MiB: ~50k events of 328 bytes, 0.5 s of a 100k/s flood
	std::string proto, addr, port, queue;
	std::string stats_interval = "10s";
	std::string group;
	bool exact_queue_errors = false;
	bool no_queue_hooks = false;
	bool verdict_hook = false;
	// verify
	std::string max_drops = "0";
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
Plan plan_for(Backend backend, const Kallsyms &ksyms, bool exact_queue_errors = false, bool queue_hooks = true,
	      bool verdict_hook = false)
{
	PlanOptions options;
	options.exact_queue_errors = exact_queue_errors;
	options.queue_hooks = queue_hooks;
	options.verdict_hook = verdict_hook;
	options.queue_text_known = ksyms.range_of("nf_queue").has_value();
	options.reinject_text_known =
		ksyms.range_of("nfqnl_reinject").has_value() || ksyms.range_of("nf_reinject").has_value();
	Plan plan = choose_plan(backend, probe_for(backend, ksyms, g_verbose, false), options);
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

FlowFilter filter_args(const TraceArgs &a)
{
	FlowFilter f;
	try {
		if (!a.proto.empty())
			f.proto = parse_proto(a.proto);
		if (!a.addr.empty())
			parse_addr_prefix(a.addr, f);
		if (!a.port.empty())
			f.port = parse_port(a.port);
		if (!a.queue.empty()) {
			f.queue = parse_uint("--queue", a.queue, 65535);
			f.has_queue = true;
		}
	} catch (const std::exception &e) {
		die(kExitUsage, e.what());
	}
	return f;
}

// One tracing run: tracer, kernel counters, the joins on top. Used by the default command and verify.
class Session {
public:
	Session(const TraceArgs &a, bool verify_mode) : a_(a), verify_(verify_mode) {}
	int run();

private:
	const TraceArgs &a_;
	bool verify_;
	Plan plan_;
	Kallsyms ksyms_;
	DropReasons reasons_;
	FormatContext ctx_;
	Summary summary_;
	FlowTable flows_;
	QueueDropClassifier classifier_;
	std::map<uint32_t, std::string> netns_paths_;
	EventTally tally_;
	CountersByNetns counters_start_, counters_prev_;
	std::unique_ptr<Tracer> tracer_;
	std::map<uint64_t, std::vector<SocketOwner>> owners_; // socket inode -> processes, scanned once per socket

	void on_event(ctct_event e);
	nlohmann::json listener_json(const NetnsCounters &c, const QueueStat &q);
	std::map<uint32_t, std::string> watched_netns();
	void classify_queue_drop(ctct_event &e);
	nlohmann::json stats_record(const CountersByNetns &now, double interval_s);
	// Whole lines only, flushed once per poll; a closed stdout (EPIPE) stops the run with a message.
	LineWriter out_{STDOUT_FILENO};
	void emit(const nlohmann::json &j) { out_.write_line(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)); }
	void emit_text(const std::string &text) // a block of text lines (tables): one write_line per line
	{
		size_t from = 0;
		while (from < text.size()) {
			size_t nl = text.find('\n', from);
			if (nl == std::string::npos)
				nl = text.size();
			out_.write_line(std::string_view(text).substr(from, nl - from));
			from = nl + 1;
		}
	}
	void flush_or_die()
	{
		if (!out_.flush())
			die(kExitRuntime, "output closed (" + out_.error() + "), stopping");
	}
	// A write(2) of our output that blocked this long also kept the ring buffer from being drained.
	double longest_write_ms() const { return (double)(out_.longest_write_ns() / 1000) / 1000.0; }
	nlohmann::json summary_json() const
	{
		nlohmann::json j = summary_.to_json();
		j["losses_per_cpu"]["ringbuf_full"] = tracer_->counter_per_cpu(CTCT_CNT_RINGBUF_FULL);
		j["longest_write_ms"] = longest_write_ms();
		return j;
	}
};

std::map<uint32_t, std::string> Session::watched_netns()
{
	netns_paths_ = list_netns();
	if (!a_.netns)
		return netns_paths_;
	auto it = netns_paths_.find(a_.netns);
	if (it == netns_paths_.end())
		return {};
	return {{it->first, it->second}};
}

void Session::classify_queue_drop(ctct_event &e)
{
	if (!classifier_.has_credit(e.netns_ino)) {
		if (!netns_paths_.count(e.netns_ino))
			netns_paths_ = list_netns();
		auto it = netns_paths_.find(e.netns_ino);
		if (it != netns_paths_.end())
			classifier_.observe(e.netns_ino, read_counters(it->second).queues);
	}
	// with the return hook, -ESRCH was told apart in the kernel; seen at the free, nothing counted it
	bool hooked = e.source == CTCT_SRC_QUEUE_HOOK;
	auto r = classifier_.classify(e.netns_ino, hooked ? CTCT_CAUSE_UNCONFIRMED_SHARED : CTCT_CAUSE_NO_LISTENER);
	e.cause = r.cause;
	// the enqueue hook's record named the queue (function mode); tracepoint mode takes the counters'
	if (r.queue && !(e.flags & CTCT_F_LOSER_QUEUED)) {
		e.loser_queue.queue_num = *r.queue;
		e.flags |= CTCT_F_LOSER_QUEUED;
	}
}

void Session::on_event(ctct_event e)
{
	// the kernel path does not say which limit refused the packet; the queue's counters do
	if (e.type == CTCT_EV_QUEUE_DROP && e.cause == CTCT_CAUSE_UNKNOWN)
		classify_queue_drop(e);
	summary_.add(e);
	tally_.add(e);
	if (a_.group == "flow") {
		flows_.add(e);
		return;
	}
	if (verify_ && !a_.json)
		return;
	if (a_.json) {
		// == event_json(e, ctx_).dump(..., replace), ~60x faster, written straight into the output buffer
		out_.write_line_from([&](std::string &buf) { append_event_json_line(buf, e, ctx_); });
	} else
		out_.write_line(event_text(e, ctx_));
}

// The process behind a queue: portid -> netlink socket -> /proc/*/fd. The fd scan is done once per socket.
nlohmann::json Session::listener_json(const NetnsCounters &c, const QueueStat &q)
{
	auto sock = find_netlink_socket(c.netlink, kNetlinkNetfilter, q.portid);
	if (!sock)
		return nullptr;
	if (!owners_.count(sock->inode)) {
		auto found = scan_socket_owners({sock->inode});
		owners_[sock->inode] = found[sock->inode];
	}
	nlohmann::json procs = nlohmann::json::array();
	for (const auto &o : owners_[sock->inode])
		procs.push_back({{"pid", o.pid}, {"comm", o.comm}});
	return {{"socket_inode", sock->inode}, {"rmem_bytes", sock->rmem_bytes}, {"socket_drops", sock->drops},
		{"processes", procs}};
}

nlohmann::json Session::stats_record(const CountersByNetns &now, double interval_s)
{
	nlohmann::json j = {{"type", "stats"}, {"schema", CTCT_SCHEMA_VERSION}, {"time", iso8601_ns(monotonic_ns() + ctx_.realtime_offset_ns)},
			    {"interval_s", interval_s}, {"events", tally_.interval()}};
	nlohmann::json total;
	for (const char *t : {"confirm_drop", "clash_resolved", "verdict_drop", "queue_drop", "queue_bypass"})
		total[t] = summary_.count(t);
	j["events_total"] = total;
	j["losses"] = summary_.losses;
	nlohmann::json per = nlohmann::json::array();
	for (const auto &[ns, c] : now) {
		auto p = counters_prev_.find(ns);
		if (p != counters_prev_.end() && !same_netns(p->second, c))
			p = counters_prev_.end(); // the inode names a new netns now: its counters started at 0
		nlohmann::json n = {{"netns", ns}};
		bool interesting = false;
		if (c.has_conntrack) {
			nlohmann::json d;
			for (const char *col : {"insert_failed", "drop", "clashres", "early_drop", "invalid"}) {
				auto it = c.conntrack.find(col);
				if (it == c.conntrack.end())
					continue;
				uint64_t before = 0;
				if (p != counters_prev_.end()) {
					auto b = p->second.conntrack.find(col);
					before = b == p->second.conntrack.end() ? 0 : b->second;
				}
				uint64_t delta = it->second >= before ? it->second - before : 0;
				d[col == std::string("clashres") ? "clash_resolve" : col] = delta;
				interesting |= delta != 0;
			}
			n["conntrack_delta"] = d;
		}
		nlohmann::json qs = nlohmann::json::array();
		for (const auto &q : c.queues) {
			const QueueStat *b = nullptr;
			if (p != counters_prev_.end())
				for (const auto &x : p->second.queues)
					if (x.queue_num == q.queue_num && x.portid == q.portid)
						b = &x;
			qs.push_back({{"queue", q.queue_num}, {"portid", q.portid}, {"queue_total", q.queue_total},
				      {"copy_mode", q.copy_mode}, {"copy_range", q.copy_range},
				      {"queue_dropped_delta", q.queue_dropped - (b ? b->queue_dropped : 0)},
				      {"user_dropped_delta", q.user_dropped - (b ? b->user_dropped : 0)},
				      {"id_sequence_delta", q.id_sequence - (b ? b->id_sequence : 0)},
				      {"listener", listener_json(c, q)}});
			interesting = true;
		}
		n["queues"] = qs;
		if (interesting || tally_.saw(ns))
			per.push_back(n);
	}
	j["netns"] = per;
	return j;
}

int Session::run()
{
	Backend backend = backend_arg(a_.backend);
	uint64_t duration_ns = 0, stats_ns = 0;
	try {
		if (!a_.duration.empty())
			duration_ns = parse_duration_ns(a_.duration);
		if (a_.stats_interval != "0")
			stats_ns = parse_duration_ns(a_.stats_interval);
	} catch (const std::exception &e) {
		die(kExitUsage, e.what());
	}
	if (verify_ && !duration_ns)
		die(kExitUsage, "verify needs --duration, e.g. --duration 60s");
	uint64_t max_drops = 0;
	try {
		max_drops = parse_uint("--max-drops", a_.max_drops, 0xffffffffu);
	} catch (const std::exception &e) {
		die(kExitUsage, e.what());
	}
	if (!a_.group.empty() && a_.group != "flow")
		die(kExitUsage, "invalid --group '" + a_.group + "': the only grouping is 'flow'");
	// Above 1 GiB the byte count no longer fits the map's u32 max_entries (4 GiB wraps to 0).
	if (a_.ringbuf_kb < 4 || a_.ringbuf_kb > (1u << 20) || (a_.ringbuf_kb & (a_.ringbuf_kb - 1)))
		die(kExitUsage, "invalid --ringbuf-kb " + std::to_string(a_.ringbuf_kb) + ": must be a power of two, 4..1048576");
	FlowFilter filter = filter_args(a_);
	require_environment();

	LineWriter::ignore_sigpipe(); // a closed stdout is EPIPE from write(2), reported, not a silent SIGPIPE death
	ksyms_ = load_kallsyms();
	if (a_.exact_queue_errors && a_.no_queue_hooks)
		die(kExitUsage, "--exact-queue-errors and --no-queue-hooks exclude each other: the first adds a queue hook, "
				"the second removes them all");
	if (a_.verdict_hook && a_.no_queue_hooks)
		die(kExitUsage, "--verdict-hook and --no-queue-hooks exclude each other: the first adds a queue hook, "
				"the second removes them all");
	plan_ = plan_for(backend, ksyms_, a_.exact_queue_errors, !a_.no_queue_hooks, a_.verdict_hook);
	if (filter.has_queue && (plan_.detect_at_free || a_.no_queue_hooks))
		die(kExitUsage, std::string("--queue needs the queue hooks (fentry or kprobe, without --no-queue-hooks); in ") +
				(a_.no_queue_hooks ? "--no-queue-hooks" : "tracepoint") +
				" mode the queue of a drop is not known in the kernel. Filter with --netns/--proto/--addr/--port instead");

	reasons_ = DropReasons::load();
	ctx_.realtime_offset_ns = realtime_offset_ns();
	ctx_.drop_reason_name = [&](uint32_t v) { return reasons_.name(v); };
	ctx_.symbolize = [&](uint64_t addr) { return ksyms_.symbolize(addr); };
	ctx_.stable_names = true; // both are read once above: the JSON line may keep their answers
	summary_.queue_observable = plan_.queue_records;

	TracerOptions opts;
	opts.netns = a_.netns;
	opts.ringbuf_bytes = a_.ringbuf_kb * 1024;
	opts.filter = filter;
	set_text_ranges(opts, ksyms_);
	// The kernel's counters at the start: the baseline of stats, verify and queue-drop classes.
	auto watched = watched_netns();
	if (a_.netns && watched.empty())
		fprintf(stderr, "note: netns %u has no process or /run/netns name to enter: its kernel counters cannot "
				"be read (events are still traced; stats and verify cannot compare)\n", a_.netns);
	counters_start_ = snapshot_counters(watched);
	counters_prev_ = counters_start_;
	for (const auto &[ns, c] : counters_start_)
		classifier_.observe(ns, c.queues);
	try {
		tracer_ = std::make_unique<Tracer>(plan_, opts, [&](const ctct_event &e) { on_event(e); });
	} catch (const std::exception &e) {
		die(kExitRuntime, e.what());
	}

	nlohmann::json start = {{"type", "start"}, {"schema", CTCT_SCHEMA_VERSION}, {"backend", a_.backend},
				{"mode", plan_.detect_at_free ? "tracepoint" : "function"}, {"notes", plan_.notes},
				{"baselines_seeded", tracer_->seeded()}, {"command", verify_ ? "verify" : "trace"}};
	for (const auto &h : plan_.hooks)
		start["hooks"].push_back({{"hook", h.hook}, {"attach", attach_name(h.attach)}, {"function", h.function}});
	start["queue_text_known"] = opts.queue_text.lo != 0;
	if (a_.json) {
		emit(start);
		flush_or_die();
	} else {
		std::string hooks;
		for (const auto &h : plan_.hooks)
			hooks += " " + h.hook + "=" + attach_name(h.attach);
		fprintf(stderr, "%s (%s mode:%s); Ctrl-C to stop\n", verify_ ? "verifying" : "tracing",
			plan_.detect_at_free ? "tracepoint" : "function", hooks.c_str());
		for (const auto &n : plan_.notes)
			fprintf(stderr, "note: %s\n", n.c_str());
	}

#ifdef CTCT_BENCH_FLOOR
	// whatever the output format: a floor build must never pass for a tracer
	fprintf(stderr, "warning: benchmark floor build (CTCT_BENCH_FLOOR): the queue and confirm programs return "
			"at once, nothing is detected\n");
#endif
	install_stop_handlers();

	const auto names = counter_names();
	std::vector<uint64_t> last(CTCT_CNT_MAX, 0);
	// Losses are printed as soon as they change, and again in the summary.
	auto report_losses = [&](bool final) {
		auto now = tracer_->counters();
		bool changed = false;
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (counter_is_loss(i) && now[i] != last[i])
				changed = true;
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (i != CTCT_CNT_EVENTS)
				summary_.losses[names[i]] = now[i];
		if (changed && !final) {
			nlohmann::json j = {{"type", "loss"}, {"schema", CTCT_SCHEMA_VERSION}, {"counters", summary_.losses},
					    {"ringbuf_full_per_cpu", tracer_->counter_per_cpu(CTCT_CNT_RINGBUF_FULL)},
					    {"longest_write_ms", longest_write_ms()}};
			if (a_.json) {
				emit(j);
				flush_or_die();
			} else
				fprintf(stderr, "warning: events lost: %s (longest output write so far: %.3f ms)\n",
					j["counters"].dump().c_str(), longest_write_ms());
		}
		last = now;
	};

	uint64_t start_ns = monotonic_ns(), last_tick = start_ns, last_stats = start_ns;
	while (!g_stop) {
		int n = tracer_->poll(100);
		if (n < 0 && n != -EINTR)
			die(kExitRuntime, std::string("ring buffer poll failed: ") + strerror(-n));
		uint64_t now = monotonic_ns();
		if (now - last_tick >= 1000000000ULL) {
			tracer_->sweep_pending(now, 1000000000ULL);
			report_losses(false);
			last_tick = now;
		}
		if (stats_ns && now - last_stats >= stats_ns && !verify_) {
			auto counters = snapshot_counters(watched_netns());
			if (a_.json) {
				emit(stats_record(counters, (now - last_stats) / 1e9));
			} else if (a_.group == "flow") {
				emit_text("\n" + flows_.to_text(40));
			} else {
				nlohmann::json st = stats_record(counters, (now - last_stats) / 1e9);
				out_.write_line("stats: events " + st["events"].dump() + " kernel " + st["netns"].dump());
			}
			counters_prev_ = counters;
			tally_.new_interval();
			last_stats = now;
		}
		flush_or_die();
		if (duration_ns && now - start_ns >= duration_ns)
			break;
	}
	// Drain what is already in the ring, then finish drops still waiting for their free.
	tracer_->poll(0);
	tracer_->sweep_pending(monotonic_ns(), 0);
	report_losses(false);
	report_losses(true);
	double elapsed_s = (monotonic_ns() - start_ns) / 1e9;
	if (a_.group == "flow") {
		if (a_.json)
			emit({{"type", "flows"}, {"schema", CTCT_SCHEMA_VERSION}, {"flows", flows_.to_json()}});
		else
			emit_text("\n" + flows_.to_text(200));
	}
	if (verify_) {
		auto end = snapshot_counters(watched_netns());
		KernelWindow w;
		for (const auto &[ns, c] : counters_start_) {
			auto e = end.find(ns);
			if (e != end.end() && !same_netns(c, e->second))
				continue; // gone, its inode given to a new netns: that one was created in the window
			if (c.has_conntrack)
				w.conntrack_before[ns] = c.conntrack;
			w.queues_before[ns] = c.queues;
		}
		for (const auto &[ns, c] : end) {
			if (c.has_conntrack)
				w.conntrack_after[ns] = c.conntrack;
			w.queues_after[ns] = c.queues;
		}
		std::map<std::string, uint64_t> losses;
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (counter_is_loss(i))
				losses[names[i]] = last[i];
		VerifyOutcome v = evaluate_verify(w, tally_.seen(), losses, max_drops, elapsed_s);
		if (a_.json)
			emit(summary_json());
		out_.write_line(v.verdict);
		out_.write_line(v.summary.dump());
		flush_or_die();
		// interrupted before the window ended: what was seen stands, but the window is not the one asked for
		if (elapsed_s * 1e9 < duration_ns && v.exit_code == 0)
			return kExitIncomplete;
		return v.exit_code;
	}
	if (a_.json) {
		emit(summary_json());
	} else {
		char w[64];
		snprintf(w, sizeof(w), "; longest output write %.3f ms", longest_write_ms());
		emit_text(summary_.to_text() + w);
	}
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
	tr->add_option("--ringbuf-kb", ta.ringbuf_kb, "Ring buffer size in KiB, a power of two (default 16384)")
		->check(non_empty);
	tr->add_flag("--no-queue-hooks", ta.no_queue_hooks,
		     "fentry/kprobe: leave the per-packet queue path unhooked (queued packets then cost nothing); "
		     "queue and verdict drops are found where they are freed, and no drop has a queue number or "
		     "time in queue");
	tr->add_flag("--verdict-hook", ta.verdict_hook,
		     "fentry/kprobe: also hook the reinject function (the listener's verdict), a second program on "
		     "every queued packet: packet ids, verdicts, a verdict drop told from a later hook's drop and "
		     "named with its queue for established flows too (default: only new flows' packets are "
		     "recorded, at enqueue)");
	tr->add_flag("--exact-queue-errors", ta.exact_queue_errors,
		     "fentry/kprobe: also hook nfqnl_enqueue_packet's return, for each queue drop's errno and for "
		     "--queue-bypass events; costs every queued packet a return hook (default: queue drops are found "
		     "where nf_queue() frees them and classed by the queue's counters)");
	out->add_option("--stats-interval", ta.stats_interval,
			"Every this long, a stats record: events by type, losses, kernel counter deltas per netns "
			"(default 10s; 0: off)")
		->check([&](const std::string &v) { return v == "0" ? std::string() : duration_ok(v); });
	out->add_option("--group", ta.group, "flow: instead of one line per event, a table per flow (drops, resolved "
					     "clashes, time in queue p50/p99/max), refreshed every --stats-interval")->check(non_empty);
	auto *flt = app.add_option_group("Filters (in the kernel)");
	flt->add_option("--netns", ta.netns, "Only this network namespace inode (ls -L -i /proc/PID/ns/net)")
		->check(non_empty);
	flt->add_option("--proto", ta.proto, "Only this protocol: tcp, udp, icmp, icmpv6, sctp, ... or a number")->check(non_empty);
	flt->add_option("--addr", ta.addr, "Only flows with this address or prefix at either end, before or after NAT "
					   "(10.0.0.0/8, fd00::/64)")->check(non_empty);
	flt->add_option("--port", ta.port, "Only flows with this port at either end, before or after NAT")->check(non_empty);
	flt->add_option("--queue", ta.queue, "Only packets of this NFQUEUE number (needs fentry or kprobe; an established flow's verdict_drop has a queue only with --verdict-hook)")->check(non_empty);

	bool features_json_flag = false;
	auto *features = app.add_subcommand("features", "Report which hooks and backends work on this kernel, and why not");
	features->add_flag("--json", features_json_flag, "One JSON object");

	bool doctor_json_flag = false;
	auto *doctor = app.add_subcommand("doctor", "Read-only check of this network namespace: NFQUEUE rules, listeners, "
						    "kernel mitigations and the risk of confirm drops (no BPF needed)");
	doctor->add_flag("--json", doctor_json_flag, "One JSON object");

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

	TraceArgs va;
	auto *verify = app.add_subcommand(
		"verify", "Watch for --duration, then one verdict line and a JSON summary comparing what the tracer saw "
			  "with the kernel's own counters over the same window, per netns");
	verify->add_option("-d,--duration", va.duration, "How long to watch, e.g. 60s (required)")
		->required()
		->check(duration_ok);
	verify->add_option("--max-drops", va.max_drops, "Unintended drops allowed (confirm and queue drops; default 0)")->check(non_empty);
	verify->add_option("--backend", va.backend, "auto|fentry|kprobe|tracepoint (default auto)");
	verify->add_option("--ringbuf-kb", va.ringbuf_kb, "Ring buffer size in KiB (default 16384)")->check(non_empty);
	verify->add_flag("--exact-queue-errors", va.exact_queue_errors, "Also hook nfqnl_enqueue_packet's return");
	verify->add_flag("--no-queue-hooks", va.no_queue_hooks, "Leave the per-packet queue path unhooked");
	verify->add_flag("--verdict-hook", va.verdict_hook, "Also hook the reinject function (listener verdicts)");
	verify->add_option("--netns", va.netns, "Only this network namespace inode")->check(non_empty);
	verify->add_option("--proto", va.proto, "Only this protocol")->check(non_empty);
	verify->add_option("--addr", va.addr, "Only flows with this address or prefix")->check(non_empty);
	verify->add_option("--port", va.port, "Only flows with this port")->check(non_empty);
	verify->add_option("--queue", va.queue, "Only this NFQUEUE number")->check(non_empty);
	verify->add_flag("--json", va.json, "Also print every event as a JSON line before the verdict");

	app.footer("EXIT CODES\n  0 ok (selftest: tracer and kernel agree; verify: drops within --max-drops and every drop the\n"
		   "    kernel counted was seen)\n"
		   "  1 runtime failure (selftest: they disagree; verify: more drops than --max-drops)\n"
		   "  2 usage or environment error (bad flag, not root, no BTF, nothing attachable)\n"
		   "  3 verify: the tracer could not see everything (lost events, a drop counted by the kernel but not\n"
		   "    seen, or interrupted before --duration)\n\n"
		   "EXAMPLES\n"
		   "  ctconfirm-trace                      trace until Ctrl-C, human-readable\n"
		   "  ctconfirm-trace --json -d 60s        one minute of JSON lines for a log pipeline\n"
		   "  ctconfirm-trace --backend kprobe     force kprobes (e.g. where fentry is refused)\n"
		   "  ctconfirm-trace --netns 4026532281   only one network namespace\n"
		   "  ctconfirm-trace --group flow         a table per flow instead of one line per event\n"
		   "  ctconfirm-trace --no-queue-hooks     a busy queue: nothing per queued packet, no time in queue\n"
		   "  ctconfirm-trace --addr 10.0.0.0/8 --port 53 --proto udp   only DNS flows of 10/8\n"
		   "  ctconfirm-trace verify -d 60s        after a fix: exit 0 only if no drop in a minute\n"
		   "  ctconfirm-trace features             what this kernel allows, hook by hook\n"
		   "  ctconfirm-trace selftest             prove it on this kernel: lose packets on purpose, compare\n"
		   "  ctconfirm-trace doctor               is this host at risk? rules, listeners, kernel, fixes");
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
	if (*doctor)
		return run_doctor(doctor_json_flag);
	if (*verify) {
		va.stats_interval = "0";
		return Session(va, true).run();
	}
	return Session(ta, false).run();
}
