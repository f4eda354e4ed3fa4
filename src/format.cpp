#include "format.hpp"

#include <array>
#include <arpa/inet.h>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <netinet/in.h>
#include <string_view>
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

// The names of known values as literals, shared by the std::string functions below and the JSON line
// (which writes them without a temporary string or an escape scan). Empty: not a known value.
namespace {

std::string_view proto_known(uint8_t p)
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
	default: return {};
	}
}

std::string_view hook_known(uint8_t hook)
{
	static constexpr std::string_view names[] = {"prerouting", "input", "forward", "output", "postrouting"};
	return hook < 5 ? names[hook] : std::string_view();
}

std::string_view verdict_known(uint32_t v)
{
	static constexpr std::string_view names[] = {"drop", "accept", "stolen", "queue", "repeat", "stop"};
	// NF_VERDICT_MASK: the upper bits carry a queue number or errno
	return (v & 0xff) < 6 ? names[v & 0xff] : std::string_view();
}

std::string_view event_type_known(uint32_t type)
{
	switch (type) {
	case CTCT_EV_CONFIRM_DROP: return "confirm_drop";
	case CTCT_EV_CLASH_RESOLVED: return "clash_resolved";
	case CTCT_EV_VERDICT_DROP: return "verdict_drop";
	case CTCT_EV_QUEUE_DROP: return "queue_drop";
	case CTCT_EV_QUEUE_BYPASS: return "queue_bypass";
	default: return {};
	}
}

std::string_view cause_sv(uint32_t cause)
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

std::string_view source_sv(uint32_t source)
{
	switch (source) {
	case CTCT_SRC_CONFIRM_HOOK: return "confirm_hook";
	case CTCT_SRC_FREE_HEURISTIC: return "free_heuristic";
	case CTCT_SRC_QUEUE_HOOK: return "queue_hook";
	case CTCT_SRC_FREE_LOCATION: return "free_location";
	default: return "unknown";
	}
}

} // namespace

std::string proto_name(uint8_t p)
{
	std::string_view n = proto_known(p);
	return n.empty() ? std::to_string(p) : std::string(n);
}

std::string hook_name(uint8_t hook)
{
	std::string_view n = hook_known(hook);
	return n.empty() ? std::to_string(hook) : std::string(n);
}

std::string verdict_name(uint32_t v)
{
	std::string_view n = verdict_known(v);
	return n.empty() ? std::to_string(v) : std::string(n);
}

std::string_view queue_left_name(uint8_t left)
{
	switch (left) {
	case CTCT_LEFT_CONFIRM: return "confirm";
	case CTCT_LEFT_FREE: return "free";
	default: return "reinject";
	}
}

std::string event_type_name(uint32_t type)
{
	std::string_view n = event_type_known(type);
	return n.empty() ? "unknown_" + std::to_string(type) : std::string(n);
}

std::string cause_name(uint32_t cause) { return std::string(cause_sv(cause)); }

std::string source_name(uint32_t source) { return std::string(source_sv(source)); }

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

// iso8601_ns into buf (at least kIso8601Max bytes), without a std::string: the JSON line writes it in place.
constexpr size_t kIso8601Max = 96;
static size_t iso8601_into(char *buf, int64_t ns)
{
	// Floor division: before 1970 the fraction must still be 0..999999999, not "-000000001".
	int64_t sec = ns / 1000000000, frac = ns % 1000000000;
	if (frac < 0) {
		sec--;
		frac += 1000000000;
	}
	// Events come in bursts within one second: gmtime_r + strftime once per second, not per event.
	thread_local int64_t cached_sec = INT64_MIN;
	thread_local char cached[64];
	thread_local size_t cached_len = 0;
	if (sec != cached_sec) {
		time_t t = (time_t)sec;
		struct tm tm;
		if (!gmtime_r(&t, &tm)) {
			char *end = std::to_chars(buf, buf + 24, ns).ptr;
			memcpy(end, "ns", 2);
			return end + 2 - buf;
		}
		cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = sec;
	}
	memcpy(buf, cached, sizeof(cached)); // one fixed-size move; the fraction overwrites what is past the date
	char *digits = buf + cached_len;
	digits[0] = '.';
	for (int i = 9; i >= 1; i--, frac /= 10)
		digits[i] = (char)('0' + frac % 10);
	digits[10] = 'Z';
	return cached_len + 11;
}

