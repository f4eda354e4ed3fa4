// Rendering of events: tuples, JSON lines (schema in docs/json-schema.md), human lines.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <nlohmann/json.hpp>
#include "event.hpp"
#include "netns_names.hpp"

namespace ctct {

// What the formatter needs from the running system, injected so unit tests need no kernel.
struct FormatContext {
	int64_t realtime_offset_ns = 0; // CLOCK_REALTIME - CLOCK_MONOTONIC at start
	std::function<std::string(uint32_t)> drop_reason_name;   // from the running kernel's BTF
	std::function<std::string(uint64_t)> symbolize;          // kernel address -> "func+0x1a"
	// Set when both functions give the same answer for a value all run long (main.cpp: BTF and kallsyms
	// are read once, before tracing). The JSON line then keeps each answer, JSON-escaped, and calls the
	// function only for a value it has not seen: drops are freed at a handful of call sites for a handful
	// of reasons, so an event costs a hash lookup instead of a kallsyms search and a string. Off by
	// default: tests give one context different functions. Not thread-safe (one event loop).
	bool stable_names = false;
	// The names of an event's netns (netns_info); unset or returning nullptr: "netns_info": null.
	std::function<const NetnsNamer::Entry *(uint32_t)> netns_info;
	mutable std::unordered_map<uint64_t, std::string> json_location_memo; // address -> "\"func+0x1a\""
	mutable std::unordered_map<uint32_t, std::string> json_reason_memo;   // reason -> "\"NAME\""
};

std::string addr_to_string(const uint8_t addr[16], uint8_t l3num);
std::string proto_name(uint8_t protonum);
std::string hook_name(uint8_t hook);
std::string verdict_name(uint32_t verdict);
std::string event_type_name(uint32_t type);
std::string cause_name(uint32_t cause);
std::string source_name(uint32_t source);
bool event_is_drop(uint32_t type); // the packet was lost (confirm_drop, verdict_drop, queue_drop)
std::string tuple_to_string(const ctct_tuple &t); // "udp 10.0.0.1:53 -> 10.0.0.2:40000"
std::string iso8601_ns(int64_t realtime_ns);       // "2026-11-24T03:04:05.123456789Z"
int64_t wall_clock_ns(uint64_t mono_ns, int64_t realtime_offset_ns);

nlohmann::json tuple_json(const ctct_tuple &t);
nlohmann::json event_json(const ctct_event &e, const FormatContext &ctx);
std::string event_text(const ctct_event &e, const FormatContext &ctx);
// The JSON line of an event, byte for byte event_json(e, ctx).dump(-1, ' ', false, replace) without
// building the nlohmann tree (~60x faster: 3.6-4.3 M lines/s against 42-72 k/s on one core of the
// benchmark's VM; the trace hot path). Appends to out, no '\n'.
void append_event_json_line(std::string &out, const ctct_event &e, const FormatContext &ctx);

// Time the loser spent in NFQUEUE, or -1 when it was not seen there.
int64_t queue_latency_ns(const ctct_queue &q, uint32_t flags, uint32_t valid_flag);
// What an event's queue record can say: the hook (not when the queue number came from the queue's
// counters), packet id and verdict (only for a packet the listener got).
// What a queue record's reinject_ns is the time of (enum ctct_queue_left): "reinject", "confirm", "free".
std::string_view queue_left_name(uint8_t left);

struct QueueFacts {
	bool hook = true;
	bool handed_to_listener = true;
};
QueueFacts loser_queue_facts(const ctct_event &e);

} // namespace ctct
