// Kallsyms::parse on arbitrary text, then lookups and symbolize() at and around every symbol and at
// addresses taken from the input. Properties: no crash, symbolize never empty and one line, an exact
// symbol address symbolizes to "+0x0" unless addresses are hidden.
#include <cstring>
#include <sstream>
#include <string>
#include "fuzz_check.hpp"
#include "kernel_text.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string text(reinterpret_cast<const char *>(data), size);
	auto k = ctct::Kallsyms::parse(text);
	uint64_t from_input = 0;
	memcpy(&from_input, data, size < 8 ? size : 8);
	for (uint64_t a : {uint64_t(0), ~uint64_t(0), from_input, from_input >> 4}) {
		auto s = k.symbolize(a);
		FUZZ_CHECK(!s.empty() && one_line(s));
	}
	// Walk the symbols back through the public interface: each parsed line's name and address.
	size_t checked = 0;
	for (size_t pos = 0; pos < text.size() && checked < 64;) {
		size_t end = text.find('\n', pos);
		std::string line = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
		pos = end == std::string::npos ? text.size() : end + 1;
		std::istringstream ls(line);
		std::string addr_text, type, name;
		if (!(ls >> addr_text >> type >> name) || addr_text.size() > 16 ||
		    addr_text.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
			continue;
		uint64_t addr = std::stoull(addr_text, nullptr, 16);
		checked++;
		k.has_function(name);
		k.module_of(name);
		k.clones_of(name);
		for (uint64_t a : {(uint64_t)addr, (uint64_t)addr - 1, (uint64_t)addr + 1}) {
			auto s = k.symbolize(a);
			FUZZ_CHECK(!s.empty() && one_line(s));
		}
		// A text symbol line that parses must make its own address resolve exactly to some symbol there.
		if ((type == "t" || type == "T") && !k.addresses_hidden()) {
			auto s = k.symbolize(addr);
			FUZZ_CHECK(s.size() > 4 && s.compare(s.size() - 4, 4, "+0x0") == 0);
		}
	}
	return 0;
}
