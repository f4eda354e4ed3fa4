// The decision table: probe results in, attach plan out.
#include <gtest/gtest.h>
#include "backend.hpp"

using namespace ctct;

namespace {
ProbeResult ok(const std::string &fn) { return {true, fn, 0, "ok"}; }
ProbeResult fail(int err, const std::string &msg) { return {false, "", err, msg}; }

// Every function hook answers `f` for fentry and `k` for kprobe; kfree_skb answers `tp`.
ProbeResults all(bool f, bool k, bool tp, const std::string &reinject = "nfqnl_reinject")
{
	ProbeResults p;
	for (const auto &s : hook_table()) {
		if (!s.tp_prog.empty()) {
			p[s.name][Attach::TpBtf] = tp ? ok("skb:kfree_skb") : fail(EPERM, "tp_btf: EPERM");
			continue;
		}
		std::string fn = s.name == "reinject" ? reinject : s.functions.front();
		p[s.name][Attach::Fentry] = f ? ok(fn) : fail(EPERM, "fentry: EPERM");
		p[s.name][Attach::Kprobe] = k ? ok(fn) : fail(ENOENT, "kprobe: ENOENT");
	}
	return p;
}

const HookChoice *hook(const Plan &p, const std::string &name)
{
	for (const auto &h : p.hooks)
		if (h.hook == name)
			return &h;
	return nullptr;
}
} // namespace

TEST(Plan, AutoPrefersFentry)
{
	Plan p = choose_plan(Backend::Auto, all(true, true, true));
	ASSERT_TRUE(p.error.empty());
	EXPECT_FALSE(p.detect_at_free);
	// fexit sees the skb at return and nf_ct_resolve_clash records clashes: no confirm entry program
	EXPECT_TRUE(p.confirm_exit_has_args);
	// nor, by default, a second hook on every queued packet: failed enqueues are seen at the free, verdict
	// drops where the reinject function frees them
	EXPECT_EQ(p.hooks.size(), hook_table().size() - 3);
	EXPECT_EQ(hook(p, "confirm"), nullptr);
	EXPECT_EQ(hook(p, "enqueue_return"), nullptr);
	EXPECT_EQ(hook(p, "reinject"), nullptr);
	EXPECT_EQ(hook(p, "enqueue")->program, "enqueue_fentry");
	EXPECT_TRUE(p.queue_drop_at_free);
	EXPECT_TRUE(p.verdict_drop_at_free);
	EXPECT_TRUE(p.queue_records);
	EXPECT_EQ(hook(p, "confirm_return")->program, "confirm_fexit");
	EXPECT_EQ(hook(p, "kfree_skb")->attach, Attach::TpBtf);
	ASSERT_EQ(p.notes.size(), 2u);
	EXPECT_NE(p.notes[0].find("--verdict-hook"), std::string::npos);
	EXPECT_NE(p.notes[1].find("--exact-queue-errors"), std::string::npos);
}

TEST(Plan, VerdictHookAddsTheReinjectHook)
{
	PlanOptions o;
	o.verdict_hook = true;
	Plan p = choose_plan(Backend::Auto, all(true, true, true), o);
	EXPECT_EQ(hook(p, "reinject")->program, "reinject_fentry");
	EXPECT_FALSE(p.verdict_drop_at_free);
	EXPECT_TRUE(p.queue_records);
	ASSERT_EQ(p.notes.size(), 1u);
	EXPECT_NE(p.notes[0].find("--exact-queue-errors"), std::string::npos);
	p = choose_plan(Backend::Kprobe, all(true, true, true), o);
	EXPECT_EQ(hook(p, "reinject")->program, "reinject_kprobe");
	// a reinject hook that cannot attach leaves verdict drops to the free
	ProbeResults r = all(true, true, true);
	r["reinject"][Attach::Fentry] = fail(EPERM, "fentry: EPERM");
	r["reinject"][Attach::Kprobe] = fail(EPERM, "kprobe: EPERM");
	p = choose_plan(Backend::Auto, r, o);
	EXPECT_EQ(hook(p, "reinject"), nullptr);
	EXPECT_TRUE(p.verdict_drop_at_free);
	EXPECT_NE(p.notes[0].find("reinject unavailable"), std::string::npos);
	// without the reinject functions in kallsyms their frees cannot be recognised: hooked anyway
	PlanOptions hidden;
	hidden.reinject_text_known = false;
	p = choose_plan(Backend::Auto, all(true, true, true), hidden);
	EXPECT_EQ(hook(p, "reinject")->program, "reinject_fentry");
	EXPECT_FALSE(p.verdict_drop_at_free);
}

