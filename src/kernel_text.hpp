// Parsers of kernel text files. Pure functions over strings so they are unit-tested on captured samples.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ctct {

// /proc/net/stat/nf_conntrack: a header of column names, then one row of hex numbers per possible CPU.
struct ConntrackStat {
	std::vector<std::string> columns;
	std::vector<std::vector<uint64_t>> per_cpu; // per_cpu[row][column]
	std::map<std::string, uint64_t> totals() const;
	std::optional<uint64_t> cpu_value(size_t row, const std::string &column) const;
};
// Throws std::runtime_error with a one-line message on malformed input.
ConntrackStat parse_conntrack_stat(const std::string &text);

// /proc/net/netfilter/nfnetlink_queue: one line per bound queue.
struct QueueStat {
	uint32_t queue_num = 0;
	uint32_t portid = 0;
	uint32_t queue_total = 0;
	uint32_t copy_mode = 0;
	uint32_t copy_range = 0;
	uint64_t queue_dropped = 0;
	uint64_t user_dropped = 0;
	uint64_t id_sequence = 0;
};
std::vector<QueueStat> parse_nfqueue(const std::string &text);

// /proc/kallsyms, text symbols only (t/T), sorted by address for symbolization.
class Kallsyms {
public:
	static Kallsyms parse(std::string text);
	// The name as it can be attached: exact match first; compiler clones (name.isra.0, name.constprop.0,
	// name.cold) are reported but not used, because their calling convention may differ.
	bool has_function(const std::string &name) const;
	std::vector<std::string> clones_of(const std::string &name) const;
	std::string module_of(const std::string &name) const;
	std::string symbolize(uint64_t addr) const; // "func+0x1a" or "0xffff..." when unknown
	// [start, start of the next symbol): the function's text, for "was it freed inside f?"
	std::optional<std::pair<uint64_t, uint64_t>> range_of(const std::string &name) const;
	size_t size() const { return addrs_.size(); }
	bool addresses_hidden() const { return hidden_; }

private:
	// Names and modules are offsets into text_ (the file as read), not a string per symbol: a distribution
	// kernel has 100-150k text symbols and a tracer start parses them all (under emulation, seconds).
	struct Span {
		uint32_t off = 0, len = 0;
	};
	std::string_view view(Span s) const { return std::string_view(text_).substr(s.off, s.len); }
	const uint32_t *find(std::string_view name) const; // first (lowest address) symbol of that name
	std::string text_;
	std::vector<uint64_t> addrs_;  // sorted
	std::vector<Span> names_;      // names_[i]: the name at addrs_[i]
	std::vector<Span> modules_;    // empty span for vmlinux
	std::vector<uint32_t> by_name_; // indices, sorted by name, then address
	bool hidden_ = false;
};

std::string read_file(const std::string &path); // throws std::runtime_error("cannot read PATH: errno text")

} // namespace ctct
