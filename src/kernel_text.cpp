#include "kernel_text.hpp"

#include <string_view>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include "cli_util.hpp"

namespace ctct {

// Digits only: std::stoull would also take a sign ("-1" wraps to 2^64-1), leading blanks and "0x", and the
// callers used to narrow its result to 32 bits silently.
static bool parse_unsigned(std::string_view w, int base, uint64_t max, uint64_t &out)
{
	if (w.empty())
		return false;
	uint64_t v = 0;
	for (unsigned char c : w) {
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		if (v > (max - d) / (unsigned)base)
			return false;
		v = v * base + d;
	}
	out = v;
	return true;
}

std::string read_file(const std::string &path)
{
	std::ifstream f(path);
	if (!f)
		throw std::runtime_error("cannot read " + path + ": " + strerror(errno));
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

static std::vector<std::string> split_ws(const std::string &line)
{
	std::vector<std::string> out;
	std::istringstream is(line);
	std::string w;
	while (is >> w)
		out.push_back(w);
	return out;
}

ConntrackStat parse_conntrack_stat(const std::string &text)
{
	ConntrackStat st;
	std::istringstream is(text);
	std::string line;
	if (!std::getline(is, line))
		throw std::runtime_error("nf_conntrack stat: empty input");
	st.columns = split_ws(line);
	if (st.columns.empty() || std::find(st.columns.begin(), st.columns.end(), "insert_failed") == st.columns.end())
		throw std::runtime_error("nf_conntrack stat: header has no insert_failed column");
	while (std::getline(is, line)) {
		auto words = split_ws(line);
		if (words.empty())
			continue;
		if (words.size() != st.columns.size())
			throw std::runtime_error("nf_conntrack stat: row " + std::to_string(st.per_cpu.size() + 1) + " has " +
						 std::to_string(words.size()) + " fields, header has " +
						 std::to_string(st.columns.size()));
		std::vector<uint64_t> row;
		for (const auto &w : words) {
			uint64_t v;
			if (!parse_unsigned(w, 16, UINT64_MAX, v))
				throw std::runtime_error("nf_conntrack stat: '" + escape_control(w) + "' is not a hex number");
			row.push_back(v);
		}
		st.per_cpu.push_back(std::move(row));
	}
	return st;
}

std::map<std::string, uint64_t> ConntrackStat::totals() const
{
	std::map<std::string, uint64_t> t;
	for (size_t c = 0; c < columns.size(); c++) {
		uint64_t sum = 0;
		// "entries" (the first column) is a global count repeated on every row, not per CPU
		if (columns[c] == "entries") {
			t[columns[c]] = per_cpu.empty() ? 0 : per_cpu[0][c];
			continue;
		}
		for (const auto &row : per_cpu)
			sum += row[c];
		t[columns[c]] = sum;
	}
	return t;
}

std::optional<uint64_t> ConntrackStat::cpu_value(size_t row, const std::string &column) const
{
	auto it = std::find(columns.begin(), columns.end(), column);
	if (it == columns.end() || row >= per_cpu.size())
		return std::nullopt;
	return per_cpu[row][it - columns.begin()];
}

std::vector<QueueStat> parse_nfqueue(const std::string &text)
{
	std::vector<QueueStat> out;
	std::istringstream is(text);
	std::string line;
	size_t lineno = 0;
	while (std::getline(is, line)) {
		lineno++;
		auto w = split_ws(line);
		if (w.empty())
			continue;
		if (w.size() < 8)
			throw std::runtime_error("nfnetlink_queue: line " + std::to_string(lineno) + " has " +
						 std::to_string(w.size()) + " fields, expected at least 8");
		// The kernel prints the first five as u32 and the drop counters and id sequence as u32 too; we keep
		// those in 64 bits so a future widening still parses.
		uint64_t v[8];
		for (size_t i = 0; i < 8; i++)
			if (!parse_unsigned(w[i], 10, i < 5 ? UINT32_MAX : UINT64_MAX, v[i]))
				throw std::runtime_error("nfnetlink_queue: line " + std::to_string(lineno) + " field " +
							 std::to_string(i + 1) + " '" + escape_control(w[i]) +
							 "' is not a number in range");
		QueueStat q;
		q.queue_num = (uint32_t)v[0];
		q.portid = (uint32_t)v[1];
		q.queue_total = (uint32_t)v[2];
		q.copy_mode = (uint32_t)v[3];
		q.copy_range = (uint32_t)v[4];
		q.queue_dropped = v[5];
		q.user_dropped = v[6];
		q.id_sequence = v[7];
		out.push_back(q);
	}
	return out;
}

// The words of one line as views, at most `max`, split where `is >> word` splits (C locale whitespace).
static size_t words_of(std::string_view line, std::string_view *w, size_t max)
{
	auto space = [](char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; };
	size_t n = 0, i = 0;
	while (n < max) {
		while (i < line.size() && space(line[i]))
			i++;
		if (i == line.size())
			break;
		size_t j = i;
		while (j < line.size() && !space(line[j]))
			j++;
		w[n++] = line.substr(i, j - i);
		i = j;
	}
	return n;
}

// /proc/kallsyms has about 150,000 lines on a distribution kernel with modules loaded: scanned in place,
// not through a stream and a vector of strings per line (that took most of a start under emulation), and
// kept as offsets into the one buffer, indexed by sorting (not a map node and a string per symbol).
Kallsyms Kallsyms::parse(std::string text)
{
	Kallsyms k;
	k.text_ = std::move(text);
	if (k.text_.size() > UINT32_MAX)
		return Kallsyms{}; // offsets are 32 bits; a real kallsyms is ~10 MB
	struct Row {
		uint64_t addr;
		Span name, module;
	};
	std::vector<Row> rows;
	rows.reserve(k.text_.size() / 48);
	bool any_nonzero = false;
	std::string_view all(k.text_);
	for (size_t pos = 0; pos < all.size();) {
		size_t nl = all.find('\n', pos);
		std::string_view line = all.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
		pos = nl == std::string_view::npos ? all.size() : nl + 1;
		std::string_view w[4];
		size_t n = words_of(line, w, 4);
		if (n < 3 || w[1].size() != 1 || (w[1][0] != 't' && w[1][0] != 'T'))
			continue;
		Row r{};
		if (!parse_unsigned(w[0], 16, UINT64_MAX, r.addr))
			continue;
		any_nonzero |= r.addr != 0;
		auto span = [&](std::string_view v) { return Span{(uint32_t)(v.data() - all.data()), (uint32_t)v.size()}; };
		r.name = span(w[2]);
		if (n >= 4 && w[3].size() > 2 && w[3].front() == '[' && w[3].back() == ']')
			r.module = span(w[3].substr(1, w[3].size() - 2));
		rows.push_back(r);
	}
	// Without CAP_SYSLOG (or with kptr_restrict=2) every address reads as zero.
	k.hidden_ = !rows.empty() && !any_nonzero;
	std::stable_sort(rows.begin(), rows.end(), [](const Row &a, const Row &b) { return a.addr < b.addr; });
	k.addrs_.reserve(rows.size());
	k.names_.reserve(rows.size());
	k.modules_.reserve(rows.size());
	for (const Row &r : rows) {
		k.addrs_.push_back(r.addr);
		k.names_.push_back(r.name);
		k.modules_.push_back(r.module);
	}
	k.by_name_.resize(rows.size());
	for (uint32_t i = 0; i < k.by_name_.size(); i++)
		k.by_name_[i] = i;
	// by name, and among equal names by address: find() returns the lowest, as the first insert did
	std::stable_sort(k.by_name_.begin(), k.by_name_.end(),
			 [&k](uint32_t a, uint32_t b) { return k.view(k.names_[a]) < k.view(k.names_[b]); });
	return k;
}

const uint32_t *Kallsyms::find(std::string_view name) const
{
	auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
				   [this](uint32_t i, std::string_view n) { return view(names_[i]) < n; });
	return it != by_name_.end() && view(names_[*it]) == name ? &*it : nullptr;
}

bool Kallsyms::has_function(const std::string &name) const { return find(name) != nullptr; }

std::vector<std::string> Kallsyms::clones_of(const std::string &name) const
{
	std::vector<std::string> out;
	std::string prefix = name + ".";
	auto it = std::lower_bound(by_name_.begin(), by_name_.end(), std::string_view(prefix),
				   [this](uint32_t i, std::string_view n) { return view(names_[i]) < n; });
	for (; it != by_name_.end() && view(names_[*it]).substr(0, prefix.size()) == prefix; ++it) {
		std::string n(view(names_[*it]));
		if (out.empty() || out.back() != n) // one entry per name, as the map had
			out.push_back(std::move(n));
	}
	return out;
}

std::string Kallsyms::module_of(const std::string &name) const
{
	const uint32_t *i = find(name);
	return i ? std::string(view(modules_[*i])) : "";
}

std::optional<std::pair<uint64_t, uint64_t>> Kallsyms::range_of(const std::string &name) const
{
	const uint32_t *p = find(name);
	if (hidden_ || !p)
		return std::nullopt;
	size_t i = *p;
	uint64_t lo = addrs_[i];
	while (i + 1 < addrs_.size() && addrs_[i + 1] == lo)
		i++;
	if (i + 1 >= addrs_.size())
		return std::nullopt; // the last text symbol: no end known
	return std::make_pair(lo, addrs_[i + 1]);
}

std::string Kallsyms::symbolize(uint64_t addr) const
{
	// Search the dense address array (8 bytes a symbol, not ~60): a kallsyms of 150k symbols is
	// 1.2 MB instead of 9 MB, so the binary search's cache misses drop; this runs once per event.
	auto it = std::upper_bound(addrs_.begin(), addrs_.end(), addr);
	char buf[24];
	if (hidden_ || it == addrs_.begin()) {
		buf[0] = '0';
		buf[1] = 'x';
		return std::string(buf, std::to_chars(buf + 2, buf + sizeof(buf), addr, 16).ptr);
	}
	size_t i = it - addrs_.begin() - 1;
	std::string_view name = view(names_[i]);
	std::string out;
	out.reserve(name.size() + 20);
	out = name;
	out += "+0x";
	out.append(buf, std::to_chars(buf, buf + sizeof(buf), addr - addrs_[i], 16).ptr);
	return out;
}

} // namespace ctct
