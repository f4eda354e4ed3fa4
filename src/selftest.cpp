#include "selftest.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "kernel_text.hpp"
#include "nfqueue.hpp"
#include "tracer.hpp"

namespace ctct {

namespace {

// Private addresses of the scenario; they exist only inside the namespaces below.
constexpr const char *kClientA = "10.231.1.2", *kClientB = "10.231.1.3", *kServer = "10.231.2.2";
constexpr uint16_t kPort = 5000;       // queued
constexpr uint16_t kWarmupPort = 5001; // not queued: proves the path works before the burst
constexpr uint16_t kQueue = 3;
constexpr uint16_t kSportBase = 40000;

std::string errno_text(const std::string &what) { return what + ": " + strerror(errno); }

// A network namespace held by a child process that dies with us (PR_SET_PDEATHSIG), so the namespace
// disappears even when this process is killed with SIGKILL: nothing is bind-mounted in /run/netns.
class Netns {
public:
	Netns()
	{
		int p[2];
		if (pipe2(p, O_CLOEXEC))
			throw std::runtime_error(errno_text("pipe"));
		pid_t parent = getpid();
		pid_ = fork();
		if (pid_ < 0)
			throw std::runtime_error(errno_text("fork"));
		if (pid_ == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			char ok = getppid() == parent && unshare(CLONE_NEWNET) == 0;
			if (write(p[1], &ok, 1) != 1 || !ok)
				_exit(1);
			for (;;)
				pause();
		}
		close(p[1]);
		char ok = 0;
		if (read(p[0], &ok, 1) != 1 || !ok) {
			close(p[0]);
			reap();
			throw std::runtime_error("cannot create a network namespace (unshare CLONE_NEWNET failed)");
		}
		close(p[0]);
		fd_ = open(("/proc/" + std::to_string(pid_) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd_ < 0 || fstat(fd_, &st)) {
			reap();
			throw std::runtime_error(errno_text("open netns of holder"));
		}
		inode_ = (uint32_t)st.st_ino;
	}
	~Netns()
	{
		if (fd_ >= 0)
			close(fd_);
		reap();
	}
	Netns(const Netns &) = delete;
	Netns &operator=(const Netns &) = delete;
	int fd() const { return fd_; }
	pid_t pid() const { return pid_; }
	uint32_t inode() const { return inode_; }

private:
	void reap()
	{
		if (pid_ > 0) {
			kill(pid_, SIGKILL);
			waitpid(pid_, nullptr, 0);
			pid_ = -1;
		}
	}
	pid_t pid_ = -1;
	int fd_ = -1;
	uint32_t inode_ = 0;
};

// Run a command inside `ns`, feeding `input` on stdin; throws with its output when it fails.
void run_in(const Netns &ns, const std::vector<std::string> &argv, const std::string &input = "")
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		throw std::runtime_error(errno_text("pipe"));
	pid_t pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		if (setns(ns.fd(), CLONE_NEWNET))
			_exit(126);
		std::vector<char *> args;
		for (const auto &a : argv)
			args.push_back(const_cast<char *>(a.c_str()));
		args.push_back(nullptr);
		execvp(args[0], args.data());
		fprintf(stderr, "%s: %s\n", args[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	if (!input.empty() && write(in[1], input.data(), input.size()) < 0) {
		// the command's output says why it stopped reading
	}
	close(in[1]);
	std::string output;
	char buf[512];
	ssize_t n;
	while ((n = read(out[0], buf, sizeof(buf))) > 0)
		output.append(buf, n);
	close(out[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		std::string cmd;
		for (const auto &a : argv)
			cmd += (cmd.empty() ? "" : " ") + a;
		while (!output.empty() && output.back() == '\n')
			output.pop_back();
		for (auto &c : output)
			if (c == '\n')
				c = ' ';
		throw std::runtime_error("selftest setup: '" + cmd + "' failed" + (output.empty() ? "" : ": " + output));
	}
}

// Run fn on a thread that has entered `ns` (setns moves only the calling thread); rethrows its error.
template <class F> std::thread thread_in(const Netns &ns, std::string *error, F fn)
{
	return std::thread([&ns, error, fn]() {
		try {
			if (setns(ns.fd(), CLONE_NEWNET))
				throw std::runtime_error(errno_text("setns"));
			fn();
		} catch (const std::exception &e) {
			*error = e.what();
		}
	});
}

std::map<std::string, uint64_t> conntrack_totals(const Netns &ns)
{
	std::map<std::string, uint64_t> totals;
	std::string error;
	thread_in(ns, &error, [&] {
		totals = parse_conntrack_stat(read_file("/proc/thread-self/net/stat/nf_conntrack")).totals();
	}).join();
	if (!error.empty())
		throw std::runtime_error("selftest: " + error);
	return totals;
}

uint64_t queue_id_sequence(const Netns &ns)
{
	uint64_t seq = 0;
	std::string error;
	thread_in(ns, &error, [&] {
		for (const auto &q : parse_nfqueue(read_file("/proc/thread-self/net/netfilter/nfnetlink_queue")))
			if (q.queue_num == kQueue)
				seq = q.id_sequence;
	}).join();
	if (!error.empty())
		throw std::runtime_error("selftest: " + error);
	return seq;
}

sockaddr_in inet(const char *addr, uint16_t port)
{
	sockaddr_in sa{};
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	inet_pton(AF_INET, addr, &sa.sin_addr);
	return sa;
}

void send_one(const char *src, uint16_t sport, uint16_t dport)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		throw std::runtime_error(errno_text("socket"));
	sockaddr_in s = inet(src, sport), d = inet(kServer, dport);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (sockaddr *)&s, sizeof(s)) || sendto(fd, "ctct", 4, 0, (sockaddr *)&d, sizeof(d)) != 4) {
		std::string e = errno_text(std::string("send from ") + src + ":" + std::to_string(sport));
		close(fd);
		throw std::runtime_error(e);
	}
	close(fd);
}

// The queue's listener: holds each packet hold_ms from its arrival, then accepts it, in order.
struct Listener {
	std::atomic<bool> ready{false}, stop{false};
	std::atomic<uint64_t> held{0}, seen{0};
	uint64_t hold_ns = 0;
	std::deque<std::pair<uint32_t, uint64_t>> queue; // id, due
	std::string error;