std::string iso8601_ns(int64_t ns)
{
	char buf[kIso8601Max];
	return std::string(buf, iso8601_into(buf, ns));
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
	// queue's counters (tracepoint mode) comes without the hook. A verdict drop found at its free with a
	// queue record has that record's hook (function mode without the reinject hook).
	return {e.source != CTCT_SRC_FREE_LOCATION || e.type == CTCT_EV_VERDICT_DROP,
		e.type != CTCT_EV_QUEUE_DROP && e.type != CTCT_EV_QUEUE_BYPASS};
}

static nlohmann::json queue_json(const ctct_queue &q, uint32_t flags, uint32_t valid_flag, QueueFacts known = {})
{
	if (!(flags & valid_flag))
		return nullptr;
	int64_t lat = queue_latency_ns(q, flags, valid_flag);
	bool verdict_seen = known.handed_to_listener && q.left == CTCT_LEFT_REINJECT;
	return {{"num", q.queue_num},
		{"packet_id", verdict_seen ? nlohmann::json(q.packet_id) : nlohmann::json(nullptr)},
		{"hook", known.hook ? nlohmann::json(hook_name(q.hook)) : nlohmann::json(nullptr)},
		{"verdict", verdict_seen ? nlohmann::json(verdict_name(q.verdict)) : nlohmann::json(nullptr)},
		{"latency_ns", lat < 0 ? nlohmann::json(nullptr) : nlohmann::json(lat)},
		{"latency_to", lat < 0 ? nlohmann::json(nullptr) : nlohmann::json(queue_left_name(q.left))}};
}

nlohmann::json event_json(const ctct_event &e, const FormatContext &ctx)
{
	nlohmann::json j;
	j["type"] = event_type_name(e.type);
	j["schema"] = CTCT_SCHEMA_VERSION;
	j["ts_mono_ns"] = e.ts_ns;
	j["time"] = iso8601_ns(wall_clock_ns(e.ts_ns, ctx.realtime_offset_ns));
	j["netns"] = e.netns_ino;
	const NetnsNamer::Entry *names = ctx.netns_info ? ctx.netns_info(e.netns_ino) : nullptr;
	j["netns_info"] = names ? names->json : nlohmann::json(nullptr);
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

// Bytes nlohmann's dump writes as they are: printable ASCII but '"' and '\\'. Anything else (control
// bytes, non-ASCII, invalid UTF-8) goes the slow way, through nlohmann itself.
constexpr std::array<bool, 256> kPlainJsonByte = [] {
	std::array<bool, 256> t{};
	for (int c = 0x20; c <= 0x7e; c++)
		t[c] = c != '"' && c != '\\';
	return t;
}();

// "0".."255" for IPv4 octets: the length in the last byte, so one 4-byte copy writes any of them.
constexpr std::array<std::array<char, 4>, 256> kOctet = [] {
	std::array<std::array<char, 4>, 256> t{};
	for (int v = 0; v < 256; v++) {
		int n = 0;
		if (v >= 100)
			t[v][n++] = (char)('0' + v / 100);
		if (v >= 10)
			t[v][n++] = (char)('0' + v / 10 % 10);
		t[v][n++] = (char)('0' + v % 10);
		t[v][3] = (char)n;
	}
	return t;
}();

// Decimal digits two at a time from a table, the length counted up front (bit length * log10(2), then
// one comparison): std::to_chars' loop of divisions by 10^4 to count was a sixth of the line's time.
constexpr std::array<char, 200> kDigitPairs = [] {
	std::array<char, 200> t{};
	for (int i = 0; i < 100; i++) {
		t[2 * i] = (char)('0' + i / 10);
		t[2 * i + 1] = (char)('0' + i % 10);
	}
	return t;
}();

inline unsigned decimal_digits(uint64_t v)
{
	static constexpr uint64_t kPow10[20] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
		10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
		10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
		100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL};
	v |= 1; // 0 has one digit
	unsigned t = (unsigned)(64 - __builtin_clzll(v)) * 1233 >> 12; // floor(bit length * log10(2)), <= 19
	return t + (v >= kPow10[t]);
}

// v in decimal at p (room for 20 bytes), returns the end.
inline char *write_decimal(char *p, uint64_t v)
{
	char *end = p + decimal_digits(v), *q = end;
	while (v >= 100) {
		q -= 2;
		memcpy(q, &kDigitPairs[2 * (v % 100)], 2);
		v /= 100;
	}
	if (v >= 10)
		memcpy(q - 2, &kDigitPairs[2 * v], 2);
	else
		q[-1] = (char)('0' + v);
	return end;
}

