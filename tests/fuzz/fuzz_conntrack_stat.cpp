// parse_conntrack_stat on arbitrary text: either a table whose rows all match the header and whose
// numbers are exactly the text's hex digits (no sign, no "0x", no wrap, no trailing bytes), or a
// std::runtime_error with a one-line message. Any other exception or a crash is a bug.
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include "fuzz_check.hpp"
#include "kernel_text.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string text(reinterpret_cast<const char *>(data), size);
	try {
		auto st = ctct::parse_conntrack_stat(text);
		FUZZ_CHECK(!st.columns.empty());
		for (const auto &row : st.per_cpu)
			FUZZ_CHECK(row.size() == st.columns.size());
		auto totals = st.totals();
		FUZZ_CHECK(totals.size() <= st.columns.size());
		FUZZ_CHECK(totals.count("insert_failed") == 1);
		std::istringstream is(text);
		std::string line;
		std::getline(is, line);
		size_t r = 0;
		while (std::getline(is, line)) {
			std::vector<std::string> w = words(line);
			if (w.empty())
				continue;
			FUZZ_CHECK(r < st.per_cpu.size());
			for (size_t c = 0; c < w.size(); c++) {
				const std::string &x = w[c];
				size_t first = x.find_first_not_of('0');
				std::string sig = first == std::string::npos ? "0" : x.substr(first);
				FUZZ_CHECK(x.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos && sig.size() <= 16);
				FUZZ_CHECK(std::stoull(sig, nullptr, 16) == st.per_cpu[r][c]);
			}
			r++;
		}
		FUZZ_CHECK(r == st.per_cpu.size());
		for (size_t r = 0; r <= st.per_cpu.size(); r++)
			FUZZ_CHECK(st.cpu_value(r, "insert_failed").has_value() == (r < st.per_cpu.size()));
	} catch (const std::runtime_error &e) {
		FUZZ_CHECK(one_line(e.what()));
	}
	return 0;
}
