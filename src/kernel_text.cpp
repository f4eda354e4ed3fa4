#include "kernel_text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ctct {

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
			size_t used = 0;
			uint64_t v;
			try {
				v = std::stoull(w, &used, 16);
			} catch (const std::exception &) {
				used = 0;
			}
			if (used != w.size())
				throw std::runtime_error("nf_conntrack stat: '" + w + "' is not a hex number");
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
		QueueStat q;
		try {
			q.queue_num = std::stoul(w[0]);
			q.portid = std::stoul(w[1]);
			q.queue_total = std::stoul(w[2]);
			q.copy_mode = std::stoul(w[3]);
			q.copy_range = std::stoul(w[4]);
			q.queue_dropped = std::stoull(w[5]);
			q.user_dropped = std::stoull(w[6]);
			q.id_sequence = std::stoull(w[7]);
		} catch (const std::exception &) {
			throw std::runtime_error("nfnetlink_queue: line " + std::to_string(lineno) + " is not numeric");
		}
		out.push_back(q);
	}
	return out;
}

Kallsyms Kallsyms::parse(const std::string &text)
{
	Kallsyms k;
	std::istringstream is(text);
	std::string line;
	bool any_nonzero = false;
	while (std::getline(is, line)) {
		auto w = split_ws(line);
		if (w.size() < 3 || w[1].size() != 1 || (w[1][0] != 't' && w[1][0] != 'T'))
			continue;
		KernelSymbol s;
		try {
			s.addr = std::stoull(w[0], nullptr, 16);
		} catch (const std::exception &) {
			continue;
		}
		any_nonzero |= s.addr != 0;
		s.name = w[2];
		if (w.size() >= 4 && w[3].size() > 2 && w[3].front() == '[')
			s.module = w[3].substr(1, w[3].size() - 2);
		k.syms_.push_back(std::move(s));
	}
	// Without CAP_SYSLOG (or with kptr_restrict=2) every address reads as zero.
	k.hidden_ = !k.syms_.empty() && !any_nonzero;
	std::sort(k.syms_.begin(), k.syms_.end(), [](auto &a, auto &b) { return a.addr < b.addr; });
	for (size_t i = 0; i < k.syms_.size(); i++)
		k.by_name_.emplace(k.syms_[i].name, i);
	return k;
}

bool Kallsyms::has_function(const std::string &name) const { return by_name_.count(name) != 0; }

std::vector<std::string> Kallsyms::clones_of(const std::string &name) const
{
	std::vector<std::string> out;
	for (auto it = by_name_.lower_bound(name + "."); it != by_name_.end() && it->first.rfind(name + ".", 0) == 0; ++it)
		out.push_back(it->first);
	return out;
}

std::string Kallsyms::module_of(const std::string &name) const
{
	auto it = by_name_.find(name);
	return it == by_name_.end() ? "" : syms_[it->second].module;
}

std::optional<std::pair<uint64_t, uint64_t>> Kallsyms::range_of(const std::string &name) const
{
	auto it = by_name_.find(name);
	if (hidden_ || it == by_name_.end())
		return std::nullopt;
	size_t i = it->second;
	uint64_t lo = syms_[i].addr;
	while (i + 1 < syms_.size() && syms_[i + 1].addr == lo)
		i++;
	if (i + 1 >= syms_.size())
		return std::nullopt; // the last text symbol: no end known
	return std::make_pair(lo, syms_[i + 1].addr);
}

std::string Kallsyms::symbolize(uint64_t addr) const
{
	char buf[32];
	auto it = std::upper_bound(syms_.begin(), syms_.end(), addr, [](uint64_t a, const KernelSymbol &s) { return a < s.addr; });
	if (hidden_ || it == syms_.begin()) {
		snprintf(buf, sizeof(buf), "0x%llx", (unsigned long long)addr);
		return buf;
	}
	--it;
	snprintf(buf, sizeof(buf), "+0x%llx", (unsigned long long)(addr - it->addr));
	return it->name + buf;
}

} // namespace ctct
