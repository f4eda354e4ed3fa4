#include "format.hpp"

#include <arpa/inet.h>
#include <cinttypes>
#include <cstdio>
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
	default: return "unknown_" + std::to_string(type);
	}
}

std::string cause_name(uint32_t cause)
{
	switch (cause) {
	case CTCT_CAUSE_CLASH: return "clash";
	case CTCT_CAUSE_OTHER: return "other";
	case CTCT_CAUSE_INSERT_FAILED: return "insert_failed";
	default: return "unknown";
	}
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
	time_t t = (time_t)sec;
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return std::to_string(ns) + "ns";
	char buf[64];
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%09" PRId64 "Z", frac);
	return buf;
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

static nlohmann::json queue_json(const ctct_queue &q, uint32_t flags, uint32_t valid_flag)
{
	if (!(flags & valid_flag))
		return nullptr;
	int64_t lat = queue_latency_ns(q, flags, valid_flag);
	return {{"num", q.queue_num}, {"packet_id", q.packet_id}, {"hook", hook_name(q.hook)},
		{"verdict", verdict_name(q.verdict)},
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
	j["source"] = e.source == CTCT_SRC_FREE_HEURISTIC ? "free_heuristic" : "confirm_hook";
	j["loser"] = conn_json(e.loser);
	// In tracepoint mode the queue is not observable: null says "unknown", never 0.
	j["queue"] = queue_json(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
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
	if (e.type == CTCT_EV_CONFIRM_DROP) {
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
	return j;
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
	s += " netns=" + std::to_string(e.netns_ino) + " " + tuple_to_string(e.loser.orig);
	s += " reply " + tuple_to_string(e.loser.reply).substr(proto_name(e.loser.reply.protonum).size() + 1);
	if (e.flags & CTCT_F_LOSER_QUEUED) {
		s += " queue=" + std::to_string(e.loser_queue.queue_num) + " id=" + std::to_string(e.loser_queue.packet_id);
		int64_t lat = queue_latency_ns(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
		s += " in_queue=" + (lat < 0 ? std::string("?") : ms(lat));
	} else if (e.source == CTCT_SRC_FREE_HEURISTIC) {
		s += " in_queue=n/a";
	}
	if (e.flags & CTCT_F_HAS_WINNER) {
		s += " winner " + tuple_to_string(e.winner.orig).substr(proto_name(e.winner.orig.protonum).size() + 1);
		if ((e.flags & CTCT_F_WINNER_QUEUED) && e.ts_ns >= e.winner_confirm_ns)
			s += " confirmed " + ms((int64_t)(e.ts_ns - e.winner_confirm_ns)) + " earlier";
	}
	if (e.type == CTCT_EV_CONFIRM_DROP && (e.flags & CTCT_F_FREED)) {
		// Names come from BTF and kallsyms; escaped anyway so one event is always one line.
		s += " reason=" + (ctx.drop_reason_name ? escape_control(ctx.drop_reason_name(e.drop_reason))
							 : std::to_string(e.drop_reason));
		if (ctx.symbolize)
			s += " at " + escape_control(ctx.symbolize(e.drop_location));
	}
	return s;
}

} // namespace ctct
