#include "format.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <netinet/in.h>
#include "cli_util.hpp"

namespace ctct {

std::string addr_to_string(const uint8_t addr[16], uint8_t l3num)
{
	char buf[INET6_ADDRSTRLEN] = "?";
	if (l3num == AF_INET)
		inet_ntop(AF_INET, addr, buf, sizeof(buf));
	else if (l3num == AF_INET6)
		inet_ntop(AF_INET6, addr, buf, sizeof(buf));
	return buf;
}

std::string proto_name(uint8_t p)
{
	switch (p) {
	case IPPROTO_TCP: return "tcp";
	case IPPROTO_UDP: return "udp";
	case IPPROTO_ICMP: return "icmp";
	case IPPROTO_ICMPV6: return "icmpv6";
	case IPPROTO_SCTP: return "sctp";
	case IPPROTO_UDPLITE: return "udplite";
	case IPPROTO_DCCP: return "dccp";
	case IPPROTO_GRE: return "gre";
	default: return std::to_string(p);
	}
}

std::string hook_name(uint8_t hook)
{
	static const char *names[] = {"prerouting", "input", "forward", "output", "postrouting"};
	return hook < 5 ? names[hook] : std::to_string(hook);
}

std::string verdict_name(uint32_t v)
{
	static const char *names[] = {"drop", "accept", "stolen", "queue", "repeat", "stop"};
	// NF_VERDICT_MASK: the upper bits carry a queue number or errno
	return (v & 0xff) < 6 ? names[v & 0xff] : std::to_string(v);
}

std::string event_type_name(uint32_t type)
{
	switch (type) {
	case CTCT_EV_CONFIRM_DROP: return "confirm_drop";
	case CTCT_EV_CLASH_RESOLVED: return "clash_resolved";
	case CTCT_EV_VERDICT_DROP: return "verdict_drop";
	case CTCT_EV_QUEUE_DROP: return "queue_drop";
	case CTCT_EV_QUEUE_BYPASS: return "queue_bypass";
	default: return "unknown_" + std::to_string(type);
	}
}

std::string cause_name(uint32_t cause)
{
	switch (cause) {
	case CTCT_CAUSE_CLASH: return "clash";
	case CTCT_CAUSE_OTHER: return "other";
	case CTCT_CAUSE_INSERT_FAILED: return "insert_failed";
	case CTCT_CAUSE_QUEUE_FULL: return "queue_full";
	case CTCT_CAUSE_SOCKET_OVERFLOW: return "socket_overflow";
	case CTCT_CAUSE_NO_LISTENER: return "no_listener";
	case CTCT_CAUSE_UNCONFIRMED_SHARED: return "unconfirmed_shared";
	case CTCT_CAUSE_ENQUEUE_ERROR: return "enqueue_error";
	case CTCT_CAUSE_LISTENER_VERDICT: return "listener_verdict";
	case CTCT_CAUSE_VERDICT_OR_LATER_HOOK: return "listener_verdict_or_later_hook";
	default: return "unknown";
	}
}

std::string source_name(uint32_t source)
{
	switch (source) {
	case CTCT_SRC_CONFIRM_HOOK: return "confirm_hook";
	case CTCT_SRC_FREE_HEURISTIC: return "free_heuristic";
	case CTCT_SRC_QUEUE_HOOK: return "queue_hook";
	case CTCT_SRC_FREE_LOCATION: return "free_location";
	default: return "unknown";
	}
}

bool event_is_drop(uint32_t type)
{
	return type == CTCT_EV_CONFIRM_DROP || type == CTCT_EV_VERDICT_DROP || type == CTCT_EV_QUEUE_DROP;
}

static bool has_ports(uint8_t p)
{
	return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_SCTP || p == IPPROTO_UDPLITE ||
	       p == IPPROTO_DCCP;
}

static std::string endpoint(const uint8_t addr[16], uint16_t port_be, const ctct_tuple &t)
{
	std::string a = addr_to_string(addr, t.l3num);
	if (!has_ports(t.protonum))
		return a;
	if (t.l3num == AF_INET6)
		a = "[" + a + "]";
	return a + ":" + std::to_string(ntohs(port_be));
}

std::string tuple_to_string(const ctct_tuple &t)
{
	return proto_name(t.protonum) + " " + endpoint(t.src, t.sport, t) + " -> " + endpoint(t.dst, t.dport, t);
}

std::string iso8601_ns(int64_t ns)
{
	// Floor division: before 1970 the fraction must still be 0..999999999, not "-000000001".
	int64_t sec = ns / 1000000000, frac = ns % 1000000000;
	if (frac < 0) {
		sec--;
		frac += 1000000000;
	}
	// Events come in bursts within one second: gmtime_r + strftime once per second, not per event.
	thread_local int64_t cached_sec = INT64_MIN;
	thread_local std::string cached;
	if (sec != cached_sec) {
		time_t t = (time_t)sec;
		struct tm tm;
		if (!gmtime_r(&t, &tm))
			return std::to_string(ns) + "ns";
		char buf[64];
		cached.assign(buf, strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm));
		cached_sec = sec;
	}
	std::string out;
	out.reserve(cached.size() + 11);
	out = cached;
	char digits[11] = ".000000000";
	for (int i = 9; i >= 1 && frac; i--, frac /= 10)
		digits[i] = (char)('0' + frac % 10);
	out.append(digits, 10);
	out += 'Z';
	return out;
}

