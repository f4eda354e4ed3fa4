#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace ctct {
// "30s", "5m", "1h", "250ms", "2" (seconds). Throws std::invalid_argument with a one-line message.
uint64_t parse_duration_ns(const std::string &text);

// User or kernel text made safe to put inside a one-line message: control bytes (newline, ESC, DEL, ...)
// become \n, \t or \xNN, so an error about a bad value is always exactly one line on a terminal.
std::string escape_control(std::string_view text);
} // namespace ctct
