// `ctconfirm-trace doctor`: a read-only look at this network namespace for the NFQUEUE-before-confirm hazard.
// No BPF. Rule parsing (iptables-save text, `nft -j list ruleset`), queue placement and the risk statement
// are pure functions unit-tested on captured outputs; run_doctor gathers the inputs (files, *-save tools).
#pragma once
#include "doctor_assess.hpp"
#include "doctor_render.hpp"
#include "doctor_rules.hpp"

namespace ctct {

// Gathers everything from this host (the caller's network namespace) and prints it. Returns 0.
int run_doctor(bool json);

} // namespace ctct