// Two possibly overlapping W-byte moves cover any W <= n <= 2W: fixed-size, so the compiler inlines them.
template <size_t W> inline void copy_two_words(char *d, const char *s, size_t n)
{
	char a[W], b[W];
	memcpy(a, s, W);
	memcpy(b, s + n - W, W);
	memcpy(d, a, W);
	memcpy(d + n - W, b, W);
}

// memcpy for the short strings of a line (names, the time's date part) without a libc call per name
// (5% of the line's time).
inline void copy_short(char *d, const char *s, size_t n)
{
	if (n >= 16 && n <= 32)
		copy_two_words<16>(d, s, n);
	else if (n >= 8 && n < 16)
		copy_two_words<8>(d, s, n);
	else if (n >= 4 && n < 8)
		copy_two_words<4>(d, s, n);
	else if (n < 4)
		for (size_t i = 0; i < n; i++)
			d[i] = s[i];
	else
		memcpy(d, s, n);
}

struct JsonLine {
	// Writes into out's own storage through a cursor: one bounds check per fragment, inlined; growing is
	// the cold path. Most of a line is literals of known length, written without a temporary.
	static constexpr size_t kSlack = 1536; // a typical line (~1 KB) fits without growing
	std::string &out;
	char *p, *end;

	explicit JsonLine(std::string &o) : out(o)
	{
		size_t len = out.size();
		out.resize(len + kSlack);
		p = &out[len];
		end = &out[0] + out.size();
	}
	~JsonLine() { out.resize(p - &out[0]); }
	JsonLine(const JsonLine &) = delete;
	JsonLine &operator=(const JsonLine &) = delete;

	[[gnu::noinline]] void grow(size_t need)
	{
		size_t len = p - &out[0];
		out.resize(len + need + kSlack);
		p = &out[len];
		end = &out[0] + out.size();
	}
	char *room(size_t need)
	{
		if ((size_t)(end - p) < need)
			grow(need);
		return p;
	}
	void raw(const char *s, size_t n)
	{
		memcpy(room(n), s, n);
		p += n;
	}
	template <size_t N> void lit(const char (&s)[N]) // a literal, keys with their quotes: a fixed-size move
	{
		char *d = room(N - 1);
		memcpy(d, s, N - 1);
		p = d + N - 1;
	}
	void ch(char c)
	{
		*room(1) = c;
		p++;
	}
	// A string known to need no escaping (the fixed names above, digits, timestamps): quotes only.
	void plain(std::string_view v)
	{
		char *d = room(v.size() + 2);
		d[0] = '"';
		copy_short(d + 1, v.data(), v.size());
		d[v.size() + 1] = '"';
		p = d + v.size() + 2;
	}
	// Any string (names from BTF and kallsyms): escaped exactly as nlohmann does.
	void str(std::string_view v)
	{
		for (unsigned char c : v)
			if (!kPlainJsonByte[c])
				return escaped(v);
		plain(v);
	}
	[[gnu::noinline]] void escaped(std::string_view v)
	{
		// Control bytes, non-ASCII, invalid UTF-8: nlohmann's own escaping and U+FFFD replacement.
		std::string e = nlohmann::json(std::string(v)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
		raw(e.data(), e.size());
	}
	void num(uint64_t v) { p = write_decimal(room(20), v); }
	void snum(int64_t v)
	{
		char *d = room(21);
		if (v < 0)
			*d++ = '-';
		p = write_decimal(d, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	}
	void quoted_num(uint64_t v) // unknown values of a name: nlohmann prints std::to_string's digits, quoted
	{
		char *d = room(22);
		*d++ = '"';
		d = write_decimal(d, v);
		*d++ = '"';
		p = d;
	}
	void null() { lit("null"); }
};

// Unchecked writers for a span whose size is bounded (a tuple): the caller makes room once.
template <size_t N> inline char *put(char *d, const char (&s)[N])
{
	memcpy(d, s, N - 1);
	return d + N - 1;
}

inline char *put_quoted_decimal(char *d, uint64_t v)
{
	*d++ = '"';
	d = write_decimal(d, v);
	*d++ = '"';
	return d;
}

// Quoted dotted quad; writes up to 3 bytes past its end (the octet table's 4-byte copies).
inline char *put_ipv4(char *d, const uint8_t a[4])
{
	*d++ = '"';
	for (int i = 0; i < 4; i++) {
		memcpy(d, kOctet[a[i]].data(), 4);
		d += kOctet[a[i]][3];
		*d++ = i < 3 ? '.' : '"';
	}
	return d;
}

// "0".."ffff" for a group of an IPv6 address: 4 hex digits from a byte table, leading zeros shifted out.
constexpr std::array<std::array<char, 2>, 256> kHexByte = [] {
	std::array<std::array<char, 2>, 256> t{};
	const char *hex = "0123456789abcdef";
	for (int v = 0; v < 256; v++)
		t[v] = {hex[v >> 4], hex[v & 0xf]};
	return t;
}();

// inet_ntop(AF_INET6) without its sprintf per group (it was a quarter of the time with 20% IPv6 events).
// Same rules as glibc's inet_ntop6: the longest run of two or more zero groups becomes "::" (the first
// on a tie), lowercase hex without leading zeros, and ::a.b.c.d / ::ffff:a.b.c.d for IPv4-compatible and
// IPv4-mapped addresses. Checked against inet_ntop in unit tests and by fuzz_event. At most 41 bytes,
// writes up to 3 bytes past its end (4-byte stores of shorter groups and octets).
char *put_ipv6(char *p, const uint8_t a[16])
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
				memcpy(p, kOctet[a[b]].data(), 4);
				p += kOctet[a[b]][3];
				if (b < 15)
					*p++ = '.';
			}
			break;
		}
		char digits[4];
		memcpy(digits, kHexByte[a[2 * i]].data(), 2);
		memcpy(digits + 2, kHexByte[a[2 * i + 1]].data(), 2);
		unsigned skip = (unsigned)__builtin_clz((unsigned)w[i] | 1) / 4 - 4; // leading zero digits, 0..3
		// Drop them by shifting the 4 characters as one word, store all 4, advance past the kept ones
		// (a variable-length copy became a byte loop that was half of this function's time).
		uint32_t word;
		memcpy(&word, digits, 4);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		word >>= 8 * skip;
