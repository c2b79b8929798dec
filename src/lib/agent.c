#include "lib/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"

uint64_t agent_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t agent_deadline(uint32_t ms)
{
	return ms ? agent_now_ns() + (uint64_t)ms * 1000000u : 0;
}

/* Milliseconds for poll() until deadline_ns (0 = forever); 0 once it passed. */
static int poll_ms(uint64_t deadline_ns)
{
	uint64_t now;

	if (!deadline_ns)
		return -1;
	now = agent_now_ns();
	if (now >= deadline_ns)
		return 0;
	return (int)((deadline_ns - now + 999999u) / 1000000u);
}

int agent_target_init(struct agent_target *t, const char *path, uint32_t port, sm_error **err)
{
	*t = (struct agent_target){ .port = port };
	if (!path || strlen(path) >= sizeof(t->path)) {
		sm_error_set(err, SM_E_INVALID, 0, "agent socket path '%s' is empty or too long",
			     path ? path : "");
		return -1;
	}
	strcpy(t->path, path);
	return 0;
}

static int unix_connect(const char *path, sm_error **err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		sm_error_set(err, SM_E_INVALID, 0, "socket path %s is too long", path);
		return -1;
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		sm_error_set(err, SM_E_IO, errno, "socket");
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		/* The socket file gone or nobody accepting: the VM (or agent) is not there. */
		sm_error_set(err, e == ENOENT || e == ECONNREFUSED ? SM_E_VM_DIED : SM_E_IO, e,
			     "connect to %s", path);
		return -1;
	}
	return fd;
}

/* Reads one '\n'-terminated line of at most cap-1 bytes, byte by byte: nothing past it is consumed. */
static int read_line(int fd, char *line, size_t cap, uint64_t deadline_ns)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;
		int pr = poll(&p, 1, poll_ms(deadline_ns));

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			return -ETIMEDOUT;
		r = read(fd, line + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		if (line[n] == '\n') {
			line[n] = 0;
			return 0;
		}
		n++;
	}
	return -E2BIG;
}

int exec_connect_vsock(const char *uds, uint32_t port, int timeout_ms, sm_error **err)
{
	uint64_t deadline = agent_deadline(timeout_ms > 0 ? (uint32_t)timeout_ms : AGENT_CONNECT_TIMEOUT_MS);
	char line[64], *end;
	int fd = unix_connect(uds, err), n, rc;
	unsigned long hostport;

	if (fd < 0)
		return -1;
	n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		sm_error_set(err, SM_E_VM_DIED, errno, "vsock handshake on %s", uds);
		goto fail;
	}
	rc = read_line(fd, line, sizeof(line), deadline);
	if (rc == -EPIPE) {
		sm_error_set(err, SM_E_IO, ECONNREFUSED,
			     "nothing listens on guest vsock port %u (via %s): is the agent up?", port, uds);
		goto fail;
	}
	if (rc == -ECONNRESET) {
		/* Closed with our CONNECT unread: the worker's process is going away (its
		 * socket outlives the main thread while the vCPU threads tear down). */
		sm_error_set(err, SM_E_VM_DIED, ECONNRESET,
			     "the worker dropped the connection to guest vsock port %u on %s unanswered: its VM is gone",
			     port, uds);
		goto fail;
	}
	if (rc < 0) {
		sm_error_set(err, rc == -ETIMEDOUT ? SM_E_TIMEOUT : SM_E_PROTOCOL, -rc,
			     "vsock handshake for port %u on %s", port, uds);
		goto fail;
	}
	if (strncmp(line, "OK ", 3) != 0 || (hostport = strtoul(line + 3, &end, 10), *end) || hostport > UINT32_MAX) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "vsock handshake for port %u on %s: unexpected answer", port, uds);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* ---- connection ------------------------------------------------------------- */

static int fd_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0 ? -errno : 0;
}

