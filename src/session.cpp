#include "session.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cli_util.hpp"

namespace ctct {

namespace {

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

} // namespace

// What a netns is known as when a record (stats, verify) is written; null with --no-netns-names.
nlohmann::json Session::netns_info_now(uint32_t ino)
{
	if (a_.no_netns_names)
		return nullptr;
	namer_.observe(ino, monotonic_ns());
	return namer_.get(ino).json;
}

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
	if (metrics_)
		metrics_->add(e);
	if (a_.quiet)
		return;
	// every event that is written or grouped is named; verify's text mode writes none
	bool named = a_.group == "flow" || !verify_ || a_.json;
	if (named && !a_.no_netns_names)
		namer_.observe(e.netns_ino, monotonic_ns());
	if (a_.group == "flow") {
		flows_.add(e, a_.no_netns_names ? nullptr : &namer_.get(e.netns_ino));
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

void Session::write_textfile(bool at_start)
{
	std::string err = write_file_atomically(a_.metrics_textfile, metrics_->text());
	if (err.empty()) {
		textfile_error_.clear();
		return;
	}
	if (at_start) // a path that cannot be written is refused before tracing, as a bad flag would be
		die(kExitUsage, "cannot write --metrics-textfile: " + err);
	if (err != textfile_error_)
		fprintf(stderr, "warning: --metrics-textfile not updated: %s\n", err.c_str());
	textfile_error_ = err;
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
		if (interesting || tally_.saw(ns)) {
			n["netns_info"] = netns_info_now(ns);
			per.push_back(n);
		}
	}
	j["netns"] = per;
	return j;
}

int Session::run()
{
	Backend backend = backend_arg(a_.backend);
	uint64_t duration_ns = 0, stats_ns = 0, textfile_ns = 0;
	ListenAddress listen_at;
	try {
		if (!a_.duration.empty())
			duration_ns = parse_duration_ns(a_.duration);
		if (a_.stats_interval != "0")
			stats_ns = parse_duration_ns(a_.stats_interval);
		if (!a_.metrics_listen.empty())
			listen_at = parse_listen_address(a_.metrics_listen);
		textfile_ns = parse_duration_ns(a_.metrics_textfile_interval);
	} catch (const std::exception &e) {
		die(kExitUsage, e.what());
	}
	bool want_metrics = !a_.metrics_listen.empty() || !a_.metrics_textfile.empty();
	if (a_.metrics_netns_label && !want_metrics)
		die(kExitUsage, "--metrics-netns-label needs --metrics-listen or --metrics-textfile");
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
	// Before anything slow (kallsyms, the exposer, the BPF load and attach: seconds with fentry): a Ctrl-C or
	// SIGTERM during the start ends the run with its summary. Later, an inherited SIG_IGN (a background job of
	// a script) swallowed it and the run went on to --duration; an inherited SIG_DFL killed it with no summary.
	install_stop_handlers();

	LineWriter::ignore_sigpipe(); // a closed stdout is EPIPE from write(2), reported, not a silent SIGPIPE death
	ksyms_ = load_kallsyms();
	if (a_.exact_queue_errors && a_.no_queue_hooks)
		die(kExitUsage, "--exact-queue-errors and --no-queue-hooks exclude each other: the first adds a queue hook, "
				"the second removes them all");
	if (a_.verdict_hook && a_.no_queue_hooks)
		die(kExitUsage, "--verdict-hook and --no-queue-hooks exclude each other: the first adds a queue hook, "
				"the second removes them all");
	plan_ = plan_for(backend, ksyms_, a_.exact_queue_errors, !a_.no_queue_hooks, a_.verdict_hook);
	if (want_metrics) {
		MetricsOptions mo;
		mo.netns_label = a_.metrics_netns_label;
		const auto names = counter_names();
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (i != CTCT_CNT_EVENTS)
				mo.loss_names.push_back(names[i]);
		metrics_ = std::make_unique<Metrics>(mo);
		std::vector<std::map<std::string, std::string>> hooks;
		for (const auto &h : plan_.hooks)
			hooks.push_back({{"hook", h.hook}, {"attach", attach_name(h.attach)}, {"function", h.function}});
		metrics_->set_run_info(CTCT_VERSION, a_.backend, plan_.detect_at_free ? "tracepoint" : "function", hooks,
				       (double)time(nullptr));
		// Both before the BPF load: a port in use or an unwritable path fails in a second, not after the attach.
		if (!a_.metrics_listen.empty()) {
			try {
				exposer_ = std::make_unique<MetricsExposer>(listen_at, *metrics_);
			} catch (const std::exception &e) {
				die(kExitUsage, e.what());
			}
		}
		if (!a_.metrics_textfile.empty())
			write_textfile(true);
	}
	if (filter.has_queue && (plan_.detect_at_free || a_.no_queue_hooks))
		die(kExitUsage, std::string("--queue needs the queue hooks (fentry or kprobe, without --no-queue-hooks); in ") +
				(a_.no_queue_hooks ? "--no-queue-hooks" : "tracepoint") +
				" mode the queue of a drop is not known in the kernel. Filter with --netns/--proto/--addr/--port instead");

	reasons_ = DropReasons::load();
	ctx_.realtime_offset_ns = realtime_offset_ns();
	ctx_.drop_reason_name = [&](uint32_t v) { return reasons_.name(v); };
	ctx_.symbolize = [&](uint64_t addr) { return ksyms_.symbolize(addr); };
	ctx_.stable_names = true; // both are read once above: the JSON line may keep their answers
	if (!a_.no_netns_names)
		ctx_.netns_info = [this](uint32_t ino) { return &namer_.get(ino); };
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
		if (metrics_) {
			metrics_->set_losses(summary_.losses);
			metrics_->set_longest_write_seconds(longest_write_ms() / 1e3);
		}
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

	uint64_t start_ns = monotonic_ns(), last_tick = start_ns, last_stats = start_ns, last_textfile = start_ns;
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
		if (!a_.metrics_textfile.empty() && now - last_textfile >= textfile_ns) {
			write_textfile(false);
			last_textfile = now;
		}
		if (stats_ns && now - last_stats >= stats_ns && !verify_ && !a_.quiet) {
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
	if (!a_.metrics_textfile.empty())
		write_textfile(false); // the last state: what the collector serves until the file is removed
	double elapsed_s = (monotonic_ns() - start_ns) / 1e9;
	if (a_.group == "flow" && !a_.quiet) {
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
		for (auto &n : v.summary["netns"])
			n["netns_info"] = netns_info_now(n["netns"].get<uint32_t>());
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

} // namespace ctct
