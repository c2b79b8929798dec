/*
 * The spool: pass 1 appends the non-zero 4 KiB blocks of every regular file
 * here as it decompresses them, so pass 2 copies instead of decompressing
 * the layers again. Files later removed by whiteouts leave dead blocks
 * behind; they cost spool space only, never image space.
 */
#include "oci/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPOOL_BATCH 256u
#define RUN_MAX 32768u

int spool_open(struct spool *s, const char *dir, struct where *w)
{
	memset(s, 0, sizeof(*s));
	s->cur = -1;
	s->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (s->fd < 0) {
		/* filesystems without O_TMPFILE: create, then unlink at once */
		char tmpl[4200];
		snprintf(tmpl, sizeof(tmpl), "%s/.spool-XXXXXX", dir);
		s->fd = mkostemp(tmpl, O_CLOEXEC);
		if (s->fd >= 0)
			unlink(tmpl);
	}
	if (s->fd < 0)
		return where_fail(w, "spool file in %s: %s", dir, strerror(errno));
	s->batch = malloc((size_t)SPOOL_BATCH * FS_BLOCK);
	if (!s->batch) {
		close(s->fd);
		s->fd = -1;
		return where_fail(w, "out of memory");
	}
	return 0;
}

void spool_close(struct spool *s)
{
	if (s->fd >= 0)
		close(s->fd);
	free(s->batch);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

int spool_flush(struct spool *s, struct where *w)
{
	size_t len = (size_t)s->batch_n * FS_BLOCK, done = 0;

	while (done < len) {
		ssize_t n = pwrite(s->fd, s->batch + done, len - done,
				   (off_t)(s->batch_first * FS_BLOCK + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return where_fail(w, "write spool: %s", strerror(errno));
		done += (size_t)n;
	}
	s->batch_n = 0;
	return 0;
}

static int run_add(struct spool *s, uint64_t lblk, uint64_t sblk, struct where *w)
{
	struct tinode *ti = s->ti;
	struct spool_run *last = ti->nruns ? &ti->runs[ti->nruns - 1] : NULL;

	if (last && last->lblk + last->len == lblk && last->sblk + last->len == sblk &&
	    last->len < RUN_MAX) {
		last->len++;
		return 0;
	}
	if (ti->nruns == s->runs_cap) {
		size_t cap = s->runs_cap ? s->runs_cap * 2 : 1;
		struct spool_run *v = realloc(ti->runs, cap * sizeof(*v));
		if (!v)
			return where_fail(w, "out of memory");
		ti->runs = v;
		s->runs_cap = cap;
	}
	ti->runs[ti->nruns++] = (struct spool_run){ .lblk = lblk, .sblk = sblk, .len = 1 };
	return 0;
}

static int block_done(struct spool *s, struct where *w)
{
	int64_t lblk = s->cur;

	s->cur = -1;
	if (lblk < 0 || !s->cur_nz)
		return 0;
	if (s->batch_n == SPOOL_BATCH && spool_flush(s, w) < 0)
		return -1;
	if (!s->batch_n)
		s->batch_first = s->next;
	memcpy(s->batch + (size_t)s->batch_n * FS_BLOCK, s->blk, FS_BLOCK);
	s->batch_n++;
	s->ti->data_blocks++;
	return run_add(s, (uint64_t)lblk, s->next++, w);
}

void spool_begin(struct spool *s, struct tinode *ti)
{
	s->ti = ti;
	s->cur = -1;
	s->runs_cap = 0;
	ti->data_blocks = 0;
	ti->nruns = 0;
}

int spool_feed(struct spool *s, uint64_t off, const void *buf, size_t len, struct where *w)
{
	const unsigned char *p = buf;

	while (len) {
		int64_t b = (int64_t)(off / FS_BLOCK);
		size_t at = off % FS_BLOCK, in = FS_BLOCK - at;
		if (in > len)
			in = len;
		if (b != s->cur) {
			if (block_done(s, w) < 0)
				return -1;
			s->cur = b;
			s->cur_nz = false;
			memset(s->blk, 0, FS_BLOCK);
		}
		memcpy(s->blk + at, p, in);
		/* all-zero blocks stay holes */
		if (!s->cur_nz && (p[0] || memcmp(p, p + 1, in - 1)))
			s->cur_nz = true;
		p += in;
		off += in;
		len -= in;
	}
	return 0;
}

int spool_end(struct spool *s, struct where *w)
{
	int rc = block_done(s, w);

	s->ti = NULL;
	return rc;
}