int agent_open(struct agent_conn *c, const struct agent_target *t, bool exact, sm_error **err)
{
	struct proto_hello h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION };

	*c = (struct agent_conn){ .fd = -1 };
	proto_reader_init(&c->rd, exact);
	c->fd = t->port ? exec_connect_vsock(t->path, t->port, t->timeout_ms, err) : unix_connect(t->path, err);
	if (c->fd < 0) {
		sm_error_wrap(err, "reaching the guest agent");
		return -1;
	}
	/* Every wait is a poll with a deadline, never a blocking read. */
	if (fd_set_nonblock(c->fd, true) < 0 || proto_encode_hello(&c->out, &h) < 0) {
		agent_close(c);
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "agent hello");
		return -1;
	}
	return 0;
}

void agent_close(struct agent_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	proto_reader_free(&c->rd);
	proto_buf_free(&c->out);
}

int agent_send(struct agent_conn *c, uint64_t deadline_ns, sm_error **err)
{
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		int rc = proto_buf_send(&c->out, c->fd);

		if (rc == 0)
			return 0;
		if (rc < 0) {
			sm_error_set(err, SM_E_VM_DIED, -rc, "sending to the guest agent");
			return -1;
		}
		rc = poll(&p, 1, poll_ms(deadline_ns));
		if (rc == 0) {
			sm_error_set(err, SM_E_TIMEOUT, 0, "the guest agent stopped reading");
			return -1;
		}
	}
}

static sm_code code_for_errno(uint32_t e)
{
	switch (e) {
	case ENOENT:
	case ESRCH:
		return SM_E_NOT_FOUND;
	case EINVAL:
	case EISDIR:
	case ENOTDIR:
	case E2BIG:
	case ENAMETOOLONG:
	case EPROTO:
		return SM_E_INVALID;
	case EPROTONOSUPPORT:
	case EOPNOTSUPP:
	case ENOSYS:
		return SM_E_UNSUPPORTED;
	case ENOMEM:
		return SM_E_NOMEM;
	case ETIMEDOUT:
		return SM_E_TIMEOUT;
	default:
		return SM_E_IO;
	}
}

int agent_unexpected(sm_error **err, const struct proto_frame *f, const char *during)
{
	sm_error_set(err, SM_E_PROTOCOL, 0, "guest agent sent an unexpected '%s' frame during %s",
		     proto_type_name(f->type), during);
	return -1;
}

static int check_hello(struct agent_conn *c, const struct proto_frame *f, sm_error **err)
{
	struct proto_hello h;

	if (f->type == PROTO_ERROR)
		return 0; /* e.g. a version refusal: reported as the error it is */
	if (f->type != PROTO_HELLO || proto_decode_hello(f, &h) < 0) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "guest agent did not answer with a valid hello (got '%s')",
			     proto_type_name(f->type));
		return -1;
	}
	if (h.version != PROTO_VERSION) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "guest agent speaks protocol version %u, we speak %u", h.version,
			     PROTO_VERSION);
		return -1;
	}
	c->caps = h.caps;
	c->hello_seen = true;
	return 1;
}

int agent_recv_nb(struct agent_conn *c, struct proto_frame *f, sm_error **err)
{
	for (;;) {
		struct proto_error pe;
		int rc = proto_reader_next(&c->rd, c->fd, f);

		if (rc == 0)
			return 0;
		if (rc == -EPIPE || rc == -ECONNRESET) {
			sm_error_set(err, SM_E_VM_DIED, 0, "the guest agent closed the connection before answering"
				     " (the VM stopped, or the agent died)");
			return -1;
		}
		if (rc < 0) {
			sm_error_set(err, rc == -EPROTO ? SM_E_PROTOCOL : SM_E_IO, rc == -EPROTO ? 0 : -rc,
				     rc == -EPROTO ? "guest agent sent a malformed frame; disconnected"
						   : "reading from the guest agent");
			return -1;
		}
		if (!c->hello_seen) {
			rc = check_hello(c, f, err);
			if (rc < 0)
				return -1;
			if (rc > 0)
				continue;
		}
		if (f->type != PROTO_ERROR)
			return 1;
		if (proto_decode_error(f, &pe) < 0) {
			sm_error_set(err, SM_E_PROTOCOL, 0, "guest agent sent a malformed error frame");
			return -1;
		}
		c->refused = true;
		sm_error_set(err, code_for_errno(pe.err), 0, "guest agent: %s", pe.message);
		return -1;
	}
}