#else
		word <<= 8 * skip;
#endif
		memcpy(p, &word, 4);
		p += 4 - skip;
	}
	if (best >= 0 && best + best_len == 8)
		*p++ = ':';
	*p++ = '"';
	return p;
}

inline char *put_addr(char *d, const uint8_t a[16], uint8_t l3num)
{
	if (l3num == AF_INET)
		return put_ipv4(d, a);
	if (l3num == AF_INET6)
		return put_ipv6(d, a);
	return put(d, "\"?\""); // addr_to_string of an unknown family
}

void tuple_line(JsonLine &j, const ctct_tuple &t)
{
	// Longest: ports, two IPv6 addresses (41 each + 3 bytes of overrun), a 3-digit family: under 200.
	char *d = j.room(256);
	bool ports = has_ports(t.protonum), icmp = t.protonum == IPPROTO_ICMP || t.protonum == IPPROTO_ICMPV6;
	if (ports) {
		d = put(d, "{\"dport\":");
		d = write_decimal(d, ntohs(t.dport));
		d = put(d, ",\"dst\":");
	} else {
		d = put(d, "{\"dst\":");
	}
	d = put_addr(d, t.dst, t.l3num);
	if (t.l3num == AF_INET6)
		d = put(d, ",\"family\":\"ipv6\"");
	else if (t.l3num == AF_INET)
		d = put(d, ",\"family\":\"ipv4\"");
	else
		d = put_quoted_decimal(put(d, ",\"family\":"), t.l3num);
	if (icmp) {
		d = write_decimal(put(d, ",\"icmp_code\":"), ntohs(t.dport) & 0xff);
		d = write_decimal(put(d, ",\"icmp_id\":"), ntohs(t.sport));
		d = write_decimal(put(d, ",\"icmp_type\":"), ntohs(t.dport) >> 8);
	}
	d = put(d, ",\"proto\":");
	std::string_view proto = proto_known(t.protonum);
	if (proto.empty()) {
		d = put_quoted_decimal(d, t.protonum);
	} else {
		*d++ = '"';
		copy_short(d, proto.data(), proto.size());
		d += proto.size();
		*d++ = '"';
	}
	if (ports)
		d = write_decimal(put(d, ",\"sport\":"), ntohs(t.sport));
	d = put(d, ",\"src\":");
	d = put_addr(d, t.src, t.l3num);
	*d++ = '}';
	j.p = d;
}

