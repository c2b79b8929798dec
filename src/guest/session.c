/*
 * One connection from the host, in its own process (forked by agent.c):
 * HELLO both ways, then one request. A peer that breaks the protocol is
 * logged and disconnected; it never takes anything else down.
 */
#include "guest/init.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/random.h>

/* A host that connects and says nothing for this long is dropped. */
#define SESSION_HELLO_TIMEOUT_MS 30000
#define BRIDGE_BUF (64u << 10)

static int reply(int conn, struct proto_buf *out)
{
	int rc = init_flush(out, conn);
	proto_buf_free(out);
	return rc;
}

static int reply_ok(int conn)
{
	struct proto_buf out = { 0 };
	proto_encode_empty(&out, PROTO_OK);
	return reply(conn, &out);
}

static int reply_error(int conn, int err, const char *msg)
{
	struct proto_buf out = { 0 };
	proto_encode_error(&out, err, "%s", msg);
	return reply(conn, &out);
}

/* Waits (bounded) for the first frames; later ones may take as long as the exec does. */
static int read_first(int conn, struct proto_reader *rd, struct proto_frame *f)
{
	uint64_t deadline = init_now_ns() + (uint64_t)SESSION_HELLO_TIMEOUT_MS * 1000000u;

	init_nonblock(conn, true);
	for (;;) {
		struct pollfd p = { .fd = conn, .events = POLLIN };
		uint64_t now = init_now_ns();
		int rc = proto_reader_next(rd, conn, f);

		if (rc != 0) {
			init_nonblock(conn, false);
			return rc;
		}
		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) < 0 && errno != EINTR)
			return -errno;
	}
}

static int do_hello(const struct init_state *st, int conn, struct proto_reader *rd)
{
	struct proto_frame f;
	struct proto_hello h;
	struct proto_buf out = { 0 };
	int rc = read_first(conn, rd, &f);

	if (rc < 0) {
		if (rc != -EPIPE)
			agent_log("session: no valid hello from the host (%s); closing",
				  rc == -EPROTO ? "malformed frame" : strerror(-rc));
		return -EPROTO;
	}
	if (f.type != PROTO_HELLO || proto_decode_hello(&f, &h) < 0) {
		agent_log("session: first frame is '%s', not a valid hello; closing", proto_type_name(f.type));
		return -EPROTO;
	}
	if (h.version != PROTO_VERSION) {
		agent_log("session: host speaks protocol version %u, this agent %u; closing", h.version,
			  PROTO_VERSION);
		proto_encode_error(&out, EPROTONOSUPPORT, "protocol version %u is not supported (agent speaks %u)",
				   h.version, PROTO_VERSION);
		reply(conn, &out);
		return -EPROTO;
	}
	h = (struct proto_hello){ .magic = PROTO_MAGIC, .version = PROTO_VERSION };
	if (st->cgroup_root[0])
		h.caps |= PROTO_CAP_CGROUP;
	if (st->pid1)
		h.caps |= PROTO_CAP_PID1;
	proto_encode_hello(&out, &h);
	return reply(conn, &out);
}

/* ---- small requests ------------------------------------------------------------ */

static int do_ping_reply(int conn)
{
	struct proto_buf out = { 0 };
	struct proto_pong p;
	struct timespec rt, mt;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mt);
	p.realtime_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
	p.monotonic_ns = (uint64_t)mt.tv_sec * 1000000000u + (uint64_t)mt.tv_nsec;
	proto_encode_pong(&out, &p);
	return reply(conn, &out);
}

static int do_ping(int conn, const struct proto_frame *f)
{
	if (proto_decode_empty(f) < 0)
		return -EPROTO;
	return do_ping_reply(conn);
}

/* 0 or a positive errno */
static int set_realtime(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };

	return clock_settime(CLOCK_REALTIME, &ts) < 0 ? errno : 0;
}

static int do_set_time(const struct init_state *st, int conn, const struct proto_frame *f)
{
	uint64_t ns;
	int rc;

	if (proto_decode_u64(f, &ns) < 0)
		return -EPROTO;
	if (!st->pid1 && !st->allow_clock)
		return reply_error(conn, EPERM, "set-time is disabled for an agent that is not the VM's init");
	rc = set_realtime(ns);
	if (rc)
		return reply_error(conn, rc, "clock_settime failed");
	return reply_ok(conn);
}