int agent_recv(struct agent_conn *c, struct proto_frame *f, uint64_t deadline_ns, sm_error **err)
{
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int rc = agent_recv_nb(c, f, err);

		if (rc != 0)
			return rc;
		rc = poll(&p, 1, poll_ms(deadline_ns));
		if (rc == 0) {
			sm_error_set(err, SM_E_TIMEOUT, 0, "the guest agent did not answer in time");
			return -1;
		}
	}
}

/* ---- one request, one answer ---------------------------------------------------- */

/*
 * Sends the request in req (already encoded after our HELLO) and reads
 * the answer, which must be of type want.
 */
static int roundtrip(const struct agent_target *t, struct agent_conn *c, int (*encode)(struct proto_buf *, const void *),
		     const void *arg, uint8_t want, struct proto_frame *f, const char *what, sm_error **err)
{
	uint64_t deadline = agent_deadline(t->timeout_ms > 0 ? (uint32_t)t->timeout_ms : AGENT_CONNECT_TIMEOUT_MS);

	if (agent_open(c, t, false, err) < 0)
		goto fail;
	if (encode(&c->out, arg) < 0) {
		sm_error_set(err, SM_E_INVALID, 0, "encoding the request");
		goto fail;
	}
	if (agent_send(c, deadline, err) < 0 || agent_recv(c, f, deadline, err) < 0)
		goto fail;
	if (f->type != want) {
		agent_unexpected(err, f, what);
		goto fail;
	}
	return 0;
fail:
	sm_error_wrap(err, "%s", what);
	return -1;
}

struct u32_req {
	uint8_t type;
	uint32_t v;
};

static int enc_u32(struct proto_buf *b, const void *arg)
{
	const struct u32_req *r = arg;
	return proto_encode_u32(b, r->type, r->v);
}

static int enc_u64(struct proto_buf *b, const void *arg)
{
	return proto_encode_u64(b, PROTO_SET_TIME, *(const uint64_t *)arg);
}

static int enc_empty(struct proto_buf *b, const void *arg)
{
	return proto_encode_empty(b, *(const uint8_t *)arg);
}

struct blob {
	const void *p;
	size_t n;
};

static int enc_entropy(struct proto_buf *b, const void *arg)
{
	const struct blob *bl = arg;
	return proto_encode_data(b, PROTO_ADD_ENTROPY, 0, bl->p, bl->n);
}

/* A request whose answer is OK. */
static int simple(const struct agent_target *t, int (*encode)(struct proto_buf *, const void *), const void *arg,
		  const char *what, sm_error **err)
{
	struct agent_conn c;
	struct proto_frame f;
	int rc = roundtrip(t, &c, encode, arg, PROTO_OK, &f, what, err);

	if (rc == 0 && proto_decode_empty(&f) < 0) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "%s: malformed ok frame", what);
		rc = -1;
	}
	agent_close(&c);
	return rc;
}

int agent_ping(const struct agent_target *t, struct proto_pong *pong, sm_error **err)
{
	static const uint8_t type = PROTO_PING;
	struct agent_conn c;
	struct proto_frame f;
	int rc = roundtrip(t, &c, enc_empty, &type, PROTO_PONG, &f, "ping", err);

	if (rc == 0 && proto_decode_pong(&f, pong) < 0) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "ping: malformed pong");
		rc = -1;
	}
	agent_close(&c);
	return rc;
}

int agent_set_time(const struct agent_target *t, uint64_t realtime_ns, sm_error **err)
{
	return simple(t, enc_u64, &realtime_ns, "set the guest clock", err);
}

