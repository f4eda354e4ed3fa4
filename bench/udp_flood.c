// Traffic for bench/datapath.sh and tests/e2e/flood.sh.
//   send DST DPORT SECONDS flows|one [SRC_PREFIX]: IPv4 UDP through a raw socket with sendmmsg (64 per call)
//     for SECONDS. `one`: one 5-tuple (10.231.1.2:40000), so conntrack confirms it once and the rest is
//     established traffic. `flows`: every packet a new 5-tuple (source address SRC_PREFIX.10-.249 x
//     source port 1024-65535, rotating), so conntrack creates and confirms an entry per packet.
//     `pairs`: colliding pairs for tests/e2e/flood.sh: SRC_PREFIX.2:p and SRC_PREFIX.3:p to DST:d, back to
//     back, for p in 1024-65535 and d in DPORT..DPORT+99, so behind MASQUERADE both become rtr:p -> DST:d.
//     A raw socket is the cheap way to vary the source per packet from one process.
//   recv ADDR PORT COUNT_FILE: count datagrams (recvmmsg) into an mmap'd 8-byte counter until killed.
//   reply SRC SPORT DST DPORT: one datagram SRC:SPORT -> DST:DPORT through a raw socket (SPORT may be a port
//     `recv` holds): the reply that makes conntrack see `one`'s flow as established (bench/datapath.sh).
#define _GNU_SOURCE /* sendmmsg, recvmmsg */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18

struct pkt {
	struct iphdr ip;
	struct udphdr udp;
	char payload[PAYLOAD];
} __attribute__((packed));

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: udp_flood send DST DPORT SECONDS flows|one|pairs [SRC_PREFIX]\n"
			"       udp_flood recv ADDR PORT COUNT_FILE\n"
			"       udp_flood reply SRC SPORT DST DPORT\n");
	exit(2);
}

static int do_send(int argc, char **argv)
{
	if (argc < 6)
		usage();
	const char *prefix = argc > 6 ? argv[6] : "10.231.1";
	int flows = !strcmp(argv[5], "flows"), pairs = !strcmp(argv[5], "pairs");
	uint16_t dport0 = (uint16_t)atoi(argv[3]), dport_off = 0;
	double secs = atof(argv[4]);
	struct sockaddr_in dst = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1)
		usage();
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); // IPPROTO_RAW implies IP_HDRINCL
	if (fd < 0) {
		perror("udp_flood: raw socket");
		return 1;
	}
	int sndbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	static struct pkt pkts[BATCH];
	static struct iovec iov[BATCH];
	static struct mmsghdr msgs[BATCH];
	uint32_t host = 10, port = 1024;
	char src[32];
	for (int i = 0; i < BATCH; i++) {
		struct pkt *p = &pkts[i];
		p->ip.version = 4;
		p->ip.ihl = 5;
		p->ip.ttl = 64;
		p->ip.protocol = IPPROTO_UDP;
		p->ip.tot_len = htons(sizeof(*p));
		p->ip.daddr = dst.sin_addr.s_addr;
		p->udp.dest = htons((uint16_t)atoi(argv[3]));
		p->udp.len = htons(sizeof(p->udp) + PAYLOAD);
		p->udp.check = 0; // optional for IPv4
		snprintf(src, sizeof(src), "%s.2", prefix);
		inet_pton(AF_INET, src, &p->ip.saddr);
		p->udp.source = htons(40000);
		iov[i] = (struct iovec){p, sizeof(*p)};
		msgs[i].msg_hdr = (struct msghdr){.msg_name = &dst, .msg_namelen = sizeof(dst), .msg_iov = &iov[i], .msg_iovlen = 1};
	}
	uint32_t base;
	snprintf(src, sizeof(src), "%s.0", prefix);
	inet_pton(AF_INET, src, &base);
	uint64_t sent = 0, errors = 0;
	/* the clock is read after every batch and the time actually spent is printed: a rate computed from
	 * it is not rounded to whole rounds of batches (1024 packets were ~1 % of a 3 s window in a VM) */
	double start = now_s(), end = start + secs, t = start;
	while (t < end) {
		if (flows)
			for (int i = 0; i < BATCH; i++) {
				pkts[i].ip.saddr = htonl(ntohl(base) + host);
				pkts[i].udp.source = htons((uint16_t)port);
				if (++port > 65535) {
					port = 1024;
					if (++host > 249)
						host = 10;
				}
			}
		if (pairs)
			for (int i = 0; i < BATCH; i += 2) {
				pkts[i].ip.saddr = htonl(ntohl(base) + 2);
				pkts[i + 1].ip.saddr = htonl(ntohl(base) + 3);
				pkts[i].udp.source = pkts[i + 1].udp.source = htons((uint16_t)port);
				pkts[i].udp.dest = pkts[i + 1].udp.dest = htons(dport0 + dport_off);
				if (++port > 65535) {
					port = 1024;
					dport_off = (dport_off + 1) % 100;
				}
			}
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0)
			sent += n;
		else
			errors++;
		t = now_s();
	}
	printf("%llu %llu %.6f\n", (unsigned long long)sent, (unsigned long long)errors, t - start);
	return 0;
}

static int do_reply(int argc, char **argv)
{
	if (argc != 6)
		usage();
	struct pkt p = {0};
	struct sockaddr_in dst = {.sin_family = AF_INET};
	if (inet_pton(AF_INET, argv[2], &p.ip.saddr) != 1 || inet_pton(AF_INET, argv[4], &p.ip.daddr) != 1)
		usage();
	dst.sin_addr.s_addr = p.ip.daddr;
	p.ip.version = 4;
	p.ip.ihl = 5;
	p.ip.ttl = 64;
	p.ip.protocol = IPPROTO_UDP;
	p.ip.tot_len = htons(sizeof(p));
	p.udp.source = htons((uint16_t)atoi(argv[3]));
	p.udp.dest = htons((uint16_t)atoi(argv[5]));
	p.udp.len = htons(sizeof(p.udp) + PAYLOAD);
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0 || sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&dst, sizeof(dst)) != (ssize_t)sizeof(p)) {
		perror("udp_flood reply");
		return 1;
	}
	return 0;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int do_recv(int argc, char **argv)
{
	if (argc != 5)
		usage();
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1)
		usage();
	int cfd = open(argv[4], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (cfd < 0 || ftruncate(cfd, sizeof(uint64_t)))
		return 1;
	volatile uint64_t *count = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0), rcvbuf = 16 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	if (count == MAP_FAILED || fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("udp_flood recv");
		return 1;
	}
	struct timeval tv = {0, 200000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	static char bufs[BATCH][64];
	static struct iovec iov[BATCH];
	static struct mmsghdr msgs[BATCH];
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
		msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
	}
	uint64_t n = 0;
	while (!stop) {
		int r = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (r > 0)
			*count = (n += r);
	}
	printf("%llu\n", (unsigned long long)n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "send"))
		return do_send(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "recv"))
		return do_recv(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "reply"))
		return do_reply(argc, argv);
	usage();
}
