// ctconfirm-trace: links conntrack confirm drops after NFQUEUE to their flow, netns, queue and time in queue.
#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <cstdarg>
#include <cstdio>
#include <iostream>

#include "app.hpp"
#include "cli_util.hpp"
#include "doctor.hpp"
#include "probe.hpp"
#include "selftest.hpp"
#include "session.hpp"

using namespace ctct;

namespace {

int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !g_verbose)
		return 0;
	if (level == LIBBPF_INFO && !g_verbose)
		return 0;
	fprintf(stderr, "libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

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
	install_stop_handlers();
	Kallsyms ksyms = load_kallsyms();
	Plan plan = plan_for(backend, ksyms);
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
	out->add_flag("--no-netns-names", ta.no_netns_names,
		      "Do not name netns in events, stats and flows records (netns_info: its /run/netns name, processes, "
		      "container, pod); "
		      "naming scans /proc when a new netns inode is seen, at most every 200 ms");
	out->add_option("--group", ta.group, "flow: instead of one line per event, a table per flow (drops, resolved "
					     "clashes, time in queue p50/p99/max), refreshed every --stats-interval")->check(non_empty);
	out->add_flag("-q,--quiet", ta.quiet,
		      "No event lines, stats records or flow tables: events are only counted (metrics, the summary at "
		      "exit); the start line and loss warnings stay");
	auto *met = app.add_option_group("Metrics (docs/metrics.md)");
	met->add_option("--metrics-listen", ta.metrics_listen,
			"Serve Prometheus metrics at http://ADDR:PORT/metrics, a numeric address (127.0.0.1:9477, :9477 for "
			"every IPv4 address; [::1]:9477 only where civetweb has IPv6, which Debian 12's has not)")->check(non_empty);
	met->add_option("--metrics-textfile", ta.metrics_textfile,
			"Write the metrics to this file for node_exporter's textfile collector (a .prom file in its "
			"directory), replaced atomically every --metrics-textfile-interval and at exit")->check(non_empty);
	met->add_option("--metrics-textfile-interval", ta.metrics_textfile_interval,
			"How often the textfile is rewritten (default 15s)")->check(duration_ok);
	met->add_flag("--metrics-netns-label", ta.metrics_netns_label,
		      "A netns label (the inode) on event metrics; at most 1024 values, later namespaces count as "
		      "netns=\"other\" (default: summed over namespaces)");
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
	verify->add_flag("--no-netns-names", va.no_netns_names, "Do not name netns (netns_info of --json events and of the verify record)");
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
		   "  ctconfirm-trace | grep owner=pod:default/   drops in the pods of namespace default\n"
		   "  ctconfirm-trace --json | jq 'select(.netns_info.container.id != null)'   drops in containers\n"
		   "  ctconfirm-trace --no-queue-hooks     a busy queue: nothing per queued packet, no time in queue\n"
		   "  ctconfirm-trace --addr 10.0.0.0/8 --port 53 --proto udp   only DNS flows of 10/8\n"
		   "  ctconfirm-trace --quiet --metrics-listen 127.0.0.1:9477   a daemon for Prometheus, no event lines\n"
		   "  ctconfirm-trace -q --metrics-textfile /var/lib/prometheus/node-exporter/ctconfirm_trace.prom\n"
		   "                                       the same through node_exporter's textfile collector\n"
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
