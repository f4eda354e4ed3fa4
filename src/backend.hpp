// Which program attaches to which kernel function: the preference table and the decision, kept pure
// (probe results in, plan out) so the decision table is unit-tested without a kernel.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace ctct {

enum class Backend { Auto, Fentry, Kprobe, Tracepoint };
enum class Attach { Fentry, Kprobe, TpBtf };

const char *attach_name(Attach a);
bool parse_backend(const std::string &s, Backend &out);
const char *backend_name(Backend b);

struct HookSpec {
	std::string name;                   // "confirm", "reinject", ...
	std::vector<std::string> functions; // kernel functions in order of preference
	std::string fentry_prog;            // program names in the skeleton ("" if none)
	std::string kprobe_prog;
	std::string tp_prog;                // tracepoint programs have no function alternative
	bool is_return;                     // fexit / kretprobe
	std::string purpose;                // what the user loses without it
	// A kprobe reads arguments by the standard calling convention; trust that only when BTF has the
	// function (pahole leaves out functions whose convention the compiler optimised).
	bool kprobe_args_need_btf = false;
};
const std::vector<HookSpec> &hook_table();

struct ProbeResult {
	bool ok = false;
	std::string function; // the function it was tried on
	int error = 0;        // positive errno
	std::string message;  // one line: what failed and a hint
};
// probes[hook][attach]
using ProbeResults = std::map<std::string, std::map<Attach, ProbeResult>>;

struct HookChoice {
	std::string hook;
	Attach attach;
	std::string function;
	std::string program;
};

struct Plan {
	std::vector<HookChoice> hooks;
	bool detect_at_free = false; // tracepoint mode
	// confirm_return is an fexit (it sees the skb) and resolve_clash is hooked: the confirm entry
	// hook is probed but not attached, so a new flow runs one program at confirm instead of two
	bool confirm_exit_has_args = false;
	// function mode without nfqnl_enqueue_packet's return hook: kfree_skb finds a packet that could not
	// be queued where nf_queue() frees it (its class from the queue's counters, as in tracepoint mode)
	bool queue_drop_at_free = false;
	// function mode without the reinject hook (the default; --verdict-hook adds it): a free inside the
	// reinject function that is not a confirm loser is a verdict drop (the listener's, or a later hook's),
	// as in tracepoint mode
	bool verdict_drop_at_free = false;
	// function mode with the enqueue hook: drops of packets seen entering a queue name it and their time in it
	bool queue_records = false;
	std::vector<std::string> notes; // what is not observable and why
	std::string error;              // non-empty: cannot trace as asked
};

// Attach types that a backend allows for function hooks, in order of preference.
std::vector<Attach> allowed_attaches(Backend b);
struct PlanOptions {
	// --exact-queue-errors: hook nfqnl_enqueue_packet's return too, for each failed enqueue's errno and
	// --queue-bypass events. Off by default: the return hook runs for every queued packet.
	bool exact_queue_errors = false;
	// nf_queue() is in kallsyms: without it a free there cannot be recognised, so the return is hooked
	bool queue_text_known = true;
	// --no-queue-hooks: nothing on the per-packet queue path (enqueue, reinject): a queued packet costs
	// nothing; confirm drops keep their flows and winners but lose queue number and time in queue
	bool queue_hooks = true;
	// --verdict-hook: hook the reinject function too, a second program on every queued packet: each
	// listener verdict with its packet id, the exact reinject time, and an established flow's verdict drop
	// with its queue. Off by default: the enqueue hook alone records new flows' packets.
	bool verdict_hook = false;
	// the reinject functions are in kallsyms: without them a verdict drop's free cannot be recognised, so
	// the reinject function is hooked
	bool reinject_text_known = true;
};
// A hook that no plan with these options attaches (the enqueue return without --exact-queue-errors, the
// reinject function without --verdict-hook, the queue path with --no-queue-hooks): tracing does not probe it.
bool hook_unused(const std::string &hook, const PlanOptions &options);
Plan choose_plan(Backend requested, const ProbeResults &probes, const PlanOptions &options = {});

} // namespace ctct
