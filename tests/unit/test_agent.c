/*
 * The agent's other requests, through the real client against the real
 * agent: files of any size, the TCP bridge, ping, clock, entropy,
 * quiesce, listener probe, heartbeat, workload signal, shutdown; and
 * peers that speak garbage.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/init.h"
#include "lib/agent.h"
#include "test_agent_fixture.h"

static struct agent_fixture fx;

static void start(void)
{
	agent_fixture_start(&fx, agent_fixture_binary(false), NULL);
}

static void stop(void)
{
	agent_fixture_stop(&fx);
}

TestSuite(agent, .init = start, .fini = stop, .timeout = 60);

static void path_in(const char *name, char *out)
{
	agent_fixture_path(&fx, name, out, 256);
}

/* Takes &err: the call in rc has run (and set it) by the time this looks. */
static void expect_error(int rc, sm_error **errp, sm_code code, const char *needle)
{
	sm_error *err = *errp;

	cr_assert(rc < 0, "the call should have failed");
	cr_expect_eq(sm_error_code(err), code, "code %s: %s", sm_code_name(sm_error_code(err)), sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), needle), "'%s' not in '%s'", needle, sm_error_string(err));
	sm_error_free(err);
	*errp = NULL;
}

Test(agent, ping)
{
	struct proto_pong p;
	sm_error *err = NULL;

	cr_assert(agent_ping(&fx.target, &p, &err) == 0, "%s", sm_error_string(err));
	cr_expect(p.realtime_ns > 1600000000ull * 1000000000ull);
	cr_expect(p.monotonic_ns > 0);
}