/*
 * Adds n bytes to the kernel's input pool, credited, then has the CRNG
 * take its next key from that pool at once: 0 or a positive errno, *what
 * says which step failed. Credited, not just mixed in, and reseeded: on
 * Linux 6.1 RNDADDENTROPY only feeds the input pool, and the CRNG (what
 * getrandom and /dev/urandom read) would keep the key it had at the
 * capture until its reseed interval passed.
 */
static int entropy_add(const uint8_t *p, size_t n, const char **what)
{
	struct {
		struct rand_pool_info info;
		uint8_t bytes[PROTO_MAX_ENTROPY];
	} pool;
	int fd, rc;

	pool.info.entropy_count = (int)(n * 8);
	pool.info.buf_size = (int)n;
	memcpy(pool.bytes, p, n);
	fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		*what = "open /dev/urandom failed";
		return errno;
	}
	*what = "RNDADDENTROPY failed";
	rc = ioctl(fd, RNDADDENTROPY, &pool);
	if (rc == 0) {
		*what = "RNDRESEEDCRNG failed";
		rc = ioctl(fd, RNDRESEEDCRNG);
	}
	rc = rc < 0 ? errno : 0;
	close(fd);
	return rc;
}

static int do_entropy(int conn, const struct proto_frame *f)
{
	const char *what;
	const uint8_t *p;
	size_t n;
	int rc;

	if (proto_decode_entropy(f, &p, &n) < 0)
		return -EPROTO;
	rc = entropy_add(p, n, &what);
	if (rc)
		return reply_error(conn, rc, what);
	return reply_ok(conn);
}

/* RESUME's clock and RNG steps: 0 or a positive errno, *what says which failed. */
static int resume_clock_rng(const struct proto_resume *r, const char **what)
{
	int rc = set_realtime(r->realtime_ns);

	if (rc) {
		*what = "clock_settime failed";
		return rc;
	}
	return entropy_add(r->entropy, r->nentropy, what);
}

/*
 * The first request after a snapshot restore or reset: the host's wall
 * clock (the guest's stopped at capture), fresh entropy and a CRNG
 * reseed (every clone starts from the same RNG state), and only then
 * the thaw of what QUIESCE froze (seal.c). A failed step leaves the VM
 * sealed. Answers PONG with the clocks after.
 */
static int do_resume(const struct init_state *st, int conn, const struct proto_frame *f)
{
	struct proto_resume r;
	char why[PROTO_MAX_PATH + 64];
	const char *what;
	int rc;

	if (proto_decode_resume(f, &r) < 0)
		return -EPROTO;
	if (!st->pid1 && !st->allow_clock && !st->test_resume)
		return reply_error(conn, EPERM, "resume is disabled for an agent that is not the VM's init");
	/* --test-resume: a test of the seal on a host, whose clock and RNG are not ours to touch */
	rc = st->test_resume ? 0 : resume_clock_rng(&r, &what);
	if (rc) {
		agent_log("resume: %s: %s; the VM stays sealed", what, strerror(rc));
		return reply_error(conn, rc, what);
	}
	rc = seal_release(st, why, sizeof(why));
	if (rc)
		return reply_error(conn, rc, why);
	return do_ping_reply(conn);
}

/*
 * Before a capture: data to the disks (page cache stays: a snapshot wants
 * it warm), the settle time, then the seal (seal.c), then a last sync of
 * what the workload wrote until it froze.
 */
