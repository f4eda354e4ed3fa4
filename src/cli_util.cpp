#include "cli_util.hpp"

#include <cctype>
#include <cstdio>
#include <limits>
#include <stdexcept>

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

} // namespace ctct
