// Fast accept-all NFQUEUE listener for bench/datapath.sh: metadata only, a large receive buffer, and
// one batch verdict (NFQNL_MSG_VERDICT_BATCH: "every id up to N") per drained socket, so the listener
// costs as little per packet as userspace can and the kernel datapath is what gets measured.
// The running count of verdicted packets is kept in an mmap'd 8-byte file (--count-file) that the
// script reads between rounds without stopping anything.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static volatile sig_atomic_t stop;
static volatile uint64_t *count;
static uint64_t local_count;
static uint32_t last_id;
static int have_id;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	(void)qh; (void)msg; (void)data;
	if (ph) {
		last_id = ntohl(ph->packet_id);
		have_id = 1;
		local_count++;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: nfq_accept --queue N [--maxlen N] [--rcvbuf BYTES] [--batch N] [--count-file PATH]"
			" [--ready-file PATH]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"queue", 1, 0, 'q'}, {"maxlen", 1, 0, 'm'}, {"rcvbuf", 1, 0, 'r'},
					     {"batch", 1, 0, 'b'}, {"count-file", 1, 0, 'c'}, {"ready-file", 1, 0, 'f'},
					     {0, 0, 0, 0}};
	long queue = -1, maxlen = 65536, rcvbuf = 64 << 20, batch = 256;
	const char *ready = NULL, *count_file = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'q': queue = atol(optarg); break;
		case 'm': maxlen = atol(optarg); break;
		case 'r': rcvbuf = atol(optarg); break;
		case 'b': batch = atol(optarg); break;
		case 'c': count_file = optarg; break;
		case 'f': ready = optarg; break;
		default: usage();
		}
	}
	if (queue < 0 || queue > 65535 || maxlen <= 0 || rcvbuf <= 0 || batch <= 0)
		usage();
	static uint64_t dummy;
	count = &dummy;
	if (count_file) {
		int cfd = open(count_file, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (cfd < 0 || ftruncate(cfd, sizeof(uint64_t))) {
			fprintf(stderr, "nfq_accept: %s: %s\n", count_file, strerror(errno));
			return 1;
		}
		count = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
		if (count == MAP_FAILED) {
			fprintf(stderr, "nfq_accept: mmap: %s\n", strerror(errno));
			return 1;
		}
	}
	struct nfq_handle *h = nfq_open();
	struct nfq_q_handle *qh = h ? nfq_create_queue(h, (uint16_t)queue, on_packet, NULL) : NULL;
	if (!qh) {
		fprintf(stderr, "nfq_accept: cannot bind queue %ld: %s\n", queue, strerror(errno));
		return 1;
	}
	if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(qh, (uint32_t)maxlen) < 0) {
		fprintf(stderr, "nfq_accept: queue setup: %s\n", strerror(errno));
		return 1;
	}
	int fd = nfq_fd(h), one = 1;
	nfnl_rcvbufsiz(nfq_nfnlh(h), (unsigned int)rcvbuf);
	// A full socket buffer drops packets in the kernel (counted in nfnetlink_queue); the listener need
	// not hear about it as an error, it just carries on.
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (!f)
			return 1;
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}
	static char buf[1 << 16] __attribute__((aligned));
	while (!stop) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 100) <= 0)
			continue;
		// Drain up to `batch` messages, then accept everything seen so far with one message.
		for (long i = 0; i < batch; i++) {
			ssize_t len = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (len <= 0)
				break;
			nfq_handle_packet(h, buf, (int)len);
		}
		if (have_id) {
			nfq_set_verdict_batch(qh, last_id, NF_ACCEPT);
			have_id = 0;
			*count = local_count;
		}
	}
	nfq_destroy_queue(qh);
	nfq_close(h);
	printf("%llu\n", (unsigned long long)local_count);
	return 0;
}
