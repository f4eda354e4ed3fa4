// Test NFQUEUE listener: holds every packet for --hold-ms from its arrival, then gives the verdict,
// in arrival order, so packets that arrive close together sit in the queue at the same time.
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_HELD 65536

struct held {
	uint32_t id;
	uint64_t due_ns;
};

static struct held held[MAX_HELD];
static size_t head, tail; /* ring of held packets, in arrival order */
static uint64_t hold_ns, packets, accepted, dropped, overflow;
static uint32_t verdict = NF_ACCEPT;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	(void)msg;
	(void)data;
	if (!ph)
		return 0;
	packets++;
	if (tail - head == MAX_HELD) {
		overflow++;
		return nfq_set_verdict(qh, ntohl(ph->packet_id), verdict, 0, NULL);
	}
	held[tail % MAX_HELD] = (struct held){ntohl(ph->packet_id), now_ns() + hold_ns};
	tail++;
	return 0;
}

static void release(struct nfq_q_handle *qh, int all)
{
	uint64_t now = now_ns();
	while (head != tail && (all || held[head % MAX_HELD].due_ns <= now)) {
		nfq_set_verdict(qh, held[head % MAX_HELD].id, verdict, 0, NULL);
		if (verdict == NF_ACCEPT)
			accepted++;
		else
			dropped++;
		head++;
	}
}

static void on_signal(int sig) { (void)sig; stop = 1; }

static void usage(void)
{
	fprintf(stderr, "usage: nfq_hold --queue N [--hold-ms M] [--verdict accept|drop] [--maxlen N] [--rcvbuf BYTES] [--stall-ms M]"
			" [--ready-file PATH]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"queue", 1, 0, 'q'}, {"hold-ms", 1, 0, 'h'}, {"verdict", 1, 0, 'v'},
					     {"maxlen", 1, 0, 'm'}, {"rcvbuf", 1, 0, 'r'}, {"ready-file", 1, 0, 'f'}, {"stall-ms", 1, 0, 's'},
					     {0, 0, 0, 0}};
	long queue = -1, maxlen = 0, rcvbuf = 0;
	unsigned long stall_ms = 0; /* from the first packet on, do not read the socket: a burst overflows its buffer */
	const char *ready = NULL;
	char *end;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'q': queue = strtol(optarg, &end, 10); if (*end || queue < 0 || queue > 65535) usage(); break;
		case 'h': hold_ns = strtoull(optarg, &end, 10) * 1000000ULL; if (*end) usage(); break;
		case 'v':
			if (!strcmp(optarg, "accept")) verdict = NF_ACCEPT;
			else if (!strcmp(optarg, "drop")) verdict = NF_DROP;
			else usage();
			break;
		case 'm': maxlen = strtol(optarg, &end, 10); if (*end || maxlen <= 0) usage(); break;
		case 'r': rcvbuf = strtol(optarg, &end, 10); if (*end || rcvbuf <= 0) usage(); break;
		case 'f': ready = optarg; break;
		case 's': stall_ms = strtoul(optarg, &end, 10); if (*end) usage(); break;
		default: usage();
		}
	}
	if (queue < 0)
		usage();

	struct nfq_handle *h = nfq_open();
	if (!h) {
		fprintf(stderr, "nfq_hold: nfq_open: %s\n", strerror(errno));
		return 1;
	}
	struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
	if (!qh) {
		fprintf(stderr, "nfq_hold: cannot bind queue %ld: %s\n", queue, strerror(errno));
		return 1;
	}
	/* metadata only: the verdict needs just the id */
	if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
		fprintf(stderr, "nfq_hold: set_mode: %s\n", strerror(errno));
		return 1;
	}
	if (maxlen && nfq_set_queue_maxlen(qh, (uint32_t)maxlen) < 0) {
		fprintf(stderr, "nfq_hold: set_queue_maxlen: %s\n", strerror(errno));
		return 1;
	}
	int fd = nfq_fd(h);
	if (rcvbuf)
		nfnl_rcvbufsiz(nfq_nfnlh(h), (unsigned int)rcvbuf);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (!f) {
			fprintf(stderr, "nfq_hold: cannot write %s: %s\n", ready, strerror(errno));
			return 1;
		}
		fprintf(f, "%d\n", getpid());
		fclose(f);
	}
	/* The stall starts when the first packet is waiting, not at start: a tracer that is slow to load
	 * (a loaded machine) must not let the stall pass before the burst arrives. */
	if (stall_ms) {
		struct pollfd first = {fd, POLLIN, 0};
		while (!stop && poll(&first, 1, 100) == 0)
			;
		usleep(stall_ms * 1000);
	}
	static char buf[65536] __attribute__((aligned));
	while (!stop) {
		int timeout = 100;
		if (head != tail) {
			uint64_t due = held[head % MAX_HELD].due_ns, now = now_ns();
			timeout = due > now ? (int)((due - now) / 1000000ULL) + 1 : 0;
		}
		struct pollfd p = {fd, POLLIN, 0};
		int n = poll(&p, 1, timeout);
		if (n > 0) {
			ssize_t len = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (len > 0)
				nfq_handle_packet(h, buf, (int)len);
			else if (len < 0 && errno == ENOBUFS)
				fprintf(stderr, "nfq_hold: receive buffer overflow (ENOBUFS)\n");
		}
		release(qh, 0);
	}
	release(qh, 1);
	fprintf(stderr, "nfq_hold: queue=%ld packets=%llu accepted=%llu dropped=%llu overflow=%llu\n", queue,
		(unsigned long long)packets, (unsigned long long)accepted, (unsigned long long)dropped,
		(unsigned long long)overflow);
	nfq_destroy_queue(qh);
	nfq_close(h);
	return 0;
}