int64_t wall_clock_ns(uint64_t mono_ns, int64_t realtime_offset_ns)
{
	// A corrupt or far-future ts_ns must not overflow a signed add (UB); wrap like the kernel's u64 clock.
	return (int64_t)(mono_ns + (uint64_t)realtime_offset_ns);
}

nlohmann::json tuple_json(const ctct_tuple &t)
{
	nlohmann::json j = {
		{"family", t.l3num == AF_INET6 ? "ipv6" : t.l3num == AF_INET ? "ipv4" : std::to_string(t.l3num)},
		{"proto", proto_name(t.protonum)},
		{"src", addr_to_string(t.src, t.l3num)},
		{"dst", addr_to_string(t.dst, t.l3num)},
	};
	if (has_ports(t.protonum)) {
		j["sport"] = ntohs(t.sport);
		j["dport"] = ntohs(t.dport);
	} else if (t.protonum == IPPROTO_ICMP || t.protonum == IPPROTO_ICMPV6) {
		j["icmp_id"] = ntohs(t.sport);
		j["icmp_type"] = ntohs(t.dport) >> 8;
		j["icmp_code"] = ntohs(t.dport) & 0xff;
	}
	return j;
}

static nlohmann::json conn_json(const ctct_conn &c)
{
	char status[24];
	snprintf(status, sizeof(status), "0x%" PRIx64, (uint64_t)c.status);
	return {{"orig", tuple_json(c.orig)}, {"reply", tuple_json(c.reply)},
		{"status", status}, {"mark", c.mark}, {"zone", c.zone}};
}

int64_t queue_latency_ns(const ctct_queue &q, uint32_t flags, uint32_t valid_flag)
{
	if (!(flags & valid_flag) || !q.reinject_ns || q.reinject_ns < q.enqueue_ns)
		return -1;
	return (int64_t)(q.reinject_ns - q.enqueue_ns);
}

QueueFacts loser_queue_facts(const ctct_event &e)
{
	// A packet the queue refused never got a packet id or a verdict; a queue number taken from the
	// queue's counters (tracepoint mode) comes without the hook.
	return {e.source != CTCT_SRC_FREE_LOCATION, e.type != CTCT_EV_QUEUE_DROP && e.type != CTCT_EV_QUEUE_BYPASS};
}

