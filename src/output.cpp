#include "output.hpp"
#include "cli_util.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <unistd.h>

namespace ctct {

LineWriter::LineWriter(int fd, size_t flush_bytes) : fd_(fd), flush_bytes_(flush_bytes)
{
	buf_.reserve(flush_bytes_ + 4096);
}

LineWriter::~LineWriter() { flush(); }

bool LineWriter::write_line(std::string_view line)
{
	if (errno_)
		return false;
	if (line.find('\n') == std::string_view::npos) {
		buf_.append(line);
	} else {
		for (char c : line) {
			if (c == '\n')
				buf_ += "\\n";
			else
				buf_ += c;
		}
	}
	buf_ += '\n';
	if (buf_.size() >= flush_bytes_)
		return flush();
	return true;
}

bool LineWriter::flush()
{
	if (buf_.empty())
		return !errno_;
	size_t done = 0;
	uint64_t t0 = monotonic_ns();
	while (!errno_ && done < buf_.size()) {
		ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
		if (n > 0) {
			done += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			// A non-blocking stdout (inherited O_NONBLOCK): wait until the reader drains, then go on.
			struct pollfd p = {fd_, POLLOUT, 0};
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				errno_ = errno;
		} else {
			errno_ = n < 0 ? errno : EIO; // write() returning 0 for a non-empty buffer: treat as I/O error
		}
	}
	buf_.clear();
	longest_write_ns_ = std::max(longest_write_ns_, monotonic_ns() - t0);
	return !errno_;
}

std::string LineWriter::error() const
{
	std::string where = fd_ == 1 ? "stdout" : "fd " + std::to_string(fd_);
	return "write to " + where + ": " + strerror(errno_);
}

void LineWriter::ignore_sigpipe() { signal(SIGPIPE, SIG_IGN); }

} // namespace ctct
