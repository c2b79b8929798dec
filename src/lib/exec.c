/*
 * sm_exec: one connection per run. The request, the staged files and
 * stdin go out; STARTED, stdout/stderr and one EXIT come back.
 *
 * One engine serves both shapes: sm_exec_output() runs it on the caller's
 * thread with memory sinks; sm_exec_spawn() runs it on a pump thread
 * between the connection and three socketpairs the caller polls. Flow
 * control both ways: at most SEND_WINDOW bytes are queued for the agent,
 * and nothing more is read from the agent while the caller has not taken
 * what was already passed on (so a slow reader slows the command, never
 * grows a buffer).
 */
#include "lib/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/error.h"
#include "base/strv.h"

#define SEND_WINDOW (256u << 10)

struct staged {
	char *path;
	uint8_t *data;
	size_t len;
	uint32_t mode;
};

struct sm_exec {
	struct agent_target target;
	char **cmds[PROTO_MAX_CHAIN]; /* [0] = argv, then chain() */
	uint32_t ncmds;               /* chain() commands + 1 */
	char **env;
	uint32_t nenv;
	char *cwd, *user;
	bool tty;
	uint16_t rows, cols;
	uint32_t timeout_ms;
	struct staged *files;
	uint32_t nfiles;
	uint8_t *stdin_data;
	size_t stdin_len;
	size_t limit;
	sm_code bad_code; /* the first setter error, reported by output()/spawn() */
	char *bad_msg;
};

/* ---- builder ------------------------------------------------------------------- */

sm_exec *exec_new(const struct agent_target *t)
{
	sm_exec *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->target = *t;
	x->ncmds = 1;
	x->limit = EXEC_DEFAULT_OUTPUT_LIMIT;
	return x;
}

void sm_exec_free(sm_exec *x)
{
	if (!x)
		return;
	for (uint32_t i = 0; i < PROTO_MAX_CHAIN; i++)
		strv_free(x->cmds[i]);
	strv_free(x->env);
	for (uint32_t i = 0; i < x->nfiles; i++) {
		free(x->files[i].path);
		free(x->files[i].data);
	}
	free(x->files);
	free(x->cwd);
	free(x->user);
	free(x->stdin_data);
	free(x->bad_msg);
	free(x);
}

__attribute__((format(printf, 3, 4)))
static int exec_bad(sm_exec *x, sm_code code, const char *fmt, ...)
{
	va_list ap;

	if (x->bad_code)
		return -1;
	x->bad_code = code;
	va_start(ap, fmt);
	if (vasprintf(&x->bad_msg, fmt, ap) < 0)
		x->bad_msg = NULL;
	va_end(ap);
	return -1;
}

static int exec_oom(sm_exec *x)
{
	return exec_bad(x, SM_E_NOMEM, "out of memory");
}

static char **argv_copy(sm_exec *x, const char *const argv[])
{
	size_t n = 0;
	char **v;

	while (argv && argv[n])
		n++;
	if (n == 0 || !argv[0][0] || n > PROTO_MAX_LIST) {
		exec_bad(x, SM_E_INVALID, "argv must hold 1 to %u entries, the first not empty", PROTO_MAX_LIST);
		return NULL;
	}
	v = calloc(n + 1, sizeof(*v));
	if (!v) {
		exec_oom(x);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (strlen(argv[i]) > PROTO_MAX_STR) {
			exec_bad(x, SM_E_INVALID, "argument %zu is longer than %u bytes", i, PROTO_MAX_STR);
			strv_free(v);
			return NULL;
		}
		v[i] = strdup(argv[i]);
		if (!v[i]) {
			exec_oom(x);
			strv_free(v);
			return NULL;
		}
	}
	return v;
}

int sm_exec_argv(sm_exec *x, const char *const argv[])
{
	char **v = argv_copy(x, argv);

	if (!v)
		return -1;
	strv_free(x->cmds[0]);
	x->cmds[0] = v;
	return 0;
}

int sm_exec_chain(sm_exec *x, const char *const argv[])
{
	char **v;

	if (x->ncmds >= PROTO_MAX_CHAIN)
		return exec_bad(x, SM_E_INVALID, "at most %u chained commands", PROTO_MAX_CHAIN - 1);
	v = argv_copy(x, argv);
	if (!v)
		return -1;
	x->cmds[x->ncmds++] = v;
	return 0;
}

