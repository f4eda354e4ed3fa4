// UDP traffic for the tests. send: N datagrams from a bound source address and port.
// sendmany: the same for many sources in one process, so a burst is not spread out by process start-up
// (under an emulated VM each start takes longer than the listener's hold time).
// recv: count datagrams until the socket is idle for IDLE_MS (FIRST_MS for the first one), print the count.
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int resolve(const char *addr, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_DGRAM}, *res;
	if (getaddrinfo(addr, port, &hints, &res))
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: udp_burst send SRC SPORT DST DPORT COUNT\n"
			"       udp_burst sendmany DST DPORT COUNT SRC,SPORT...\n"
			"       udp_burst recv ADDR PORT IDLE_MS [FIRST_MS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_storage a, b;
	socklen_t al, bl;
	if (argc == 7 && !strcmp(argv[1], "send")) {
		if (resolve(argv[2], argv[3], &a, &al) || resolve(argv[4], argv[5], &b, &bl))
			usage();
		int n = atoi(argv[6]), one = 1;
		int fd = socket(a.ss_family, SOCK_DGRAM, 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, al)) {
			fprintf(stderr, "udp_burst: bind %s:%s: %s\n", argv[2], argv[3], strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			char msg[64];
			int len = snprintf(msg, sizeof(msg), "%s:%s#%d", argv[2], argv[3], i);
			if (sendto(fd, msg, len, 0, (struct sockaddr *)&b, bl) != len) {
				fprintf(stderr, "udp_burst: sendto: %s\n", strerror(errno));
				return 1;
			}
		}
		printf("%d\n", n);
		return 0;
	}
	if (argc >= 6 && !strcmp(argv[1], "sendmany")) {
		int n = atoi(argv[4]), sent = 0, one = 1;
		if (resolve(argv[2], argv[3], &b, &bl) || n <= 0)
			usage();
		for (int s = 5; s < argc; s++) {
			char src[128], *comma;
			snprintf(src, sizeof(src), "%s", argv[s]);
			if (!(comma = strrchr(src, ',')))
				usage();
			*comma = 0;
			if (resolve(src, comma + 1, &a, &al))
				usage();
			int fd = socket(a.ss_family, SOCK_DGRAM, 0);
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (fd < 0 || bind(fd, (struct sockaddr *)&a, al)) {
				fprintf(stderr, "udp_burst: bind %s: %s\n", argv[s], strerror(errno));
				return 1;
			}
			for (int i = 0; i < n; i++, sent++)
				if (sendto(fd, "ctct", 4, 0, (struct sockaddr *)&b, bl) != 4) {
					fprintf(stderr, "udp_burst: sendto: %s\n", strerror(errno));
					return 1;
				}
			close(fd);
		}
		printf("%d\n", sent);
		return 0;
	}
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "recv")) {
		if (resolve(argv[2], argv[3], &a, &al))
			usage();
		int fd = socket(a.ss_family, SOCK_DGRAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, al)) {
			fprintf(stderr, "udp_burst: bind %s:%s: %s\n", argv[2], argv[3], strerror(errno));
			return 1;
		}
		// FIRST_MS: where the traffic must arrive, the first datagram may come late (a slow emulated
		// sender, tracers starting) without ending the count before it began
		long count = 0, idle = atol(argv[4]), first = argc == 6 ? atol(argv[5]) : idle;
		char buf[2048];
		// Ready once bound: the caller waits for this line before sending.
		printf("ready\n");
		fflush(stdout);
		for (;;) {
			struct pollfd p = {fd, POLLIN, 0};
			if (poll(&p, 1, (int)(count ? idle : first)) <= 0)
				break;
			if (recv(fd, buf, sizeof(buf), 0) > 0)
				count++;
		}
		printf("%ld\n", count);
		return 0;
	}
	usage();
}