int agent_add_entropy(const struct agent_target *t, const void *p, size_t n, sm_error **err)
{
	struct blob bl = { p, n };

	if (n == 0 || n > PROTO_MAX_ENTROPY) {
		sm_error_set(err, SM_E_INVALID, 0, "entropy must be 1..%u bytes, not %zu", PROTO_MAX_ENTROPY, n);
		return -1;
	}
	return simple(t, enc_entropy, &bl, "add guest entropy", err);
}

static int enc_resume(struct proto_buf *b, const void *arg)
{
	return proto_encode_resume(b, arg);
}

int agent_resume(const struct agent_target *t, uint64_t realtime_ns, const void *entropy, size_t n,
		 struct proto_pong *pong, sm_error **err)
{
	struct proto_resume r = { .realtime_ns = realtime_ns, .entropy = entropy, .nentropy = n };
	struct agent_conn c;
	struct proto_frame f;
	int rc;

	if (n < PROTO_MIN_RESUME_ENTROPY || n > PROTO_MAX_ENTROPY) {
		sm_error_set(err, SM_E_INVALID, 0, "resume entropy must be %u..%u bytes, not %zu",
			     PROTO_MIN_RESUME_ENTROPY, PROTO_MAX_ENTROPY, n);
		return -1;
	}
	rc = roundtrip(t, &c, enc_resume, &r, PROTO_PONG, &f, "resume the guest (clock, entropy, CRNG reseed)",
		       err);
	if (rc == 0 && proto_decode_pong(&f, pong) < 0) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "resume: malformed pong");
		rc = -1;
	}
	if (rc < 0 && c.refused)
		rc = AGENT_REFUSED;
	agent_close(&c);
	return rc;
}

int agent_quiesce(const struct agent_target *t, uint32_t settle_ms, sm_error **err)
{
	struct u32_req r = { PROTO_QUIESCE, settle_ms };
	struct agent_target longer = *t;

	if (settle_ms > PROTO_MAX_SETTLE_MS) {
		sm_error_set(err, SM_E_INVALID, 0, "settle time %u ms is over %u", settle_ms, PROTO_MAX_SETTLE_MS);
		return -1;
	}
	/* sync may take a while on a busy guest */
	longer.timeout_ms = (t->timeout_ms > 0 ? t->timeout_ms : AGENT_CONNECT_TIMEOUT_MS) + (int)settle_ms + 60000;
	return simple(&longer, enc_u32, &r, "quiesce the guest", err);
}

int agent_probe_listen(const struct agent_target *t, uint16_t port, bool *found, uint16_t *found_port,
		       sm_error **err)
{
	struct u32_req r = { PROTO_PROBE_LISTEN, port };
	struct proto_probe_result res;
	struct agent_conn c;
	struct proto_frame f;
	int rc = roundtrip(t, &c, enc_u32, &r, PROTO_PROBE_RESULT, &f, "probe guest listeners", err);

	if (rc == 0 && proto_decode_probe_result(&f, &res) < 0) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "probe: malformed result");
		rc = -1;
	}
	if (rc == 0) {
		*found = res.found;
		if (found_port)
			*found_port = res.port;
	}
	agent_close(&c);
	return rc;
}

int agent_heartbeat(const struct agent_target *t, uint64_t *count, sm_error **err)
{
	static const uint8_t type = PROTO_HEARTBEAT;
	struct agent_conn c;
	struct proto_frame f;
	int rc = roundtrip(t, &c, enc_empty, &type, PROTO_COUNTER, &f, "read the heartbeat counter", err);

	if (rc == 0 && proto_decode_u64(&f, count) < 0) {
		sm_error_set(err, SM_E_PROTOCOL, 0, "heartbeat: malformed counter");
		rc = -1;
	}
	agent_close(&c);
	return rc;
}

int agent_shutdown(const struct agent_target *t, uint32_t grace_ms, sm_error **err)
{
	struct u32_req r = { PROTO_SHUTDOWN, grace_ms };

	if (grace_ms > PROTO_MAX_GRACE_MS) {
		sm_error_set(err, SM_E_INVALID, 0, "grace %u ms is over %u", grace_ms, PROTO_MAX_GRACE_MS);
		return -1;
	}
	return simple(t, enc_u32, &r, "shut the guest down", err);
}

