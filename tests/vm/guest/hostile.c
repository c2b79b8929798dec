/*
 * sm-hostile: a guest that attacks its own VM's limits, for
 * tests/vm/test_hostile.c. Each mode ends with one line on stdout saying
 * how it ended (the flood modes excepted), so the test can tell a limit
 * that held from one that was never reached:
 *   forkbomb SECONDS   every process forks until fork fails or SECONDS
 *                      pass, then sleeps; the first one, kept from the
 *                      OOM killer, only sleeps: the exec's timeout must
 *                      kill the whole tree. Prints nothing.
 *   mem                allocates and touches 1 MiB blocks until the
 *                      guest's OOM killer ends it (exits 3 if malloc
 *                      fails first)
 *   fill FILE          writes FILE in 1 MiB blocks until a write fails,
 *                      then "fill bytes=N errno=E (NAME)" and unlinks FILE
 *   console SECONDS    writes to /dev/console for SECONDS, then
 *                      "console bytes=N"
 *   stdout MIB         MIB MiB of a pattern on stdout
 *   vsock N PORT       N vsock connections to the host (CID 2) port PORT,
 *                      64 bytes written on each, held for a second, then
 *                      "vsock ok=A refused=R errno=E (NAME)" (the errno of
 *                      the last refusal, 0 when none)
 * A static musl binary: the busybox fixture has no compiler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1u << 20)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void oom_score_adj(const char *v)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, v, strlen(v)) < 0)
			perror("oom_score_adj");
		close(fd);
	}
}

static __attribute__((noreturn)) void forkbomb(double seconds)
{
	double end = now_s() + seconds;

	/* The exec's own process stays out of the OOM killer's reach and
	 * idle, as a shell that started a bomb would: only the exec's timeout
	 * ends the exec, and it has to take the whole tree with it. */
	oom_score_adj("-1000");
	if (fork() == 0) {
		oom_score_adj("0");
		/* Children carry on the loop: the tree grows until the guest's
		 * pid or memory limit refuses a fork, or the time is up. */
		while (now_s() < end)
			if (fork() < 0)
				break;
	}
	for (;;)
		pause();
}

static int mem(void)
{
	for (unsigned long mib = 0;; mib++) {
		char *p = malloc(BLOCK);
		if (!p) {
			/* not what the test wants: the guest should have killed us first */
			printf("mem: malloc refused after %lu MiB\n", mib);
			return 3;
		}
		memset(p, 0xa5, BLOCK);
	}
}

static int fill(const char *path)
{
	static char block[BLOCK];
	unsigned long long bytes = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), e = 0;

	if (fd < 0) {
		printf("fill open %s: %s\n", path, strerror(errno));
		return 2;
	}
	memset(block, 0x5a, sizeof(block));
	for (;;) {
		ssize_t n = write(fd, block, sizeof(block));
		if (n <= 0) {
			e = n < 0 ? errno : ENOSPC;
			break;
		}
		bytes += (unsigned long long)n;
	}
	/* ext4 may take the last blocks only at fsync: that error counts too */
	if (fsync(fd) < 0 && !e)
		e = errno;
	close(fd);
	unlink(path);
	printf("fill bytes=%llu errno=%d (%s)\n", bytes, e, strerror(e));
	return 0;
}

static int console(double seconds)
{
	static const char line[] = "sm-hostile console flood 0123456789abcdefghijklmnopqrstuvwxyz\n";
	unsigned long long bytes = 0;
	double end = now_s() + seconds;
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		printf("console open: %s\n", strerror(errno));
		return 2;
	}
	while (now_s() < end) {
		ssize_t n = write(fd, line, sizeof(line) - 1);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			break;
		if (n > 0)
			bytes += (unsigned long long)n;
	}
	close(fd);
	printf("console bytes=%llu\n", bytes);
	return 0;
}

static int flood_stdout(unsigned long mib)
{
	static char block[BLOCK];

	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (char)('a' + i % 26);
	for (unsigned long i = 0; i < mib; i++)
		for (size_t off = 0; off < sizeof(block);) {
			ssize_t n = write(1, block + off, sizeof(block) - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 2;
			off += (size_t)n;
		}
	return 0;
}

static int vsock_conns(unsigned n, unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = port };
	struct rlimit rl = { n + 64, n + 64 };
	static const char msg[64] = "sm-hostile";
	unsigned ok = 0, refused = 0;
	int *fds = calloc(n, sizeof(*fds)), last = 0;

	if (!fds || setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		printf("vsock setup: %s\n", strerror(errno));
		return 2;
	}
	for (unsigned i = 0; i < n; i++) {
		fds[i] = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    write(fds[i], msg, sizeof(msg)) != (ssize_t)sizeof(msg)) {
			last = errno;
			refused++;
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
			continue;
		}
		ok++;
	}
	sleep(1);
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	printf("vsock ok=%u refused=%u errno=%d (%s)\n", ok, refused, last, strerror(last));
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "forkbomb") && argc == 3)
		forkbomb(atof(argv[2]));
	if (!strcmp(mode, "mem") && argc == 2)
		return mem();
	if (!strcmp(mode, "fill") && argc == 3)
		return fill(argv[2]);
	if (!strcmp(mode, "console") && argc == 3)
		return console(atof(argv[2]));
	if (!strcmp(mode, "stdout") && argc == 3)
		return flood_stdout(strtoul(argv[2], NULL, 10));
	if (!strcmp(mode, "vsock") && argc == 4)
		return vsock_conns((unsigned)strtoul(argv[2], NULL, 10), (unsigned)strtoul(argv[3], NULL, 10));
	fprintf(stderr, "usage: sm-hostile forkbomb SECONDS | mem | fill FILE | console SECONDS | stdout MIB | "
			"vsock N PORT\n");
	return 2;
}
