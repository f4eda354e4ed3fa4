// parse_duration_ns on arbitrary text: either std::invalid_argument with a one-line message free of
// control characters (it is printed as the tool's only stderr line), or exactly number * unit, > 0.
#include <stdexcept>
#include <string>
#include "cli_util.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string text(reinterpret_cast<const char *>(data), size);
	uint64_t ns;
	try {
		ns = ctct::parse_duration_ns(text);
	} catch (const std::invalid_argument &e) {
		std::string msg = e.what();
		for (unsigned char c : msg)
			FUZZ_CHECK(c >= 0x20 && c != 0x7f);
		return 0;
	}
	size_t digits = text.find_first_not_of("0123456789");
	FUZZ_CHECK(digits != 0 && digits != std::string::npos ? true : digits == std::string::npos);
	std::string unit = digits == std::string::npos ? "" : text.substr(digits);
	unsigned __int128 n = 0;
	for (size_t i = 0; i < (digits == std::string::npos ? text.size() : digits); i++)
		n = n * 10 + (text[i] - '0');
	unsigned __int128 mult = unit == "ms" ? 1000000ULL
			       : unit == "" || unit == "s" ? 1000000000ULL
			       : unit == "m" ? 60000000000ULL
			       : unit == "h" ? 3600000000000ULL
					     : 0;
	FUZZ_CHECK(mult != 0);
	FUZZ_CHECK(ns > 0 && (unsigned __int128)ns == n * mult);
	return 0;
}
