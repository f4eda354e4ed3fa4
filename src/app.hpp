// What every subcommand shares: exit codes, the stop flag, one-line fatal errors, the environment check,
// kallsyms and the probed backend plan.
#pragma once
#include <csignal>
#include <cstdint>
#include <string>

#include "backend.hpp"
#include "kernel_text.hpp"

namespace ctct {

// Exit codes (README "Exit codes").
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitIncomplete = 3; // verify: the tracer could not see everything

extern volatile sig_atomic_t g_stop; // set by SIGINT/SIGTERM once install_stop_handlers() ran
extern bool g_verbose;

// Prints "ctconfirm-trace: MSG" (control bytes escaped: always one line) and exits with CODE.
[[noreturn]] void die(int code, const std::string &msg);
// Root and kernel BTF, or exit 2 naming what is missing.
void require_environment();
Kallsyms load_kallsyms();
int64_t realtime_offset_ns();
Backend backend_arg(const std::string &s);
// Probe, then decide; a backend that cannot work here is an environment error (exit 2).
Plan plan_for(Backend backend, const Kallsyms &ksyms, bool exact_queue_errors = false, bool queue_hooks = true,
	      bool verdict_hook = false);
void install_stop_handlers();

} // namespace ctct