inline char *put_plain(char *d, std::string_view v) // a fixed name, quoted
{
	*d++ = '"';
	copy_short(d, v.data(), v.size());
	d += v.size();
	*d++ = '"';
	return d;
}

void queue_line(JsonLine &j, const ctct_queue &q, uint32_t flags, uint32_t valid_flag, QueueFacts known = {})
{
	if (!(flags & valid_flag))
		return j.null();
	char *d = j.room(224); // keys ~75 bytes, three names <= 13, four numbers <= 20: under 190
	d = put(d, "{\"hook\":");
	std::string_view hook = hook_known(q.hook);
	if (!known.hook)
		d = put(d, "null");
	else if (hook.empty())
		d = put_quoted_decimal(d, q.hook);
	else
		d = put_plain(d, hook);
	d = put(d, ",\"latency_ns\":");
	int64_t lat = queue_latency_ns(q, flags, valid_flag);
	if (lat < 0)
		d = put(d, "null");
	else
		d = write_decimal(d, (uint64_t)lat);
	d = put(d, ",\"latency_to\":");
	d = lat < 0 ? put(d, "null") : put_plain(d, queue_left_name(q.left));
	d = write_decimal(put(d, ",\"num\":"), q.queue_num);
	d = put(d, ",\"packet_id\":");
	bool verdict_seen = known.handed_to_listener && q.left == CTCT_LEFT_REINJECT;
	if (verdict_seen)
		d = write_decimal(d, q.packet_id);
	else
		d = put(d, "null");
	d = put(d, ",\"verdict\":");
	std::string_view verdict = verdict_known(q.verdict);
	if (!verdict_seen)
		d = put(d, "null");
	else if (verdict.empty())
		d = put_quoted_decimal(d, q.verdict);
	else
		d = put_plain(d, verdict);
	*d++ = '}';
	j.p = d;
}

// conn_json's fields, plus the winner's confirmed_before_ns and queue when given.
void conn_line(JsonLine &j, const ctct_conn &c, const ctct_event *winner_of)
{
	char *d = j.room(96); // '{', confirmed_before_ns and mark with their numbers, the "orig" key: < 80
	*d++ = '{';
	if (winner_of) {
		const ctct_event &e = *winner_of;
		d = put(d, "\"confirmed_before_ns\":");
		if ((e.flags & CTCT_F_WINNER_QUEUED) && e.ts_ns >= e.winner_confirm_ns)
			d = write_decimal(d, e.ts_ns - e.winner_confirm_ns);
		else
			d = put(d, "null");
		*d++ = ',';
	}
	d = write_decimal(put(d, "\"mark\":"), c.mark);
	j.p = put(d, ",\"orig\":");
	tuple_line(j, c.orig);
	if (winner_of) {
		j.lit(",\"queue\":");
		queue_line(j, winner_of->winner_queue, winner_of->flags, CTCT_F_WINNER_QUEUED);
	}
	j.lit(",\"reply\":");
	tuple_line(j, c.reply);
	d = j.room(64); // status (16 hex digits at most) and zone with their keys: < 50
	d = put(d, ",\"status\":\"0x");
	d = std::to_chars(d, d + 16, (uint64_t)c.status, 16).ptr;
	d = write_decimal(put(d, "\",\"zone\":"), c.zone);
	*d++ = '}';
	j.p = d;
}

} // namespace

namespace {

// A name as its JSON string, from the memo when the context allows it (FormatContext::stable_names).
template <class Key, class Name>
void memo_str(JsonLine &j, std::unordered_map<Key, std::string> &memo, bool use_memo, Key key, const Name &name)
{
	if (!use_memo)
		return j.str(name(key));
	auto it = memo.find(key);
	if (it == memo.end()) {
		if (memo.size() >= 65536) // addresses from a corrupt record must not grow it without bound
			memo.clear();
		std::string quoted;
		{
			JsonLine q(quoted);
			q.str(name(key));
		}
		it = memo.emplace(key, std::move(quoted)).first;
	}
	j.raw(it->second.data(), it->second.size());
}

} // namespace

