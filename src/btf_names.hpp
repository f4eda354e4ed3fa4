#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace ctct {
// enum skb_drop_reason names from the running kernel's BTF; numbers move between kernel versions.
class DropReasons {
public:
	static DropReasons load(); // empty on a kernel without vmlinux BTF or without the enum
	std::string name(uint32_t value) const;
	size_t size() const { return names_.size(); }

private:
	std::map<uint32_t, std::string> names_;
};
// Whether the running kernel's BTF (vmlinux, or /sys/kernel/btf/MODULE split on it) has FUNC `name`.
bool btf_has_function(const std::string &name, const std::string &module);
} // namespace ctct
