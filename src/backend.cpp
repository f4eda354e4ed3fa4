#include "backend.hpp"

namespace ctct {

const char *attach_name(Attach a)
{
	switch (a) {
	case Attach::Fentry: return "fentry";
	case Attach::Kprobe: return "kprobe";
	case Attach::TpBtf: return "tp_btf";
	}
	return "?";
}

const char *backend_name(Backend b)
{
	switch (b) {
	case Backend::Auto: return "auto";
	case Backend::Fentry: return "fentry";
	case Backend::Kprobe: return "kprobe";
	case Backend::Tracepoint: return "tracepoint";
	}
	return "?";
}

bool parse_backend(const std::string &s, Backend &out)
{
	static const std::map<std::string, Backend> m = {
		{"auto", Backend::Auto}, {"fentry", Backend::Fentry}, {"kprobe", Backend::Kprobe}, {"tracepoint", Backend::Tracepoint}};
	auto it = m.find(s);
	if (it == m.end())
		return false;
	out = it->second;
	return true;
}

const std::vector<HookSpec> &hook_table()
{
	// nfqnl_reinject replaced nf_reinject in 6.9 (nf_reinject's body moved into nfnetlink_queue).
	static const std::vector<HookSpec> t = {
		{"confirm", {"__nf_conntrack_confirm"}, "confirm_fentry", "confirm_kprobe", "", false,
		 "confirm drops and resolved clashes"},
		{"confirm_return", {"__nf_conntrack_confirm"}, "confirm_fexit", "confirm_kretprobe", "", true,
		 "confirm drops and resolved clashes"},
		{"resolve_clash", {"nf_ct_resolve_clash"}, "resolve_clash_fentry", "resolve_clash_kprobe", "", false,
		 "the winner of a clash that ended in a drop", true},
		{"enqueue", {"nfqnl_enqueue_packet"}, "enqueue_fentry", "enqueue_kprobe", "", false,
		 "queue number and time in queue"},
		{"enqueue_return", {"nfqnl_enqueue_packet"}, "enqueue_fexit", "enqueue_kretprobe", "", true,
		 "why a packet could not be queued (no listener, queue full, socket full) and --queue-bypass"},
		{"reinject", {"nfqnl_reinject", "nf_reinject"}, "reinject_fentry", "reinject_kprobe", "", false,
		 "time in queue, packet id and verdict"},
		{"kfree_skb", {"skb:kfree_skb"}, "", "", "kfree_skb_btf", false,
		 "drop reason and location (and detection itself in tracepoint mode)"},
	};
	return t;
}

std::vector<Attach> allowed_attaches(Backend b)
{
	switch (b) {
	case Backend::Auto: return {Attach::Fentry, Attach::Kprobe};
	case Backend::Fentry: return {Attach::Fentry};
	case Backend::Kprobe: return {Attach::Kprobe};
	case Backend::Tracepoint: return {};
	}
	return {};
}

static const ProbeResult *find(const ProbeResults &p, const std::string &hook, Attach a)
{
	auto h = p.find(hook);
	if (h == p.end())
		return nullptr;
	auto r = h->second.find(a);
	return r == h->second.end() ? nullptr : &r->second;
}

bool hook_unused(const std::string &hook, const PlanOptions &options)
{
	if (!options.queue_hooks && (hook == "enqueue" || hook == "enqueue_return" || hook == "reinject"))
		return true;
	if (hook == "enqueue_return")
		return !options.exact_queue_errors && options.queue_text_known;
	if (hook == "reinject")
		return !options.verdict_hook && options.reinject_text_known;
	return false;
}

Plan choose_plan(Backend requested, const ProbeResults &probes, const PlanOptions &options)
{
	Plan plan;
	std::map<std::string, HookChoice> chosen;
	for (const auto &spec : hook_table()) {
		if (!spec.tp_prog.empty()) {
			const ProbeResult *r = find(probes, spec.name, Attach::TpBtf);
			if (r && r->ok)
				chosen[spec.name] = {spec.name, Attach::TpBtf, r->function, spec.tp_prog};
			continue;
		}
		for (Attach a : allowed_attaches(requested)) {
			const ProbeResult *r = find(probes, spec.name, a);
			if (r && r->ok) {
				chosen[spec.name] = {spec.name, a, r->function,
						     a == Attach::Fentry ? spec.fentry_prog : spec.kprobe_prog};
				break;
			}
		}
	}
	auto why = [&](const std::string &hook) {
		std::string out;
		auto attaches = hook == "kfree_skb" ? std::vector<Attach>{Attach::TpBtf} : allowed_attaches(requested);
		for (Attach a : attaches) {
			const ProbeResult *r = find(probes, hook, a);
			if (r && !r->ok)
				out += (out.empty() ? "" : "; ") + r->message;
		}
		return out.empty() ? std::string("not probed") : out;
	};

	bool confirm_ok = chosen.count("confirm") && chosen.count("confirm_return");
	bool free_ok = chosen.count("kfree_skb") != 0;
	if (!confirm_ok) {
		if (requested == Backend::Fentry || requested == Backend::Kprobe) {
			plan.error = std::string("cannot attach to __nf_conntrack_confirm with ") + backend_name(requested) + ": " +
				     why(chosen.count("confirm") ? "confirm_return" : "confirm") +
				     "; retry with --backend=auto or --backend=tracepoint";
			return plan;
		}
		if (!free_ok) {
			plan.error = "nothing attachable: __nf_conntrack_confirm (" + why("confirm") +
				     ") and tracepoint skb:kfree_skb (" +
why("kfree_skb") + ")";
			return plan;
		}
		// Tracepoint mode: function hooks are not used at all, so the result does not depend on
		// which of them happened to attach.
		plan.detect_at_free = true;
		plan.hooks.push_back(chosen["kfree_skb"]);
		plan.notes.push_back("tracepoint mode: confirm drops are detected at skb:kfree_skb from insert_failed, "
				     "queue and verdict drops from where the skb was freed (the class of a queue drop "
				     "from the queue's counters); resolved clashes, the winning flow, time in queue, "
				     "queue numbers and --queue-bypass are not observable");
		if (requested == Backend::Auto)
			plan.notes.push_back("__nf_conntrack_confirm not attachable: " + why("confirm"));
		return plan;
	}
	plan.confirm_exit_has_args = chosen["confirm_return"].attach == Attach::Fentry && chosen.count("resolve_clash");
	// The enqueue return hook is a second trampoline on every queued packet (with fentry it turns the
	// entry's into one that calls the function); a failed enqueue is also seen where nf_queue() frees it.
	bool has_enqueue_return = false, has_reinject = false;
	for (const auto &spec : hook_table()) {
		auto it = chosen.find(spec.name);
		if (spec.name == "confirm" && plan.confirm_exit_has_args)
			continue;
		if (hook_unused(spec.name, options))
			continue;
		if (it != chosen.end()) {
			plan.hooks.push_back(it->second);
			has_enqueue_return |= spec.name == "enqueue_return";
			has_reinject |= spec.name == "reinject";
			plan.queue_records |= spec.name == "enqueue";
		} else {
			plan.notes.push_back(spec.name + " unavailable (" + why(spec.name) + "): no " + spec.purpose);
		}
	}
	// Without the reinject hook verdict drops are found where the reinject function frees them.
	plan.verdict_drop_at_free = !has_reinject;
	if (!options.queue_hooks)
		plan.notes.push_back("--no-queue-hooks: the queue path is not hooked; verdict drops are found where the "
				     "reinject function frees them (the listener's NF_DROP or a later hook's), and "
				     "queue numbers and time in queue are not observable");
	else if (!has_reinject && plan.queue_records)
		plan.notes.push_back("verdict drops are found where the reinject function frees them (the listener's "
				     "NF_DROP or a later hook's); a new flow's packet keeps its queue and its time in "
				     "queue (to its confirm or free); packet ids, verdicts and an established flow's "
				     "queue need --verdict-hook (a second hook on every queued packet)");
	if (!has_enqueue_return && options.queue_text_known) {
		plan.queue_drop_at_free = true;
		plan.notes.push_back("queue drops are found where nf_queue() frees them and classed by the queue's "
				     "counters (exact in total); each drop's errno and --queue-bypass events need "
				     "--exact-queue-errors (a return hook on every queued packet)");
	}
	return plan;
}

} // namespace ctct
