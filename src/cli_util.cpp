#include "cli_util.hpp"

#include <arpa/inet.h>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <limits>
#include <netinet/in.h>
#include <stdexcept>
#include <time.h>

namespace ctct {

std::string escape_control(std::string_view text)
{
	std::string out;
	out.reserve(text.size());
	for (unsigned char c : text) {
		if (c >= 0x20 && c != 0x7f) {
			out += (char)c;
		} else if (c == '\n') {
			out += "\\n";
		} else if (c == '\t') {
			out += "\\t";
		} else {
			char buf[8];
			snprintf(buf, sizeof(buf), "\\x%02x", c);
			out += buf;
		}
	}
	return out;
}

uint64_t parse_duration_ns(const std::string &text)
{
	auto bad = [&](const std::string &why) {
		return std::invalid_argument("invalid duration '" + escape_control(text) + "': " + why);
	};
	size_t i = 0;
	while (i < text.size() && std::isdigit((unsigned char)text[i]))
		i++;
	if (i == 0 || i > 12)
		throw bad("expected a number with unit ms, s, m or h");
	uint64_t n = std::stoull(text.substr(0, i));
	std::string unit = text.substr(i);
	uint64_t mult;
	if (unit == "ms")
		mult = 1000000ULL;
	else if (unit.empty() || unit == "s")
		mult = 1000000000ULL;
	else if (unit == "m")
		mult = 60ULL * 1000000000ULL;
	else if (unit == "h")
		mult = 3600ULL * 1000000000ULL;
	else
		throw bad("unknown unit '" + escape_control(unit) + "' (use ms, s, m or h)");
	if (n == 0)
		throw bad("must be greater than zero");
	// 12 digits of hours would wrap around 2^64 ns (584 years) into a short, wrong duration.
	if (n > std::numeric_limits<uint64_t>::max() / mult)
		throw bad("too long (at most 584 years)");
	return n * mult;
}

uint32_t parse_uint(const std::string &flag, const std::string &text, uint32_t max)
{
	if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos)
		throw std::invalid_argument("invalid " + flag + " '" + text + "': expected a number 0.." + std::to_string(max));
	uint64_t v = std::stoull(text);
	if (v > max)
		throw std::invalid_argument("invalid " + flag + " '" + text + "': must be at most " + std::to_string(max));
	return (uint32_t)v;
}

uint8_t parse_proto(const std::string &text)
{
	static const struct {
		const char *name;
		uint8_t num;
	} names[] = {{"tcp", IPPROTO_TCP},   {"udp", IPPROTO_UDP},   {"icmp", IPPROTO_ICMP}, {"icmpv6", IPPROTO_ICMPV6},
		     {"sctp", IPPROTO_SCTP}, {"dccp", IPPROTO_DCCP}, {"gre", IPPROTO_GRE},   {"udplite", IPPROTO_UDPLITE}};
	for (const auto &n : names)
		if (text == n.name)
			return n.num;
	uint32_t v;
	try {
		v = parse_uint("--proto", text, 255);
	} catch (const std::invalid_argument &) {
		throw std::invalid_argument("invalid --proto '" + text + "': use tcp, udp, icmp, icmpv6, sctp, dccp, gre, "
					    "udplite or a protocol number 1..255");
	}
	if (v == 0)
		throw std::invalid_argument("invalid --proto '0': protocol numbers start at 1");
	return (uint8_t)v;
}

void parse_addr_prefix(const std::string &text, FlowFilter &out)
{
	std::string addr = text, len;
	auto slash = text.find('/');
	if (slash != std::string::npos) {
		addr = text.substr(0, slash);
		len = text.substr(slash + 1);
	}
	uint8_t buf[16] = {};
	int family;
	if (inet_pton(AF_INET, addr.c_str(), buf) == 1)
		family = AF_INET;
	else if (inet_pton(AF_INET6, addr.c_str(), buf) == 1)
		family = AF_INET6;
	else
		throw std::invalid_argument("invalid --addr '" + text + "': expected an IPv4 or IPv6 address, optionally /prefix");
	uint32_t max = family == AF_INET ? 32 : 128, prefix = max;
	if (slash != std::string::npos) {
		try {
			prefix = parse_uint("--addr prefix", len, max);
		} catch (const std::invalid_argument &) {
			throw std::invalid_argument("invalid --addr '" + text + "': prefix length must be 0.." + std::to_string(max));
		}
	}
	// host bits set under the prefix would never match: say so rather than filter everything out
	for (uint32_t bit = prefix; bit < max; bit++)
		if (buf[bit / 8] & (0x80 >> (bit % 8)))
			throw std::invalid_argument("invalid --addr '" + text + "': host bits set beyond /" + std::to_string(prefix));
	out.family = (uint8_t)family;
	out.prefix_len = (uint8_t)prefix;
	memcpy(out.addr, buf, sizeof(out.addr));
}

uint16_t parse_port(const std::string &text)
{
	uint32_t v = parse_uint("--port", text, 65535);
	if (v == 0)
		throw std::invalid_argument("invalid --port '0': ports are 1..65535");
	return (uint16_t)v;
}

uint64_t monotonic_ns()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

} // namespace ctct