int agent_signal_workload(const struct agent_target *t, int sig, sm_error **err)
{
	struct u32_req r = { PROTO_SIGNAL_WORKLOAD, (uint32_t)sig };

	if (sig < 1 || sig > 64) {
		sm_error_set(err, SM_E_INVALID, 0, "signal %d is out of range", sig);
		return -1;
	}
	return simple(t, enc_u32, &r, "signal the workload", err);
}

/* ---- files ------------------------------------------------------------------------ */

static bool valid_path(const char *path, sm_error **err)
{
	if (!path || path[0] != '/' || strlen(path) > PROTO_MAX_PATH) {
		sm_error_set(err, SM_E_INVALID, 0, "guest path '%s' must be absolute and at most %u bytes",
			     path ? path : "", PROTO_MAX_PATH);
		return false;
	}
	return true;
}

/* Source of a file upload: memory or an fd. Returns bytes put in buf, 0 at the end, -errno. */
struct source {
	const uint8_t *p;
	size_t left;
	int fd;
};

static ssize_t source_read(struct source *s, uint8_t *buf, size_t cap)
{
	ssize_t n;

	if (s->fd < 0) {
		n = (ssize_t)(s->left < cap ? s->left : cap);
		if (n)
			memcpy(buf, s->p, (size_t)n);
		s->p += n;
		s->left -= (size_t)n;
		return n;
	}
	do
		n = read(s->fd, buf, cap);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int write_file(const struct agent_target *t, const char *path, struct source *src, uint32_t mode,
		      sm_error **err)
{
	struct proto_file pf = { .path = path, .mode = mode };
	struct agent_conn c;
	struct proto_frame f;
	uint8_t *chunk = NULL;
	int rc = -1;

	if (!valid_path(path, err))
		return -1;
	if (mode > 07777) {
		sm_error_set(err, SM_E_INVALID, 0, "mode %o is not a permission mode", mode);
		return -1;
	}
	if (agent_open(&c, t, false, err) < 0)
		goto out;
	chunk = malloc(PROTO_CHUNK);
	if (!chunk || proto_encode_file(&c.out, PROTO_WRITE_FILE, &pf) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "write-file request");
		goto out;
	}
	for (;;) {
		ssize_t n = source_read(src, chunk, PROTO_CHUNK);
		if (n < 0) {
			sm_error_set(err, SM_E_IO, (int)-n, "reading the data for %s", path);
			goto out;
		}
		if (proto_encode_data(&c.out, PROTO_DATA, n ? 0 : PROTO_FLAG_EOF, chunk, (size_t)n) < 0) {
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "write-file data");
			goto out;
		}
		/* A file of any size: never more than one chunk queued. No deadline while streaming. */
		if (agent_send(&c, 0, err) < 0)
			goto out;
		if (n == 0)
			break;
	}
	if (agent_recv(&c, &f, 0, err) < 0)
		goto out;
	if (f.type != PROTO_OK || proto_decode_empty(&f) < 0) {
		agent_unexpected(err, &f, "write-file");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		sm_error_wrap(err, "write %s in the guest", path);
	free(chunk);
	agent_close(&c);
	return rc;
}

int agent_write_file(const struct agent_target *t, const char *path, const void *data, size_t len,
		     uint32_t mode, sm_error **err)
{
	struct source src = { .p = data, .left = len, .fd = -1 };
	return write_file(t, path, &src, mode, err);
}

int agent_write_file_fd(const struct agent_target *t, const char *path, int src_fd, uint32_t mode,
			sm_error **err)
{
	struct source src = { .fd = src_fd };
	return write_file(t, path, &src, mode, err);
}

/* Sink of a file download: memory (bounded by max) or an fd. */
struct sink {
	struct proto_buf mem;
	size_t max;
	int fd;
};