Test(agent, write_and_read_small_file)
{
	char path[256];
	sm_error *err = NULL;
	struct stat st;
	void *data;
	size_t len;

	path_in("small", path);
	cr_assert(agent_write_file(&fx.target, path, "hello\n", 6, 0640, &err) == 0, "%s", sm_error_string(err));
	cr_assert(stat(path, &st) == 0);
	cr_expect_eq(st.st_mode & 07777, 0640);
	cr_assert(agent_read_file(&fx.target, path, 1024, &data, &len, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(len, 6);
	cr_expect_str_eq(data, "hello\n");
	free(data);
	/* Overwrite: truncated, and the new mode applied to the existing file. */
	cr_assert(agent_write_file(&fx.target, path, "x", 1, 0755, &err) == 0);
	cr_assert(stat(path, &st) == 0);
	cr_expect_eq(st.st_mode & 07777, 0755);
	cr_expect_eq(st.st_size, 1);
}

Test(agent, empty_file)
{
	char path[256];
	sm_error *err = NULL;
	void *data;
	size_t len = 99;

	path_in("empty", path);
	cr_assert(agent_write_file(&fx.target, path, NULL, 0, 0600, &err) == 0, "%s", sm_error_string(err));
	cr_assert(agent_read_file(&fx.target, path, 10, &data, &len, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(len, 0);
	cr_expect_str_eq(data, "");
	free(data);
}

/* A 40 MiB pseudo-random file through fds both ways, compared byte for byte. */
Test(agent, large_file_through_fds)
{
	const size_t size = (40u << 20) + 12345;
	char src[256], dst[256], back[256];
	uint8_t *a, *b;
	sm_error *err = NULL;
	uint32_t x = 12345;
	int fd;

	path_in("src.bin", src);
	path_in("dst.bin", dst);
	path_in("back.bin", back);
	a = malloc(size);
	b = malloc(size);
	cr_assert(a && b);
	for (size_t i = 0; i < size; i++) {
		x = x * 1103515245u + 12345u;
		a[i] = (uint8_t)(x >> 16);
	}
	fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0 && write(fd, a, size) == (ssize_t)size);
	close(fd);
	fd = open(src, O_RDONLY);
	cr_assert(agent_write_file_fd(&fx.target, dst, fd, 0600, &err) == 0, "%s", sm_error_string(err));
	close(fd);
	fd = open(back, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(agent_read_file_fd(&fx.target, dst, fd, &err) == 0, "%s", sm_error_string(err));
	close(fd);
	fd = open(back, O_RDONLY);
	cr_assert(fd >= 0);
	size_t got = 0;
	ssize_t n;
	while (got < size && (n = read(fd, b + got, size - got)) > 0)
		got += (size_t)n;
	close(fd);
	cr_expect_eq(got, size);
	cr_expect(memcmp(a, b, size) == 0, "the file came back different");
	free(a);
	free(b);
}

Test(agent, read_file_over_limit)
{
	char path[256];
	sm_error *err = NULL;
	void *data;
	size_t len;

	path_in("big", path);
	cr_assert(agent_write_file(&fx.target, path, "0123456789", 10, 0644, &err) == 0);
	expect_error(agent_read_file(&fx.target, path, 9, &data, &len, &err), &err, SM_E_INVALID,
		     "larger than the 9 bytes allowed");
}

Test(agent, file_errors_are_clear)
{
	sm_error *err = NULL;
	void *data;
	size_t len;

	expect_error(agent_write_file(&fx.target, "/no/such/dir/f", "x", 1, 0644, &err), &err, SM_E_NOT_FOUND,
		     "the parent directory does not exist");
	expect_error(agent_write_file(&fx.target, fx.dir, "x", 1, 0644, &err), &err, SM_E_INVALID, "is a directory");
	expect_error(agent_read_file(&fx.target, "/no/such/file", 100, &data, &len, &err), &err, SM_E_NOT_FOUND,
		     "open /no/such/file: No such file or directory");
	expect_error(agent_read_file(&fx.target, fx.dir, 100, &data, &len, &err), &err, SM_E_INVALID,
		     "Is a directory");
	expect_error(agent_write_file(&fx.target, "relative", "x", 1, 0644, &err), &err, SM_E_INVALID,
		     "must be absolute");
	expect_error(agent_write_file(&fx.target, "/tmp/x", "x", 1, 010000, &err), &err, SM_E_INVALID,
		     "not a permission mode");
	/* The agent is still fine after all that. */
	struct proto_pong p;
	cr_expect(agent_ping(&fx.target, &p, &err) == 0);
}

/* ---- TCP bridge ------------------------------------------------------------------- */

struct tcp_server {
	int lfd;
	uint16_t port;
	const char *banner; /* sent first, if not NULL */
	pthread_t t;
};

/* One connection: optional banner, then echo until EOF, then close. */
static void *serve_echo(void *arg)
{
	struct tcp_server *s = arg;
	char buf[65536];
	ssize_t n;
	int fd = accept(s->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	if (s->banner && write(fd, s->banner, strlen(s->banner)) < 0)
		goto out;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			break;
out:
	close(fd);
	return NULL;
}

static void tcp_server_start(struct tcp_server *s, const char *banner)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);

	s->banner = banner;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(s->lfd >= 0);
	cr_assert(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s->lfd, 4) == 0);
	cr_assert(getsockname(s->lfd, (struct sockaddr *)&a, &alen) == 0);
	s->port = ntohs(a.sin_port);
	cr_assert(pthread_create(&s->t, NULL, serve_echo, s) == 0);
}

Test(agent, tcp_bridge_echo_and_half_close)
{
	struct tcp_server s;
	sm_error *err = NULL;
	char buf[64] = { 0 };
	size_t got = 0;
	ssize_t n;
	int fd;

	tcp_server_start(&s, "banner\n");
	fd = agent_connect_tcp(&fx.target, s.port, &err);
	cr_assert(fd >= 0, "%s", sm_error_string(err));
	/* The service spoke first: its bytes are the caller's, not eaten by the handshake. */
	cr_assert(write(fd, "ping\n", 5) == 5);
	cr_assert(shutdown(fd, SHUT_WR) == 0);
	while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	cr_expect_eq(n, 0, "the bridge did not end with EOF");
	cr_expect_str_eq(buf, "banner\nping\n");
	close(fd);
	pthread_join(s.t, NULL);
	close(s.lfd);
}

Test(agent, tcp_bridge_bulk)
{
	const size_t total = 8u << 20;
	struct tcp_server s;
	sm_error *err = NULL;
	static char wbuf[65536], rbuf[65536];
	size_t sent = 0, got = 0;
	int fd;

	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (char)(i * 13);
	tcp_server_start(&s, NULL);
	fd = agent_connect_tcp(&fx.target, s.port, &err);
	cr_assert(fd >= 0, "%s", sm_error_string(err));
	while (got < total) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0) };
		cr_assert(poll(&p, 1, 30000) > 0);
		if (p.revents & POLLOUT) {
			ssize_t w = write(fd, wbuf, total - sent < sizeof(wbuf) ? total - sent : sizeof(wbuf));
			cr_assert(w > 0);
			sent += (size_t)w;
		}
		if (p.revents & POLLIN) {
			ssize_t r = read(fd, rbuf, sizeof(rbuf));
			cr_assert(r > 0);
			for (ssize_t i = 0; i < r; i++)
				cr_assert_eq(rbuf[i], wbuf[(got + (size_t)i) % sizeof(wbuf)]);
			got += (size_t)r;
		}
	}
	close(fd);
	pthread_join(s.t, NULL);
	close(s.lfd);
}

