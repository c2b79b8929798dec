#include "proto/proto.h"
#include "proto/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- buffer ---------------------------------------------------------------- */

void proto_buf_free(struct proto_buf *b)
{
	free(b->data);
	*b = (struct proto_buf){ 0 };
}

void proto_buf_consume(struct proto_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

int proto_buf_send(struct proto_buf *b, int fd)
{
	while (proto_buf_pending(b)) {
		ssize_t n = send(fd, b->data + b->off, proto_buf_pending(b), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, b->data + b->off, proto_buf_pending(b));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -errno;
		}
		proto_buf_consume(b, (size_t)n);
	}
	return 0;
}

int proto_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static bool buf_reserve(struct proto_buf *b, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (b->failed)
		return false;
	if (n <= b->cap - b->len)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return false;
		}
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void proto_put_bytes(struct proto_buf *b, const void *p, size_t n)
{
	if (!n || !buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void proto_put_u8(struct proto_buf *b, uint8_t v) { proto_put_bytes(b, &v, 1); }

void proto_put_u16(struct proto_buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	proto_put_bytes(b, p, 2);
}

void proto_put_u32(struct proto_buf *b, uint32_t v)
{
	uint8_t p[4];
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	proto_put_bytes(b, p, 4);
}

void proto_put_u64(struct proto_buf *b, uint64_t v)
{
	uint8_t p[8];
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	proto_put_bytes(b, p, 8);
}

void proto_put_str(struct proto_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n >= UINT32_MAX) {
		b->failed = true;
		return;
	}
	proto_put_u32(b, (uint32_t)(n + 1));
	proto_put_bytes(b, s, n);
	proto_put_u8(b, 0);
}

static void put_strv(struct proto_buf *b, const char *const *v, uint32_t n)
{
	proto_put_u32(b, n);
	for (uint32_t i = 0; i < n; i++)
		proto_put_str(b, v[i]);
}

size_t proto_frame_begin(struct proto_buf *b, uint8_t type, uint8_t flags)
{
	uint8_t hdr[PROTO_HDR_SIZE] = { type, flags, 0, 0, 0, 0, 0, 0 };
	size_t start;

	/*
	 * Drop what was already sent, here and only here: a frame being built
	 * must not move under its recorded start.
	 */
	if (b->off && b->off >= b->cap / 2) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	start = b->len;
	proto_put_bytes(b, hdr, sizeof(hdr));
	return start;
}

int proto_frame_end(struct proto_buf *b, size_t start)
{
	size_t n;

	if (b->failed) {
		/* The buffer may hold a partial frame: drop it, keep earlier ones. */
		b->failed = false;
		if (start <= b->len)
			b->len = start;
		return -ENOMEM;
	}
	n = b->len - start - PROTO_HDR_SIZE;
	if (n > PROTO_MAX_PAYLOAD) {
		b->len = start;
		return -E2BIG;
	}
	for (int i = 0; i < 4; i++)
		b->data[start + 4 + i] = (uint8_t)(n >> (8 * i));
	return 0;
}

int proto_encode_data(struct proto_buf *b, uint8_t type, uint8_t flags, const void *p, size_t n)
{
	size_t s;

	if (n > PROTO_MAX_PAYLOAD)
		return -E2BIG;
	s = proto_frame_begin(b, type, flags);
	proto_put_bytes(b, p, n);
	return proto_frame_end(b, s);
}

int proto_encode_empty(struct proto_buf *b, uint8_t type)
{
	return proto_frame_end(b, proto_frame_begin(b, type, 0));
}

int proto_encode_u32(struct proto_buf *b, uint8_t type, uint32_t v)
{
	size_t s = proto_frame_begin(b, type, 0);
	proto_put_u32(b, v);
	return proto_frame_end(b, s);
}

int proto_encode_u64(struct proto_buf *b, uint8_t type, uint64_t v)
{
	size_t s = proto_frame_begin(b, type, 0);
	proto_put_u64(b, v);
	return proto_frame_end(b, s);
}

/* ---- header ---------------------------------------------------------------- */

static const char *const type_names[] = {
	[PROTO_HELLO] = "hello",
	[PROTO_EXEC] = "exec",
	[PROTO_WRITE_FILE] = "write-file",
	[PROTO_READ_FILE] = "read-file",
	[PROTO_TCP_CONNECT] = "tcp-connect",
	[PROTO_PING] = "ping",
	[PROTO_SET_TIME] = "set-time",
	[PROTO_ADD_ENTROPY] = "add-entropy",
	[PROTO_QUIESCE] = "quiesce",
	[PROTO_PROBE_LISTEN] = "probe-listen",
	[PROTO_HEARTBEAT] = "heartbeat",
	[PROTO_SHUTDOWN] = "shutdown",
	[PROTO_SIGNAL_WORKLOAD] = "signal-workload",
	[PROTO_RESUME] = "resume",
	[PROTO_STDIN] = "stdin",
	[PROTO_STDOUT] = "stdout",
	[PROTO_STDERR] = "stderr",
	[PROTO_RESIZE] = "resize",
	[PROTO_SIGNAL] = "signal",
	[PROTO_FILE] = "file",
	[PROTO_DATA] = "data",
	[PROTO_ERROR] = "error",
	[PROTO_OK] = "ok",
	[PROTO_PONG] = "pong",
	[PROTO_STARTED] = "started",
	[PROTO_EXIT] = "exit",
	[PROTO_FILE_INFO] = "file-info",
	[PROTO_PROBE_RESULT] = "probe-result",
	[PROTO_COUNTER] = "counter",
	[PROTO_GUEST_CONFIG] = "guest-config",
};

const char *proto_type_name(uint8_t type)
{
	if (type >= sizeof(type_names) / sizeof(type_names[0]) || !type_names[type])
		return "?";
	return type_names[type];
}

static uint8_t allowed_flags(uint8_t type)
{
	switch (type) {
	case PROTO_STDIN:
	case PROTO_STDOUT:
	case PROTO_STDERR:
	case PROTO_DATA:
		return PROTO_FLAG_EOF;
	default:
		return 0;
	}
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int proto_hdr_decode(const uint8_t *p, struct proto_frame *f)
{
	uint32_t len = get_le32(p + 4);

	if (proto_type_name(p[0])[0] == '?')
		return -EPROTO;
	if (p[1] & ~allowed_flags(p[0]))
		return -EPROTO;
	if (p[2] || p[3])
		return -EPROTO;
	if (len > PROTO_MAX_PAYLOAD)
		return -EPROTO;
	f->type = p[0];
	f->flags = p[1];
	f->len = len;
	f->payload = NULL;
	return 0;
}

int proto_frame_parse(const uint8_t *p, size_t n, struct proto_frame *f, size_t *used)
{
	if (n < PROTO_HDR_SIZE)
		return 0;
	if (proto_hdr_decode(p, f) < 0)
		return -EPROTO;
	if (n - PROTO_HDR_SIZE < f->len)
		return 0;
	f->payload = p + PROTO_HDR_SIZE;
	*used = PROTO_HDR_SIZE + f->len;
	return 1;
}

/* ---- payload cursor --------------------------------------------------------- */

struct cur {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static struct cur cur_of(const struct proto_frame *f)
{
	return (struct cur){ .p = f->payload, .left = f->len };
}

static const uint8_t *cur_take(struct cur *c, size_t n)
{
	const uint8_t *p = c->p;

	if (c->bad || c->left < n) {
		c->bad = true;
		return NULL;
	}
	c->p += n;
	c->left -= n;
	return p;
}

static uint8_t get_u8(struct cur *c)
{
	const uint8_t *p = cur_take(c, 1);
	return p ? p[0] : 0;
}

static uint16_t get_u16(struct cur *c)
{
	const uint8_t *p = cur_take(c, 2);
	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

static uint32_t get_u32(struct cur *c)
{
	const uint8_t *p = cur_take(c, 4);
	return p ? get_le32(p) : 0;
}

static uint64_t get_u64(struct cur *c)
{
	const uint8_t *p = cur_take(c, 8);
	return p ? (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32 : 0;
}

/*
 * A string: u32 length counting a final NUL that must be there, no NUL
 * before it, at most max bytes before it. Points into the payload.
 */
static const char *get_str(struct cur *c, size_t max)
{
	uint32_t n = get_u32(c);
	const uint8_t *p;

	if (c->bad || n == 0 || n - 1 > max) {
		c->bad = true;
		return NULL;
	}
	p = cur_take(c, n);
	if (!p || p[n - 1] != 0 || memchr(p, 0, n - 1)) {
		c->bad = true;
		return NULL;
	}
	return (const char *)p;
}

/*
 * A string list: u32 count then count strings. With dst NULL it only
 * validates and counts. The count is checked against what is left (each
 * string takes at least 5 bytes) before anything is allocated for it.
 */
static uint32_t get_strv(struct cur *c, uint32_t max_count, size_t max_len, const char **dst)
{
	uint32_t n = get_u32(c);

	if (c->bad || n > max_count || n > c->left / 5) {
		c->bad = true;
		return 0;
	}
	for (uint32_t i = 0; i < n; i++) {
		const char *s = get_str(c, max_len);
		if (!s)
			return 0;
		if (dst)
			dst[i] = s;
	}
	if (dst)
		dst[n] = NULL;
	return n;
}

static int cur_done(const struct cur *c)
{
	return (c->bad || c->left) ? -EPROTO : 0;
}

static bool is_abs_path(const char *s)
{
	return s && s[0] == '/' && strlen(s) <= PROTO_MAX_PATH;
}

bool proto_share_tag_ok(const char *t)
{
	size_t n = t ? strnlen(t, WORKER_MOUNT_TAG_MAX + 1) : 0;

	if (n == 0 || n > WORKER_MOUNT_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9') ||
		      t[i] == '.' || t[i] == '_' || t[i] == '-'))
			return false;
	return true;
}

/* A block device's path, or a share's tag when fstype says virtio-fs. */
static bool is_source(const char *dev, const char *fstype)
{
	return fstype && strcmp(fstype, PROTO_FSTYPE_VIRTIOFS) == 0 ? proto_share_tag_ok(dev) : is_abs_path(dev);
}

static bool is_env_entry(const char *s)
{
	const char *eq = strchr(s, '=');
	return eq && eq != s;
}

int proto_decode_empty(const struct proto_frame *f)
{
	return f->len ? -EPROTO : 0;
}

int proto_decode_u32(const struct proto_frame *f, uint32_t *v)
{
	struct cur c = cur_of(f);
	*v = get_u32(&c);
	return cur_done(&c);
}

int proto_decode_u64(const struct proto_frame *f, uint64_t *v)
{
	struct cur c = cur_of(f);
	*v = get_u64(&c);
	return cur_done(&c);
}

/* ---- hello ------------------------------------------------------------------ */

int proto_encode_hello(struct proto_buf *b, const struct proto_hello *h)
{
	size_t s = proto_frame_begin(b, PROTO_HELLO, 0);
	proto_put_u32(b, h->magic);
	proto_put_u32(b, h->version);
	proto_put_u32(b, h->caps);
	return proto_frame_end(b, s);
}

int proto_decode_hello(const struct proto_frame *f, struct proto_hello *h)
{
	struct cur c = cur_of(f);

	h->magic = get_u32(&c);
	h->version = get_u32(&c);
	h->caps = get_u32(&c);
	if (cur_done(&c) < 0 || h->magic != PROTO_MAGIC || h->version == 0)
		return -EPROTO;
	return 0;
}

/* ---- exec ------------------------------------------------------------------- */

int proto_encode_exec(struct proto_buf *b, const struct proto_exec *e)
{
	size_t s = proto_frame_begin(b, PROTO_EXEC, 0);

	proto_put_u32(b, e->flags);
	proto_put_u16(b, e->rows);
	proto_put_u16(b, e->cols);
	proto_put_u32(b, e->timeout_ms);
	proto_put_str(b, e->cwd);
	proto_put_str(b, e->user);
	put_strv(b, e->env, e->nenv);
	proto_put_u32(b, e->ncmds);
	for (uint32_t i = 0; i < e->ncmds; i++) {
		uint32_t argc = 0;
		while (e->cmds[i][argc])
			argc++;
		put_strv(b, e->cmds[i], argc);
	}
	proto_put_u32(b, e->nfiles);
	return proto_frame_end(b, s);
}

/* One pass over an exec payload; with e->env and e->cmds set it also fills them. */
static int exec_pass(const struct proto_frame *f, struct proto_exec *e, const char **argv_mem,
		     uint32_t *total_argv)
{
	struct cur c = cur_of(f);
	uint32_t total = 0;

	e->flags = get_u32(&c);
	e->rows = get_u16(&c);
	e->cols = get_u16(&c);
	e->timeout_ms = get_u32(&c);
	e->cwd = get_str(&c, PROTO_MAX_PATH);
	e->user = get_str(&c, PROTO_MAX_NAME);
	e->nenv = get_strv(&c, PROTO_MAX_LIST, PROTO_MAX_STR, e->env);
	e->ncmds = get_u32(&c);
	if (c.bad || e->ncmds == 0 || e->ncmds > PROTO_MAX_CHAIN)
		return -EPROTO;
	for (uint32_t i = 0; i < e->ncmds; i++) {
		const char **dst = argv_mem ? argv_mem + total + i : NULL;
		uint32_t argc = get_strv(&c, PROTO_MAX_LIST, PROTO_MAX_STR, dst);
		if (c.bad || argc == 0)
			return -EPROTO;
		if (dst) {
			e->cmds[i] = dst;
			if (!dst[0][0])
				return -EPROTO;
		}
		total += argc;
	}
	e->nfiles = get_u32(&c);
	if (cur_done(&c) < 0)
		return -EPROTO;
	if (e->flags & ~PROTO_EXEC_TTY || e->nfiles > PROTO_MAX_STAGED)
		return -EPROTO;
	if (e->cwd[0] && !is_abs_path(e->cwd))
		return -EPROTO;
	*total_argv = total;
	return 0;
}

int proto_decode_exec(const struct proto_frame *f, struct proto_exec *e)
{
	uint32_t total = 0;
	const char **mem;
	int rc;

	*e = (struct proto_exec){ 0 };
	rc = exec_pass(f, e, NULL, &total);
	if (rc < 0)
		return rc;
	/* env + NULL, cmds pointers, every argv + its NULL: all bounded by the payload size. */
	mem = calloc((size_t)e->nenv + 1 + e->ncmds + total + e->ncmds, sizeof(*mem));
	if (!mem)
		return -ENOMEM;
	e->env = mem;
	e->cmds = (const char ***)(mem + e->nenv + 1);
	rc = exec_pass(f, e, mem + e->nenv + 1 + e->ncmds, &total);
	e->mem = mem;
	if (rc < 0) {
		proto_exec_release(e);
		return rc;
	}
	for (uint32_t i = 0; i < e->nenv; i++) {
		if (!is_env_entry(e->env[i])) {
			proto_exec_release(e);
			return -EPROTO;
		}
	}
	return 0;
}

void proto_exec_release(struct proto_exec *e)
{
	free(e->mem);
	*e = (struct proto_exec){ 0 };
}

/* ---- files ------------------------------------------------------------------ */

int proto_encode_file(struct proto_buf *b, uint8_t type, const struct proto_file *p)
{
	size_t s = proto_frame_begin(b, type, 0);
	proto_put_str(b, p->path);
	proto_put_u32(b, p->mode);
	return proto_frame_end(b, s);
}

int proto_decode_file(const struct proto_frame *f, struct proto_file *p)
{
	struct cur c = cur_of(f);

	p->path = get_str(&c, PROTO_MAX_PATH);
	p->mode = get_u32(&c);
	if (cur_done(&c) < 0 || !is_abs_path(p->path) || p->mode > 07777)
		return -EPROTO;
	return 0;
}

int proto_encode_path(struct proto_buf *b, uint8_t type, const char *path)
{
	size_t s = proto_frame_begin(b, type, 0);
	proto_put_str(b, path);
	return proto_frame_end(b, s);
}

int proto_decode_path(const struct proto_frame *f, const char **path)
{
	struct cur c = cur_of(f);

	*path = get_str(&c, PROTO_MAX_PATH);
	if (cur_done(&c) < 0 || !is_abs_path(*path))
		return -EPROTO;
	return 0;
}

/* ---- small controls --------------------------------------------------------- */

int proto_encode_resize(struct proto_buf *b, const struct proto_resize *r)
{
	size_t s = proto_frame_begin(b, PROTO_RESIZE, 0);
	proto_put_u16(b, r->rows);
	proto_put_u16(b, r->cols);
	return proto_frame_end(b, s);
}

int proto_decode_resize(const struct proto_frame *f, struct proto_resize *r)
{
	struct cur c = cur_of(f);

	r->rows = get_u16(&c);
	r->cols = get_u16(&c);
	return cur_done(&c);
}

int proto_decode_signal(const struct proto_frame *f, int *sig)
{
	uint32_t v;

	if (proto_decode_u32(f, &v) < 0 || v < 1 || v > 64)
		return -EPROTO;
	*sig = (int)v;
	return 0;
}

int proto_decode_port(const struct proto_frame *f, uint16_t *port)
{
	uint32_t v;

	if (proto_decode_u32(f, &v) < 0 || v < 1 || v > 65535)
		return -EPROTO;
	*port = (uint16_t)v;
	return 0;
}

int proto_decode_probe(const struct proto_frame *f, uint16_t *port)
{
	uint32_t v;

	if (proto_decode_u32(f, &v) < 0 || v > 65535)
		return -EPROTO;
	*port = (uint16_t)v;
	return 0;
}

int proto_decode_quiesce(const struct proto_frame *f, uint32_t *settle_ms)
{
	if (proto_decode_u32(f, settle_ms) < 0 || *settle_ms > PROTO_MAX_SETTLE_MS)
		return -EPROTO;
	return 0;
}

int proto_decode_entropy(const struct proto_frame *f, const uint8_t **p, size_t *n)
{
	if (f->len == 0 || f->len > PROTO_MAX_ENTROPY)
		return -EPROTO;
	*p = f->payload;
	*n = f->len;
	return 0;
}

int proto_encode_resume(struct proto_buf *b, const struct proto_resume *r)
{
	size_t s = proto_frame_begin(b, PROTO_RESUME, 0);
	proto_put_u64(b, r->realtime_ns);
	proto_put_bytes(b, r->entropy, r->nentropy);
	return proto_frame_end(b, s);
}

int proto_decode_resume(const struct proto_frame *f, struct proto_resume *r)
{
	struct cur c = cur_of(f);

	r->realtime_ns = get_u64(&c);
	if (c.bad || c.left < PROTO_MIN_RESUME_ENTROPY || c.left > PROTO_MAX_ENTROPY)
		return -EPROTO;
	r->nentropy = c.left;
	r->entropy = cur_take(&c, c.left);
	return cur_done(&c);
}

int proto_encode_shutdown(struct proto_buf *b, const struct proto_shutdown *sd)
{
	return proto_encode_u32(b, PROTO_SHUTDOWN, sd->grace_ms);
}

int proto_decode_shutdown(const struct proto_frame *f, struct proto_shutdown *sd)
{
	if (proto_decode_u32(f, &sd->grace_ms) < 0 || sd->grace_ms > PROTO_MAX_GRACE_MS)
		return -EPROTO;
	return 0;
}

/* ---- replies ---------------------------------------------------------------- */

static bool is_text_byte(uint8_t ch)
{
	return ch == '\t' || ch == '\n' || (ch >= 0x20 && ch != 0x7f);
}

int proto_encode_error(struct proto_buf *b, int err, const char *fmt, ...)
{
	char msg[PROTO_MAX_MESSAGE + 1];
	va_list ap;
	size_t s;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Whatever ended up in the text (a hostile path, say) must still decode. */
	for (char *p = msg; *p; p++)
		if (!is_text_byte((uint8_t)*p))
			*p = '?';
	s = proto_frame_begin(b, PROTO_ERROR, 0);
	proto_put_u32(b, err > 0 && err < 4096 ? (uint32_t)err : EIO);
	proto_put_str(b, msg);
	return proto_frame_end(b, s);
}

int proto_decode_error(const struct proto_frame *f, struct proto_error *e)
{
	struct cur c = cur_of(f);

	e->err = get_u32(&c);
	e->message = get_str(&c, PROTO_MAX_MESSAGE);
	if (cur_done(&c) < 0 || e->err == 0 || e->err >= 4096)
		return -EPROTO;
	for (const char *p = e->message; *p; p++)
		if (!is_text_byte((uint8_t)*p))
			return -EPROTO;
	return 0;
}

int proto_encode_exit(struct proto_buf *b, const struct proto_exit *x)
{
	size_t s = proto_frame_begin(b, PROTO_EXIT, 0);
	proto_put_u8(b, x->how);
	proto_put_u8(b, x->timed_out);
	proto_put_u16(b, 0);
	proto_put_u32(b, (uint32_t)x->code);
	proto_put_u32(b, x->chain_index);
	proto_put_u64(b, x->duration_ns);
	proto_put_u64(b, x->peak_rss_kib);
	return proto_frame_end(b, s);
}

int proto_decode_exit(const struct proto_frame *f, struct proto_exit *x)
{
	struct cur c = cur_of(f);
	uint16_t reserved;

	x->how = get_u8(&c);
	x->timed_out = get_u8(&c);
	reserved = get_u16(&c);
	x->code = (int32_t)get_u32(&c);
	x->chain_index = get_u32(&c);
	x->duration_ns = get_u64(&c);
	x->peak_rss_kib = get_u64(&c);
	if (cur_done(&c) < 0 || reserved || x->timed_out > 1 || x->chain_index >= PROTO_MAX_CHAIN)
		return -EPROTO;
	if (x->how == PROTO_EXITED && (x->code < 0 || x->code > 255))
		return -EPROTO;
	if (x->how == PROTO_SIGNALED && (x->code < 1 || x->code > 64))
		return -EPROTO;
	if (x->how > PROTO_SIGNALED)
		return -EPROTO;
	return 0;
}

int proto_encode_file_info(struct proto_buf *b, const struct proto_file_info *i)
{
	size_t s = proto_frame_begin(b, PROTO_FILE_INFO, 0);
	proto_put_u64(b, i->size);
	proto_put_u32(b, i->mode);
	return proto_frame_end(b, s);
}

int proto_decode_file_info(const struct proto_frame *f, struct proto_file_info *i)
{
	struct cur c = cur_of(f);

	i->size = get_u64(&c);
	i->mode = get_u32(&c);
	return cur_done(&c);
}

int proto_encode_pong(struct proto_buf *b, const struct proto_pong *p)
{
	size_t s = proto_frame_begin(b, PROTO_PONG, 0);
	proto_put_u64(b, p->realtime_ns);
	proto_put_u64(b, p->monotonic_ns);
	return proto_frame_end(b, s);
}

int proto_decode_pong(const struct proto_frame *f, struct proto_pong *p)
{
	struct cur c = cur_of(f);

	p->realtime_ns = get_u64(&c);
	p->monotonic_ns = get_u64(&c);
	return cur_done(&c);
}

int proto_encode_probe_result(struct proto_buf *b, const struct proto_probe_result *r)
{
	size_t s = proto_frame_begin(b, PROTO_PROBE_RESULT, 0);
	proto_put_u8(b, r->found);
	proto_put_u8(b, 0);
	proto_put_u16(b, r->port);
	return proto_frame_end(b, s);
}

int proto_decode_probe_result(const struct proto_frame *f, struct proto_probe_result *r)
{
	struct cur c = cur_of(f);
	uint8_t reserved;

	r->found = get_u8(&c);
	reserved = get_u8(&c);
	r->port = get_u16(&c);
	if (cur_done(&c) < 0 || reserved || r->found > 1)
		return -EPROTO;
	return 0;
}

/* ---- guest configuration ------------------------------------------------------ */

int proto_encode_config(struct proto_buf *b, const struct proto_config *c)
{
	size_t s = proto_frame_begin(b, PROTO_GUEST_CONFIG, 0);

	proto_put_u32(b, c->flags);
	proto_put_str(b, c->hostname);
	proto_put_str(b, c->root_dev);
	proto_put_str(b, c->root_fstype);
	put_strv(b, c->env, c->nenv);
	put_strv(b, c->argv, c->nargv);
	proto_put_str(b, c->workdir);
	proto_put_str(b, c->user);
	proto_put_u32(b, c->stop_signal);
	proto_put_u32(b, c->nvolumes);
	for (uint32_t i = 0; i < c->nvolumes; i++) {
		proto_put_str(b, c->volumes[i].device);
		proto_put_str(b, c->volumes[i].path);
		proto_put_str(b, c->volumes[i].fstype);
		proto_put_u32(b, c->volumes[i].flags);
	}
	proto_put_bytes(b, c->ip, 4);
	proto_put_bytes(b, c->gateway, 4);
	proto_put_bytes(b, c->dns, 4);
	proto_put_u8(b, c->prefix_len);
	proto_put_u32(b, c->agent_port);
	return proto_frame_end(b, s);
}

static void get_ip(struct cur *c, uint8_t ip[4])
{
	const uint8_t *p = cur_take(c, 4);
	if (p)
		memcpy(ip, p, 4);
}

static int config_pass(const struct proto_frame *f, struct proto_config *cfg, bool fill)
{
	struct cur c = cur_of(f);

	cfg->flags = get_u32(&c);
	cfg->hostname = get_str(&c, PROTO_MAX_NAME);
	cfg->root_dev = get_str(&c, PROTO_MAX_PATH);
	cfg->root_fstype = get_str(&c, PROTO_MAX_NAME);
	cfg->nenv = get_strv(&c, PROTO_MAX_LIST, PROTO_MAX_STR, fill ? cfg->env : NULL);
	cfg->nargv = get_strv(&c, PROTO_MAX_LIST, PROTO_MAX_STR, fill ? cfg->argv : NULL);
	cfg->workdir = get_str(&c, PROTO_MAX_PATH);
	cfg->user = get_str(&c, PROTO_MAX_NAME);
	cfg->stop_signal = get_u32(&c);
	cfg->nvolumes = get_u32(&c);
	if (c.bad || cfg->nvolumes > PROTO_MAX_VOLUMES)
		return -EPROTO;
	for (uint32_t i = 0; i < cfg->nvolumes; i++) {
		struct proto_volume v;
		v.device = get_str(&c, PROTO_MAX_PATH);
		v.path = get_str(&c, PROTO_MAX_PATH);
		v.fstype = get_str(&c, PROTO_MAX_NAME);
		v.flags = get_u32(&c);
		if (c.bad || !is_source(v.device, v.fstype) || !is_abs_path(v.path) || v.flags & ~PROTO_VOL_RO)
			return -EPROTO;
		if (fill)
			cfg->volumes[i] = v;
	}
	get_ip(&c, cfg->ip);
	get_ip(&c, cfg->gateway);
	get_ip(&c, cfg->dns);
	cfg->prefix_len = get_u8(&c);
	cfg->agent_port = get_u32(&c);
	if (cur_done(&c) < 0)
		return -EPROTO;
	if (cfg->flags & ~(PROTO_CFG_SHUTDOWN_ON_EXIT | PROTO_CFG_NETWORK | PROTO_CFG_VERBOSE))
		return -EPROTO;
	if (cfg->prefix_len > 32 || cfg->stop_signal > 64)
		return -EPROTO;
	if (cfg->root_dev[0] && !is_source(cfg->root_dev, cfg->root_fstype))
		return -EPROTO;
	if (cfg->workdir[0] && !is_abs_path(cfg->workdir))
		return -EPROTO;
	return 0;
}

int proto_decode_config(const struct proto_frame *f, struct proto_config *cfg)
{
	void *mem;
	size_t ptrs;
	int rc;

	*cfg = (struct proto_config){ 0 };
	if (f->type != PROTO_GUEST_CONFIG)
		return -EPROTO;
	rc = config_pass(f, cfg, false);
	if (rc < 0) {
		*cfg = (struct proto_config){ 0 }; /* its counts may be set, with no arrays behind them */
		return rc;
	}
	ptrs = ((size_t)cfg->nenv + 1 + cfg->nargv + 1) * sizeof(char *);
	mem = calloc(1, ptrs + (size_t)cfg->nvolumes * sizeof(struct proto_volume));
	if (!mem)
		return -ENOMEM;
	cfg->env = mem;
	cfg->argv = cfg->env + cfg->nenv + 1;
	cfg->volumes = (struct proto_volume *)((char *)mem + ptrs);
	rc = config_pass(f, cfg, true);
	cfg->mem = mem;
	if (rc < 0) {
		proto_config_release(cfg);
		return rc;
	}
	for (uint32_t i = 0; i < cfg->nenv; i++) {
		if (!is_env_entry(cfg->env[i])) {
			proto_config_release(cfg);
			return -EPROTO;
		}
	}
	return 0;
}

void proto_config_release(struct proto_config *c)
{
	free(c->mem);
	*c = (struct proto_config){ 0 };
}

/* ---- reader ----------------------------------------------------------------- */

void proto_reader_init(struct proto_reader *r, bool exact)
{
	*r = (struct proto_reader){ .exact = exact };
}

void proto_reader_free(struct proto_reader *r)
{
	free(r->buf);
	*r = (struct proto_reader){ 0 };
}

/* Room for need bytes from r->start: compacts first, then grows (need is bounded). */
static int reader_room(struct proto_reader *r, size_t need)
{
	size_t cap;
	uint8_t *p;

	if (r->start && r->cap - r->start < need) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->cap - r->start >= need)
		return 0;
	cap = r->cap ? r->cap : 16384;
	while (cap < need)
		cap *= 2;
	p = realloc(r->buf, cap);
	if (!p)
		return -ENOMEM;
	r->buf = p;
	r->cap = cap;
	return 0;
}

bool proto_reader_ready(const struct proto_reader *r)
{
	struct proto_frame f;
	size_t used;

	return r->buf && proto_frame_parse(r->buf + r->start, r->end - r->start, &f, &used) != 0;
}

int proto_reader_next(struct proto_reader *r, int fd, struct proto_frame *f)
{
	for (;;) {
		size_t have = r->end - r->start, need = PROTO_HDR_SIZE, want;
		size_t used;
		ssize_t n;
		int rc;

		rc = proto_frame_parse(r->buf ? r->buf + r->start : NULL, have, f, &used);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			r->start += used;
			if (r->start == r->end)
				r->start = r->end = 0;
			return 1;
		}
		if (have >= PROTO_HDR_SIZE)
			need += f->len;
		rc = reader_room(r, need);
		if (rc < 0)
			return rc;
		want = r->exact ? need - have : r->cap - r->end;
		n = read(fd, r->buf + r->end, want);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		if (n == 0)
			return have ? -EPROTO : -EPIPE;
		r->end += (size_t)n;
	}
}
