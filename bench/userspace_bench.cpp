// Userspace throughput of the tracer's hot path, without a kernel: realistic ctct_event records laid out
// as in the ring buffer -> decode_event (what Tracer::ring_cb does) -> Summary::add, EventTally::add -> JSON line
// (exactly as main.cpp) -> LineWriter to /dev/null or a real file. Plus each stage alone, and RSS over a
// long run. Run: bench/run_userspace.sh
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <cstdio>
#include <fcntl.h>
#include <map>
#include <netinet/in.h>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>
#include "accounting.hpp"
#include "format.hpp"
#include "kernel_text.hpp"
#include "output.hpp"
#include "summary.hpp"

using namespace ctct;

namespace {

constexpr size_t kDistinct = 4096; // distinct events, cycled: more than fits a branch predictor's memory
constexpr size_t kRecordHeader = 8; // BPF_RINGBUF_HDR_SZ: records are not 8-byte aligned for us

ctct_tuple tuple(std::mt19937 &rng, bool v6, uint8_t proto)
{
	ctct_tuple t = {};
	t.l3num = v6 ? AF_INET6 : AF_INET;
	t.protonum = proto;
	for (size_t i = 0; i < (v6 ? 16u : 4u); i++) {
		t.src[i] = rng();
		t.dst[i] = rng();
	}
	if (v6) {
		t.src[0] = t.dst[0] = 0xfd; // ULA: typical behind NAT66
	}
	t.sport = htons(1024 + rng() % 60000);
	t.dport = htons(proto == IPPROTO_UDP ? 53 : 443);
	return t;
}

ctct_conn conn(std::mt19937 &rng, bool v6, uint8_t proto)
{
	ctct_conn c = {};
	c.orig = tuple(rng, v6, proto);
	c.reply = tuple(rng, v6, proto);
	c.status = 0x188;
	c.mark = rng() % 4;
	return c;
}

ctct_queue queue(std::mt19937 &rng, uint64_t ts)
{
	ctct_queue q = {};
	q.enqueue_ns = ts - 1000000 - rng() % 200000000;
	q.reinject_ns = ts - rng() % 1000000;
	q.queue_num = rng() % 8;
	q.packet_id = rng();
	q.verdict = 1;
	q.hook = 4;
	q.pf = 2;
	return q;
}

// A mix seen on a busy NAT box: mostly queued IPv4 UDP drops with a winner, some TCP, some IPv6,
// some resolved clashes, some drops not seen freed.
std::vector<uint8_t> make_ring(size_t n)
{
	std::mt19937 rng(42);
	std::vector<uint8_t> ring(n * (kRecordHeader + sizeof(ctct_event)));
	uint64_t ts = 1'000'000'000'000ULL;
	for (size_t i = 0; i < n; i++) {
		ctct_event e = {};
		bool v6 = i % 5 == 0;
		uint8_t proto = i % 3 == 0 ? IPPROTO_TCP : IPPROTO_UDP;
		ts += 1000 + rng() % 100000;
		e.type = i % 7 == 0 ? CTCT_EV_CLASH_RESOLVED : CTCT_EV_CONFIRM_DROP;
		e.cause = CTCT_CAUSE_CLASH;
		e.source = CTCT_SRC_CONFIRM_HOOK;
		e.ts_ns = ts;
		e.netns_ino = 4026531840u + rng() % 64;
		e.cpu = rng() % 2;
		e.loser = conn(rng, v6, proto);
		e.winner = conn(rng, v6, proto);
		e.flags = CTCT_F_LOSER_QUEUED | CTCT_F_HAS_WINNER | CTCT_F_WINNER_QUEUED | (v6 ? CTCT_F_IPV6 : 0);
		if (e.type == CTCT_EV_CONFIRM_DROP && i % 11 != 0) {
			e.flags |= CTCT_F_FREED;
			e.drop_reason = i % 2 ? 12 : 2;
			// Drops are freed at a handful of call sites (nf_hook_slow, ...), not all over the kernel.
			e.drop_location = 0xffffffff81000000ULL + (rng() % 8) * 0x123456 + 0x70;
		}
		e.loser_queue = queue(rng, ts);
		e.winner_queue = queue(rng, ts);
		e.winner_confirm_ns = ts - rng() % 1000000;
		memcpy(&ring[i * (kRecordHeader + sizeof(e)) + kRecordHeader], &e, sizeof(e));
	}
	return ring;
}

// ~150k text symbols, the size of a distribution kernel's kallsyms, so symbolize() costs what it costs.
const Kallsyms &kallsyms()
{
	static Kallsyms k = [] {
		std::string text;
		char line[96];
		for (unsigned i = 0; i < 150000; i++) {
			snprintf(line, sizeof(line), "%016llx T kernel_function_%u\n", 0xffffffff81000000ULL + i * 0x70ULL, i);
			text += line;
		}
		return Kallsyms::parse(text);
	}();
	return k;
}

FormatContext context()
{
	static const std::map<uint32_t, std::string> reasons = {{2, "NOT_SPECIFIED"}, {12, "NETFILTER_DROP"}};
	FormatContext ctx;
	ctx.realtime_offset_ns = 1'700'000'000'000'000'000LL;
	ctx.drop_reason_name = [](uint32_t v) {
		auto it = reasons.find(v);
		return it == reasons.end() ? std::to_string(v) : it->second;
	};
	ctx.symbolize = [](uint64_t a) { return kallsyms().symbolize(a); };
	ctx.stable_names = true; // as main.cpp
	return ctx;
}

const std::vector<uint8_t> &ring()
{
	static std::vector<uint8_t> r = make_ring(kDistinct);
	return r;
}

const uint8_t *record(size_t i) { return &ring()[(i % kDistinct) * (kRecordHeader + sizeof(ctct_event)) + kRecordHeader]; }

// What main.cpp did before the hand-written line: build the nlohmann tree, dump it.
std::string json_line_nlohmann(const ctct_event &e, const FormatContext &ctx)
{
	return event_json(e, ctx).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// One line into a reused buffer (main.cpp writes it straight into the LineWriter's buffer instead).
const std::string &json_line(const ctct_event &e, const FormatContext &ctx)
{
	static std::string line;
	line.clear();
	append_event_json_line(line, e, ctx);
	return line;
}

long rss_kb()
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// Where the lines go: 0 /dev/null (the tool's own cost), 1 a file in /tmp (here ext4 on a virtual disk:
// the disk's write path is part of the number), 2 a file in /dev/shm (tmpfs: a file, without the disk).
const char *const kSinkName[] = {"/dev/null", "file in /tmp", "file in /dev/shm"};

int open_sink(int sink, std::string &path)
{
	if (sink == 0)
		return open("/dev/null", O_WRONLY);
	std::string tmpl = sink == 1 ? "/tmp/ctct_bench_XXXXXX" : "/dev/shm/ctct_bench_XXXXXX";
	int fd = mkstemp(tmpl.data());
	path = tmpl;
	return fd;
}

// The whole per-event path of run_trace --json.
void BM_Pipeline(benchmark::State &state)
{
	int sink = state.range(0);
	bool nlohmann_path = state.range(1);
	std::string path;
	int fd = open_sink(sink, path);
	FormatContext ctx = context();
	Summary summary;
	EventTally tally;
	size_t bytes = 0, i = 0;
	{
		LineWriter out(fd);
		for (auto _ : state) {
			ctct_event e;
			decode_event(record(i++), sizeof(ctct_event), e);
			summary.add(e);
			tally.add(e); // Session::on_event's bookkeeping (stats, verify)
			if (nlohmann_path) {
				std::string line = json_line_nlohmann(e, ctx);
				bytes += line.size() + 1;
				out.write_line(line);
			} else {
				out.write_line_from([&](std::string &buf) {
					size_t before = buf.size();
					append_event_json_line(buf, e, ctx); // as main.cpp: straight into the output buffer
					bytes += buf.size() - before + 1;
				});
			}
			// run_trace flushes once per poll; a busy poll returns a few thousand records.
			if (i % 4096 == 0)
				out.flush();
		}
		out.flush();
	}
	close(fd);
	if (sink)
		unlink(path.c_str());
	state.SetItemsProcessed(state.iterations());
	state.SetBytesProcessed(bytes);
	state.SetLabel(std::string(nlohmann_path ? "nlohmann json" : "json") + " -> " + kSinkName[sink]);
}
BENCHMARK(BM_Pipeline)->Args({0, 0})->Args({0, 1});
// The file rows three times each: in this VM the first run of a file row pays for guest memory that the
// page cache touches for the first time (write(2) alone ran 1.7 M/s there and 6.0 M/s in the next two,
// whose pages the unlinked file of the run before had freed); the median is the steady figure.
BENCHMARK(BM_Pipeline)->Args({1, 0})->Args({2, 0})->Repetitions(3);

void BM_PipelineText(benchmark::State &state)
{
	int fd = open("/dev/null", O_WRONLY);
	FormatContext ctx = context();
	Summary summary;
	size_t i = 0;
	{
		LineWriter out(fd);
		for (auto _ : state) {
			ctct_event e;
			decode_event(record(i++), sizeof(ctct_event), e);
			summary.add(e);
			out.write_line(event_text(e, ctx));
		}
	}
	close(fd);
	state.SetItemsProcessed(state.iterations());
	state.SetLabel("text -> /dev/null");
}
BENCHMARK(BM_PipelineText);

// Stages alone, to see where the time goes.
void BM_Decode(benchmark::State &state)
{
	size_t i = 0;
	for (auto _ : state) {
		ctct_event e;
		decode_event(record(i++), sizeof(ctct_event), e);
		benchmark::DoNotOptimize(e);
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Decode);

void BM_SummaryAdd(benchmark::State &state)
{
	Summary summary;
	size_t i = 0;
	for (auto _ : state)
		summary.add(*reinterpret_cast<const ctct_event *>(record(i++)));
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SummaryAdd);

// One event to its JSON line: the hand-written path (json_line) or nlohmann's (json_line_nlohmann).
template <auto Line> void BM_EventJson(benchmark::State &state)
{
	FormatContext ctx = context();
	size_t i = 0;
	for (auto _ : state) {
		ctct_event e;
		decode_event(record(i++), sizeof(ctct_event), e);
		benchmark::DoNotOptimize(Line(e, ctx));
	}
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EventJson<json_line>)->Name("BM_EventJsonLine");
BENCHMARK(BM_EventJson<json_line_nlohmann>)->Name("BM_EventJsonNlohmannDump");

// The machine's own ceiling for the file sinks: the same bytes per event, already formatted, written in the
// same 64 KiB blocks to the same kind of file. Events/s here is the most any formatter could reach on this
// machine at that moment; BM_Pipeline's file rows are to be read against it (this VM's write speed varied
// by 3x between runs).
void BM_FileWriteCeiling(benchmark::State &state)
{
	int sink = state.range(0);
	std::string path;
	int fd = open_sink(sink, path);
	FormatContext ctx = context();
	size_t line_bytes = 0;
	for (size_t i = 0; i < kDistinct; i++) {
		ctct_event e;
		decode_event(record(i), sizeof(ctct_event), e);
		line_bytes += json_line(e, ctx).size() + 1;
	}
	line_bytes /= kDistinct;
	std::string block(64 * 1024, 'x');
	size_t pending = 0, bytes = 0;
	for (auto _ : state) {
		pending += line_bytes;
		if (pending >= block.size()) {
			if (write(fd, block.data(), block.size()) != (ssize_t)block.size())
				state.SkipWithError("write failed");
			pending -= block.size();
			bytes += block.size();
		}
	}
	close(fd);
	unlink(path.c_str());
	state.SetItemsProcessed(state.iterations());
	state.SetBytesProcessed(bytes);
	state.counters["line_bytes"] = line_bytes;
	state.SetLabel(std::string("write(2) only, mean line size -> ") + kSinkName[sink]);
}
BENCHMARK(BM_FileWriteCeiling)->Arg(1)->Arg(2)->Repetitions(3);

void BM_LineWriterDevNull(benchmark::State &state)
{
	int fd = open("/dev/null", O_WRONLY);
	std::string line(700, 'x'); // about one JSON event
	{
		LineWriter out(fd);
		for (auto _ : state)
			out.write_line(line);
	}
	close(fd);
	state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LineWriterDevNull);

// Memory over a long run: RSS after 1M, 2M and 5M events through the whole path must not grow
// (Summary keeps at most 1<<20 latency samples; the rest is counted in samples_not_kept).
void BM_LongRunRss(benchmark::State &state)
{
	const size_t total = state.range(0);
	FormatContext ctx = context();
	int fd = open("/dev/null", O_WRONLY);
	for (auto _ : state) {
		Summary summary;
		EventTally tally;
		LineWriter out(fd);
		state.counters["rss_start_kb"] = rss_kb();
		for (size_t i = 0; i < total; i++) {
			ctct_event e;
			decode_event(record(i), sizeof(ctct_event), e);
			e.ts_ns += i * 1000; // distinct times, as a real run
			summary.add(e);
			tally.add(e);
			out.write_line_from([&](std::string &buf) { append_event_json_line(buf, e, ctx); });
			if (i % 4096 == 0)
				out.flush();
			if (i + 1 == 1000000)
				state.counters["rss_1M_kb"] = rss_kb();
			if (i + 1 == 2000000)
				state.counters["rss_2M_kb"] = rss_kb();
		}
		out.flush();
		state.counters["rss_end_kb"] = rss_kb();
		auto j = summary.to_json();
		state.counters["latency_kept"] = j["queue_latency_ns"]["count"].get<double>();
		state.counters["latency_not_kept"] = j["queue_latency_ns"]["samples_not_kept"].get<double>();
		if (j["queue_latency_ns"]["count"].get<size_t>() > (1u << 20))
			state.SkipWithError("Summary kept more than 1<<20 latency samples");
	}
	close(fd);
	state.SetItemsProcessed(state.iterations() * total);
}
BENCHMARK(BM_LongRunRss)->Arg(5000000)->Iterations(1)->Unit(benchmark::kMillisecond);

// A tracer start indexes /proc/kallsyms (planning, and symbolizing where a packet was freed): this
// machine's live file (root for real addresses), parsed again each iteration.
void BM_KallsymsParse(benchmark::State &state)
{
	const std::string text = read_file("/proc/kallsyms");
	size_t n = 0;
	for (auto _ : state)
		n = Kallsyms::parse(text).size();
	state.counters["text_symbols"] = (double)n;
}
BENCHMARK(BM_KallsymsParse)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