Test(agent, tcp_bridge_refused)
{
	struct tcp_server s;
	sm_error *err = NULL;
	uint16_t port;

	/* A port that was just free: nothing listens on it now. */
	tcp_server_start(&s, NULL);
	port = s.port;
	shutdown(s.lfd, SHUT_RDWR);
	pthread_join(s.t, NULL);
	close(s.lfd);
	expect_error(agent_connect_tcp(&fx.target, port, &err), &err, SM_E_IO, "Connection refused");
}

/* ---- small requests ------------------------------------------------------------------ */

Test(agent, probe_listener)
{
	struct tcp_server s;
	sm_error *err = NULL;
	bool found = false;
	uint16_t port = 0;

	tcp_server_start(&s, NULL);
	cr_assert(agent_probe_listen(&fx.target, s.port, &found, &port, &err) == 0, "%s", sm_error_string(err));
	cr_expect(found);
	cr_expect_eq(port, s.port);
	cr_assert(agent_probe_listen(&fx.target, 0, &found, &port, &err) == 0);
	cr_expect(found);
	shutdown(s.lfd, SHUT_RDWR);
	pthread_join(s.t, NULL);
	close(s.lfd);
	cr_assert(agent_probe_listen(&fx.target, s.port, &found, &port, &err) == 0);
	cr_expect(!found, "port %u still reported listening", s.port);
}

Test(agent, set_time_refused_outside_a_vm)
{
	sm_error *err = NULL;

	/* On a host the agent must not touch the machine's clock (a VM test covers the real thing). */
	expect_error(agent_set_time(&fx.target, 1, &err), &err, SM_E_IO, "set-time is disabled");
}