TEST(Plan, ExactQueueErrorsHooksTheEnqueueReturn)
{
	PlanOptions o;
	o.exact_queue_errors = true;
	Plan p = choose_plan(Backend::Auto, all(true, true, true), o);
	EXPECT_EQ(hook(p, "enqueue_return")->program, "enqueue_fexit");
	EXPECT_FALSE(p.queue_drop_at_free);
	ASSERT_EQ(p.notes.size(), 1u);
	EXPECT_NE(p.notes[0].find("--verdict-hook"), std::string::npos);
	p = choose_plan(Backend::Kprobe, all(true, true, true), o);
	EXPECT_EQ(hook(p, "enqueue_return")->program, "enqueue_kretprobe");
	// without nf_queue() in kallsyms a free there cannot be recognised: the return is hooked anyway
	Plan q = choose_plan(Backend::Auto, all(true, true, true), PlanOptions{false, false});
	EXPECT_EQ(hook(q, "enqueue_return")->program, "enqueue_fexit");
	EXPECT_FALSE(q.queue_drop_at_free);
}

TEST(Plan, NoQueueHooksLeavesTheQueuePathAlone)
{
	PlanOptions o;
	o.queue_hooks = false;
	Plan p = choose_plan(Backend::Auto, all(true, true, true), o);
	EXPECT_EQ(hook(p, "enqueue"), nullptr);
	EXPECT_EQ(hook(p, "enqueue_return"), nullptr);
	EXPECT_EQ(hook(p, "reinject"), nullptr);
	EXPECT_EQ(hook(p, "confirm_return")->program, "confirm_fexit");
	EXPECT_TRUE(p.queue_drop_at_free);
	EXPECT_TRUE(p.verdict_drop_at_free);
	EXPECT_FALSE(p.queue_records);
	ASSERT_EQ(p.notes.size(), 2u);
	EXPECT_NE(p.notes[0].find("--no-queue-hooks"), std::string::npos);
}

TEST(Plan, UnavailableEnqueueReturnFallsBackToTheFree)
{
	ProbeResults r = all(true, true, true);
	r["enqueue_return"][Attach::Fentry] = fail(EPERM, "fexit: EPERM");
	r["enqueue_return"][Attach::Kprobe] = fail(EPERM, "kretprobe: EPERM");
	PlanOptions o;
	o.exact_queue_errors = true;
	Plan p = choose_plan(Backend::Auto, r, o);
	EXPECT_EQ(hook(p, "enqueue_return"), nullptr);
	EXPECT_TRUE(p.queue_drop_at_free);
	ASSERT_EQ(p.notes.size(), 3u);
	EXPECT_NE(p.notes[0].find("enqueue_return unavailable"), std::string::npos);
}

TEST(Plan, AutoFallsBackPerHook)
{
	ProbeResults r = all(true, true, true, "nf_reinject");
	r["resolve_clash"][Attach::Fentry] = fail(ESRCH, "fentry: not in BTF");
	PlanOptions o;
	o.verdict_hook = true;
	Plan p = choose_plan(Backend::Auto, r, o);
	EXPECT_EQ(hook(p, "resolve_clash")->attach, Attach::Kprobe);
	EXPECT_EQ(hook(p, "resolve_clash")->program, "resolve_clash_kprobe");
	EXPECT_TRUE(p.confirm_exit_has_args);
	EXPECT_EQ(hook(p, "confirm_return")->attach, Attach::Fentry);
	EXPECT_EQ(hook(p, "reinject")->function, "nf_reinject");
}

TEST(Plan, AutoFallsBackToTracepointMode)
{
	Plan p = choose_plan(Backend::Auto, all(false, false, true));
	ASSERT_TRUE(p.error.empty());
	EXPECT_TRUE(p.detect_at_free);
	ASSERT_EQ(p.hooks.size(), 1u);
	EXPECT_EQ(p.hooks[0].hook, "kfree_skb");
	ASSERT_EQ(p.notes.size(), 2u);
	EXPECT_NE(p.notes[1].find("EPERM"), std::string::npos);
}