static nlohmann::json queue_json(const ctct_queue &q, uint32_t flags, uint32_t valid_flag, QueueFacts known = {})
{
	if (!(flags & valid_flag))
		return nullptr;
	int64_t lat = queue_latency_ns(q, flags, valid_flag);
	return {{"num", q.queue_num},
		{"packet_id", known.handed_to_listener ? nlohmann::json(q.packet_id) : nlohmann::json(nullptr)},
		{"hook", known.hook ? nlohmann::json(hook_name(q.hook)) : nlohmann::json(nullptr)},
		{"verdict", known.handed_to_listener ? nlohmann::json(verdict_name(q.verdict)) : nlohmann::json(nullptr)},
		{"latency_ns", lat < 0 ? nlohmann::json(nullptr) : nlohmann::json(lat)}};
}

nlohmann::json event_json(const ctct_event &e, const FormatContext &ctx)
{
	nlohmann::json j;
	j["type"] = event_type_name(e.type);
	j["schema"] = CTCT_SCHEMA_VERSION;
	j["ts_mono_ns"] = e.ts_ns;
	j["time"] = iso8601_ns(wall_clock_ns(e.ts_ns, ctx.realtime_offset_ns));
	j["netns"] = e.netns_ino;
	j["cpu"] = e.cpu;
	j["cause"] = cause_name(e.cause);
	j["source"] = source_name(e.source);
	// a packet without conntrack has no flow to show: null, never zeroes
	j["loser"] = (e.flags & CTCT_F_NO_CONNTRACK) ? nlohmann::json(nullptr) : conn_json(e.loser);
	// In tracepoint mode the queue is not observable: null says "unknown", never 0.
	j["queue"] = queue_json(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED, loser_queue_facts(e));
	if (e.flags & CTCT_F_HAS_WINNER) {
		nlohmann::json w = conn_json(e.winner);
		w["queue"] = queue_json(e.winner_queue, e.flags, CTCT_F_WINNER_QUEUED);
		w["confirmed_before_ns"] = (e.flags & CTCT_F_WINNER_QUEUED) && e.ts_ns >= e.winner_confirm_ns
						  ? nlohmann::json(e.ts_ns - e.winner_confirm_ns)
						  : nlohmann::json(nullptr);
		j["winner"] = w;
	} else {
		j["winner"] = nullptr;
	}
	if (event_is_drop(e.type)) {
		if (e.flags & CTCT_F_FREED) {
			j["drop"] = {{"freed", true},
				     {"reason", ctx.drop_reason_name ? ctx.drop_reason_name(e.drop_reason)
								   : std::to_string(e.drop_reason)},
				     {"reason_code", e.drop_reason},
				     {"location", ctx.symbolize ? ctx.symbolize(e.drop_location) : ""}};
		} else {
			j["drop"] = {{"freed", false}, {"reason", nullptr}, {"reason_code", nullptr}, {"location", nullptr}};
		}
	}
	if (e.source == CTCT_SRC_FREE_HEURISTIC)
		j["insert_failed_delta"] = e.insert_failed_delta;
	if (e.type == CTCT_EV_QUEUE_DROP || e.type == CTCT_EV_QUEUE_BYPASS)
		j["enqueue_error"] = e.enqueue_error ? nlohmann::json(e.enqueue_error) : nlohmann::json(nullptr);
	return j;
}

// --- The JSON line without nlohmann: keys in std::map order (nlohmann's object is a sorted map), values
// as its serializer prints them. Tested against event_json().dump() in unit tests and in fuzz_event.
namespace {

struct JsonLine {
	// Writes into out's own storage through a cursor: one size check per field instead of a
	// std::string::append call per fragment (the per-fragment calls were most of the time).
	std::string &out;
	size_t len;

