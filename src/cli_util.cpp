#include "cli_util.hpp"

#include <cctype>
#include <stdexcept>

namespace ctct {

uint64_t parse_duration_ns(const std::string &text)
{
	size_t i = 0;
	while (i < text.size() && std::isdigit((unsigned char)text[i]))
		i++;
	if (i == 0 || i > 12)
		throw std::invalid_argument("invalid duration '" + text + "': expected a number with unit ms, s, m or h");
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
		throw std::invalid_argument("invalid duration '" + text + "': unknown unit '" + unit + "' (use ms, s, m or h)");
	if (n == 0)
		throw std::invalid_argument("invalid duration '" + text + "': must be greater than zero");
	return n * mult;
}

} // namespace ctct
