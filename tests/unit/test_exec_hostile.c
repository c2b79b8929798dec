/*
 * The host client against a hostile or broken agent: a peer in this test
 * that answers with crafted bytes. Every case must end in a clean error
 * (or bounded output), never a crash, a hang or an unbounded allocation.
 * Also the hybrid-vsock CONNECT handshake, in front of the real agent.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/exec.h"
#include "test_agent_fixture.h"

TestSuite(hostile, .timeout = 60);

/* A fake agent: accepts one connection, reads what comes for a moment, sends script, closes. */
struct fake {
	char path[108];
	int lfd;
	struct proto_buf script;
	bool keep_open;   /* after the script, wait for the client to close */
	bool read_all;    /* read the whole request (until the client's EOF frame) first */
	pthread_t t;
	struct agent_target target;
};

static void *fake_serve(void *arg)
{
	struct fake *f = arg;
	char buf[65536];
	int fd = accept(f->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	/* Drain what the client sends first, without blocking on it. */
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, 100) == 1 && read(fd, buf, sizeof(buf)) > 0)
		;
	if (f->script.len)
		send(fd, f->script.data, f->script.len, MSG_NOSIGNAL);
	if (f->keep_open)
		while (read(fd, buf, sizeof(buf)) > 0)
			;
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	snprintf(f->path, sizeof(f->path), "/tmp/sm-fake-%d-%p.sock", (int)getpid(), (void *)f);
	strcpy(a.sun_path, f->path);
	unlink(f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(f->lfd >= 0 && bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(f->lfd, 4) == 0);
	cr_assert(agent_target_init(&f->target, f->path, 0, NULL) == 0);
	cr_assert(pthread_create(&f->t, NULL, fake_serve, f) == 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->t, NULL);
	close(f->lfd);
	unlink(f->path);
	proto_buf_free(&f->script);
}

static void good_hello(struct proto_buf *b)
{
	proto_encode_hello(b, &(struct proto_hello){ PROTO_MAGIC, PROTO_VERSION, 0 });
}

/* Runs `true` against the fake; returns the error code (SM_OK on success). */
static sm_code exec_against(struct fake *f, sm_outcome *out, char *msg, size_t msglen)
{
	sm_exec *x = exec_new(&f->target);
	sm_error *err = NULL;
	sm_code code = SM_OK;

	sm_exec_argv(x, (const char *[]){ "true", NULL });
	sm_exec_output_limit(x, 1 << 20);
	if (sm_exec_output(x, out, &err) < 0) {
		code = sm_error_code(err);
		snprintf(msg, msglen, "%s", sm_error_string(err));
		sm_error_free(err);
	}
	sm_exec_free(x);
	return code;
}

static void expect_exec_error(struct fake *f, sm_code want, const char *needle)
{
	sm_outcome out;
	char msg[512] = "";
	sm_code code;

	fake_start(f);
	code = exec_against(f, &out, msg, sizeof(msg));
	cr_expect_eq(code, want, "got %s (%s), want %s", sm_code_name(code), msg, sm_code_name(want));
	cr_expect(strstr(msg, needle), "'%s' not in '%s'", needle, msg);
	if (code == SM_OK)
		sm_outcome_free(&out);
	fake_stop(f);
}

Test(hostile, garbage_instead_of_hello)
{
	struct fake f = { 0 };

	proto_put_bytes(&f.script, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
	expect_exec_error(&f, SM_E_PROTOCOL, "malformed frame");
}

Test(hostile, closes_without_a_word)
{
	struct fake f = { 0 };

	expect_exec_error(&f, SM_E_VM_DIED, "closed the connection");
}

Test(hostile, wrong_first_frame)
{
	struct fake f = { 0 };

	proto_encode_empty(&f.script, PROTO_OK);
	expect_exec_error(&f, SM_E_PROTOCOL, "did not answer with a valid hello");
}

Test(hostile, other_version)
{
	struct fake f = { 0 };

	proto_encode_hello(&f.script, &(struct proto_hello){ PROTO_MAGIC, 7, 0 });
	expect_exec_error(&f, SM_E_PROTOCOL, "version 7");
}

Test(hostile, oversized_length)
{
	struct fake f = { 0 };
	uint8_t hdr[8] = { PROTO_STDOUT, 0, 0, 0, 0, 0, 0, 0x40 };

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	proto_put_bytes(&f.script, hdr, sizeof(hdr));
	expect_exec_error(&f, SM_E_PROTOCOL, "malformed frame");
}

Test(hostile, dies_after_start)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	proto_encode_data(&f.script, PROTO_STDOUT, 0, "partial", 7);
	expect_exec_error(&f, SM_E_VM_DIED, "closed the connection");
}