void append_event_json_line(std::string &out, const ctct_event &e, const FormatContext &ctx)
{
	JsonLine j(out);
	char *d = j.room(80); // the longest cause name is 30 bytes: under 64
	d = put_plain(put(d, "{\"cause\":"), cause_sv(e.cause));
	j.p = write_decimal(put(d, ",\"cpu\":"), e.cpu);
	if (event_is_drop(e.type)) {
		if (e.flags & CTCT_F_FREED) {
			j.lit(",\"drop\":{\"freed\":true,\"location\":");
			if (ctx.symbolize)
				memo_str(j, ctx.json_location_memo, ctx.stable_names, (uint64_t)e.drop_location, ctx.symbolize);
			else
				j.lit("\"\"");
			j.lit(",\"reason\":");
			if (ctx.drop_reason_name)
				memo_str(j, ctx.json_reason_memo, ctx.stable_names, (uint32_t)e.drop_reason, ctx.drop_reason_name);
			else
				j.quoted_num(e.drop_reason);
			j.lit(",\"reason_code\":");
			j.num(e.drop_reason);
			j.ch('}');
		} else {
			j.lit(",\"drop\":{\"freed\":false,\"location\":null,\"reason\":null,\"reason_code\":null}");
		}
	}
	if (e.type == CTCT_EV_QUEUE_DROP || e.type == CTCT_EV_QUEUE_BYPASS) {
		j.lit(",\"enqueue_error\":");
		if (e.enqueue_error)
			j.snum(e.enqueue_error);
		else
			j.null();
	}
	if (e.source == CTCT_SRC_FREE_HEURISTIC) {
		j.lit(",\"insert_failed_delta\":");
		j.num(e.insert_failed_delta);
	}
	j.lit(",\"loser\":");
	if (e.flags & CTCT_F_NO_CONNTRACK)
		j.null();
	else
		conn_line(j, e.loser, nullptr);
	j.lit(",\"netns\":");
	j.num(e.netns_ino);
	j.lit(",\"netns_info\":");
	if (const NetnsNamer::Entry *names = ctx.netns_info ? ctx.netns_info(e.netns_ino) : nullptr)
		j.raw(names->json_text.data(), names->json_text.size());
	else
		j.null();
	j.lit(",\"queue\":");
	queue_line(j, e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED, loser_queue_facts(e));
	// schema .. the winner's key: under 200 bytes (the time is at most kIso8601Max)
	d = j.room(128 + kIso8601Max);
	d = write_decimal(put(d, ",\"schema\":"), CTCT_SCHEMA_VERSION);
	d = put_plain(put(d, ",\"source\":"), source_sv(e.source));
	d = put(d, ",\"time\":\"");
	d += iso8601_into(d, wall_clock_ns(e.ts_ns, ctx.realtime_offset_ns));
	d = write_decimal(put(d, "\",\"ts_mono_ns\":"), e.ts_ns);
	d = put(d, ",\"type\":");
	std::string_view type = event_type_known(e.type);
	if (type.empty()) {
		d = write_decimal(put(d, "\"unknown_"), e.type);
		*d++ = '"';
	} else {
		d = put_plain(d, type);
	}
	j.p = put(d, ",\"winner\":");
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
	if (const NetnsNamer::Entry *names = ctx.netns_info ? ctx.netns_info(e.netns_ino) : nullptr)
		if (!names->label.empty())
			s += " owner=" + escape_control(names->label);
	if (e.flags & CTCT_F_NO_CONNTRACK) {
		s += " (no conntrack)";
	} else {
		s += " " + tuple_to_string(e.loser.orig);
		s += " reply " + tuple_to_string(e.loser.reply).substr(proto_name(e.loser.reply.protonum).size() + 1);
	}
	if (e.flags & CTCT_F_LOSER_QUEUED) {
		s += " queue=" + std::to_string(e.loser_queue.queue_num);
		if (loser_queue_facts(e).handed_to_listener) {
			if (e.loser_queue.left == CTCT_LEFT_REINJECT)
				s += " id=" + std::to_string(e.loser_queue.packet_id);
			int64_t lat = queue_latency_ns(e.loser_queue, e.flags, CTCT_F_LOSER_QUEUED);
			s += " in_queue=" + (lat < 0 ? std::string("?") : ms(lat));
			if (lat >= 0 && e.loser_queue.left != CTCT_LEFT_REINJECT)
				s += " (to " + std::string(queue_left_name(e.loser_queue.left)) + ")";
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