int sm_exec_env(sm_exec *x, const char *key, const char *value)
{
	char **nv, *kv;

	if (!key || !*key || strchr(key, '=') || !value)
		return exec_bad(x, SM_E_INVALID, "environment key '%s' must be non-empty and have no '='",
				key ? key : "");
	if (x->nenv >= PROTO_MAX_LIST || strlen(key) + strlen(value) + 1 > PROTO_MAX_STR)
		return exec_bad(x, SM_E_INVALID, "too many or too long environment entries");
	if (asprintf(&kv, "%s=%s", key, value) < 0)
		return exec_oom(x);
	nv = realloc(x->env, (x->nenv + 2) * sizeof(*nv));
	if (!nv) {
		free(kv);
		return exec_oom(x);
	}
	nv[x->nenv++] = kv;
	nv[x->nenv] = NULL;
	x->env = nv;
	return 0;
}

static int set_str(sm_exec *x, char **dst, const char *s, size_t max, const char *what)
{
	char *c;

	if (!s || strlen(s) > max)
		return exec_bad(x, SM_E_INVALID, "%s is missing or longer than %zu bytes", what, max);
	c = strdup(s);
	if (!c)
		return exec_oom(x);
	free(*dst);
	*dst = c;
	return 0;
}

int sm_exec_cwd(sm_exec *x, const char *dir)
{
	if (!dir || dir[0] != '/')
		return exec_bad(x, SM_E_INVALID, "working directory '%s' must be absolute", dir ? dir : "");
	return set_str(x, &x->cwd, dir, PROTO_MAX_PATH, "working directory");
}

int sm_exec_user(sm_exec *x, const char *user)
{
	return set_str(x, &x->user, user, PROTO_MAX_NAME, "user");
}

int sm_exec_tty(sm_exec *x, bool tty)
{
	x->tty = tty;
	return 0;
}

int sm_exec_winsize(sm_exec *x, unsigned rows, unsigned cols)
{
	if (rows > UINT16_MAX || cols > UINT16_MAX)
		return exec_bad(x, SM_E_INVALID, "window size %ux%u is too large", rows, cols);
	x->rows = (uint16_t)rows;
	x->cols = (uint16_t)cols;
	return 0;
}

int sm_exec_timeout_ms(sm_exec *x, uint32_t ms)
{
	x->timeout_ms = ms;
	return 0;
}

int sm_exec_stage_file_mode(sm_exec *x, const char *path, const void *data, size_t len, unsigned mode)
{
	struct staged *nf, *f;

	if (!path || path[0] != '/' || strlen(path) > PROTO_MAX_PATH)
		return exec_bad(x, SM_E_INVALID, "staged file path '%s' must be absolute", path ? path : "");
	if (mode > 07777)
		return exec_bad(x, SM_E_INVALID, "staged file mode %o is not a permission mode", mode);
	if (x->nfiles >= PROTO_MAX_STAGED)
		return exec_bad(x, SM_E_INVALID, "at most %u staged files", PROTO_MAX_STAGED);
	nf = realloc(x->files, (x->nfiles + 1) * sizeof(*nf));
	if (!nf)
		return exec_oom(x);
	x->files = nf;
	f = &nf[x->nfiles];
	*f = (struct staged){ .path = strdup(path), .data = malloc(len ? len : 1), .len = len, .mode = mode };
	if (!f->path || !f->data) {
		free(f->path);
		free(f->data);
		return exec_oom(x);
	}
	if (len)
		memcpy(f->data, data, len);
	x->nfiles++;
	return 0;
}

int sm_exec_stage_file(sm_exec *x, const char *path, const void *data, size_t len)
{
	return sm_exec_stage_file_mode(x, path, data, len, 0644);
}

int sm_exec_stdin(sm_exec *x, const void *data, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	if (!c)
		return exec_oom(x);
	if (len)
		memcpy(c, data, len);
	free(x->stdin_data);
	x->stdin_data = c;
	x->stdin_len = len;
	return 0;
}

int sm_exec_output_limit(sm_exec *x, size_t max_bytes)
{
	x->limit = max_bytes;
	return 0;
}