	explicit JsonLine(std::string &o) : out(o), len(o.size()) { out.resize(len + 1024); }
	~JsonLine() { out.resize(len); }
	char *room(size_t need)
	{
		if (len + need > out.size())
			out.resize(std::max(out.size() * 2, len + need));
		return &out[len];
	}
	void raw(const char *p, size_t n)
	{
		memcpy(room(n), p, n);
		len += n;
	}
	template <size_t N> void lit(const char (&s)[N]) { raw(s, N - 1); }
	void ch(char c)
	{
		*room(1) = c;
		len++;
	}
	template <size_t N> void key(const char (&k)[N]) // a literal: no escaping, length known
	{
		char *p = room(N + 2);
		p[0] = '"';
		memcpy(p + 1, k, N - 1);
		p[N] = '"';
		p[N + 1] = ':';
		len += N + 2;
	}
	void str(const std::string &v)
	{
		for (unsigned char c : v) {
			if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
				// Control bytes, non-ASCII, invalid UTF-8: nlohmann's own escaping and U+FFFD replacement.
				std::string e = nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
				raw(e.data(), e.size());
				return;
			}
		}
		char *p = room(v.size() + 2);
		p[0] = '"';
		memcpy(p + 1, v.data(), v.size());
		p[v.size() + 1] = '"';
		len += v.size() + 2;
	}
	void num(uint64_t v)
	{
		char *p = room(24);
		len += std::to_chars(p, p + 24, v).ptr - p;
	}
	void snum(int64_t v)
	{
		char *p = room(24);
		len += std::to_chars(p, p + 24, v).ptr - p;
	}
	void null() { lit("null"); }
};

void ipv4(JsonLine &j, const uint8_t a[4])
{
	char *p = j.room(17), *start = p;
	*p++ = '"';
	for (int i = 0; i < 4; i++) {
		p = std::to_chars(p, p + 3, a[i]).ptr;
		*p++ = i < 3 ? '.' : '"';
	}
	j.len += p - start;
}

// inet_ntop(AF_INET6) without its sprintf per group (it was a quarter of the time with 20% IPv6 events).
// Same rules as glibc's inet_ntop6: the longest run of two or more zero groups becomes "::" (the first
// on a tie), lowercase hex without leading zeros, and ::a.b.c.d / ::ffff:a.b.c.d for IPv4-compatible and
// IPv4-mapped addresses. Checked against inet_ntop in unit tests and by fuzz_event.
void ipv6(JsonLine &j, const uint8_t a[16])
{
	uint16_t w[8];
	for (int i = 0; i < 8; i++)
		w[i] = (uint16_t)(a[2 * i] << 8 | a[2 * i + 1]);
	int best = -1, best_len = 0;
	for (int i = 0; i < 8;) {
		if (w[i]) {
			i++;
			continue;
		}
		int k = i;
		while (k < 8 && !w[k])
			k++;
		if (k - i > best_len) {
			best = i;
			best_len = k - i;
		}
		i = k;
	}
	if (best_len < 2)
		best = -1;
	char *p = j.room(48), *start = p;
	*p++ = '"';
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_len) {
			if (i == best)
				*p++ = ':';
			continue;
		}
		if (i)
			*p++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
			for (int b = 12; b < 16; b++) {
				p = std::to_chars(p, p + 3, a[b]).ptr;
				if (b < 15)
					*p++ = '.';
			}
			break;
		}
		p = std::to_chars(p, p + 4, w[i], 16).ptr;
	}
	if (best >= 0 && best + best_len == 8)
		*p++ = ':';
	*p++ = '"';
	j.len += p - start;
}

void addr_str(JsonLine &j, const uint8_t a[16], uint8_t l3num)
{
	if (l3num == AF_INET)
		ipv4(j, a);
	else if (l3num == AF_INET6)
		ipv6(j, a);
	else {
		j.str(addr_to_string(a, l3num));
	}
}

void tuple_line(JsonLine &j, const ctct_tuple &t)
{
	bool ports = has_ports(t.protonum), icmp = t.protonum == IPPROTO_ICMP || t.protonum == IPPROTO_ICMPV6;
	j.ch('{');
	if (ports) {
		j.key("dport");
		j.num(ntohs(t.dport));
		j.ch(',');
	}
	j.key("dst");
	addr_str(j, t.dst, t.l3num);
	j.ch(',');
	j.key("family");
	if (t.l3num == AF_INET6)
		j.lit("\"ipv6\"");
	else if (t.l3num == AF_INET)
		j.lit("\"ipv4\"");
	else
		j.str(std::to_string(t.l3num));
	if (icmp) {
		j.ch(',');
		j.key("icmp_code");
		j.num(ntohs(t.dport) & 0xff);
		j.ch(',');
		j.key("icmp_id");
		j.num(ntohs(t.sport));
		j.ch(',');
		j.key("icmp_type");
		j.num(ntohs(t.dport) >> 8);
	}
	j.ch(',');
	j.key("proto");
	j.str(proto_name(t.protonum));
	if (ports) {
		j.ch(',');
		j.key("sport");
		j.num(ntohs(t.sport));
	}
	j.ch(',');
	j.key("src");
	addr_str(j, t.src, t.l3num);
	j.ch('}');
}

