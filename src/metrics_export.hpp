// Where the metrics go: prometheus-cpp's pull exposer (--metrics-listen) and a textfile for node_exporter's
// textfile collector (--metrics-textfile), replaced atomically.
#pragma once
#include <memory>
#include <string>

#include "metrics.hpp"

namespace prometheus {
class Exposer;
}

namespace ctct {

class MetricsExposer {
public:
	// Listens at once; throws std::runtime_error "cannot listen on ADDR: <errno text>" if it cannot.
	MetricsExposer(const ListenAddress &at, const Metrics &metrics);
	~MetricsExposer();
	MetricsExposer(const MetricsExposer &) = delete;
	MetricsExposer &operator=(const MetricsExposer &) = delete;

private:
	std::unique_ptr<prometheus::Exposer> exposer_;
};

// Writes the text to PATH.<pid>.tmp in PATH's directory, then renames it over PATH: a reader sees the
// old file or the new one, never half of one (the collector reads *.prom only, so the temporary is
// skipped). Returns "" or the error ("write /x/y.prom.123.tmp: No space left on device").
std::string write_file_atomically(const std::string &path, const std::string &text);

} // namespace ctct