void sm_outcome_free(sm_outcome *out)
{
	if (!out)
		return;
	free(out->stdout_data);
	free(out->stderr_data);
	out->stdout_data = out->stderr_data = NULL;
	out->stdout_len = out->stderr_len = 0;
}

/* ---- the engine ------------------------------------------------------------------ */

struct out_sink {
	int fd;                /* -1: collect in memory */
	struct proto_buf pend; /* fd sink: bytes the caller has not taken yet */
	struct proto_buf mem;  /* memory sink */
	size_t limit;
	bool truncated, dead;  /* dead: the caller closed its end; drop what comes */
};

struct ctl {
	pthread_mutex_t mu;
	struct proto_buf q; /* resize/signal frames from the caller's threads */
	bool abort;
	int fd;             /* eventfd that wakes the pump */
};

struct engine {
	struct agent_conn c;
	const struct staged *files;
	uint32_t nfiles, file;
	size_t file_off;
	bool file_hdr;
	const uint8_t *stdin_mem;
	size_t stdin_len, stdin_off;
	int stdin_src;        /* spawn: our end of the stdin socketpair; -1: stdin_mem */
	bool stdin_done;
	bool send_dead;       /* the agent stopped taking bytes: read what it says */
	struct out_sink sink[2];
	struct ctl *ctl;
	uint32_t timeout_ms;
	uint64_t deadline;
	bool started, exited;
	struct proto_exit exit;
};

static int encode_request(const sm_exec *x, struct proto_buf *b)
{
	struct proto_exec req = {
		.flags = x->tty ? PROTO_EXEC_TTY : 0,
		.rows = x->rows,
		.cols = x->cols,
		.timeout_ms = x->timeout_ms,
		.cwd = x->cwd ? x->cwd : "",
		.user = x->user ? x->user : "",
		.nenv = x->nenv,
		.env = (const char **)x->env,
		.ncmds = x->ncmds,
		.cmds = (const char ***)x->cmds,
		.nfiles = x->nfiles,
	};

	return proto_encode_exec(b, &req);
}

static int engine_open(struct engine *e, const sm_exec *x, sm_error **err)
{
	int rc;

	if (x->bad_code) {
		sm_error_set(err, x->bad_code, 0, "%s", x->bad_msg ? x->bad_msg : "out of memory");
		return -1;
	}
	if (!x->cmds[0]) {
		sm_error_set(err, SM_E_INVALID, 0, "exec without a command: call sm_exec_argv() first");
		return -1;
	}
	if (agent_open(&e->c, &x->target, false, err) < 0)
		return -1;
	rc = encode_request(x, &e->c.out);
	if (rc < 0) {
		sm_error_set(err, rc == -E2BIG ? SM_E_INVALID : SM_E_NOMEM, 0,
			     rc == -E2BIG ? "the exec request (argv + env) is larger than %u bytes" : "exec request",
			     PROTO_MAX_PAYLOAD);
		return -1;
	}
	e->files = x->files;
	e->nfiles = x->nfiles;
	e->timeout_ms = x->timeout_ms;
	return 0;
}

