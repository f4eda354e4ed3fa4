#include "doctor_assess.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>

#include "ctct_event.h"

namespace ctct {

using nlohmann::json;

namespace {

std::pair<int, int> kernel_version(const std::string &release)
{
	int major = 0, minor = 0;
	if (sscanf(release.c_str(), "%d.%d", &major, &minor) < 2)
		return {0, 0};
	return {major, minor};
}

bool version_at_least(const std::string &release, int major, int minor)
{
	auto v = kernel_version(release);
	return v.first > major || (v.first == major && v.second >= minor);
}

bool has_symbol(const Kallsyms &k, const std::string &name) { return k.has_function(name) || !k.clones_of(name).empty(); }

} // namespace

KernelInfo kernel_info(const std::string &release, const Kallsyms *ksyms, bool btf)
{
	KernelInfo k;
	k.release = release;
	k.btf = btf;
	k.kallsyms_readable = ksyms && ksyms->size() > 0;
	k.conntrack_in_kallsyms = k.kallsyms_readable && has_symbol(*ksyms, "__nf_conntrack_confirm");
	if (k.kallsyms_readable) {
		if (ksyms->has_function("nfqnl_reinject"))
			k.reinject_function = "nfqnl_reinject";
		else if (ksyms->has_function("nf_reinject"))
			k.reinject_function = "nf_reinject";
	}
	// No symbol marks the re-lookup (nf_conntrack_update's __nf_conntrack_update path before 6.12).
	k.reinject_relookup = {!version_at_least(release, 6, 12), "version",
			       "inferred from the kernel version: before 6.12 the reinject path looks the conntrack up "
			       "again, which rescues most same-flow collisions"};
	if (k.conntrack_in_kallsyms) {
		k.udp_clash_resolution = {has_symbol(*ksyms, "nf_ct_resolve_clash"), "kallsyms", ""};
		if (has_symbol(*ksyms, "nf_ct_resolve_clash_harder"))
			k.clash_resolution_harder = {true, "kallsyms", ""};
		else
			k.clash_resolution_harder = {version_at_least(release, 5, 6), "version",
						     "nf_ct_resolve_clash_harder not in kallsyms (static, usually inlined); "
						     "inferred from version >= 5.6"};
	} else {
		std::string why = k.kallsyms_readable ? "nf_conntrack not in kallsyms (module not loaded?)"
						      : "kallsyms not readable";
		k.udp_clash_resolution = {version_at_least(release, 4, 8), "version", why + "; inferred from version >= 4.8"};
		k.clash_resolution_harder = {version_at_least(release, 5, 6), "version", why + "; inferred from version >= 5.6"};
	}
	return k;
}

namespace {

const char *kFixAfterSnat = "avoid NFQUEUE after SNAT/MASQUERADE: queue in forward, or at postrouting before SNAT "
			    "(priority < 100; iptables mangle POSTROUTING is -150)";
const char *kFixConfirmedOnly =
	"queue only after conntrack has confirmed: match `ct state established,related` on the queue rule "
	"(iptables: -m conntrack --ctstate ESTABLISHED,RELATED) and let new flows pass, or bypass new flows with a "
	"mark set by the listener";
const char *kFixListenerNew = "let the listener handle `ct state new` packets quickly (e.g. Suricata accepts or "
			      "marks them) so new flows do not wait in userspace";
const char *kFixKernel = "upgrade the kernel: conntrack clash resolution (nf_ct_resolve_clash, 4.8+; harder "
			 "resolution 5.6+) keeps UDP packets that lose the confirm race";
const char *kFixBypass = "add --queue-bypass (nft: queue ... bypass) so packets pass when no listener is bound, and "
			 "fail-open in the listener (NFQA_CFG_F_FAIL_OPEN) for a full queue";

int rank(const std::string &level)
{
	static const std::vector<std::string> order = {"none", "low", "medium", "high"};
	return (int)(std::find(order.begin(), order.end(), level) - order.begin());
}

} // namespace

Assessment assess(const DoctorInput &in)
{
	Assessment a;
	a.risk = "none";
	auto raise = [&](const std::string &level) {
		if (rank(level) > rank(a.risk))
			a.risk = level;
	};
	auto fix = [&](const std::string &f) {
		if (std::find(a.fixes.begin(), a.fixes.end(), f) == a.fixes.end())
			a.fixes.push_back(f);
	};
	const auto &k = in.kernel;
	bool has_snat = in.snat_rules > 0;
	if (in.rules.empty())
		a.reasons.push_back("no NFQUEUE rule in this network namespace");
	for (const auto &r : in.rules) {
		std::string name = rule_name(r);
		if (r.confirmed_only()) {
			a.reasons.push_back(name + " only queues ct state " + r.rule.ct_state +
					    " packets: their conntrack is already confirmed");
			raise("low");
			continue;
		}
		if (r.hooks.empty()) {
			a.findings.push_back({"unreached", r.rule.queue_first,
					      name + ": chain not reached from any base chain (inactive, or its base chain "
						     "is invisible to the tools that ran)"});
			raise("low");
		}
		for (const auto &h : r.hooks) {
			std::string where = name + " via " + h.via + ": " + h.explanation;
			if (h.position == "after_snat" && has_snat) {
				raise("high");
				a.reasons.push_back(where + "; the later one is dropped at confirm (insert_failed), on every kernel");
				fix(kFixAfterSnat);
				fix(kFixConfirmedOnly);
			} else if (h.position == "before_confirm" || h.position == "after_snat") {
				if (k.reinject_relookup.present) {
					raise("low");
					a.reasons.push_back(where + "; this kernel re-looks-up the conntrack on reinject (< 6.12, " +
							    k.reinject_relookup.evidence + "), which rescues most same-flow collisions");
				} else if (k.udp_clash_resolution.present) {
					raise("medium");
					a.reasons.push_back(where + "; without the reinject re-lookup (6.12+), a second packet of a "
								    "new flow queued while the first waits collides at confirm: "
								    "UDP is resolved (nf_ct_resolve_clash, " +
							    k.udp_clash_resolution.evidence + "), TCP is dropped");
				} else {
					raise("high");
					a.reasons.push_back(where + "; this kernel neither re-looks-up on reinject nor resolves "
								    "clashes: every same-flow collision is dropped");
				}
				fix(kFixConfirmedOnly);
				fix(kFixListenerNew);
			} else {
				raise("low");
				a.reasons.push_back(where);
			}
		}
	}
	if (!in.rules.empty() && !in.conntrack_count) {
		if (rank(a.risk) > rank("low"))
			a.risk = "low";
		a.reasons.push_back("nf_conntrack is not loaded here (no /proc/sys/net/netfilter/nf_conntrack_count): no "
				    "confirm step now; the risk applies once conntrack or NAT is used");
	}
	if (in.conntrack_stat) {
		auto it = in.conntrack_stat->find("insert_failed");
		if (it != in.conntrack_stat->end() && it->second > 0) {
			a.findings.push_back({"insert_failed", std::nullopt,
					      "conntrack insert_failed is " + std::to_string(it->second) +
						      " in this network namespace: confirm has dropped packets"});
			if (!in.rules.empty())
				raise("medium");
		}
	}
	if (rank(a.risk) >= rank("medium") && !k.udp_clash_resolution.present)
		fix(kFixKernel);

	// Listener health: every queue a rule sends to should have a bound listener.
	std::map<uint32_t, const QueueListener *> bound;
	for (const auto &l : in.listeners)
		bound[l.queue.queue_num] = &l;
	std::set<uint32_t> reported;
	for (const auto &r : in.rules) {
		if (!r.rule.queue_first)
			continue;
		for (uint64_t q = *r.rule.queue_first; q <= *r.rule.queue_last && q < *r.rule.queue_first + 256u; q++) {
			if (bound.count((uint32_t)q) || !reported.insert((uint32_t)q).second)
				continue;
			a.findings.push_back({"no_listener", (uint32_t)q,
					      "queue " + std::to_string(q) + " has no listener: packets to queue " +
						      std::to_string(q) + " are dropped unless --queue-bypass" +
						      (r.rule.bypass ? " (" + rule_name(r) + " has bypass: they pass uninspected)"
								     : " (" + rule_name(r) + " has no bypass: they are dropped)")});
			if (!r.rule.bypass)
				fix(kFixBypass);
		}
	}
	for (const auto &l : in.listeners) {
		uint32_t q = l.queue.queue_num;
		if (!l.socket)
			a.findings.push_back({"no_socket", q,
					      "queue " + std::to_string(q) + " is bound to netlink port " +
						      std::to_string(l.queue.portid) + " but no such socket is in /proc/net/netlink"});
		else if (l.socket->drops > 0)
			a.findings.push_back({"socket_drops", q,
					      "listener socket of queue " + std::to_string(q) + " dropped " +
						      std::to_string(l.socket->drops) + " messages (receive buffer full; " +
						      std::to_string(l.socket->rmem_bytes) + " bytes queued now)"});
		if (l.queue.queue_dropped > 0)
			a.findings.push_back({"queue_dropped", q,
					      "queue " + std::to_string(q) + " dropped " + std::to_string(l.queue.queue_dropped) +
						      " packets because it was full (queue-maxlen)"});
		if (l.queue.user_dropped > 0)
			a.findings.push_back({"user_dropped", q,
					      "queue " + std::to_string(q) + " dropped " + std::to_string(l.queue.user_dropped) +
						      " packets it could not deliver to the listener's socket"});
	}
	return a;
}

} // namespace ctct
