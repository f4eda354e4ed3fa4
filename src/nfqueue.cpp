#include "nfqueue.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

namespace ctct {

namespace {

std::string errno_text(const std::string &what, int err) { return what + ": " + strerror(err); }

// nlmsghdr + nfgenmsg + one attribute, as nfnetlink expects every queue message.
struct Message {
	alignas(NLMSG_ALIGNTO) char buf[NLMSG_SPACE(sizeof(nfgenmsg)) + NLA_HDRLEN + 16] = {};
	size_t len = 0;

	Message(uint8_t type, uint16_t flags, uint32_t seq, uint16_t queue, uint16_t attr_type, const void *payload,
		size_t payload_len)
	{
		auto *nlh = reinterpret_cast<nlmsghdr *>(buf);
		auto *nfg = static_cast<nfgenmsg *>(NLMSG_DATA(nlh));
		auto *nla = reinterpret_cast<nlattr *>(buf + NLMSG_SPACE(sizeof(nfgenmsg)));
		nla->nla_type = attr_type;
		nla->nla_len = (uint16_t)(NLA_HDRLEN + payload_len);
		memcpy(reinterpret_cast<char *>(nla) + NLA_HDRLEN, payload, payload_len);
		len = NLMSG_SPACE(sizeof(nfgenmsg)) + NLA_ALIGN(nla->nla_len);
		nlh->nlmsg_len = (uint32_t)len;
		nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_QUEUE << 8) | type);
		nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
		nlh->nlmsg_seq = seq;
		nfg->nfgen_family = AF_UNSPEC;
		nfg->version = NFNETLINK_V0;
		nfg->res_id = htons(queue);
	}
};

} // namespace

NfqueueSocket::NfqueueSocket(uint16_t queue) : queue_(queue)
{
	fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd_ < 0)
		throw std::runtime_error(errno_text("NETLINK_NETFILTER socket", errno));
	sockaddr_nl local = {};
	local.nl_family = AF_NETLINK;
	if (bind(fd_, reinterpret_cast<sockaddr *>(&local), sizeof(local))) {
		int e = errno;
		close(fd_);
		throw std::runtime_error(errno_text("bind netlink socket", e));
	}
	try {
		nfqnl_msg_config_cmd cmd = {};
		cmd.command = NFQNL_CFG_CMD_BIND;
		config(&cmd, sizeof(cmd), NFQA_CFG_CMD, "bind NFQUEUE");
		nfqnl_msg_config_params params = {};
		params.copy_range = htonl(0);
		params.copy_mode = NFQNL_COPY_META;
		config(&params, sizeof(params), NFQA_CFG_PARAMS, "set NFQUEUE copy mode");
	} catch (...) {
		close(fd_);
		throw;
	}
}

NfqueueSocket::~NfqueueSocket()
{
	nfqnl_msg_config_cmd cmd = {};
	cmd.command = NFQNL_CFG_CMD_UNBIND;
	Message m(NFQNL_MSG_CONFIG, 0, ++seq_, queue_, NFQA_CFG_CMD, &cmd, sizeof(cmd));
	(void)send(fd_, m.buf, m.len, 0); // closing the socket unbinds too; this only makes it immediate
	close(fd_);
}

// Sends one config message and waits for its ack, so a refused bind (EPERM, EBUSY) is reported where it happens.
void NfqueueSocket::config(const void *payload, size_t len, uint16_t attr_type, const char *what)
{
	Message m(NFQNL_MSG_CONFIG, NLM_F_ACK, ++seq_, queue_, attr_type, payload, len);
	std::string step = std::string(what) + " " + std::to_string(queue_);
	if (send(fd_, m.buf, m.len, 0) != (ssize_t)m.len)
		throw std::runtime_error(errno_text(step, errno));
	alignas(NLMSG_ALIGNTO) char reply[8192];
	for (;;) {
		ssize_t n = recv(fd_, reply, sizeof(reply), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			throw std::runtime_error(errno_text(step, errno));
		}
		int left = (int)n;
		for (auto *h = reinterpret_cast<nlmsghdr *>(reply); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != seq_)
				continue;
			int err = static_cast<nlmsgerr *>(NLMSG_DATA(h))->error;
			if (err)
				throw std::runtime_error(errno_text(step, -err));
			return;
		}
	}
}

void NfqueueSocket::receive(const std::function<void(uint32_t)> &on_packet)
{
	alignas(NLMSG_ALIGNTO) static char buf[65536];
	ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
	if (n <= 0)
		return;
	int left = (int)n;
	for (auto *h = reinterpret_cast<nlmsghdr *>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
		if (h->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET))
			continue;
		int attrs_len = (int)h->nlmsg_len - (int)NLMSG_SPACE(sizeof(nfgenmsg));
		auto *nla = reinterpret_cast<nlattr *>(reinterpret_cast<char *>(h) + NLMSG_SPACE(sizeof(nfgenmsg)));
		while (attrs_len >= NLA_HDRLEN && nla->nla_len >= NLA_HDRLEN && nla->nla_len <= attrs_len) {
			if ((nla->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR &&
			    nla->nla_len >= NLA_HDRLEN + sizeof(nfqnl_msg_packet_hdr)) {
				nfqnl_msg_packet_hdr ph;
				memcpy(&ph, reinterpret_cast<char *>(nla) + NLA_HDRLEN, sizeof(ph));
				on_packet(ntohl(ph.packet_id));
				break;
			}
			int step = NLA_ALIGN(nla->nla_len);
			attrs_len -= step;
			nla = reinterpret_cast<nlattr *>(reinterpret_cast<char *>(nla) + step);
		}
	}
}

void NfqueueSocket::verdict(uint32_t packet_id, uint32_t verdict)
{
	nfqnl_msg_verdict_hdr vh = {htonl(verdict), htonl(packet_id)};
	Message m(NFQNL_MSG_VERDICT, 0, ++seq_, queue_, NFQA_VERDICT_HDR, &vh, sizeof(vh));
	if (send(fd_, m.buf, m.len, 0) != (ssize_t)m.len)
		throw std::runtime_error(errno_text("NFQUEUE verdict", errno));
}

} // namespace ctct