/* Queues staged files, then memory stdin, while under the send window. */
static int produce(struct engine *e)
{
	while (!e->send_dead && proto_buf_pending(&e->c.out) < SEND_WINDOW) {
		int rc;

		if (e->file < e->nfiles) {
			const struct staged *f = &e->files[e->file];
			struct proto_file pf = { .path = f->path, .mode = f->mode };
			size_t n = f->len - e->file_off < PROTO_CHUNK ? f->len - e->file_off : PROTO_CHUNK;
			bool last = e->file_off + n == f->len;

			if (!e->file_hdr) {
				rc = proto_encode_file(&e->c.out, PROTO_FILE, &pf);
				e->file_hdr = true;
			} else {
				rc = proto_encode_data(&e->c.out, PROTO_DATA, last ? PROTO_FLAG_EOF : 0,
						       f->data + e->file_off, n);
				e->file_off += n;
				if (last) {
					e->file++;
					e->file_off = 0;
					e->file_hdr = false;
				}
			}
		} else if (e->stdin_src < 0 && !e->stdin_done) {
			size_t left = e->stdin_len - e->stdin_off;
			size_t n = left < PROTO_CHUNK ? left : PROTO_CHUNK;

			e->stdin_done = n == left;
			rc = proto_encode_data(&e->c.out, PROTO_STDIN, e->stdin_done ? PROTO_FLAG_EOF : 0,
					       e->stdin_mem ? e->stdin_mem + e->stdin_off : NULL, n);
			e->stdin_off += n;
		} else {
			return 0;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void read_stdin_fd(struct engine *e)
{
	uint8_t buf[PROTO_CHUNK];
	ssize_t n = read(e->stdin_src, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* EOF or an error on the caller's side: close the command's stdin. */
	if (n <= 0)
		e->stdin_done = true;
	proto_encode_data(&e->c.out, PROTO_STDIN, n > 0 ? 0 : PROTO_FLAG_EOF, buf, n > 0 ? (size_t)n : 0);
}

static void sink_put(struct out_sink *s, const uint8_t *p, size_t n)
{
	if (!n || s->dead)
		return;
	if (s->fd >= 0) {
		proto_put_bytes(&s->pend, p, n);
		return;
	}
	if (n > s->limit - s->mem.len) {
		s->truncated = true;
		n = s->limit - s->mem.len;
	}
	proto_put_bytes(&s->mem, p, n);
	if (s->mem.failed) {
		s->truncated = true;
		s->mem.failed = false;
	}
}

/* Hands over the collected bytes, NUL-terminated; NULL when there were none. */
static char *sink_take(struct out_sink *s, size_t *len)
{
	char *data;

	*len = s->mem.len;
	if (!s->mem.len)
		return NULL;
	proto_put_u8(&s->mem, 0);
	if (s->mem.failed) {
		/* No room for the NUL: give one byte less rather than nothing. */
		s->mem.data[--s->mem.len] = 0;
		s->truncated = true;
		*len = s->mem.len;
	}
	data = (char *)s->mem.data;
	s->mem = (struct proto_buf){ 0 };
	return data;
}

static void sink_flush(struct out_sink *s)
{
	int rc = proto_buf_send(&s->pend, s->fd);

	if (rc < 0) {
		/* The caller closed its end: it does not want the rest. */
		s->dead = true;
		proto_buf_consume(&s->pend, proto_buf_pending(&s->pend));
	}
}

static bool sinks_taken(const struct engine *e)
{
	return !proto_buf_pending(&e->sink[0].pend) && !proto_buf_pending(&e->sink[1].pend);
}

static int on_frame(struct engine *e, const struct proto_frame *f, sm_error **err)
{
	uint32_t pid;

	switch (f->type) {
	case PROTO_STARTED:
		if (e->started || proto_decode_u32(f, &pid) < 0)
			return agent_unexpected(err, f, "exec");
		e->started = true;
		e->deadline = e->timeout_ms ? agent_deadline(e->timeout_ms + EXEC_TIMEOUT_GRACE_MS) : 0;
		return 0;
	case PROTO_STDOUT:
	case PROTO_STDERR:
		sink_put(&e->sink[f->type == PROTO_STDERR], f->payload, f->len);
		return 0;
	case PROTO_EXIT:
		if (proto_decode_exit(f, &e->exit) < 0)
			return agent_unexpected(err, f, "exec (malformed exit)");
		e->exited = true;
		return 0;
	default:
		return agent_unexpected(err, f, "exec");
	}
}

static int read_frames(struct engine *e, sm_error **err)
{
	while (!e->exited && sinks_taken(e)) {
		struct proto_frame f;
		int rc = agent_recv_nb(&e->c, &f, err);

		if (rc == 0)
			return 0;
		if (rc < 0 || on_frame(e, &f, err) < 0)
			return -1;
		for (int i = 0; i < 2; i++)
			if (e->sink[i].fd >= 0)
				sink_flush(&e->sink[i]);
	}
	return 0;
}

static void take_controls(struct engine *e)
{
	uint64_t v;

	if (read(e->ctl->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&e->ctl->mu);
	proto_put_bytes(&e->c.out, e->ctl->q.data + e->ctl->q.off, proto_buf_pending(&e->ctl->q));
	proto_buf_consume(&e->ctl->q, proto_buf_pending(&e->ctl->q));
	pthread_mutex_unlock(&e->ctl->mu);
}

static bool aborted(struct engine *e)
{
	bool a;

	if (!e->ctl)
		return false;
	pthread_mutex_lock(&e->ctl->mu);
	a = e->ctl->abort;
	pthread_mutex_unlock(&e->ctl->mu);
	return a;
}

static int poll_ms_until(uint64_t deadline)
{
	uint64_t now = agent_now_ns();

	if (!deadline)
		return -1;
	return now >= deadline ? 0 : (int)((deadline - now) / 1000000u + 1);
}

/* Runs until EXIT (or STARTED, with until_started). */
static int engine_loop(struct engine *e, bool until_started, sm_error **err)
{
	while (!e->exited && !(until_started && e->started)) {
		struct pollfd p[5];
		bool want_in = sinks_taken(e), want_out;
		int rc;

		/* Frames already read ahead wait in the reader, where poll() cannot see them. */
		if (want_in && proto_reader_ready(&e->c.rd)) {
			if (read_frames(e, err) < 0)
				return -1;
			continue;
		}

		if (produce(e) < 0) {
			sm_error_set(err, SM_E_NOMEM, ENOMEM, "exec: queueing data for the agent");
			return -1;
		}
		if (!e->send_dead && (rc = proto_buf_send(&e->c.out, e->c.fd)) < 0) {
			/* The agent may have said why before closing: keep reading. */
			e->send_dead = true;
			proto_buf_consume(&e->c.out, proto_buf_pending(&e->c.out));
		}
		want_out = !e->send_dead && proto_buf_pending(&e->c.out);
		p[0] = (struct pollfd){ .fd = want_in || want_out ? e->c.fd : -1,
					.events = (short)((want_in ? POLLIN : 0) | (want_out ? POLLOUT : 0)) };
		p[1] = (struct pollfd){ .fd = e->stdin_src >= 0 && !e->stdin_done && e->file == e->nfiles &&
						      proto_buf_pending(&e->c.out) < SEND_WINDOW ? e->stdin_src : -1,
					.events = POLLIN };
		for (int i = 0; i < 2; i++)
			p[2 + i] = (struct pollfd){ .fd = proto_buf_pending(&e->sink[i].pend) ? e->sink[i].fd : -1,
						    .events = POLLOUT };
		p[4] = (struct pollfd){ .fd = e->ctl ? e->ctl->fd : -1, .events = POLLIN };
		rc = poll(p, 5, poll_ms_until(e->deadline));
		if (rc < 0 && errno != EINTR) {
			sm_error_set(err, SM_E_IO, errno, "exec: poll");
			return -1;
		}
		if (rc == 0 && e->deadline && agent_now_ns() >= e->deadline) {
			sm_error_set(err, SM_E_TIMEOUT, 0, "the guest agent did not end the exec %u ms after its timeout",
				     EXEC_TIMEOUT_GRACE_MS);
			return -1;
		}
		if (p[4].revents) {
			take_controls(e);
			if (aborted(e)) {
				sm_error_set(err, SM_E_INVALID, 0, "exec abandoned");
				return -1;
			}
		}
		for (int i = 0; i < 2; i++)
			if (p[2 + i].revents)
				sink_flush(&e->sink[i]);
		if (p[1].revents)
			read_stdin_fd(e);
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && read_frames(e, err) < 0)
			return -1;
	}
	return 0;
}

/* Hands the caller what is left of the output (until it closes its ends), then EOF. */
static void engine_drain_sinks(struct engine *e)
{
	while (!sinks_taken(e) && !aborted(e)) {
		struct pollfd p[3];

		for (int i = 0; i < 2; i++)
			p[i] = (struct pollfd){ .fd = proto_buf_pending(&e->sink[i].pend) ? e->sink[i].fd : -1,
						.events = POLLOUT };
		p[2] = (struct pollfd){ .fd = e->ctl ? e->ctl->fd : -1, .events = POLLIN };
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			return;
		if (p[2].revents)
			take_controls(e);
		for (int i = 0; i < 2; i++)
			sink_flush(&e->sink[i]);
	}
}

static void engine_free(struct engine *e)
{
	agent_close(&e->c);
	for (int i = 0; i < 2; i++) {
		proto_buf_free(&e->sink[i].pend);
		proto_buf_free(&e->sink[i].mem);
		if (e->sink[i].fd >= 0)
			close(e->sink[i].fd);
		e->sink[i].fd = -1;
	}
	if (e->stdin_src >= 0)
		close(e->stdin_src);
	e->stdin_src = -1;
}

static void outcome_fill(const struct engine *e, sm_outcome *out)
{
	*out = (sm_outcome){
		.status = e->exit.how == PROTO_EXITED ? e->exit.code : -1,
		.signal = e->exit.how == PROTO_SIGNALED ? e->exit.code : 0,
		.timed_out = e->exit.timed_out,
		.chain_index = e->exit.chain_index,
		.duration_us = e->exit.duration_ns / 1000u,
		.peak_rss_kib = e->exit.peak_rss_kib,
	};
}

int sm_exec_output(sm_exec *x, sm_outcome *out, sm_error **err)
{
	struct engine e = {
		.stdin_src = -1,
		.stdin_mem = x->stdin_data,
		.stdin_len = x->stdin_len,
		.sink = { { .fd = -1, .limit = x->limit }, { .fd = -1, .limit = x->limit } },
	};
	int rc = -1;

	e.c.fd = -1;
	*out = (sm_outcome){ .status = -1 };
	if (engine_open(&e, x, err) < 0 || engine_loop(&e, false, err) < 0) {
		sm_error_wrap(err, "exec %s", x->cmds[0] ? x->cmds[0][0] : "(no command)");
		goto out;
	}
	outcome_fill(&e, out);
	out->stdout_data = sink_take(&e.sink[0], &out->stdout_len);
	out->stderr_data = sink_take(&e.sink[1], &out->stderr_len);
	out->stdout_truncated = e.sink[0].truncated;
	out->stderr_truncated = e.sink[1].truncated;
	rc = 0;
out:
	engine_free(&e);
	return rc;
}

/* ---- spawn ---------------------------------------------------------------------- */

struct sm_child {
	struct engine e;
	struct ctl ctl;
	int user_fd[3]; /* stdin (write), stdout, stderr (read) */
	pthread_t thread;
	bool running;   /* the pump thread exists and was not joined */
	int rc;
	sm_error *err;
	sm_outcome result;
	char *what;
};

static void *pump(void *arg)
{
	sm_child *c = arg;

	c->rc = engine_loop(&c->e, false, &c->err);
	if (c->rc < 0)
		sm_error_wrap(&c->err, "exec %s", c->what);
	else
		outcome_fill(&c->e, &c->result);
	engine_drain_sinks(&c->e);
	/* Closing our ends is the caller's EOF on stdout and stderr. */
	engine_free(&c->e);
	return NULL;
}

static int make_pairs(sm_child *c)
{
	int eng[3];

	for (int i = 0; i < 3; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return -errno;
		c->user_fd[i] = sv[0];
		eng[i] = sv[1];
		if (fcntl(eng[i], F_SETFL, O_NONBLOCK) < 0)
			return -errno;
	}
	c->e.stdin_src = eng[0];
	c->e.sink[0].fd = eng[1];
	c->e.sink[1].fd = eng[2];
	/* One direction each: the caller's shutdown/close is a clean EOF. */
	shutdown(c->user_fd[0], SHUT_RD);
	shutdown(c->user_fd[1], SHUT_WR);
	shutdown(c->user_fd[2], SHUT_WR);
	return 0;
}

static void child_release(sm_child *c)
{
	for (int i = 0; i < 3; i++)
		if (c->user_fd[i] >= 0)
			close(c->user_fd[i]);
	engine_free(&c->e);
	if (c->ctl.fd >= 0)
		close(c->ctl.fd);
	proto_buf_free(&c->ctl.q);
	pthread_mutex_destroy(&c->ctl.mu);
	sm_error_free(c->err);
	free(c->what);
	free(c);
}

sm_child *sm_exec_spawn(sm_exec *x, sm_error **err)
{
	sm_child *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "exec spawn");
		return NULL;
	}
	c->e.c.fd = c->e.stdin_src = c->e.sink[0].fd = c->e.sink[1].fd = c->ctl.fd = -1;
	c->user_fd[0] = c->user_fd[1] = c->user_fd[2] = -1;
	pthread_mutex_init(&c->ctl.mu, NULL);
	c->e.ctl = &c->ctl;
	c->what = strdup(x->cmds[0] ? x->cmds[0][0] : "(no command)");
	c->ctl.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = c->ctl.fd < 0 ? -errno : make_pairs(c);
	if (rc < 0 || !c->what) {
		sm_error_set(err, SM_E_IO, rc < 0 ? -rc : ENOMEM, "exec spawn: socketpair/eventfd");
		goto fail;
	}
	/* Until the agent says the command runs: request errors come back from here. */
	if (engine_open(&c->e, x, err) < 0 || engine_loop(&c->e, true, err) < 0) {
		sm_error_wrap(err, "exec %s", c->what);
		goto fail;
	}
	/* The staged files went out whole before STARTED; x is not needed past here. */
	c->e.files = NULL;
	rc = pthread_create(&c->thread, NULL, pump, c);
	if (rc) {
		sm_error_set(err, SM_E_IO, rc, "exec spawn: pthread_create");
		goto fail;
	}
	c->running = true;
	return c;
fail:
	child_release(c);
	return NULL;
}

int sm_child_stdin(const sm_child *c) { return c->user_fd[0]; }
int sm_child_stdout(const sm_child *c) { return c->user_fd[1]; }
int sm_child_stderr(const sm_child *c) { return c->user_fd[2]; }

int sm_child_close_stdin(sm_child *c)
{
	if (c->user_fd[0] < 0)
		return 0;
	close(c->user_fd[0]);
	c->user_fd[0] = -1;
	return 0;
}

static int child_control(sm_child *c, int (*encode)(struct proto_buf *, const void *), const void *arg,
			 sm_error **err)
{
	uint64_t one = 1;
	int rc;

	pthread_mutex_lock(&c->ctl.mu);
	rc = encode(&c->ctl.q, arg);
	pthread_mutex_unlock(&c->ctl.mu);
	if (rc < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "exec control frame");
		return -1;
	}
	if (write(c->ctl.fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
		sm_error_set(err, SM_E_IO, errno, "waking the exec pump");
		return -1;
	}
	return 0;
}

static int enc_resize(struct proto_buf *b, const void *arg)
{
	return proto_encode_resize(b, arg);
}

static int enc_signal(struct proto_buf *b, const void *arg)
{
	return proto_encode_u32(b, PROTO_SIGNAL, (uint32_t) * (const int *)arg);
}

int sm_child_resize(sm_child *c, unsigned rows, unsigned cols, sm_error **err)
{
	struct proto_resize r = { (uint16_t)rows, (uint16_t)cols };

	if (rows > UINT16_MAX || cols > UINT16_MAX) {
		sm_error_set(err, SM_E_INVALID, 0, "window size %ux%u is too large", rows, cols);
		return -1;
	}
	return child_control(c, enc_resize, &r, err);
}

int sm_child_signal(sm_child *c, int sig, sm_error **err)
{
	if (sig < 1 || sig > 64) {
		sm_error_set(err, SM_E_INVALID, 0, "signal %d is out of range", sig);
		return -1;
	}
	return child_control(c, enc_signal, &sig, err);
}

int sm_child_wait(sm_child *c, sm_outcome *out, sm_error **err)
{
	if (c->running) {
		pthread_join(c->thread, NULL);
		c->running = false;
	}
	*out = c->result;
	if (c->rc < 0) {
		if (err) {
			sm_error_free(*err);
			*err = c->err;
			c->err = NULL;
		}
		c->rc = 0;
		return -1;
	}
	return 0;
}

void sm_child_free(sm_child *c)
{
	if (!c)
		return;
	/* Our ends first: that unblocks a pump still handing output over. */
	for (int i = 0; i < 3; i++) {
		if (c->user_fd[i] >= 0)
			close(c->user_fd[i]);
		c->user_fd[i] = -1;
	}
	if (c->running) {
		uint64_t one = 1;
		pthread_mutex_lock(&c->ctl.mu);
		c->ctl.abort = true;
		pthread_mutex_unlock(&c->ctl.mu);
		/* Cannot fail but by overflowing the counter, which still wakes the pump. */
		(void)!write(c->ctl.fd, &one, sizeof(one));
		pthread_join(c->thread, NULL);
	}
	child_release(c);
}
