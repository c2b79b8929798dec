/*
 * virtio-vsock against a real Linux guest (tests/vm/guest/vsock_guest.c):
 * echo in both directions, 64 concurrent connections, 64 MiB through one
 * connection with a hash check, and a transport reset seen by the guest.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../unit/stream_check.h"
#include "worker_proc.h"

#define BOOT_WAIT 600000 /* ms; nested KVM under TCG boots slowly (hang guard only) */
#define IO_WAIT 120000
#define ECHO_PORT 1024
#define DIAL_PORT 2000

static struct wproc w;
static int dial_listener = -1;

#define must(cond, ...)                        \
	do {                                   \
		if (!(cond)) {                 \
			wproc_dump(&w);        \
			cr_assert_fail(__VA_ARGS__); \
		}                              \
	} while (0)

static int unix_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_lt(strlen(path), sizeof(sa.sun_path), "socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", path, strerror(errno));
	cr_assert_eq(listen(fd, 8), 0);
	return fd;
}

static void setup(void)
{
	static const char *const extra[] = { "--vsock", NULL };
	char line[256], path[160];

	signal(SIGPIPE, SIG_IGN);
	if (!wproc_start(&w, SM_VSOCK_GUEST_INITRAMFS, "quiet smvsock=echo:1024,dial:2000", 256, extra))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	/* The guest dials <uds>_2000 as soon as it is up: listen before that. */
	snprintf(path, sizeof(path), "%s_%u", w.vsock, DIAL_PORT);
	dial_listener = unix_listen(path);
	must(wproc_wait_line(&w, "SMTEST vsock ready", line, sizeof(line), BOOT_WAIT), "guest never got ready");
}

static void teardown(void)
{
	char path[160];

	if (dial_listener >= 0) {
		close(dial_listener);
		snprintf(path, sizeof(path), "%s_%u", w.vsock, DIAL_PORT);
		unlink(path);
	}
	wproc_stop(&w);
}

TestSuite(vm_vsock, .init = setup, .fini = teardown, .timeout = 900);

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

static bool read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		if (!readable(fd, IO_WAIT))
			return false;
		ssize_t r = read(fd, (char *)buf + got, len - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* CONNECT to the guest's echo port; the OK line is checked and consumed. */
static int host_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char line[32];
	size_t n = 0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w.vsock);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	cr_assert_eq(write(fd, "CONNECT 1024\n", 13), 13);
	while (n < sizeof(line) - 1) {
		must(readable(fd, IO_WAIT), "no answer to CONNECT");
		cr_assert_eq(read(fd, line + n, 1), 1, "connection closed during the handshake");
		if (line[n++] == '\n')
			break;
	}
	line[n] = 0;
	cr_assert_eq(strncmp(line, "OK ", 3), 0, "handshake answer: %s", line);
	return fd;
}

Test(vm_vsock, echo_host_to_guest_and_guest_to_host)
{
	char buf[8] = { 0 };
	int fd = host_connect(), in;

	cr_assert_eq(write(fd, "hello", 5), 5);
	cr_assert(read_full(fd, buf, 5));
	cr_assert_str_eq(buf, "hello");
	close(fd);

	/* The guest dialed <uds>_2000 and echoes what we send it. */
	must(readable(dial_listener, IO_WAIT), "the guest never connected to host port 2000");
	in = accept(dial_listener, NULL, NULL);
	cr_assert_geq(in, 0);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(write(in, "ping", 4), 4);
	cr_assert(read_full(in, buf, 4));
	cr_assert_str_eq(buf, "ping");
	close(in);
}

Test(vm_vsock, echo_over_64_concurrent_connections)
{
	enum { N = 64, LEN = 4096 };
	static uint8_t out[N][LEN], back[LEN];
	int fd[N];

	for (int i = 0; i < N; i++) {
		fd[i] = host_connect();
		for (int k = 0; k < LEN; k++)
			out[i][k] = (uint8_t)(i * 131 + k * 7);
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(write(fd[i], out[i], LEN), LEN);
	for (int i = 0; i < N; i++) {
		cr_assert(read_full(fd[i], back, LEN), "connection %d", i);
		cr_assert_eq(memcmp(back, out[i], LEN), 0, "connection %d got other bytes", i);
		close(fd[i]);
	}
}

Test(vm_vsock, stream_64mib_hash_matches)
{
	struct stream_check s;
	int fd = host_connect();

	stream_check_start(&s, fd, 64ull << 20);
	for (int waited = 0; !stream_check_done(&s) && waited < 600000; waited += 100)
		usleep(100 * 1000);
	cr_assert(stream_check_finish(&s), "%llu of %llu bytes came back, or their sha256 differs",
		  (unsigned long long)s.got, (unsigned long long)s.len);
	close(fd);
}

Test(vm_vsock, transport_reset_ends_connections_not_listeners)
{
	char reply[512], buf[4] = { 0 };
	int fd = host_connect();

	cr_assert(wproc_control(&w, "vsock reset", reply, sizeof(reply)));
	cr_assert_str_eq(reply, "ok");
	must(readable(fd, IO_WAIT), "the connection survived the reset");
	cr_assert_leq(read(fd, buf, 1), 0);
	close(fd);
	/* The guest's listener is still there. */
	fd = host_connect();
	cr_assert_eq(write(fd, "abc", 3), 3);
	cr_assert(read_full(fd, buf, 3));
	cr_assert_str_eq(buf, "abc");
	close(fd);
	cr_assert(wproc_control(&w, "vsock stats", reply, sizeof(reply)));
	cr_log_info("%s", reply);
}
