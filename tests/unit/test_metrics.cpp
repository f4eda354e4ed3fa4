#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <cstdio>
#include <fstream>
#include <netinet/in.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.hpp"
#include "metrics_export.hpp"

using namespace ctct;

TEST(ListenAddress, Accepted)
{
	auto a = parse_listen_address("127.0.0.1:9477");
	EXPECT_EQ(a.host, "127.0.0.1");
	EXPECT_EQ(a.port, 9477);
	EXPECT_FALSE(a.ipv6);
	EXPECT_EQ(a.civetweb(), "127.0.0.1:9477");
	auto b = parse_listen_address("[::1]:1");
	EXPECT_TRUE(b.ipv6);
	EXPECT_EQ(b.host, "::1");
	EXPECT_EQ(b.civetweb(), "[::1]:1");
	auto c = parse_listen_address(":65535");
	EXPECT_EQ(c.host, "");
	EXPECT_EQ(c.civetweb(), "65535");
	EXPECT_EQ(c.to_string(), ":65535");
}

TEST(ListenAddress, Refused)
{
	for (const char *bad : {"", "9477", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1",
				"127.0.0.1:99999999999999999999", "127.0.0.1:9x", "localhost:9477", "300.1.1.1:9477",
				"::1:9477", "[::1]9477", "[]:9477", "[127.0.0.1]:9477", "[nope]:9477", "1.2.3:9477",
				" 127.0.0.1:9477", "127.0.0.1:9477 ", "127.0.0.1:+80"}) {
		try {
			parse_listen_address(bad);
			ADD_FAILURE() << "accepted '" << bad << "'";
		} catch (const std::invalid_argument &e) {
			std::string m = e.what();
			EXPECT_EQ(m.find("invalid --metrics-listen"), 0u) << m;
			EXPECT_EQ(m.find('\n'), std::string::npos) << m;
		}
	}
}

TEST(Metrics, Buckets10usTo10s)
{
	const auto &b = queue_time_buckets();
	ASSERT_EQ(b.size(), 19u);
	EXPECT_DOUBLE_EQ(b.front(), 1e-5);
	EXPECT_DOUBLE_EQ(b.back(), 10);
	for (size_t i = 1; i < b.size(); i++)
		EXPECT_LT(b[i - 1], b[i]);
}

TEST(Metrics, SeriesKeyFieldsDoNotOverlap)
{
	EXPECT_NE(metrics_series_key(1, 0, 0, 0), metrics_series_key(0, 1, 0, 0));
	EXPECT_NE(metrics_series_key(0, 0, Metrics::kNoQueue, 0), metrics_series_key(0, 0, 0, 0xffffffffu));
	EXPECT_NE(metrics_series_key(0, 255, 0, 0), metrics_series_key(1, 0, 0, 0));
	EXPECT_EQ(metrics_series_key(4, 6, 3, 7) & 0xffffffffu, 7u);
	EXPECT_EQ(metrics_series_key(127, 0, 0, 0), metrics_series_key(500, 0, 0, 0)); // clamped
}

static ctct_event ev(uint32_t type, uint32_t cause, int queue, uint32_t netns, int64_t latency_ns = -1)
{
	ctct_event e{};
	e.type = type;
	e.cause = cause;
	e.netns_ino = netns;
	if (queue >= 0) {
		e.flags |= CTCT_F_LOSER_QUEUED;
		e.loser_queue.queue_num = (uint32_t)queue;
		if (latency_ns >= 0) {
			e.loser_queue.enqueue_ns = 1000;
			e.loser_queue.reinject_ns = 1000 + (uint64_t)latency_ns;
		}
	}
	return e;
}

// The value of one sample line "NAME{LABELS} VALUE" of the exposition text, or -1.
static double sample(const std::string &text, const std::string &series)
{
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line))
		if (line.compare(0, series.size() + 1, series + " ") == 0)
			return std::stod(line.substr(series.size() + 1));
	return -1;
}

