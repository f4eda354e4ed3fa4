// The BPF event as the loader sees it. The layout itself lives in bpf/ctct_event.h only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <linux/types.h>
#include "ctct_event.h"

static_assert(sizeof(ctct_tuple) == 40, "ctct_tuple layout changed: update both sides");
static_assert(sizeof(ctct_conn) == 96, "ctct_conn layout changed");
static_assert(sizeof(ctct_queue) == 32, "ctct_queue layout changed");
static_assert(sizeof(ctct_event) == 48 + 2 * 96 + 2 * 32 + 8 + 8, "ctct_event layout changed");
static_assert(std::is_trivially_copyable_v<ctct_event>, "events are memcpy'd out of the ring buffer");

// A ring-buffer record as the loader takes it: copied out (the record may be unaligned and is reused by
// the kernel after the callback), and refused when shorter than the layout rather than read past its end.
inline bool decode_event(const void *data, size_t size, ctct_event &out)
{
	if (size < sizeof(ctct_event))
		return false;
	memcpy(&out, data, sizeof(out));
	return true;
}
