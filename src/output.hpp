// Whole-line output for JSON lines and text events: a reader of the pipe never sees half a line from us,
// and a closed pipe is an error we report, not a SIGPIPE that kills the tracer mid-summary.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace ctct {

class LineWriter {
public:
	// fd is not owned. Lines are buffered and written once the buffer holds flush_bytes or on flush().
	explicit LineWriter(int fd, size_t flush_bytes = 64 * 1024);
	~LineWriter(); // best-effort flush
	LineWriter(const LineWriter &) = delete;
	LineWriter &operator=(const LineWriter &) = delete;

	// One line without its '\n' (appended here). A stray '\n' inside is written as the two characters
	// "\n" so that one call is always exactly one line. Returns false once the output has failed.
	bool write_line(std::string_view line);
	// One line that fill(std::string &buffer) appends straight into the buffer: no copy and no scan for
	// '\n', for the per-event JSON line (append_event_json_line, whose strings are escaped as JSON: it
	// never contains a raw '\n'). fill must append exactly one line's bytes, without '\n'.
	template <class Fill> bool write_line_from(Fill &&fill)
	{
		if (errno_)
			return false;
		fill(buf_);
		buf_ += '\n';
		if (buf_.size() >= flush_bytes_)
			return flush();
		return true;
	}
	// write(2) everything buffered: complete lines only, retrying partial writes, EINTR and EAGAIN.
	bool flush();
	// The output failed (EPIPE: the reader went away, or another errno): nothing more will be written.
	bool failed() const { return errno_ != 0; }
	int error_number() const { return errno_; }
	std::string error() const; // "write to stdout: Broken pipe"
	// The longest flush() so far (ns): how long the reader of our output (a pipe to a log shipper, a
	// file under writeback) kept the tracer from draining its ring buffer. Reported with losses.
	uint64_t longest_write_ns() const { return longest_write_ns_; }

	// The tracer must see EPIPE from write(2) instead of dying on SIGPIPE; call once before writing.
	static void ignore_sigpipe();

private:
	int fd_;
	size_t flush_bytes_;
	std::string buf_;
	int errno_ = 0;
	uint64_t longest_write_ns_ = 0;
};

} // namespace ctct