	void run()
	{
		NfqueueSocket nfq(kQueue);
		ready = true;
		int fd = nfq.fd();
		while (!stop || !queue.empty()) {
			int timeout = 20;
			if (!queue.empty()) {
				uint64_t due = queue.front().second, now = monotonic_ns();
				timeout = due > now ? (int)((due - now) / 1000000) + 1 : 0;
			}
			struct pollfd p = {fd, POLLIN, 0};
			if (poll(&p, 1, std::min(timeout, 20)) > 0)
				nfq.receive([this](uint32_t id) {
					queue.emplace_back(id, monotonic_ns() + hold_ns);
					seen++;
				});
			uint64_t now = monotonic_ns();
			while (!queue.empty() && (stop || queue.front().second <= now)) {
				nfq.verdict(queue.front().first, NF_ACCEPT);
				queue.pop_front();
			}
			held = queue.size();
		}
	}
};

// Counts datagrams to the queued port and to the warm-up port.
struct Receiver {
	std::atomic<bool> ready{false}, stop{false};
	std::atomic<uint64_t> burst{0}, warmup{0};

	void run()
	{
		int fds[2];
		uint16_t ports[2] = {kPort, kWarmupPort};
		for (int i = 0; i < 2; i++) {
			fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			sockaddr_in a = inet(kServer, ports[i]);
			if (fds[i] < 0 || bind(fds[i], (sockaddr *)&a, sizeof(a)))
				throw std::runtime_error(errno_text("bind server port " + std::to_string(ports[i])));
		}
		ready = true;
		char buf[64];
		while (!stop) {
			struct pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
			if (poll(p, 2, 20) <= 0)
				continue;
			if ((p[0].revents & POLLIN) && recv(fds[0], buf, sizeof(buf), 0) >= 0)
				burst++;
			if ((p[1].revents & POLLIN) && recv(fds[1], buf, sizeof(buf), 0) >= 0)
				warmup++;
		}
		close(fds[0]);
		close(fds[1]);
	}
};

template <class Pred> bool wait_for(Pred done, uint64_t timeout_ns, const std::function<void()> &tick)
{
	uint64_t end = monotonic_ns() + timeout_ns;
	while (!done()) {
		if (monotonic_ns() > end)
			return false;
		tick();
	}
	return true;
}

} // namespace

bool SelftestResult::agree() const
{
	return !interrupted && lost() == insert_failed_delta && insert_failed_delta == drop_delta &&
	       confirm_drop_events == insert_failed_delta && events_lost == 0;
}

std::string SelftestResult::verdict_line() const
{
	char buf[512];
	snprintf(buf, sizeof(buf),
		 "selftest %s (%s mode): sent %llu, received %llu, lost %llu; kernel: insert_failed +%llu, drop +%llu; "
		 "tracer: confirm_drop %llu, events lost %llu%s",
		 interrupted ? "INTERRUPTED" : agree() ? "PASS" : "FAIL", mode.c_str(), (unsigned long long)sent,
		 (unsigned long long)received, (unsigned long long)lost(), (unsigned long long)insert_failed_delta,
		 (unsigned long long)drop_delta, (unsigned long long)confirm_drop_events, (unsigned long long)events_lost,
		 lost() == 0 && !interrupted ? " (this kernel lost nothing in this scenario)" : "");
	return buf;
}

nlohmann::json SelftestResult::to_json() const
{
	return {{"type", "selftest"},
		{"schema", CTCT_SCHEMA_VERSION},
		{"result", interrupted ? "interrupted" : agree() ? "pass" : "fail"},
		{"mode", mode},
		{"packets", {{"sent", sent}, {"received", received}, {"lost", lost()}, {"queued", queue_total_packets}}},
		{"kernel", {{"insert_failed", insert_failed_delta}, {"drop", drop_delta}}},
		{"tracer", {{"confirm_drop", confirm_drop_events}, {"events_lost", events_lost}}}};
}

SelftestResult run_selftest(const Plan &plan, const SelftestOptions &opts, volatile sig_atomic_t *stop)
{
	SelftestResult r;
	r.mode = plan.detect_at_free ? "tracepoint" : "function";
	Netns cli, rtr, srv;
	const std::string rtr_pid = std::to_string(rtr.pid());

	//   cli (A .2, B .3) --veth-- rtr (MASQUERADE at srcnat, NFQUEUE at postrouting 200) --veth-- srv (.2)
	// The queue sits after SNAT: SNAT of B's flow cannot see A's (still unconfirmed, in userspace), so
	// A:p and B:p both become rtr:p -> srv:5000 and the later one loses at __nf_conntrack_confirm.
	run_in(cli, {"ip", "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", rtr_pid});
	run_in(srv, {"ip", "link", "add", "s0", "type", "veth", "peer", "name", "r1", "netns", rtr_pid});
	run_in(cli, {"ip", "-batch", "-"},
	       "link set lo up\nlink set c0 up\naddr add 10.231.1.2/24 dev c0\naddr add 10.231.1.3/24 dev c0\n"
	       "route add default via 10.231.1.1\n");
	run_in(srv, {"ip", "-batch", "-"}, "link set lo up\nlink set s0 up\naddr add 10.231.2.2/24 dev s0\n"
					  "route add default via 10.231.2.1\n");
	run_in(rtr, {"ip", "-batch", "-"},
	       "link set lo up\nlink set r0 up\nlink set r1 up\naddr add 10.231.1.1/24 dev r0\n"
	       "addr add 10.231.2.1/24 dev r1\n");
	run_in(rtr, {"sysctl", "-qw", "net.ipv4.ip_forward=1"});
	run_in(rtr, {"nft", "-f", "-"},
	       "table ip ctct_selftest {\n"
	       "  chain nat { type nat hook postrouting priority srcnat; oifname \"r1\" masquerade; }\n"
	       "}\n");
	// The xt NFQUEUE target through nft_compat works where the nft queue statement is not built. iptables-nft
	// puts it in its own table's user chain; a base chain of that table at priority 200 jumps to it.
	run_in(rtr, {"iptables-nft", "-t", "mangle", "-N", "CTCT_SELFTEST"});
	run_in(rtr, {"iptables-nft", "-t", "mangle", "-A", "CTCT_SELFTEST", "-p", "udp", "--dport", std::to_string(kPort),
		     "-j", "NFQUEUE", "--queue-num", std::to_string(kQueue)});
	run_in(rtr, {"nft", "add chain ip mangle ctct_selftest_post { type filter hook postrouting priority 200; }"});
	run_in(rtr, {"nft", "add", "rule", "ip", "mangle", "ctct_selftest_post", "jump", "CTCT_SELFTEST"});

	std::string listener_err, receiver_err, sender_err;
	Listener listener;
	listener.hold_ns = (uint64_t)opts.hold_ms * 1000000ULL;
	Receiver receiver;
	std::thread lt = thread_in(rtr, &listener_err, [&] { listener.run(); });
	std::thread rt = thread_in(srv, &receiver_err, [&] { receiver.run(); });
	auto stop_threads = [&] {
		listener.stop = receiver.stop = true;
		if (lt.joinable())
			lt.join();
		if (rt.joinable())
			rt.join();
	};
	try {
		auto idle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(10)); };
		if (!wait_for([&] { return (listener.ready && receiver.ready) || !listener_err.empty() || !receiver_err.empty(); },
			      5000000000ULL, idle) ||
		    !listener_err.empty() || !receiver_err.empty())
			throw std::runtime_error("selftest setup: " +
						 (listener_err.empty() ? receiver_err.empty() ? "listener/receiver did not start" : receiver_err
								       : listener_err));
		// Warm-up on a port that is not queued: resolves neighbours, proves forwarding and NAT work.
		thread_in(cli, &sender_err, [] { send_one(kClientA, kSportBase - 1, kWarmupPort); }).join();
		if (!sender_err.empty() || !wait_for([&] { return receiver.warmup > 0; }, 3000000000ULL, idle))
			throw std::runtime_error("selftest setup: warm-up datagram did not reach the server" +
						 (sender_err.empty() ? "" : ": " + sender_err));

