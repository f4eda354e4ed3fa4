#include "metrics_export.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

namespace ctct {

namespace {

// civetweb says only "null context" when it cannot listen: bind the address ourselves for the reason.
std::string bind_error(const ListenAddress &at)
{
	int fd = socket(at.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strerror(errno);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); // as civetweb does: TIME_WAIT is no conflict
	int rc;
	if (at.ipv6) {
		sockaddr_in6 a{};
		a.sin6_family = AF_INET6;
		a.sin6_port = htons(at.port);
		inet_pton(AF_INET6, at.host.c_str(), &a.sin6_addr);
		rc = bind(fd, (sockaddr *)&a, sizeof(a));
	} else {
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_port = htons(at.port);
		if (!at.host.empty())
			inet_pton(AF_INET, at.host.c_str(), &a.sin_addr);
		rc = bind(fd, (sockaddr *)&a, sizeof(a));
	}
	std::string why = rc < 0 ? strerror(errno)
				 : at.ipv6 ? "the HTTP server refused it (its civetweb may be built without IPv6)"
					   : "the HTTP server refused it";
	close(fd);
	return why;
}

} // namespace

MetricsExposer::MetricsExposer(const ListenAddress &at, const Metrics &metrics)
{
	try {
		// one thread: Prometheus scrapes rarely, and a second server thread is a second stack for nothing
		exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
			"listening_ports", at.civetweb(), "num_threads", "1"});
	} catch (const std::exception &) {
		throw std::runtime_error("cannot listen on " + at.to_string() + " for --metrics-listen: " + bind_error(at));
	}
	exposer_->RegisterCollectable(metrics.registry());
}

MetricsExposer::~MetricsExposer() = default;

std::string write_file_atomically(const std::string &path, const std::string &text)
{
	std::string tmp = path + "." + std::to_string(getpid()) + ".tmp";
	int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return "open " + tmp + ": " + strerror(errno);
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = write(fd, text.data() + done, text.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			std::string err = "write " + tmp + ": " + strerror(errno);
			close(fd);
			unlink(tmp.c_str());
			return err;
		}
		done += (size_t)n;
	}
	if (close(fd) < 0) {
		std::string err = "close " + tmp + ": " + strerror(errno);
		unlink(tmp.c_str());
		return err;
	}
	if (rename(tmp.c_str(), path.c_str()) < 0) {
		std::string err = "rename " + tmp + " to " + path + ": " + strerror(errno);
		unlink(tmp.c_str());
		return err;
	}
	return "";
}

} // namespace ctct