Test(agent, resume_refused_outside_a_vm)
{
	uint8_t rnd[PROTO_RESUME_ENTROPY] = { 1 };
	struct proto_pong pong;
	sm_error *err = NULL;

	/* RESUME sets the clock: an agent on a host refuses it (tests/vm/test_snapshot.c covers the VM) */
	expect_error(agent_resume(&fx.target, 1, rnd, sizeof(rnd), &pong, &err), &err, SM_E_IO,
		     "resume is disabled");
	/* the host side refuses too little entropy before sending anything */
	cr_expect(agent_resume(&fx.target, 1, rnd, 8, &pong, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_INVALID);
	sm_error_free(err);
}

Test(agent, entropy_and_quiesce)
{
	uint8_t seed[256];
	sm_error *err = NULL;

	if (geteuid() != 0)
		cr_skip_test("RNDADDENTROPY needs root");
	for (size_t i = 0; i < sizeof(seed); i++)
		seed[i] = (uint8_t)(i * 31);
	cr_expect(agent_add_entropy(&fx.target, seed, sizeof(seed), &err) == 0, "%s", sm_error_string(err));
	cr_expect(agent_quiesce(&fx.target, 10, &err) == 0, "%s", sm_error_string(err));
	expect_error(agent_add_entropy(&fx.target, seed, 0, &err), &err, SM_E_INVALID, "entropy must be");
}

Test(agent, no_workload_to_signal)
{
	sm_error *err = NULL;

	expect_error(agent_signal_workload(&fx.target, SIGTERM, &err), &err, SM_E_NOT_FOUND, "no workload is running");
}

Test(agent, shutdown_ends_the_agent)
{
	sm_error *err = NULL;
	int status;

	cr_assert(agent_shutdown(&fx.target, 0, &err) == 0, "%s", sm_error_string(err));
	cr_assert(waitpid(fx.pid, &status, 0) == fx.pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fx.pid = 0;
}

/* ---- garbage peers ---------------------------------------------------------------------- */

static int raw_connect(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(a.sun_path, fx.sock);
	cr_assert(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	return fd;
}

/* Sends bytes, then reads until the agent closes; returns what it sent back. */
static size_t send_and_wait_close(const void *bytes, size_t n, uint8_t *reply, size_t cap)
{
	int fd = raw_connect();
	size_t got = 0;

	cr_assert(write(fd, bytes, n) == (ssize_t)n);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;
		cr_assert(poll(&p, 1, 10000) == 1, "the agent kept a garbage connection open");
		r = read(fd, reply + got, cap - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		cr_assert(got < cap);
	}
	close(fd);
	return got;
}

static void expect_alive_and_logged(const char *needle)
{
	struct proto_pong p;
	sm_error *err = NULL;
	char *log;

	cr_expect(agent_ping(&fx.target, &p, &err) == 0, "the agent no longer answers: %s", sm_error_string(err));
	log = agent_fixture_log(&fx);
	cr_expect(strstr(log, needle), "'%s' not in the agent's log:\n%s", needle, log);
	free(log);
}

Test(agent, garbage_is_disconnected)
{
	uint8_t junk[64], reply[256];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0xA5 ^ i);
	cr_expect_eq(send_and_wait_close(junk, sizeof(junk), reply, sizeof(reply)), 0);
	expect_alive_and_logged("no valid hello from the host (malformed frame)");
}

Test(agent, oversized_frame_is_disconnected)
{
	/* A valid type with a length past the limit: refused from the header alone. */
	uint8_t hdr[8] = { PROTO_HELLO, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f };
	uint8_t reply[256];

	cr_expect_eq(send_and_wait_close(hdr, sizeof(hdr), reply, sizeof(reply)), 0);
	expect_alive_and_logged("malformed frame");
}

Test(agent, wrong_version_gets_an_error)
{
	struct proto_buf b = { 0 };
	struct proto_hello h = { .magic = PROTO_MAGIC, .version = 99 };
	struct proto_frame f;
	struct proto_error pe;
	uint8_t reply[512];
	size_t n, used;

	proto_encode_hello(&b, &h);
	n = send_and_wait_close(b.data, b.len, reply, sizeof(reply));
	cr_assert(proto_frame_parse(reply, n, &f, &used) == 1);
	cr_assert_eq(f.type, PROTO_ERROR);
	cr_assert(proto_decode_error(&f, &pe) == 0);
	cr_expect_eq(pe.err, EPROTONOSUPPORT);
	cr_expect(strstr(pe.message, "version 99"), "%s", pe.message);
	proto_buf_free(&b);
	expect_alive_and_logged("protocol version 99");
}

Test(agent, bad_request_after_hello)
{
	struct proto_buf b = { 0 };
	struct proto_hello h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION };
	uint8_t reply[512];

	proto_encode_hello(&b, &h);
	/* stdout is not a request */
	proto_encode_data(&b, PROTO_STDOUT, 0, "x", 1);
	send_and_wait_close(b.data, b.len, reply, sizeof(reply));
	proto_buf_free(&b);
	expect_alive_and_logged("invalid 'stdout' request");
}

Test(agent, malformed_exec_request)
{
	struct proto_buf b = { 0 };
	struct proto_hello h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION };
	uint8_t reply[512];
	size_t s;

	proto_encode_hello(&b, &h);
	s = proto_frame_begin(&b, PROTO_EXEC, 0);
	proto_put_u32(&b, 0);
	proto_put_u32(&b, 0xffffffffu); /* rows/cols, then a string length far past the payload */
	proto_put_u32(&b, 0);
	proto_put_u32(&b, 0x7fffffffu);
	proto_frame_end(&b, s);
	send_and_wait_close(b.data, b.len, reply, sizeof(reply));
	proto_buf_free(&b);
	expect_alive_and_logged("malformed exec request");
}