static int do_quiesce(const struct init_state *st, int conn, const struct proto_frame *f)
{
	char why[PROTO_MAX_PATH + 256];
	uint32_t settle_ms;
	struct timespec ts;
	int rc;

	if (proto_decode_quiesce(f, &settle_ms) < 0)
		return -EPROTO;
	sync();
	ts.tv_sec = settle_ms / 1000;
	ts.tv_nsec = (long)(settle_ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	rc = seal_quiesce(st, why, sizeof(why));
	if (rc)
		return reply_error(conn, rc, why);
	sync();
	return reply_ok(conn);
}

/* Looks for a TCP socket in LISTEN state on port (0: any) in one /proc/net file. */
static bool probe_file(const char *path, uint16_t port, uint16_t *found)
{
	char line[512];
	FILE *fp = fopen(path, "re");
	bool hit = false;

	if (!fp)
		return false;
	while (!hit && fgets(line, sizeof(line), fp)) {
		char local[128];
		unsigned lport, state;
		char *colon;

		if (sscanf(line, " %*s %127s %*s %x", local, &state) != 2 || state != 0x0A)
			continue;
		colon = strrchr(local, ':');
		if (!colon || sscanf(colon + 1, "%x", &lport) != 1 || lport > 65535)
			continue;
		if (port == 0 || lport == port) {
			*found = (uint16_t)lport;
			hit = true;
		}
	}
	fclose(fp);
	return hit;
}

static int do_probe(int conn, const struct proto_frame *f)
{
	struct proto_buf out = { 0 };
	struct proto_probe_result r = { 0 };
	uint16_t port;

	if (proto_decode_probe(f, &port) < 0)
		return -EPROTO;
	r.found = probe_file("/proc/net/tcp", port, &r.port) || probe_file("/proc/net/tcp6", port, &r.port);
	proto_encode_probe_result(&out, &r);
	return reply(conn, &out);
}

static int do_heartbeat(const struct init_state *st, int conn, const struct proto_frame *f)
{
	struct proto_buf out = { 0 };

	if (proto_decode_empty(f) < 0)
		return -EPROTO;
	proto_encode_u64(&out, PROTO_COUNTER, st->shared->heartbeat);
	return reply(conn, &out);
}

static int do_shutdown(const struct init_state *st, int conn, const struct proto_frame *f)
{
	struct proto_shutdown sd;
	struct init_ctl ctl = { .op = 'S' };
	int rc;

	if (proto_decode_shutdown(f, &sd) < 0)
		return -EPROTO;
	ctl.arg = sd.grace_ms;
	rc = reply_ok(conn);
	/* PID 1 does the shutdown; a pipe write this small is atomic. */
	if (write(st->ctl_wr, &ctl, sizeof(ctl)) != sizeof(ctl))
		agent_log("shutdown: telling init failed: %s", strerror(errno));
	return rc;
}

static int do_signal_workload(const struct init_state *st, int conn, const struct proto_frame *f)
{
	pid_t pid = st->shared->workload_pid;
	int sig;

	if (proto_decode_signal(f, &sig) < 0)
		return -EPROTO;
	if (pid <= 0)
		return reply_error(conn, ESRCH, "no workload is running");
	if (kill(pid, sig) < 0)
		return reply_error(conn, errno, "signalling the workload failed");
	return reply_ok(conn);
}

/* ---- TCP bridge ---------------------------------------------------------------- */

static int tcp_dial(uint16_t port)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int err;

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a4, sizeof(a4)) == 0)
		return fd;
	err = errno;
	if (fd >= 0)
		close(fd);
	/* A service bound to ::1 only */
	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -err;
}

struct pipe_dir {
	int from, to;
	uint8_t *buf;
	size_t len, off;
	bool eof; /* from is at EOF and everything was passed on */
};