TEST(Plan, ForcedBackendThatCannotAttachIsAnError)
{
	Plan p = choose_plan(Backend::Fentry, all(false, true, true));
	EXPECT_NE(p.error.find("cannot attach to __nf_conntrack_confirm with fentry"), std::string::npos);
	EXPECT_NE(p.error.find("EPERM"), std::string::npos);
	p = choose_plan(Backend::Kprobe, all(true, true, true));
	EXPECT_TRUE(p.error.empty());
	EXPECT_FALSE(p.confirm_exit_has_args); // a kretprobe has no arguments at return
	EXPECT_EQ(hook(p, "confirm")->attach, Attach::Kprobe);
	EXPECT_EQ(hook(p, "confirm_return")->program, "confirm_kretprobe");
}

TEST(Plan, ForcedTracepointIgnoresWorkingFunctionHooks)
{
	Plan p = choose_plan(Backend::Tracepoint, all(true, true, true));
	EXPECT_TRUE(p.detect_at_free);
	EXPECT_EQ(p.hooks.size(), 1u);
}

TEST(Plan, NothingAttachable)
{
	Plan p = choose_plan(Backend::Auto, all(false, false, false));
	EXPECT_NE(p.error.find("nothing attachable"), std::string::npos);
	EXPECT_NE(p.error.find("tp_btf: EPERM"), std::string::npos);
}

TEST(Plan, MissingQueueHooksAreNotesNotErrors)
{
	ProbeResults r = all(true, true, true);
	r["enqueue"][Attach::Fentry] = fail(ENOENT, "fentry: nfqnl_enqueue_packet not in /proc/kallsyms");
	r["enqueue"][Attach::Kprobe] = fail(ENOENT, "kprobe: nfqnl_enqueue_packet not in /proc/kallsyms");
	Plan p = choose_plan(Backend::Auto, r);
	EXPECT_TRUE(p.error.empty());
	EXPECT_EQ(hook(p, "enqueue"), nullptr);
	ASSERT_EQ(p.notes.size(), 2u);
	EXPECT_NE(p.notes[0].find("time in queue"), std::string::npos);
	EXPECT_TRUE(p.queue_drop_at_free); // the drops themselves are still found where nf_queue() frees them
}

TEST(Plan, ConfirmEntryStaysWithoutTheResolveHook)
{
	// 6.1: nf_ct_resolve_clash has no BTF and no trusted kprobe; the entry record keeps the loser's tuples
	ProbeResults r = all(true, true, true);
	r["resolve_clash"][Attach::Fentry] = fail(ESRCH, "fentry: not in BTF");
	r["resolve_clash"][Attach::Kprobe] = fail(ENOENT, "kprobe: not in /proc/kallsyms");
	Plan p = choose_plan(Backend::Auto, r);
	EXPECT_FALSE(p.confirm_exit_has_args);
	ASSERT_NE(hook(p, "confirm"), nullptr);
	EXPECT_EQ(hook(p, "confirm")->attach, Attach::Fentry);
}

// Tracing probes only what its plan may attach: the plan from those probes is the plan from all of them.
TEST(Plan, UnusedHooksNeedNoProbe)
{
	PlanOptions def, exact, verdict, none;
	exact.exact_queue_errors = true;
	verdict.verdict_hook = true;
	none.queue_hooks = false;
	EXPECT_TRUE(hook_unused("enqueue_return", def));
	EXPECT_TRUE(hook_unused("reinject", def));
	EXPECT_FALSE(hook_unused("enqueue", def));
	EXPECT_FALSE(hook_unused("confirm", def)); // needed to decide, even when fexit makes it unattached
	EXPECT_FALSE(hook_unused("enqueue_return", exact));
	EXPECT_FALSE(hook_unused("reinject", verdict));
	EXPECT_TRUE(hook_unused("enqueue", none));
	for (const PlanOptions &o : {def, exact, verdict, none})
		for (const auto &[f, k] : {std::pair{true, true}, {false, true}, {false, false}}) {
			ProbeResults full = all(f, k, true), some = full;
			for (const auto &s : hook_table())
				if (hook_unused(s.name, o))
					some.erase(s.name);
			Plan a = choose_plan(Backend::Auto, full, o), b = choose_plan(Backend::Auto, some, o);
			EXPECT_EQ(a.hooks.size(), b.hooks.size());
			for (size_t i = 0; i < a.hooks.size() && i < b.hooks.size(); i++)
				EXPECT_EQ(a.hooks[i].program, b.hooks[i].program);
			EXPECT_EQ(a.notes, b.notes);
			EXPECT_EQ(a.detect_at_free, b.detect_at_free);
			EXPECT_EQ(a.queue_drop_at_free, b.queue_drop_at_free);
			EXPECT_EQ(a.verdict_drop_at_free, b.verdict_drop_at_free);
		}
}
