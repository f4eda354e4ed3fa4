#include "btf_names.hpp"

#include <bpf/btf.h>

namespace ctct {

// Parsing vmlinux BTF (about 5 MB) costs 20 ms here and ten times that under emulation: once per process.
static const struct btf *vmlinux_btf()
{
	static struct btf *btf = btf__load_vmlinux_btf();
	return btf;
}

DropReasons DropReasons::load()
{
	DropReasons r;
	const struct btf *btf = vmlinux_btf();
	if (!btf)
		return r;
	int id = btf__find_by_name_kind(btf, "skb_drop_reason", BTF_KIND_ENUM);
	if (id > 0) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const struct btf_enum *e = btf_enum(t);
		static const std::string prefix = "SKB_DROP_REASON_";
		for (int i = 0; i < btf_vlen(t); i++, e++) {
			std::string n = btf__name_by_offset(btf, e->name_off);
			if (n.rfind(prefix, 0) == 0)
				n = n.substr(prefix.size());
			r.names_.emplace((uint32_t)e->val, n);
		}
	}
	return r;
}

bool btf_has_function(const std::string &name, const std::string &module)
{
	const struct btf *vmlinux = vmlinux_btf();
	if (!vmlinux)
		return false;
	if (module.empty())
		return btf__find_by_name_kind(vmlinux, name.c_str(), BTF_KIND_FUNC) > 0;
	struct btf *btf = btf__parse_split(("/sys/kernel/btf/" + module).c_str(), const_cast<struct btf *>(vmlinux));
	bool found = btf && btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_FUNC) > 0;
	btf__free(btf);
	return found;
}

std::string DropReasons::name(uint32_t value) const
{
	auto it = names_.find(value);
	return it == names_.end() ? std::to_string(value) : it->second;
}

} // namespace ctct