void queue_line(JsonLine &j, const ctct_queue &q, uint32_t flags, uint32_t valid_flag, QueueFacts known = {})
{
	if (!(flags & valid_flag))
		return j.null();
	j.ch('{');
	j.key("hook");
	if (known.hook)
		j.str(hook_name(q.hook));
	else
		j.null();
	j.ch(',');
	j.key("latency_ns");
	int64_t lat = queue_latency_ns(q, flags, valid_flag);
	if (lat < 0)
		j.null();
	else
		j.snum(lat);
	j.ch(',');
	j.key("num");
	j.num(q.queue_num);
	j.ch(',');
	j.key("packet_id");
	if (known.handed_to_listener)
		j.num(q.packet_id);
	else
		j.null();
	j.ch(',');
	j.key("verdict");
	if (known.handed_to_listener)
		j.str(verdict_name(q.verdict));
	else
		j.null();
	j.ch('}');
}

// conn_json's fields, plus the winner's confirmed_before_ns and queue when given.
void conn_line(JsonLine &j, const ctct_conn &c, const ctct_event *winner_of)
{
	j.ch('{');
	if (winner_of) {
		const ctct_event &e = *winner_of;
		j.key("confirmed_before_ns");
		if ((e.flags & CTCT_F_WINNER_QUEUED) && e.ts_ns >= e.winner_confirm_ns)
			j.num(e.ts_ns - e.winner_confirm_ns);
		else
			j.null();
		j.ch(',');
	}
	j.key("mark");
	j.num(c.mark);
	j.ch(',');
	j.key("orig");
	tuple_line(j, c.orig);
	if (winner_of) {
		j.ch(',');
		j.key("queue");
		queue_line(j, winner_of->winner_queue, winner_of->flags, CTCT_F_WINNER_QUEUED);
	}
	j.ch(',');
	j.key("reply");
	tuple_line(j, c.reply);
	j.ch(',');
	j.key("status");
	char status[24] = "\"0x";
	auto end = std::to_chars(status + 3, status + sizeof(status) - 1, (uint64_t)c.status, 16).ptr;
	*end++ = '"';
	j.raw(status, end - status);
	j.ch(',');
	j.key("zone");
	j.num(c.zone);
	j.ch('}');
}

} // namespace

