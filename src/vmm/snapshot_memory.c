/*
 * The snapshot memory file's RAM (snapshot_memory.h): written sparse from
 * the guest's memory, and opened for a restore after its header (whose
 * format is src/base/snapshot.c's) is checked.
 */
#include "vmm/snapshot_memory.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "proto/worker.h"

_Static_assert(SNAP_MEMORY_HEADER_FIELD_BYTES <= WORKER_SNAP_MEMORY_HEADER_BYTES,
	       "the memory header's fields fit in the page before RAM");

static int write_all(int fd, const void *p, size_t len, off_t off)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = pwrite(fd, b, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		b += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* path.tmp, created fresh (a stale one from a crash is replaced). */
static int tmp_create(const char *path, char *tmp, size_t tmplen, struct vmm_err *err)
{
	if ((size_t)snprintf(tmp, tmplen, "%s.tmp", path) >= tmplen)
		return vmm_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return vmm_err_set(err, -errno, "%s: %s", tmp, strerror(errno));
	return fd;
}

/*
 * fsync, close and rename tmp over path, then fsync the directory
 * (durable_rename) so the new name outlives a crash; on failure tmp is
 * removed.
 */
static int tmp_commit(int fd, const char *tmp, const char *path, struct vmm_err *err)
{
	int rc = 0;

	if (fsync(fd) < 0)
		rc = vmm_err_set(err, -errno, "%s: fsync: %s", tmp, strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = vmm_err_set(err, -errno, "%s: close: %s", tmp, strerror(errno));
	if (rc == 0 && (rc = durable_rename(tmp, path)) < 0)
		vmm_err_set(err, rc, "%s: rename to %s: %s", tmp, path, strerror(-rc));
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < GUEST_MEM_PAGE / 8; i++)
		if (q[i])
			return false;
	return true;
}

/*
 * Writes the non-zero pages of [src, src + len) at file offset off. Runs
 * of non-zero pages go out in one pwrite.
 */
static int memory_write_range(int fd, const uint8_t *src, uint64_t len, off_t off)
{
	uint64_t run = 0, pos = 0;

	for (; pos < len; pos += GUEST_MEM_PAGE) {
		if (!page_is_zero(src + pos))
			continue;
		if (pos > run) {
			int rc = write_all(fd, src + run, pos - run, off + (off_t)run);
			if (rc < 0)
				return rc;
		}
		run = pos + GUEST_MEM_PAGE;
	}
	if (len > run)
		return write_all(fd, src + run, len - run, off + (off_t)run);
	return 0;
}

/*
 * [start, end) of the next data extent of the RAM image at or after pos,
 * from the backing fd's SEEK_DATA/SEEK_HOLE; the whole rest when the fd
 * cannot tell (or is a private mapping of a file, whose copied pages the
 * file does not show). Returns false when no data remains.
 */
static bool memory_next_data(const struct guest_mem *m, uint64_t pos, uint64_t *start, uint64_t *end)
{
	bool can_tell = m->fd >= 0 && !m->file_backed;
	off_t d = can_tell ? lseek(m->fd, (off_t)pos, SEEK_DATA) : -1;

	if (can_tell && d < 0 && errno != ENXIO)
		can_tell = false; /* a file system without SEEK_DATA: all of it may be data */
	if (!can_tell) {
		*start = pos;
		*end = m->ram_size;
		return pos < m->ram_size;
	}
	if (d < 0)
		return false; /* ENXIO: only holes from pos on */
	off_t h = lseek(m->fd, d, SEEK_HOLE);
	if (h < 0)
		h = (off_t)m->ram_size;
	*start = (uint64_t)d & ~(GUEST_MEM_PAGE - 1);
	*end = (uint64_t)h < m->ram_size ? (uint64_t)h : m->ram_size;
	return *start < *end;
}

static int memory_write_ram(int fd, const struct guest_mem *m)
{
	const uint8_t *base = m->regions[0].hva - m->regions[0].file_offset;
	uint64_t pos = 0, start, end;

	while (memory_next_data(m, pos, &start, &end)) {
		int rc = memory_write_range(fd, base + start, end - start,
					    (off_t)(WORKER_SNAP_MEMORY_HEADER_BYTES + start));
		if (rc < 0)
			return rc;
		pos = end;
	}
	return 0;
}

int snap_memory_write(const char *path, const struct guest_mem *m,
		      const uint8_t id[SNAP_ID_BYTES], struct vmm_err *err)
{
	char tmp[PATH_MAX];
	uint8_t *h = calloc(1, WORKER_SNAP_MEMORY_HEADER_BYTES);
	int rc;

	if (!h)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	if (m->nregions == 0) {
		free(h);
		return vmm_err_set(err, -EINVAL, "%s: the VM has no RAM", path);
	}
	snap_memory_header_encode(h, m->ram_size, id);
	int fd = tmp_create(path, tmp, sizeof(tmp), err);
	if (fd < 0) {
		free(h);
		return fd;
	}
	/* Size first: every page not written after this stays a hole. */
	if (ftruncate(fd, (off_t)(WORKER_SNAP_MEMORY_HEADER_BYTES + m->ram_size)) < 0)
		rc = -errno;
	else if ((rc = write_all(fd, h, WORKER_SNAP_MEMORY_HEADER_BYTES, 0)) == 0)
		rc = memory_write_ram(fd, m);
	free(h);
	if (rc < 0) {
		vmm_err_set(err, rc, "%s: %s", tmp, strerror(-rc));
		close(fd);
		unlink(tmp);
		return rc;
	}
	return tmp_commit(fd, tmp, path, err);
}

int snap_memory_open(const char *path, uint64_t ram_bytes, const uint8_t id[SNAP_ID_BYTES],
		     struct vmm_err *err)
{
	uint8_t *h = malloc(WORKER_SNAP_MEMORY_HEADER_BYTES);
	struct stat st;
	int rc;

	if (!h)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = vmm_err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = vmm_err_set(err, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size < WORKER_SNAP_MEMORY_HEADER_BYTES) {
		rc = vmm_err_set(err, -EBADMSG, "%s: truncated: %lld bytes, smaller than its header",
				 path, (long long)st.st_size);
		goto out;
	}
	ssize_t n = pread(fd, h, WORKER_SNAP_MEMORY_HEADER_BYTES, 0);
	if (n != (ssize_t)WORKER_SNAP_MEMORY_HEADER_BYTES) {
		rc = vmm_err_set(err, n < 0 ? -errno : -EBADMSG, "%s: cannot read its header", path);
		goto out;
	}
	rc = snap_memory_header_check(path, h, ram_bytes, id, err);
	if (rc < 0)
		goto out;
	/* A short file would SIGBUS the first guest touch past its end: refuse now. */
	if ((uint64_t)st.st_size != WORKER_SNAP_MEMORY_HEADER_BYTES + ram_bytes) {
		rc = vmm_err_set(err, -EBADMSG, "%s: %s: %lld bytes, expected %llu (header + %llu MiB of RAM)",
				 path, (uint64_t)st.st_size < WORKER_SNAP_MEMORY_HEADER_BYTES + ram_bytes ?
				 "truncated" : "trailing data",
				 (long long)st.st_size,
				 (unsigned long long)(WORKER_SNAP_MEMORY_HEADER_BYTES + ram_bytes),
				 (unsigned long long)(ram_bytes >> 20));
		goto out;
	}
	free(h);
	return fd;
out:
	if (fd >= 0)
		close(fd);
	free(h);
	return rc;
}
