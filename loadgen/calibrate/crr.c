// Minimal C reference for loadgen's crr (and rr) workloads: the yardstick the
// Go client is held to. It speaks loadgen's wire protocol (8-byte header, then
// SIZE-byte request and response) to a `loadgen server`, single-threaded,
// blocking sockets, no timing per operation: the fastest a client can go.
//
//   crr HOST PORT SECONDS SIZE [rr]   ->   prints "<ops> <ops_per_sec>"
//
// Without "rr": connect, send header+request, read response, close, repeat.
// With "rr": one connection, header once, then request/response forever.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(struct sockaddr_storage *sa, socklen_t len) {
	int fd = socket(sa->ss_family, SOCK_STREAM, 0), one = 1;
	if (fd < 0) return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)sa, len) < 0) { close(fd); return -1; }
	return fd;
}

static int readfull(int fd, char *b, int n) {
	for (int got = 0; got < n;) {
		ssize_t r = read(fd, b + got, n - got);
		if (r <= 0) return -1;
		got += r;
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 5) { fprintf(stderr, "usage: crr HOST PORT SECONDS SIZE [rr]\n"); return 2; }
	int size = atoi(argv[4]), rr = argc > 5 && strcmp(argv[5], "rr") == 0;
	double secs = atof(argv[3]);
	struct sockaddr_storage sa = {0};
	socklen_t len;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
	if (inet_pton(AF_INET, argv[1], &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET; s4->sin_port = htons(atoi(argv[2])); len = sizeof *s4;
	} else if (inet_pton(AF_INET6, argv[1], &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6; s6->sin6_port = htons(atoi(argv[2])); len = sizeof *s6;
	} else { fprintf(stderr, "crr: bad address %s\n", argv[1]); return 2; }

	char *msg = calloc(1, 8 + size), *resp = malloc(size);
	msg[0] = 'L'; msg[1] = 'G'; msg[2] = 1; msg[3] = rr ? 'r' : 'c';
	uint32_t be = htonl(size);
	memcpy(msg + 4, &be, 4);

	long ops = 0, errs = 0;
	double start = now(), end = start + secs;
	if (rr) {
		int fd = dial(&sa, len);
		if (fd < 0 || write(fd, msg, 8) != 8) { perror("crr: connect"); return 1; }
		while ((ops & 63) || now() < end) {
			if (write(fd, msg + 8, size) != size || readfull(fd, resp, size) < 0) { perror("crr: rr"); return 1; }
			ops++;
		}
		close(fd);
	} else {
		while ((ops & 63) || now() < end) {
			int fd = dial(&sa, len);
			if (fd < 0) { errs++; if (errs > 1000) { perror("crr: connect"); return 1; } continue; }
			if (write(fd, msg, 8 + size) != 8 + size || readfull(fd, resp, size) < 0) errs++;
			else ops++;
			close(fd);
		}
	}
	double el = now() - start;
	if (errs) fprintf(stderr, "crr: %ld errors\n", errs);
	printf("%ld %.0f\n", ops, ops / el);
	return 0;
}
