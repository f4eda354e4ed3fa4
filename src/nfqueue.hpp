#pragma once
// One NFQUEUE bound over a raw NETLINK_NETFILTER socket: the selftest's listener.
// Written against the kernel's uapi instead of libnetfilter_queue, so the tracer links no libnfnetlink/libmnl:
// Debian ships no static archive of either, and the portable build (-DCTCT_STATIC=ON) links everything statically.
#include <cstddef>
#include <cstdint>
#include <functional>

namespace ctct {

class NfqueueSocket {
public:
	// Binds queue `queue` in the calling thread's network namespace, copying metadata only.
	// Throws std::runtime_error naming the step and the errno text.
	explicit NfqueueSocket(uint16_t queue);
	~NfqueueSocket();
	NfqueueSocket(const NfqueueSocket &) = delete;
	NfqueueSocket &operator=(const NfqueueSocket &) = delete;

	int fd() const { return fd_; }
	// Reads what is waiting (non-blocking) and calls on_packet(packet_id) for each queued packet.
	void receive(const std::function<void(uint32_t)> &on_packet);
	void verdict(uint32_t packet_id, uint32_t verdict);

private:
	void config(const void *attr_payload, size_t len, uint16_t attr_type, const char *what);
	int fd_ = -1;
	uint16_t queue_;
	uint32_t seq_ = 0;
};

} // namespace ctct
