// A failed property is a crash libFuzzer records (with the input), not a silent return.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#define FUZZ_CHECK(cond)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                           \
		}                                                                          \
	} while (0)

inline bool one_line(const std::string &s) { return s.find('\n') == std::string::npos; }

// The whitespace-separated words of one line, as the kernel's /proc tables are read.
inline std::vector<std::string> words(const std::string &line)
{
	std::istringstream ls(line);
	std::vector<std::string> w;
	for (std::string x; ls >> x;)
		w.push_back(x);
	return w;
}