Test(agent, silent_client_does_not_block_others)
{
	int fd = raw_connect();

	/* Says nothing at all: the other connections are served meanwhile. */
	expect_alive_and_logged("");
	close(fd);
}

/* ---- with a workload and a heartbeat FIFO -------------------------------------------------- */

static void start_with_workload(const char *const *argv, uint32_t nargv)
{
	char cfgpath[256], hb[256];

	agent_fixture_stop(&fx);
	snprintf(cfgpath, sizeof(cfgpath), "/tmp/sm-test-config-%d", (int)getpid());
	snprintf(hb, sizeof(hb), "/tmp/sm-test-heartbeat-%d", (int)getpid());
	agent_fixture_config(cfgpath, argv, nargv);
	agent_fixture_start(&fx, agent_fixture_binary(false),
			    (const char *[]){ "--config", cfgpath, "--heartbeat", hb, NULL });
	unlink(cfgpath);
}

Test(agent, workload_signal)
{
	sm_error *err = NULL;
	char hb[256];
	int rc = 0;

	start_with_workload((const char *[]){ "sleep", "1000", NULL }, 2);
	cr_assert(agent_signal_workload(&fx.target, SIGTERM, &err) == 0, "%s", sm_error_string(err));
	/* Once init has reaped it, there is no workload any more. */
	for (int i = 0; i < 500; i++) {
		rc = agent_signal_workload(&fx.target, 0 + SIGCONT, NULL);
		if (rc < 0)
			break;
		usleep(10000);
	}
	cr_expect(rc < 0, "the workload did not end on SIGTERM");
	expect_alive_and_logged("workload ended by signal 15");
	snprintf(hb, sizeof(hb), "/tmp/sm-test-heartbeat-%d", (int)getpid());
	unlink(hb);
}

Test(agent, heartbeat_counts_fifo_bytes)
{
	char hb[256];
	uint64_t n = 99;
	sm_error *err = NULL;
	int fd;

	start_with_workload(NULL, 0);
	snprintf(hb, sizeof(hb), "/tmp/sm-test-heartbeat-%d", (int)getpid());
	cr_assert(agent_heartbeat(&fx.target, &n, &err) == 0, "%s", sm_error_string(err));
	cr_expect_eq(n, 0);
	fd = open(hb, O_WRONLY);
	cr_assert(fd >= 0);
	cr_assert(write(fd, "...", 3) == 3);
	close(fd);
	for (int i = 0; i < 500 && n != 3; i++) {
		cr_assert(agent_heartbeat(&fx.target, &n, &err) == 0);
		usleep(10000);
	}
	cr_expect_eq(n, 3);
	unlink(hb);
}
