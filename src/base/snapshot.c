/*
 * The snapshot state file and the memory file's header. Layout in
 * snapshot.h and docs/snapshot-format.md; the memory file's RAM is
 * written and opened by src/vmm/snapshot_memory.c. All integers are
 * little-endian; this file is x86_64/arm64-only, so plain stores are
 * little-endian already, but every field still goes through put/get so a
 * big-endian port has one place to change.
 */
#include "base/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/fsutil.h"

static const char state_magic[8] = { 'S', 'M', 'S', 'T', 'A', 'T', 'E', '\n' };
static const char memory_magic[8] = { 'S', 'M', 'M', 'E', 'M', 'O', 'R', 'Y' };

uint32_t snap_crc32(const void *p, size_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	const Bytef *b = p;

	/* zlib takes uInt lengths: feed it in pieces. */
	while (len) {
		uInt n = len > UINT_MAX ? UINT_MAX : (uInt)len;
		crc = crc32(crc, b, n);
		b += n;
		len -= n;
	}
	return (uint32_t)crc;
}

static void le32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64_put(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32_get(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t le64_get(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

const char *snap_tag_name(uint32_t tag, uint32_t index, char buf[24])
{
	char t[5];

	for (int i = 0; i < 4; i++) {
		char c = (char)(tag >> (8 * i));
		t[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	t[4] = 0;
	snprintf(buf, 24, "%s %u", t, index);
	return buf;
}

/* ---- writer ------------------------------------------------------------------ */

struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	uint32_t nsections;
	bool in_section;
	size_t section_start; /* offset of the open section's header */
	int error;
	char msg[sizeof(((struct vmm_err *)0)->msg)];
};

struct snap_writer *snap_writer_new(void)
{
	struct snap_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->cap = 4096;
	w->buf = calloc(1, w->cap);
	if (!w->buf) {
		free(w);
		return NULL;
	}
	w->len = SNAP_STATE_HEADER_BYTES; /* filled in by encode */
	return w;
}

void snap_writer_free(struct snap_writer *w)
{
	if (!w)
		return;
	free(w->buf);
	free(w);
}

void snap_writer_fail(struct snap_writer *w, int rc, const char *fmt, ...)
{
	va_list ap;

	if (w->error)
		return;
	w->error = rc < 0 ? rc : -EINVAL;
	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
}

int snap_writer_error(const struct snap_writer *w)
{
	return w->error;
}

static uint8_t *writer_reserve(struct snap_writer *w, size_t n)
{
	if (w->error)
		return NULL;
	if (n > SNAP_STATE_MAX_BYTES - w->len) {
		snap_writer_fail(w, -EFBIG, "state larger than the %u MiB a reader accepts",
				 SNAP_STATE_MAX_BYTES >> 20);
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t cap = w->cap;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *b = realloc(w->buf, cap);
		if (!b) {
			snap_writer_fail(w, -ENOMEM, "out of memory");
			return NULL;
		}
		memset(b + w->cap, 0, cap - w->cap);
		w->buf = b;
		w->cap = cap;
	}
	uint8_t *p = w->buf + w->len;
	w->len += n;
	return p;
}

static void writer_put(struct snap_writer *w, const void *p, size_t n)
{
	if (!w->in_section) {
		snap_writer_fail(w, -EINVAL, "internal error: field written outside a section");
		return;
	}
	uint8_t *dst = writer_reserve(w, n);
	if (dst && n)
		memcpy(dst, p, n);
}

void snap_section_begin(struct snap_writer *w, uint32_t tag, uint32_t index, uint32_t version)
{
	char name[24];

	if (w->in_section) {
		snap_writer_fail(w, -EINVAL, "internal error: section %s begun inside another",
				 snap_tag_name(tag, index, name));
		return;
	}
	if (w->nsections == SNAP_MAX_SECTIONS) {
		snap_writer_fail(w, -EFBIG, "more than %u sections", SNAP_MAX_SECTIONS);
		return;
	}
	size_t start = w->len;
	uint8_t *h = writer_reserve(w, SNAP_SECTION_HEADER_BYTES);
	if (!h)
		return;
	le32_put(h, tag);
	le32_put(h + 4, index);
	le32_put(h + 8, version);
	w->section_start = start;
	w->in_section = true;
}

void snap_section_end(struct snap_writer *w)
{
	if (!w->in_section) {
		snap_writer_fail(w, -EINVAL, "internal error: section ended twice");
		return;
	}
	w->in_section = false;
	if (w->error)
		return;
	uint8_t *h = w->buf + w->section_start;
	size_t payload = w->len - w->section_start - SNAP_SECTION_HEADER_BYTES;
	if (payload > UINT32_MAX) {
		snap_writer_fail(w, -EFBIG, "section too large");
		return;
	}
	le32_put(h + 12, (uint32_t)payload);
	le32_put(h + 16, snap_crc32(h + SNAP_SECTION_HEADER_BYTES, payload));
	le32_put(h + 20, snap_crc32(h, 20));
	w->nsections++;
}

void snap_put_u8(struct snap_writer *w, uint8_t v)
{
	writer_put(w, &v, 1);
}

void snap_put_u16(struct snap_writer *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	writer_put(w, b, 2);
}

void snap_put_u32(struct snap_writer *w, uint32_t v)
{
	uint8_t b[4];

	le32_put(b, v);
	writer_put(w, b, 4);
}

void snap_put_u64(struct snap_writer *w, uint64_t v)
{
	uint8_t b[8];

	le64_put(b, v);
	writer_put(w, b, 8);
}

void snap_put_bytes(struct snap_writer *w, const void *p, size_t len)
{
	writer_put(w, p, len);
}

void snap_put_blob(struct snap_writer *w, const void *p, size_t len)
{
	if (len > UINT32_MAX) {
		snap_writer_fail(w, -EFBIG, "blob too large");
		return;
	}
	snap_put_u32(w, (uint32_t)len);
	writer_put(w, p, len);
}

const uint8_t *snap_writer_encode(struct snap_writer *w, size_t *len)
{
	if (!w->error && w->in_section)
		snap_writer_fail(w, -EINVAL, "internal error: a section was left open");
	if (w->error)
		return NULL;
	uint8_t *h = w->buf;
	memcpy(h, state_magic, sizeof(state_magic));
	le32_put(h + 8, SNAP_FORMAT_VERSION);
	le32_put(h + 12, w->nsections);
	le64_put(h + 16, w->len - SNAP_STATE_HEADER_BYTES);
	le32_put(h + 24, 0);
	le32_put(h + 28, snap_crc32(h, 28));
	*len = w->len;
	return w->buf;
}

int snap_writer_finish(struct snap_writer *w, const char *path, struct vmm_err *err)
{
	size_t len;
	const uint8_t *buf = snap_writer_encode(w, &len);

	if (!buf)
		return vmm_err_set(err, w->error, "%s: %s", path, w->msg);
	int rc = durable_write(path, buf, len, 0644);
	if (rc < 0)
		return vmm_err_set(err, rc, "%s: %s", path, strerror(-rc));
	return 0;
}

/* ---- reader ------------------------------------------------------------------ */

struct snap_section {
	uint32_t tag, index, version;
	size_t off, len; /* payload within the reader's buffer */
	bool entered;
};

struct snap_reader {
	char *name;
	uint8_t *buf;
	size_t len;
	struct snap_section *sections;
	uint32_t nsections;
	struct snap_section *cur; /* NULL: between sections */
	size_t pos;               /* read position inside cur's payload */
	int error;
	char msg[sizeof(((struct vmm_err *)0)->msg)];
};

__attribute__((format(printf, 3, 0)))
static int reader_vfail(struct snap_reader *r, int rc, const char *fmt, va_list ap)
{
	char name[24];
	int n;

	if (r->error)
		return rc;
	r->error = rc;
	if (r->cur)
		n = snprintf(r->msg, sizeof(r->msg), "%s: section %s: ", r->name,
			     snap_tag_name(r->cur->tag, r->cur->index, name));
	else
		n = snprintf(r->msg, sizeof(r->msg), "%s: ", r->name);
	if (n >= 0 && (size_t)n < sizeof(r->msg))
		vsnprintf(r->msg + n, sizeof(r->msg) - (size_t)n, fmt, ap);
	return rc;
}

__attribute__((format(printf, 3, 4)))
static int reader_fail(struct snap_reader *r, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reader_vfail(r, rc, fmt, ap);
	va_end(ap);
	return rc;
}

int snap_reader_fail(struct snap_reader *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reader_vfail(r, -EINVAL, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int snap_reader_error(const struct snap_reader *r, struct vmm_err *err)
{
	if (!r->error)
		return 0;
	return vmm_err_set(err, r->error, "%s", r->msg);
}

static int header_check(struct snap_reader *r, uint32_t *nsections)
{
	const uint8_t *h = r->buf;

	if (r->len < SNAP_STATE_HEADER_BYTES)
		return reader_fail(r, -EBADMSG, "truncated: %zu bytes, a state file header is %u",
				   r->len, SNAP_STATE_HEADER_BYTES);
	if (memcmp(h, state_magic, sizeof(state_magic)) != 0)
		return reader_fail(r, -EBADMSG, "not a supermachine state file (bad magic)");
	if (le32_get(h + 28) != snap_crc32(h, 28))
		return reader_fail(r, -EBADMSG, "header checksum mismatch (corrupt file)");
	uint32_t version = le32_get(h + 8);
	if (version != SNAP_FORMAT_VERSION)
		return reader_fail(r, -EPROTONOSUPPORT,
				   "format version %u; this supermachine reads version %u only", version,
				   SNAP_FORMAT_VERSION);
	uint64_t body = le64_get(h + 16);
	if (body != r->len - SNAP_STATE_HEADER_BYTES)
		return reader_fail(r, -EBADMSG, "%s: header says %llu body bytes, the file has %zu",
				   body > r->len - SNAP_STATE_HEADER_BYTES ? "truncated" : "trailing data",
				   (unsigned long long)body, r->len - SNAP_STATE_HEADER_BYTES);
	*nsections = le32_get(h + 12);
	if (*nsections > SNAP_MAX_SECTIONS)
		return reader_fail(r, -EBADMSG, "%u sections; at most %u are accepted", *nsections,
				   SNAP_MAX_SECTIONS);
	if (le32_get(h + 24) != 0)
		return reader_fail(r, -EBADMSG, "reserved header field is not zero");
	return 0;
}

static struct snap_section *section_find(const struct snap_reader *r, uint32_t tag, uint32_t index)
{
	for (uint32_t i = 0; i < r->nsections; i++)
		if (r->sections[i].tag == tag && r->sections[i].index == index)
			return &r->sections[i];
	return NULL;
}

/* One section header at *off: bounds, checksums, uniqueness. */
static int section_parse(struct snap_reader *r, uint32_t i, size_t *off)
{
	char name[24];
	const uint8_t *h = r->buf + *off;

	if (r->len - *off < SNAP_SECTION_HEADER_BYTES)
		return reader_fail(r, -EBADMSG, "truncated in the header of section %u of %u", i + 1,
				   r->nsections);
	struct snap_section s = {
		.tag = le32_get(h),
		.index = le32_get(h + 4),
		.version = le32_get(h + 8),
		.off = *off + SNAP_SECTION_HEADER_BYTES,
		.len = le32_get(h + 12),
	};
	snap_tag_name(s.tag, s.index, name);
	if (le32_get(h + 20) != snap_crc32(h, 20))
		return reader_fail(r, -EBADMSG, "header checksum mismatch in section %u of %u", i + 1,
				   r->nsections);
	if (s.len > r->len - s.off)
		return reader_fail(r, -EBADMSG, "section %s: truncated (%zu bytes, %zu left in the file)",
				   name, s.len, r->len - s.off);
	if (le32_get(h + 16) != snap_crc32(r->buf + s.off, s.len))
		return reader_fail(r, -EBADMSG, "section %s: checksum mismatch (corrupt data)", name);
	if (section_find(r, s.tag, s.index))
		return reader_fail(r, -EBADMSG, "section %s appears twice", name);
	r->sections[i] = s;
	*off = s.off + s.len;
	return 0;
}

static int reader_index(struct snap_reader *r)
{
	uint32_t n = 0;
	int rc = header_check(r, &n);

	if (rc < 0)
		return rc;
	r->sections = calloc(n ? n : 1, sizeof(*r->sections));
	if (!r->sections)
		return reader_fail(r, -ENOMEM, "out of memory");
	r->nsections = n;
	size_t off = SNAP_STATE_HEADER_BYTES;
	for (uint32_t i = 0; i < n; i++) {
		/* Sections not yet parsed must not match section_find(). */
		r->sections[i] = (struct snap_section){ 0 };
		r->nsections = i;
		rc = section_parse(r, i, &off);
		r->nsections = n;
		if (rc < 0)
			return rc;
	}
	if (off != r->len)
		return reader_fail(r, -EBADMSG, "%zu bytes after the last section", r->len - off);
	return 0;
}

static struct snap_reader *reader_alloc(const char *name)
{
	struct snap_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->name = strdup(name);
	if (!r->name) {
		free(r);
		return NULL;
	}
	return r;
}

static int reader_finish_open(struct snap_reader *r, struct snap_reader **out, struct vmm_err *err)
{
	int rc = reader_index(r);

	if (rc < 0) {
		snap_reader_error(r, err);
		snap_reader_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int snap_reader_parse(struct snap_reader **out, const char *name, const void *buf, size_t len,
		      struct vmm_err *err)
{
	struct snap_reader *r = reader_alloc(name);

	*out = NULL;
	if (!r)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	if (len > SNAP_STATE_MAX_BYTES) {
		reader_fail(r, -EFBIG, "%zu bytes; a state file is at most %u MiB", len,
			    SNAP_STATE_MAX_BYTES >> 20);
		snap_reader_error(r, err);
		snap_reader_free(r);
		return -EFBIG;
	}
	r->buf = malloc(len ? len : 1);
	if (!r->buf) {
		snap_reader_free(r);
		return vmm_err_set(err, -ENOMEM, "out of memory");
	}
	memcpy(r->buf, buf, len);
	r->len = len;
	return reader_finish_open(r, out, err);
}

/* Reads all of fd (size from fstat, bounded) into r->buf. */
static int reader_load(struct snap_reader *r, int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return reader_fail(r, -errno, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return reader_fail(r, -EINVAL, "not a regular file");
	if ((uint64_t)st.st_size > SNAP_STATE_MAX_BYTES)
		return reader_fail(r, -EFBIG, "%lld bytes; a state file is at most %u MiB",
				   (long long)st.st_size, SNAP_STATE_MAX_BYTES >> 20);
	r->len = (size_t)st.st_size;
	r->buf = malloc(r->len ? r->len : 1);
	if (!r->buf)
		return reader_fail(r, -ENOMEM, "out of memory");
	for (size_t done = 0; done < r->len;) {
		ssize_t n = pread(fd, r->buf + done, r->len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return reader_fail(r, -errno, "%s", strerror(errno));
		if (n == 0)
			return reader_fail(r, -EBADMSG, "file shrank while being read");
		done += (size_t)n;
	}
	return 0;
}

int snap_reader_open(struct snap_reader **out, const char *path, struct vmm_err *err)
{
	struct snap_reader *r = reader_alloc(path);

	*out = NULL;
	if (!r)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = vmm_err_set(err, -errno, "%s: %s", path, strerror(errno));
		snap_reader_free(r);
		return rc;
	}
	int rc = reader_load(r, fd);
	close(fd);
	if (rc < 0) {
		snap_reader_error(r, err);
		snap_reader_free(r);
		return rc;
	}
	return reader_finish_open(r, out, err);
}

void snap_reader_free(struct snap_reader *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->buf);
	free(r->sections);
	free(r);
}

int snap_section_enter(struct snap_reader *r, uint32_t tag, uint32_t index)
{
	char name[24];
	struct snap_section *s = section_find(r, tag, index);

	r->cur = NULL;
	if (!s)
		return reader_fail(r, -ENOENT, "section %s is missing", snap_tag_name(tag, index, name));
	s->entered = true;
	r->cur = s;
	r->pos = 0;
	return 0;
}

bool snap_section_exists(const struct snap_reader *r, uint32_t tag, uint32_t index)
{
	return section_find(r, tag, index) != NULL;
}

uint32_t snap_section_version(const struct snap_reader *r)
{
	return r->cur ? r->cur->version : 0;
}

size_t snap_section_left(const struct snap_reader *r)
{
	return r->cur ? r->cur->len - r->pos : 0;
}

int snap_section_leave(struct snap_reader *r)
{
	int rc = 0;

	if (r->cur && r->pos != r->cur->len)
		rc = reader_fail(r, -EBADMSG, "%zu unread bytes at the end (format mismatch)",
				 r->cur->len - r->pos);
	r->cur = NULL;
	return rc;
}

static const uint8_t *reader_take(struct snap_reader *r, size_t n)
{
	if (!r->cur) {
		reader_fail(r, -EINVAL, "internal error: field read outside a section");
		return NULL;
	}
	if (n > r->cur->len - r->pos) {
		reader_fail(r, -EBADMSG, "truncated: needs %zu more bytes at offset %zu, %zu left", n,
			    r->pos, r->cur->len - r->pos);
		return NULL;
	}
	const uint8_t *p = r->buf + r->cur->off + r->pos;
	r->pos += n;
	return p;
}

int snap_get_u8(struct snap_reader *r, uint8_t *v)
{
	const uint8_t *p = reader_take(r, 1);

	if (!p)
		return -EBADMSG;
	*v = *p;
	return 0;
}

int snap_get_u16(struct snap_reader *r, uint16_t *v)
{
	const uint8_t *p = reader_take(r, 2);

	if (!p)
		return -EBADMSG;
	*v = (uint16_t)(p[0] | (p[1] << 8));
	return 0;
}

int snap_get_u32(struct snap_reader *r, uint32_t *v)
{
	const uint8_t *p = reader_take(r, 4);

	if (!p)
		return -EBADMSG;
	*v = le32_get(p);
	return 0;
}

int snap_get_u64(struct snap_reader *r, uint64_t *v)
{
	const uint8_t *p = reader_take(r, 8);

	if (!p)
		return -EBADMSG;
	*v = le64_get(p);
	return 0;
}

int snap_get_bytes(struct snap_reader *r, void *dst, size_t len)
{
	const uint8_t *p = reader_take(r, len);

	if (!p)
		return -EBADMSG;
	if (len)
		memcpy(dst, p, len);
	return 0;
}

int snap_get_blob_max(struct snap_reader *r, void *dst, size_t max, size_t *len)
{
	uint32_t n;

	if (snap_get_u32(r, &n) < 0)
		return -EBADMSG;
	if (n > max)
		return reader_fail(r, -EBADMSG, "a %u-byte field where at most %zu fit", n, max);
	*len = n;
	return snap_get_bytes(r, dst, n);
}

int snap_get_blob(struct snap_reader *r, void *dst, size_t len)
{
	uint32_t n;

	if (snap_get_u32(r, &n) < 0)
		return -EBADMSG;
	if (n != len)
		return reader_fail(r, -EBADMSG, "a %u-byte field where %zu bytes were expected", n, len);
	return snap_get_bytes(r, dst, len);
}

int snap_reader_check_consumed(struct snap_reader *r)
{
	char name[24];

	for (uint32_t i = 0; i < r->nsections; i++) {
		const struct snap_section *s = &r->sections[i];
		if (!s->entered) {
			r->cur = NULL;
			return reader_fail(r, -EBADMSG, "section %s is not understood by this supermachine",
					   snap_tag_name(s->tag, s->index, name));
		}
	}
	return 0;
}

/* ---- memory file ------------------------------------------------------------- */

void snap_memory_header_encode(uint8_t h[SNAP_MEMORY_HEADER_FIELD_BYTES], uint64_t ram_bytes,
			       const uint8_t id[SNAP_ID_BYTES])
{
	memset(h, 0, SNAP_MEMORY_HEADER_FIELD_BYTES);
	memcpy(h, memory_magic, sizeof(memory_magic));
	le32_put(h + 8, SNAP_FORMAT_VERSION);
	le32_put(h + 12, (uint32_t)GUEST_MEM_PAGE);
	le64_put(h + 16, ram_bytes);
	memcpy(h + 24, id, SNAP_ID_BYTES);
	le32_put(h + 44, snap_crc32(h, 44));
}

int snap_memory_header_check(const char *path, const uint8_t h[SNAP_MEMORY_HEADER_FIELD_BYTES],
			     uint64_t ram_bytes, const uint8_t id[SNAP_ID_BYTES], struct vmm_err *err)
{
	if (memcmp(h, memory_magic, sizeof(memory_magic)) != 0)
		return vmm_err_set(err, -EBADMSG, "%s: not a supermachine memory file (bad magic)", path);
	if (le32_get(h + 44) != snap_crc32(h, 44))
		return vmm_err_set(err, -EBADMSG, "%s: header checksum mismatch (corrupt file)", path);
	uint32_t version = le32_get(h + 8);
	if (version != SNAP_FORMAT_VERSION)
		return vmm_err_set(err, -EPROTONOSUPPORT,
				   "%s: format version %u; this supermachine reads version %u only", path,
				   version, SNAP_FORMAT_VERSION);
	if (le32_get(h + 12) != GUEST_MEM_PAGE)
		return vmm_err_set(err, -EBADMSG, "%s: page size %u, expected %llu", path,
				   le32_get(h + 12), GUEST_MEM_PAGE);
	if (le64_get(h + 16) != ram_bytes)
		return vmm_err_set(err, -EBADMSG, "%s: holds %llu bytes of RAM; the state file says %llu",
				   path, (unsigned long long)le64_get(h + 16),
				   (unsigned long long)ram_bytes);
	if (memcmp(h + 24, id, SNAP_ID_BYTES) != 0)
		return vmm_err_set(err, -EBADMSG,
				   "%s: belongs to another snapshot than the state file (id mismatch)", path);
	return 0;
}