TEST(Metrics, CountsEveryEventByCauseAndQueue)
{
	Metrics m({false, {"ringbuf_full", "unseeded_baseline"}});
	for (int i = 0; i < 3; i++)
		m.add(ev(CTCT_EV_CONFIRM_DROP, CTCT_CAUSE_CLASH, 3, 100 + i, 250000)); // 250 us
	m.add(ev(CTCT_EV_CONFIRM_DROP, CTCT_CAUSE_INSERT_FAILED, -1, 100));
	m.add(ev(CTCT_EV_QUEUE_DROP, CTCT_CAUSE_QUEUE_FULL, 3, 100));
	m.add(ev(CTCT_EV_QUEUE_DROP, CTCT_CAUSE_QUEUE_FULL, 4, 100));
	m.add(ev(CTCT_EV_CLASH_RESOLVED, CTCT_CAUSE_CLASH, 3, 100, 2000000000)); // 2 s
	m.add(ev(CTCT_EV_VERDICT_DROP, CTCT_CAUSE_LISTENER_VERDICT, 3, 100));
	m.add(ev(CTCT_EV_QUEUE_BYPASS, CTCT_CAUSE_NO_LISTENER, 3, 100));
	m.add(ev(42, 0, -1, 100));
	std::string t = m.text();
	EXPECT_EQ(sample(t, "ctconfirm_trace_confirm_drops_total{cause=\"clash\",queue=\"3\"}"), 3) << t;
	EXPECT_EQ(sample(t, "ctconfirm_trace_confirm_drops_total{cause=\"insert_failed\",queue=\"unknown\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_queue_drops_total{cause=\"queue_full\",queue=\"3\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_queue_drops_total{cause=\"queue_full\",queue=\"4\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_clash_resolved_total{queue=\"3\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_verdict_drops_total{cause=\"listener_verdict\",queue=\"3\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_queue_bypasses_total{queue=\"3\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_other_events_total{queue=\"unknown\",type=\"unknown_42\"}"), 1);
	EXPECT_EQ(t.find("netns="), std::string::npos) << "no netns label unless asked";
	EXPECT_NE(t.find("# TYPE ctconfirm_trace_confirm_drops_total counter"), std::string::npos);
	EXPECT_NE(t.find("# TYPE ctconfirm_trace_queue_time_seconds histogram"), std::string::npos);
	// time in queue: only events seen queued with a latency, in seconds
	std::string h = "ctconfirm_trace_queue_time_seconds";
	EXPECT_EQ(sample(t, h + "_count{queue=\"3\",type=\"confirm_drop\"}"), 3);
	EXPECT_DOUBLE_EQ(sample(t, h + "_sum{queue=\"3\",type=\"confirm_drop\"}"), 3 * 250e-6);
	EXPECT_EQ(sample(t, h + "_bucket{queue=\"3\",type=\"confirm_drop\",le=\"0.0001\"}"), 0);
	EXPECT_EQ(sample(t, h + "_bucket{queue=\"3\",type=\"confirm_drop\",le=\"0.00025\"}"), 3);
	EXPECT_EQ(sample(t, h + "_count{queue=\"3\",type=\"clash_resolved\"}"), 1);
	EXPECT_EQ(sample(t, h + "_bucket{queue=\"3\",type=\"clash_resolved\",le=\"1\"}"), 0);
	EXPECT_EQ(sample(t, h + "_bucket{queue=\"3\",type=\"clash_resolved\",le=\"+Inf\"}"), 1);
	// the loss counters exist from the start at 0
	EXPECT_EQ(sample(t, "ctconfirm_trace_losses_total{reason=\"ringbuf_full\"}"), 0);
}

