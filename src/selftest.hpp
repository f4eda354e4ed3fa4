// `ctconfirm-trace selftest`: build the collision scenario in private network namespaces, send a known
// burst, and compare what the kernel counted with what the tracer saw.
#pragma once
#include <csignal>
#include <cstdint>
#include <string>
#include <nlohmann/json.hpp>
#include "backend.hpp"

namespace ctct {

struct SelftestOptions {
	unsigned pairs = 20;    // colliding flow pairs (one datagram from each client address)
	unsigned hold_ms = 200; // how long the listener keeps each packet
	bool verbose = false;
};

struct SelftestResult {
	std::string mode; // function or tracepoint
	uint64_t sent = 0, received = 0;
	uint64_t insert_failed_delta = 0, drop_delta = 0;
	uint64_t queue_total_packets = 0; // id_sequence of the queue: packets that entered it
	uint64_t confirm_drop_events = 0;
	uint64_t events_lost = 0; // ring buffer and map losses
	bool interrupted = false;

	uint64_t lost() const { return sent - received; }
	bool agree() const;
	std::string verdict_line() const;
	nlohmann::json to_json() const;
};

// Throws std::runtime_error (one line) when the scenario cannot be built. `stop` is polled so
// SIGINT/SIGTERM end the run early; the namespaces go away with this process in every case.
SelftestResult run_selftest(const Plan &plan, const SelftestOptions &opts, volatile sig_atomic_t *stop);

} // namespace ctct
