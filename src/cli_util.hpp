#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace ctct {

// Filters evaluated in the kernel (bpf/common.bpf.h keep()).
struct FlowFilter {
	uint8_t proto = 0;  // IPPROTO_*; 0: all
	uint16_t port = 0;  // host order; 0: all
	uint8_t family = 0; // AF_INET/AF_INET6; 0: no address filter
	uint8_t prefix_len = 0;
	uint8_t addr[16] = {};
	bool has_queue = false;
	uint32_t queue = 0;
};
// Each throws std::invalid_argument with a one-line message naming the flag.
uint8_t parse_proto(const std::string &text);                        // tcp, udp, icmp, icmpv6, sctp, or 1..255
void parse_addr_prefix(const std::string &text, FlowFilter &out);    // 10.0.0.0/8, fd00::1, 192.0.2.7
uint16_t parse_port(const std::string &text);                        // 1..65535
uint32_t parse_uint(const std::string &flag, const std::string &text, uint32_t max);
// "30s", "5m", "1h", "250ms", "2" (seconds). Throws std::invalid_argument with a one-line message.
uint64_t parse_duration_ns(const std::string &text);

// User or kernel text made safe to put inside a one-line message: control bytes (newline, ESC, DEL, ...)
// become \n, \t or \xNN, so an error about a bad value is always exactly one line on a terminal.
std::string escape_control(std::string_view text);
// CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns(), so BPF timestamps compare with it.
uint64_t monotonic_ns();

} // namespace ctct