static int sink_put(struct sink *s, const uint8_t *p, size_t n, sm_error **err)
{
	if (s->fd >= 0) {
		int rc = proto_write_all(s->fd, p, n);
		if (rc < 0)
			sm_error_set(err, SM_E_IO, -rc, "writing the file's data");
		return rc < 0 ? -1 : 0;
	}
	if (n > s->max - s->mem.len) {
		sm_error_set(err, SM_E_INVALID, EFBIG, "the file is larger than the %zu bytes allowed", s->max);
		return -1;
	}
	proto_put_bytes(&s->mem, p, n);
	if (s->mem.failed) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "file buffer");
		return -1;
	}
	return 0;
}

static int read_file(const struct agent_target *t, const char *path, struct sink *dst, sm_error **err)
{
	struct agent_conn c;
	struct proto_frame f;
	struct proto_file_info info;
	int rc = -1;

	if (!valid_path(path, err))
		return -1;
	if (agent_open(&c, t, false, err) < 0)
		goto out;
	if (proto_encode_path(&c.out, PROTO_READ_FILE, path) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "read-file request");
		goto out;
	}
	if (agent_send(&c, 0, err) < 0 || agent_recv(&c, &f, 0, err) < 0)
		goto out;
	if (f.type != PROTO_FILE_INFO || proto_decode_file_info(&f, &info) < 0) {
		agent_unexpected(err, &f, "read-file");
		goto out;
	}
	for (;;) {
		if (agent_recv(&c, &f, 0, err) < 0)
			goto out;
		if (f.type != PROTO_DATA) {
			agent_unexpected(err, &f, "read-file data");
			goto out;
		}
		if (sink_put(dst, f.payload, f.len, err) < 0)
			goto out;
		if (f.flags & PROTO_FLAG_EOF)
			break;
	}
	rc = 0;
out:
	if (rc < 0)
		sm_error_wrap(err, "read %s from the guest", path);
	agent_close(&c);
	return rc;
}

int agent_read_file(const struct agent_target *t, const char *path, size_t max, void **data, size_t *len,
		    sm_error **err)
{
	struct sink s = { .max = max, .fd = -1 };

	if (read_file(t, path, &s, err) < 0) {
		proto_buf_free(&s.mem);
		return -1;
	}
	/* NUL-terminated, and never NULL (an empty file is "") */
	proto_put_u8(&s.mem, 0);
	if (s.mem.failed) {
		proto_buf_free(&s.mem);
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "file buffer");
		return -1;
	}
	*data = s.mem.data;
	*len = s.mem.len - 1;
	return 0;
}

int agent_read_file_fd(const struct agent_target *t, const char *path, int dst_fd, sm_error **err)
{
	struct sink s = { .fd = dst_fd };
	return read_file(t, path, &s, err);
}

/* ---- TCP bridge -------------------------------------------------------------------- */

int agent_connect_tcp(const struct agent_target *t, uint16_t port, sm_error **err)
{
	uint64_t deadline = agent_deadline(t->timeout_ms > 0 ? (uint32_t)t->timeout_ms : AGENT_CONNECT_TIMEOUT_MS);
	struct agent_conn c;
	struct proto_frame f;
	int fd;

	if (port == 0) {
		sm_error_set(err, SM_E_INVALID, 0, "guest port 0");
		return -1;
	}
	/* exact: the guest service may speak first, and its bytes belong to the caller. */
	if (agent_open(&c, t, true, err) < 0)
		goto fail;
	if (proto_encode_u32(&c.out, PROTO_TCP_CONNECT, port) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "tcp-connect request");
		goto fail;
	}
	if (agent_send(&c, deadline, err) < 0 || agent_recv(&c, &f, deadline, err) < 0)
		goto fail;
	if (f.type != PROTO_OK || proto_decode_empty(&f) < 0) {
		agent_unexpected(err, &f, "tcp-connect");
		goto fail;
	}
	fd = c.fd;
	c.fd = -1;
	agent_close(&c);
	fd_set_nonblock(fd, false);
	return fd;
fail:
	sm_error_wrap(err, "connect to guest port %u", port);
	agent_close(&c);
	return -1;
}