void append_event_json_line(std::string &out, const ctct_event &e, const FormatContext &ctx)
{
	JsonLine j(out);
	j.ch('{');
	j.key("cause");
	j.str(cause_name(e.cause));
	j.ch(',');
	j.key("cpu");
	j.num(e.cpu);
	if (event_is_drop(e.type)) {
		j.ch(',');
		j.key("drop");
		if (e.flags & CTCT_F_FREED) {
			j.lit("{\"freed\":true,");
			j.key("location");
			j.str(ctx.symbolize ? ctx.symbolize(e.drop_location) : "");
			j.ch(',');
			j.key("reason");
			j.str(ctx.drop_reason_name ? ctx.drop_reason_name(e.drop_reason) : std::to_string(e.drop_reason));
			j.ch(',');
			j.key("reason_code");
			j.num(e.drop_reason);
			j.ch('}');
		} else {
			j.lit("{\"freed\":false,\"location\":null,\"reason\":null,\"reason_code\":null}");
		}
	}
	if (e.type == CTCT_EV_QUEUE_DROP || e.type == CTCT_EV_QUEUE_BYPASS) {
		j.ch(',');
		j.key("enqueue_error");
		if (e.enqueue_error)
			j.snum(e.enqueue_error);
		else
			j.null();
	}
	if (e.source == CTCT_SRC_FREE_HEURISTIC) {
		j.ch(',');
		j.key("insert_failed_delta");
		j.num(e.insert_failed_delta);
	}
	j.ch(',');
	j.key("loser");
	if (e.flags & CTCT_F_NO_CONNTRACK)
		j.null();
	else
		conn_line(j, e.loser, nullptr);
	j.ch(',');
	j.key("netns");
	j.num(e.netns_ino);
	j.ch(',');
	j.key("queue");
	queue_line(j, e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED, loser_queue_facts(e));
	j.ch(',');
	j.key("schema");
	j.num(CTCT_SCHEMA_VERSION);
	j.ch(',');
	j.key("source");
	j.str(source_name(e.source));
	j.ch(',');
	j.key("time");
	j.str(iso8601_ns(wall_clock_ns(e.ts_ns, ctx.realtime_offset_ns)));
	j.ch(',');
	j.key("ts_mono_ns");
	j.num(e.ts_ns);
	j.ch(',');
	j.key("type");
	j.str(event_type_name(e.type));
	j.ch(',');
	j.key("winner");
	if (e.flags & CTCT_F_HAS_WINNER)
		conn_line(j, e.winner, &e);
	else
		j.null();
	j.ch('}');
}

static std::string ms(int64_t ns)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%.3fms", ns / 1e6);
	return buf;
}

std::string event_text(const ctct_event &e, const FormatContext &ctx)
{
	std::string time = iso8601_ns(wall_clock_ns(e.ts_ns, ctx.realtime_offset_ns));
	size_t t = time.find('T');
	std::string s = (t == std::string::npos ? time : time.substr(t + 1, 15)) + " " + event_type_name(e.type);
	if (e.type != CTCT_EV_CONFIRM_DROP && e.type != CTCT_EV_CLASH_RESOLVED)
		s += " cause=" + cause_name(e.cause);
	s += " netns=" + std::to_string(e.netns_ino);
	if (e.flags & CTCT_F_NO_CONNTRACK) {
		s += " (no conntrack)";
	} else {
		s += " " + tuple_to_string(e.loser.orig);
		s += " reply " + tuple_to_string(e.loser.reply).substr(proto_name(e.loser.reply.protonum).size() + 1);
	}
	if (e.flags & CTCT_F_LOSER_QUEUED) {
		s += " queue=" + std::to_string(e.loser_queue.queue_num);
		if (loser_queue_facts(e).handed_to_listener) {
			s += " id=" + std::to_string(e.loser_queue.packet_id);
			int64_t lat = queue_latency_ns(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
			s += " in_queue=" + (lat < 0 ? std::string("?") : ms(lat));
		}
	} else if (e.source == CTCT_SRC_FREE_HEURISTIC || e.source == CTCT_SRC_FREE_LOCATION) {
		s += " in_queue=n/a";
	}
	if (e.flags & CTCT_F_HAS_WINNER) {
		s += " winner " + tuple_to_string(e.winner.orig).substr(proto_name(e.winner.orig.protonum).size() + 1);
		if ((e.flags & CTCT_F_WINNER_QUEUED) && e.ts_ns >= e.winner_confirm_ns)
			s += " confirmed " + ms((int64_t)(e.ts_ns - e.winner_confirm_ns)) + " earlier";
	}
	if (event_is_drop(e.type) && (e.flags & CTCT_F_FREED)) {
		// Names come from BTF and kallsyms; escaped anyway so one event is always one line.
		s += " reason=" + (ctx.drop_reason_name ? escape_control(ctx.drop_reason_name(e.drop_reason))
							 : std::to_string(e.drop_reason));
		if (ctx.symbolize)
			s += " at " + escape_control(ctx.symbolize(e.drop_location));
	}
	return s;
}

} // namespace ctct
