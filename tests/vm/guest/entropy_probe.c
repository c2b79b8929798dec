/*
 * sm-rnd: a snapshot clone's randomness as user space sees it, for
 * tests/vm/test_entropy.c. Static (musl): the busybox fixture image has
 * no tool that calls getrandom().
 *
 *   sm-rnd FIRST [bootid]   reads 32 bytes from getrandom(), 32 from
 *                           /dev/urandom, and /proc/sys/kernel/random/uuid,
 *                           starting with source FIRST (0, 1, 2) and going
 *                           round, so that over many clones each source is
 *                           some clone's very first read; with "bootid",
 *                           then /proc/sys/kernel/random/boot_id. Prints
 *                           "getrandom HEX", "urandom HEX", "uuid UUID"
 *                           [, "bootid UUID"], in that order.
 *   sm-rnd --loop FILE MS   a workload: every MS ms appends one line
 *                           "CLOCK_MONOTONIC_NS HEX" (16 bytes of
 *                           getrandom()) to FILE, with one write.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NSRC 3

static void hex(const unsigned char *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static int from_getrandom(char *out)
{
	unsigned char b[32];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -1;
	hex(b, sizeof(b), out);
	return 0;
}

/* The first n bytes of path, raw (as hex) or as text (the trailing newline cut). */
static int from_file(const char *path, size_t n, int as_hex, char *out)
{
	unsigned char b[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0)
		return -1;
	got = read(fd, b, n);
	close(fd);
	if (got <= 0)
		return -1;
	if (as_hex) {
		hex(b, (size_t)got, out);
		return got == (ssize_t)n ? 0 : -1;
	}
	memcpy(out, b, (size_t)got);
	out[got] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

static int read_source(int i, char *out)
{
	switch (i) {
	case 0: return from_getrandom(out);
	case 1: return from_file("/dev/urandom", 32, 1, out);
	default: return from_file("/proc/sys/kernel/random/uuid", 36, 0, out);
	}
}

static int probe(int first, int bootid)
{
	static const char *const names[NSRC] = { "getrandom", "urandom", "uuid" };
	char val[NSRC][80], boot[80] = "";

	for (int k = 0; k < NSRC; k++) {
		int i = (first + k) % NSRC;
		if (read_source(i, val[i]) < 0) {
			fprintf(stderr, "sm-rnd: reading %s failed\n", names[i]);
			return 1;
		}
	}
	if (bootid && from_file("/proc/sys/kernel/random/boot_id", 36, 0, boot) < 0) {
		fprintf(stderr, "sm-rnd: reading boot_id failed\n");
		return 1;
	}
	for (int i = 0; i < NSRC; i++)
		printf("%s %s\n", names[i], val[i]);
	if (bootid)
		printf("bootid %s\n", boot);
	return 0;
}

static int loop(const char *file, long ms)
{
	struct timespec pause = { ms / 1000, (ms % 1000) * 1000000 };
	int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

	if (fd < 0 || ms <= 0)
		return 1;
	for (;;) {
		char line[128], rnd[40];
		struct timespec now;
		unsigned char b[16];
		int n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
			return 1;
		hex(b, sizeof(b), rnd);
		n = snprintf(line, sizeof(line), "%lld %s\n",
			     (long long)now.tv_sec * 1000000000 + now.tv_nsec, rnd);
		if (write(fd, line, (size_t)n) != n)
			return 1;
		nanosleep(&pause, NULL);
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--loop"))
		return loop(argv[2], atol(argv[3]));
	if ((argc == 2 || (argc == 3 && !strcmp(argv[2], "bootid"))) && argv[1][0] >= '0' && argv[1][0] <= '2')
		return probe(argv[1][0] - '0', argc == 3);
	fprintf(stderr, "usage: sm-rnd 0|1|2 [bootid] | sm-rnd --loop FILE MS\n");
	return 2;
}