Test(hostile, dies_mid_frame)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	proto_encode_data(&f.script, PROTO_STDOUT, 0, "partial", 7);
	f.script.len -= 3;
	expect_exec_error(&f, SM_E_PROTOCOL, "malformed frame");
}

Test(hostile, bad_exit_frame)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	size_t s = proto_frame_begin(&f.script, PROTO_EXIT, 0);
	proto_put_u8(&f.script, PROTO_EXITED);
	proto_put_u8(&f.script, 0);
	proto_put_u16(&f.script, 0);
	proto_put_u32(&f.script, 300); /* not an exit status */
	proto_put_u32(&f.script, 0);
	proto_put_u64(&f.script, 0);
	proto_put_u64(&f.script, 0);
	proto_frame_end(&f.script, s);
	expect_exec_error(&f, SM_E_PROTOCOL, "malformed exit");
}

Test(hostile, unexpected_frame_type)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	proto_encode_file_info(&f.script, &(struct proto_file_info){ 1, 2 });
	expect_exec_error(&f, SM_E_PROTOCOL, "unexpected 'file-info'");
}

Test(hostile, started_twice)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	proto_encode_u32(&f.script, PROTO_STARTED, 2);
	expect_exec_error(&f, SM_E_PROTOCOL, "unexpected 'started'");
}

Test(hostile, error_text_with_escapes)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	size_t s = proto_frame_begin(&f.script, PROTO_ERROR, 0);
	proto_put_u32(&f.script, ENOENT);
	proto_put_str(&f.script, "\x1b]0;pwned\x07");
	proto_frame_end(&f.script, s);
	expect_exec_error(&f, SM_E_PROTOCOL, "malformed error frame");
}

Test(hostile, error_frame_is_reported)
{
	struct fake f = { 0 };

	good_hello(&f.script);
	proto_encode_error(&f.script, ENOENT, "no such thing");
	expect_exec_error(&f, SM_E_NOT_FOUND, "guest agent: no such thing");
}

/* Far more output than the limit: kept bounded, flagged, and the exit still read. */
Test(hostile, output_flood_is_bounded)
{
	static uint8_t chunk[PROTO_CHUNK];
	struct fake f = { 0 };
	sm_outcome out;
	char msg[256] = "";

	good_hello(&f.script);
	proto_encode_u32(&f.script, PROTO_STARTED, 1);
	for (int i = 0; i < 64; i++) /* 4 MiB against a 1 MiB limit */
		proto_encode_data(&f.script, PROTO_STDOUT, 0, chunk, sizeof(chunk));
	proto_encode_exit(&f.script, &(struct proto_exit){ .how = PROTO_EXITED, .code = 0 });
	f.keep_open = true;
	fake_start(&f);
	cr_assert_eq(exec_against(&f, &out, msg, sizeof(msg)), SM_OK, "%s", msg);
	cr_expect_eq(out.stdout_len, 1 << 20);
	cr_expect(out.stdout_truncated);
	sm_outcome_free(&out);
	fake_stop(&f);
}

Test(hostile, read_file_bigger_than_allowed)
{
	static uint8_t chunk[PROTO_CHUNK];
	struct fake f = { 0 };
	sm_error *err = NULL;
	void *data;
	size_t len;

	good_hello(&f.script);
	/* It claims 10 bytes, then sends far more. */
	proto_encode_file_info(&f.script, &(struct proto_file_info){ 10, 0100644 });
	for (int i = 0; i < 8; i++)
		proto_encode_data(&f.script, PROTO_DATA, 0, chunk, sizeof(chunk));
	f.keep_open = true;
	fake_start(&f);
	cr_assert(agent_read_file(&f.target, "/x", 100000, &data, &len, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_INVALID, "%s", sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), "larger than the 100000 bytes"), "%s", sm_error_string(err));
	sm_error_free(err);
	fake_stop(&f);
}

