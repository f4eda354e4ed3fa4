// Arbitrary bytes as a ring-buffer record, decoded as Tracer::ring_cb does, formatted both ways with a
// FormatContext whose drop reason and symbol names are fuzzer bytes (invalid UTF-8, control characters).
// Properties: the JSON line, dumped as main.cpp dumps it, is one line that re-parses to an object with
// the schema's fixed fields; the text line is one line with no control characters.
#include <cstring>
#include <string>
#include <nlohmann/json.hpp>
#include "format.hpp"
#include "fuzz_check.hpp"
#include "summary.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ctct_event e;
	if (!decode_event(data, size, e)) {
		FUZZ_CHECK(size < sizeof(ctct_event));
		// Short records are refused; still format a zero-padded copy so short inputs exercise the formatter.
		memset(&e, 0, sizeof(e));
		memcpy(&e, data, size);
	}
	size_t used = size < sizeof(e) ? size : sizeof(e);
	std::string rest(reinterpret_cast<const char *>(data) + used, size - used);
	int64_t offset = 0;
	if (rest.size() >= 8) {
		memcpy(&offset, rest.data(), 8);
		rest.erase(0, 8);
	}
	size_t cut = rest.find('\0');
	std::string reason = rest.substr(0, cut);
	std::string location = cut == std::string::npos ? "" : rest.substr(cut + 1);

	ctct::FormatContext ctx;
	ctx.realtime_offset_ns = offset;
	ctx.drop_reason_name = [&](uint32_t) { return reason; };
	ctx.symbolize = [&](uint64_t) { return location; };

	std::string line = ctct::event_json(e, ctx).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
	FUZZ_CHECK(one_line(line));
	std::string fast;
	ctct::append_event_json_line(fast, e, ctx);
	FUZZ_CHECK(fast == line); // the hot path's hand-written JSON is byte for byte nlohmann's
	auto back = nlohmann::json::parse(line); // throws (and so crashes the fuzzer) if not valid JSON
	FUZZ_CHECK(back.is_object());
	for (const char *k : {"type", "schema", "ts_mono_ns", "time", "netns", "cpu", "cause", "source", "loser", "queue",
			      "winner"})
		FUZZ_CHECK(back.contains(k));
	FUZZ_CHECK(back["ts_mono_ns"].get<uint64_t>() == e.ts_ns);
	FUZZ_CHECK(back.contains("drop") == ctct::event_is_drop(e.type));
	// "...T hh:mm:ss.nnnnnnnnnZ": nine digits of fraction, whatever the clock says.
	std::string time = back["time"].get<std::string>();
	FUZZ_CHECK(time.size() > 11 && time.back() == 'Z' && time[time.size() - 11] == '.');
	for (size_t i = time.size() - 10; i < time.size() - 1; i++)
		FUZZ_CHECK(time[i] >= '0' && time[i] <= '9');

	std::string text = ctct::event_text(e, ctx);
	for (unsigned char c : text)
		FUZZ_CHECK(c >= 0x20 && c != 0x7f);

	ctct::Summary s;
	s.add(e);
	s.to_json().dump();
	FUZZ_CHECK(one_line(s.to_text()));
	return 0;
}
