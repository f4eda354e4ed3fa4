// parse_nfqueue on arbitrary text: every accepted line gives one record whose numbers are exactly the
// text's (no sign, no wrap, no silent narrowing to 32 bits); otherwise a one-line std::runtime_error.
#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include "fuzz_check.hpp"
#include "kernel_text.hpp"

// Reference reading of one field, written differently from the parser on purpose.
static bool reference(const std::string &w, unsigned long long max, unsigned long long &out)
{
	if (w.empty() || w.find_first_not_of("0123456789") != std::string::npos)
		return false;
	errno = 0;
	out = strtoull(w.c_str(), nullptr, 10);
	return errno == 0 && out <= max;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string text(reinterpret_cast<const char *>(data), size);
	std::vector<ctct::QueueStat> qs;
	try {
		qs = ctct::parse_nfqueue(text);
	} catch (const std::runtime_error &e) {
		FUZZ_CHECK(one_line(e.what()));
		return 0;
	}
	std::istringstream is(text);
	std::string line;
	size_t i = 0;
	while (std::getline(is, line)) {
		std::vector<std::string> w = words(line);
		if (w.empty())
			continue;
		FUZZ_CHECK(i < qs.size() && w.size() >= 8);
		const auto &q = qs[i++];
		unsigned long long v[8];
		for (int f = 0; f < 8; f++)
			FUZZ_CHECK(reference(w[f], f < 5 ? 0xffffffffULL : ~0ULL, v[f]));
		FUZZ_CHECK(q.queue_num == v[0] && q.portid == v[1] && q.queue_total == v[2] && q.copy_mode == v[3] &&
			   q.copy_range == v[4] && q.queue_dropped == v[5] && q.user_dropped == v[6] &&
			   q.id_sequence == v[7]);
	}
	FUZZ_CHECK(i == qs.size());
	return 0;
}