TEST(Metrics, NetnsLabelBounded)
{
	Metrics m({true, {}});
	for (uint32_t ns = 1; ns <= Metrics::kMaxNetnsLabels + 10; ns++)
		m.add(ev(CTCT_EV_CONFIRM_DROP, CTCT_CAUSE_CLASH, 3, ns));
	m.add(ev(CTCT_EV_CONFIRM_DROP, CTCT_CAUSE_CLASH, 3, 5)); // a known one keeps its own series
	EXPECT_EQ(m.netns_label_values(), Metrics::kMaxNetnsLabels);
	std::string t = m.text();
	EXPECT_EQ(sample(t, "ctconfirm_trace_confirm_drops_total{cause=\"clash\",netns=\"5\",queue=\"3\"}"), 2);
	EXPECT_EQ(sample(t, "ctconfirm_trace_confirm_drops_total{cause=\"clash\",netns=\"other\",queue=\"3\"}"), 10);
}

TEST(Metrics, LossesGrowByTheDifference)
{
	Metrics m({false, {"ringbuf_full"}});
	m.set_losses({{"ringbuf_full", 5}, {"pending_map_full", 0}});
	m.set_losses({{"ringbuf_full", 7}, {"pending_map_full", 1}});
	m.set_losses({{"ringbuf_full", 7}, {"pending_map_full", 1}});
	std::string t = m.text();
	EXPECT_EQ(sample(t, "ctconfirm_trace_losses_total{reason=\"ringbuf_full\"}"), 7);
	EXPECT_EQ(sample(t, "ctconfirm_trace_losses_total{reason=\"pending_map_full\"}"), 1);
}

TEST(Metrics, RunInfo)
{
	Metrics m({false, {}});
	m.set_run_info("0.1.0", "auto", "tracepoint", {{{"hook", "free"}, {"attach", "tp_btf"}, {"function", "kfree_skb"}}}, 1.5e9);
	std::string t = m.text();
	EXPECT_EQ(sample(t, "ctconfirm_trace_build_info{schema=\"" + std::to_string(CTCT_SCHEMA_VERSION) + "\",version=\"0.1.0\"}"), 1) << t;
	EXPECT_EQ(sample(t, "ctconfirm_trace_backend_info{backend=\"auto\",mode=\"tracepoint\"}"), 1);
	EXPECT_EQ(sample(t, "ctconfirm_trace_hook_info{attach=\"tp_btf\",function=\"kfree_skb\",hook=\"free\"}"), 1);
}

TEST(MetricsExposer, PortInUseIsOneLine)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT_GE(fd, 0);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_EQ(bind(fd, (sockaddr *)&a, sizeof(a)), 0);
	ASSERT_EQ(listen(fd, 1), 0);
	socklen_t len = sizeof(a);
	getsockname(fd, (sockaddr *)&a, &len);
	Metrics m({false, {}});
	auto at = parse_listen_address("127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
	try {
		MetricsExposer e(at, m);
		ADD_FAILURE() << "listened on a port in use";
	} catch (const std::runtime_error &e) {
		std::string msg = e.what();
		EXPECT_NE(msg.find("Address already in use"), std::string::npos) << msg;
		EXPECT_EQ(msg.find('\n'), std::string::npos);
	}
	close(fd);
}

TEST(Textfile, ReplacedWholeAndNoTemporaryLeft)
{
	char dir[] = "/tmp/ctct-textfile.XXXXXX";
	ASSERT_NE(mkdtemp(dir), nullptr);
	std::string path = std::string(dir) + "/ct.prom";
	EXPECT_EQ(write_file_atomically(path, "a 1\n"), "");
	EXPECT_EQ(write_file_atomically(path, "b 2\n"), "");
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	EXPECT_EQ(ss.str(), "b 2\n");
	std::string tmp = path + "." + std::to_string(getpid()) + ".tmp";
	EXPECT_NE(access(tmp.c_str(), F_OK), 0);
	std::string err = write_file_atomically(std::string(dir) + "/missing/ct.prom", "x");
	EXPECT_EQ(err.find("open "), 0u) << err;
	unlink(path.c_str());
	rmdir(dir);
}