Test(hostile, ping_wrong_answer)
{
	struct fake f = { 0 };
	struct proto_pong p;
	sm_error *err = NULL;

	good_hello(&f.script);
	proto_encode_u64(&f.script, PROTO_COUNTER, 1);
	fake_start(&f);
	cr_assert(agent_ping(&f.target, &p, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_PROTOCOL, "%s", sm_error_string(err));
	sm_error_free(err);
	fake_stop(&f);
}

Test(hostile, silent_agent_times_out)
{
	struct fake f = { .keep_open = true };
	struct proto_pong p;
	sm_error *err = NULL;

	fake_start(&f);
	f.target.timeout_ms = 300;
	cr_assert(agent_ping(&f.target, &p, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_TIMEOUT, "%s", sm_error_string(err));
	sm_error_free(err);
	fake_stop(&f);
}

Test(hostile, no_socket_is_vm_died)
{
	struct agent_target t;
	struct proto_pong p;
	sm_error *err = NULL;

	agent_target_init(&t, "/tmp/sm-no-such-socket", 0, NULL);
	cr_assert(agent_ping(&t, &p, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_VM_DIED, "%s", sm_error_string(err));
	sm_error_free(err);
}

/* ---- the hybrid vsock handshake (Firecracker's), in front of the real agent ---------- */

struct hybrid {
	char path[108];
	int lfd;
	const char *agent_sock;
	const char *answer; /* NULL: proxy to the agent after "OK 1234\n"; HYBRID_DROP: close unread */
	char got[64];
	pthread_t t;
};

/* The worker's end closed with the CONNECT line unread, as when its process is dying. */
static const char HYBRID_DROP[] = "drop";

static void splice_both(int a, int b)
{
	char buf[65536];

	for (;;) {
		struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
		if (poll(p, 2, 10000) <= 0)
			return;
		for (int i = 0; i < 2; i++) {
			if (!p[i].revents)
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
				return;
		}
	}
}

static void *hybrid_serve(void *arg)
{
	struct hybrid *h = arg;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = 0;
	int fd = accept(h->lfd, NULL, NULL), up;

	if (fd < 0)
		return NULL;
	if (h->answer == HYBRID_DROP) {
		/* Wait for the line to arrive, then close without reading it: an RST. */
		struct pollfd p = { .fd = fd, .events = POLLIN };
		poll(&p, 1, 5000);
		close(fd);
		return NULL;
	}
	while (n < sizeof(h->got) - 1 && read(fd, h->got + n, 1) == 1 && h->got[n++] != '\n')
		;
	if (h->answer) {
		if (h->answer[0])
			send(fd, h->answer, strlen(h->answer), MSG_NOSIGNAL);
		close(fd);
		return NULL;
	}
	strcpy(a.sun_path, h->agent_sock);
	up = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (up >= 0 && connect(up, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, "OK 1234\n", 8) == 8)
		splice_both(fd, up);
	close(up);
	close(fd);
	return NULL;
}

static void hybrid_start(struct hybrid *h, const char *agent_sock, const char *answer)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	h->agent_sock = agent_sock;
	h->answer = answer;
	snprintf(h->path, sizeof(h->path), "/tmp/sm-hybrid-%d.sock", (int)getpid());
	strcpy(a.sun_path, h->path);
	unlink(h->path);
	h->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(h->lfd >= 0 && bind(h->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(h->lfd, 4) == 0);
	cr_assert(pthread_create(&h->t, NULL, hybrid_serve, h) == 0);
}

static void hybrid_stop(struct hybrid *h)
{
	pthread_join(h->t, NULL);
	close(h->lfd);
	unlink(h->path);
}

Test(hostile, vsock_handshake_to_real_agent)
{
	struct agent_fixture fx;
	struct hybrid h = { 0 };
	sm_error *err = NULL;
	sm_outcome out;
	sm_exec *x;

	agent_fixture_start(&fx, agent_fixture_binary(false), NULL);
	hybrid_start(&h, fx.sock, NULL);
	struct agent_target t;
	cr_assert(agent_target_init(&t, h.path, PROTO_AGENT_PORT, NULL) == 0);
	x = exec_new(&t);
	sm_exec_argv(x, (const char *[]){ "echo", "through vsock", NULL });
	cr_assert(sm_exec_output(x, &out, &err) == 0, "%s", sm_error_string(err));
	cr_expect_str_eq(out.stdout_data, "through vsock\n");
	cr_expect_str_eq(h.got, "CONNECT 1028\n");
	sm_outcome_free(&out);
	sm_exec_free(x);
	hybrid_stop(&h);
	agent_fixture_stop(&fx);
}

static void handshake_fails(const char *answer, sm_code want, const char *needle)
{
	struct hybrid h = { 0 };
	sm_error *err = NULL;
	int fd;

	hybrid_start(&h, NULL, answer);
	fd = exec_connect_vsock(h.path, 1028, 2000, &err);
	cr_expect(fd < 0);
	cr_expect_eq(sm_error_code(err), want, "%s", sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), needle), "'%s' not in '%s'", needle, sm_error_string(err));
	sm_error_free(err);
	hybrid_stop(&h);
}

Test(hostile, vsock_no_listener)
{
	handshake_fails("", SM_E_IO, "nothing listens on guest vsock port 1028");
}

Test(hostile, vsock_dropped_unanswered_is_a_dead_vm)
{
	handshake_fails(HYBRID_DROP, SM_E_VM_DIED, "unanswered: its VM is gone");
}

Test(hostile, vsock_garbage_answer)
{
	handshake_fails("NOPE\n", SM_E_PROTOCOL, "unexpected answer");
}

Test(hostile, vsock_endless_line)
{
	handshake_fails("OK 1234567890123456789012345678901234567890123456789012345678901234567890", SM_E_PROTOCOL,
			"vsock handshake");
}