		TracerOptions topts;
		topts.netns = rtr.inode();
		Tracer tracer(plan, topts, [&](const ctct_event &e) {
			if (e.type == CTCT_EV_CONFIRM_DROP)
				r.confirm_drop_events++;
		});
		auto before = conntrack_totals(rtr);
		uint64_t seq0 = queue_id_sequence(rtr);
		thread_in(cli, &sender_err, [&] {
			for (unsigned i = 0; i < opts.pairs; i++) {
				send_one(kClientA, kSportBase + i, kPort);
				send_one(kClientB, kSportBase + i, kPort);
			}
		}).join();
		if (!sender_err.empty())
			throw std::runtime_error("selftest: " + sender_err);
		r.sent = 2ULL * opts.pairs;
		auto poll = [&] { tracer.poll(10); };
		// Done when every packet left the queue and nothing arrived for a second.
		uint64_t last_count = 0, last_change = monotonic_ns();
		wait_for([&] {
			if (*stop)
				return true;
			uint64_t n = receiver.burst;
			if (n != last_count) {
				last_count = n;
				last_change = monotonic_ns();
			}
			return listener.seen >= r.sent && listener.held == 0 && monotonic_ns() - last_change > 1000000000ULL;
		}, 30000000000ULL, poll);
		r.interrupted = *stop;
		tracer.poll(0);
		tracer.sweep_pending(monotonic_ns(), 0);
		auto after = conntrack_totals(rtr);
		r.received = receiver.burst;
		r.insert_failed_delta = after["insert_failed"] - before["insert_failed"];
		r.drop_delta = after["drop"] - before["drop"];
		r.queue_total_packets = queue_id_sequence(rtr) - seq0;
		auto counters = tracer.counters();
		for (int i = 0; i < CTCT_CNT_MAX; i++)
			if (counter_is_loss(i))
				r.events_lost += counters[i];
	} catch (...) {
		stop_threads();
		throw;
	}
	stop_threads();
	return r;
}

} // namespace ctct
