#pragma once
#include <cstdint>
#include <string>

namespace ctct {
// "30s", "5m", "1h", "250ms", "2" (seconds). Throws std::invalid_argument with a one-line message.
uint64_t parse_duration_ns(const std::string &text);
} // namespace ctct
