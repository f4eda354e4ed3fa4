#include <fcntl.h>
#include <gtest/gtest.h>
#include <string>
#include <thread>
#include <unistd.h>
#include "output.hpp"

using namespace ctct;

namespace {
std::string read_all(int fd)
{
	std::string out;
	char buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		out.append(buf, n);
	return out;
}
} // namespace

TEST(LineWriter, WholeLinesThroughASmallPipe)
{
	// A pipe far smaller than what is written forces partial writes; every line must arrive intact, in order.
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	fcntl(p[1], F_SETPIPE_SZ, 4096);
	std::string got;
	std::thread reader([&] { got = read_all(p[0]); });
	{
		LineWriter w(p[1], 1000);
		for (int i = 0; i < 20000; i++)
			ASSERT_TRUE(w.write_line("{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i % 300, 'x') + "\"}"));
		ASSERT_TRUE(w.flush());
	}
	close(p[1]);
	reader.join();
	close(p[0]);
	size_t pos = 0;
	for (int i = 0; i < 20000; i++) {
		std::string want = "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(i % 300, 'x') + "\"}\n";
		ASSERT_EQ(got.compare(pos, want.size(), want), 0) << "line " << i;
		pos += want.size();
	}
	EXPECT_EQ(pos, got.size());
}

TEST(LineWriter, BuffersUntilFlushAndKeepsOneCallOneLine)
{
	char path[] = "/tmp/ctct_output_XXXXXX";
	int fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	unlink(path);
	LineWriter w(fd, 1 << 20);
	w.write_line("a");
	w.write_line("two\nlines");
	EXPECT_EQ(lseek(fd, 0, SEEK_END), 0); // nothing written before flush: no half-written lines
	ASSERT_TRUE(w.flush());
	lseek(fd, 0, SEEK_SET);
	EXPECT_EQ(read_all(fd), "a\ntwo\\nlines\n");
	close(fd);
}

TEST(LineWriter, LineFromFillIsAppendedInPlaceBetweenOtherLines)
{
	char path[] = "/tmp/ctct_output_XXXXXX";
	int fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	unlink(path);
	{
		LineWriter w(fd, 64); // small: the filled lines cross the flush threshold
		for (int i = 0; i < 100; i++) {
			ASSERT_TRUE(w.write_line("a" + std::to_string(i)));
			ASSERT_TRUE(w.write_line_from([&](std::string &buf) { buf += "{\"n\":" + std::to_string(i) + "}"; }));
		}
	}
	lseek(fd, 0, SEEK_SET);
	std::string want;
	for (int i = 0; i < 100; i++)
		want += "a" + std::to_string(i) + "\n{\"n\":" + std::to_string(i) + "}\n";
	EXPECT_EQ(read_all(fd), want);
	close(fd);
}

TEST(LineWriter, ClosedReaderIsEpipeNotSigpipe)
{
	LineWriter::ignore_sigpipe();
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	close(p[0]);
	LineWriter w(p[1], 16);
	EXPECT_FALSE(w.write_line("this line fills the buffer"));
	EXPECT_TRUE(w.failed());
	EXPECT_EQ(w.error_number(), EPIPE);
	EXPECT_NE(w.error().find("Broken pipe"), std::string::npos);
	EXPECT_FALSE(w.write_line("after"));
	EXPECT_FALSE(w.write_line_from([](std::string &buf) { buf += "after"; }));
	close(p[1]);
}

TEST(LineWriter, LongestWriteIsTheTimeASlowReaderBlockedUs)
{
	// A reader that sleeps 200 ms before it drains a full pipe: the flush waits for it, and says so.
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	fcntl(p[1], F_SETPIPE_SZ, 4096);
	LineWriter w(p[1], 1 << 20);
	EXPECT_EQ(w.longest_write_ns(), 0u);
	ASSERT_TRUE(w.flush()); // nothing buffered: no write, no time
	EXPECT_EQ(w.longest_write_ns(), 0u);
	ASSERT_TRUE(w.write_line(std::string(64 * 1024, 'x')));
	std::string got;
	std::thread reader([&] {
		usleep(200 * 1000);
		got = read_all(p[0]);
	});
	ASSERT_TRUE(w.flush());
	close(p[1]);
	reader.join();
	close(p[0]);
	EXPECT_EQ(got.size(), 64 * 1024 + 1u);
	EXPECT_GE(w.longest_write_ns(), 150u * 1000 * 1000);
	EXPECT_LT(w.longest_write_ns(), 10000u * 1000 * 1000);
}