/* Moves what it can without blocking; false on a hard error. */
static bool pipe_step(struct pipe_dir *d)
{
	if (!d->eof && d->len == 0) {
		ssize_t n = read(d->from, d->buf, BRIDGE_BUF);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		if (n == 0) {
			d->eof = true;
			shutdown(d->to, SHUT_WR);
		}
		if (n > 0) {
			d->len = (size_t)n;
			d->off = 0;
		}
	}
	while (d->len) {
		ssize_t n = send(d->to, d->buf + d->off, d->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		d->off += (size_t)n;
		d->len -= (size_t)n;
	}
	return true;
}

static void bridge_loop(int conn, int tcp, struct pipe_dir *d)
{
	while (!(d[0].eof && d[1].eof)) {
		struct pollfd p[2] = { { .fd = conn }, { .fd = tcp } };

		for (int i = 0; i < 2; i++) {
			if (!d[i].eof && !d[i].len)
				p[i].events |= POLLIN;
			if (d[1 - i].len)
				p[i].events |= POLLOUT;
			if (!p[i].events)
				p[i].fd = -1;
		}
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		if (!pipe_step(&d[0]) || !pipe_step(&d[1]))
			return;
	}
}

static int do_tcp_connect(int conn, struct proto_reader *rd, const struct proto_frame *f)
{
	struct pipe_dir d[2] = { { .from = conn }, { .eof = false } };
	uint16_t port;
	char msg[128];
	int tcp, rc;

	if (proto_decode_port(f, &port) < 0)
		return -EPROTO;
	tcp = tcp_dial(port);
	if (tcp < 0) {
		snprintf(msg, sizeof(msg), "connect to 127.0.0.1:%u in the guest: %s", port, strerror(-tcp));
		return reply_error(conn, -tcp, msg);
	}
	rc = reply_ok(conn);
	d[0].buf = malloc(BRIDGE_BUF);
	d[1].buf = malloc(BRIDGE_BUF);
	if (rc < 0 || !d[0].buf || !d[1].buf)
		goto out;
	d[0].to = tcp;
	d[1].from = tcp;
	d[1].to = conn;
	/* Bytes the host sent right behind the request are the stream's first. */
	d[0].len = proto_reader_buffered(rd);
	memcpy(d[0].buf, proto_reader_data(rd), d[0].len);
	init_nonblock(conn, true);
	init_nonblock(tcp, true);
	bridge_loop(conn, tcp, d);
out:
	free(d[0].buf);
	free(d[1].buf);
	close(tcp);
	return rc;
}

/* ---- dispatch ------------------------------------------------------------------- */

/* Requests that run or reach guest code: none is served between QUIESCE and RESUME (seal.c). */
static bool sealed_out(uint8_t type)
{
	return type == PROTO_EXEC || type == PROTO_WRITE_FILE || type == PROTO_READ_FILE ||
	       type == PROTO_TCP_CONNECT || type == PROTO_SIGNAL_WORKLOAD;
}

/*
 * A request that waited out a seal may be in a clone of the snapshot
 * taken meanwhile, whose vsock reset ended its connection: its host is
 * gone, and the request must not run there.
 */
static bool host_gone(int conn)
{
	struct pollfd p = { .fd = conn, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

/* 0: serve f; otherwise the request is answered (or dropped) and this is dispatch's result. */
static int sealed_gate(const struct init_state *st, int conn, const struct proto_frame *f)
{
	char msg[256];
	int rc;

	if (!sealed_out(f->type))
		return 0;
	rc = seal_wait(st);
	if (rc < 0) {
		snprintf(msg, sizeof(msg),
			 "the VM was quiesced for a snapshot and not resumed within %u ms: '%s' was not served",
			 st->seal_wait_ms, proto_type_name(f->type));
		reply_error(conn, ETIMEDOUT, msg);
		return -ETIMEDOUT;
	}
	if (rc > 0 && host_gone(conn)) {
		agent_log("session: the host went away while the VM was sealed; '%s' dropped", proto_type_name(f->type));
		return -EPIPE;
	}
	return 0;
}

static int dispatch(const struct init_state *st, int conn, struct proto_reader *rd, const struct proto_frame *f)
{
	int rc = sealed_gate(st, conn, f);

	if (rc)
		return rc;
	switch (f->type) {
	case PROTO_EXEC:
		return run_exec(st, conn, rd, f);
	case PROTO_WRITE_FILE:
		return files_write(conn, rd, f);
	case PROTO_READ_FILE:
		return files_read(conn, f);
	case PROTO_TCP_CONNECT:
		return do_tcp_connect(conn, rd, f);
	case PROTO_PING:
		return do_ping(conn, f);
	case PROTO_SET_TIME:
		return do_set_time(st, conn, f);
	case PROTO_ADD_ENTROPY:
		return do_entropy(conn, f);
	case PROTO_QUIESCE:
		return do_quiesce(st, conn, f);
	case PROTO_PROBE_LISTEN:
		return do_probe(conn, f);
	case PROTO_HEARTBEAT:
		return do_heartbeat(st, conn, f);
	case PROTO_SHUTDOWN:
		return do_shutdown(st, conn, f);
	case PROTO_SIGNAL_WORKLOAD:
		return do_signal_workload(st, conn, f);
	case PROTO_RESUME:
		return do_resume(st, conn, f);
	default:
		return -EPROTO;
	}
}

void session_serve(const struct init_state *st, int conn)
{
	struct proto_reader rd;
	struct proto_frame f;
	uint8_t *copy = NULL;
	int rc;

	proto_reader_init(&rd, false);
	if (do_hello(st, conn, &rd) < 0)
		goto out;
	rc = read_first(conn, &rd, &f);
	if (rc < 0) {
		if (rc != -EPIPE)
			agent_log("session: no valid request (%s); closing",
				  rc == -EPROTO ? "malformed frame" : strerror(-rc));
		goto out;
	}
	/* Requests that read more frames reuse the reader's buffer: keep our own copy. */
	copy = malloc(f.len ? f.len : 1);
	if (!copy)
		goto out;
	memcpy(copy, f.payload, f.len);
	f.payload = copy;
	rc = dispatch(st, conn, &rd, &f);
	if (rc == -EPROTO) {
		agent_log("session: invalid '%s' request; closing", proto_type_name(f.type));
		reply_error(conn, EPROTO, "invalid request");
	}
out:
	free(copy);
	proto_reader_free(&rd);
	close(conn);
}
