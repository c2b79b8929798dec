/* Small file helpers: atomic replacement, whole-file reads, mkdir -p. */
#include "oci/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int file_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int file_write_atomic(const char *path, const void *buf, size_t len, sm_error **err)
{
	char *tmp = NULL;
	int fd = -1, rc;

	if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "write %s", path);
		return -ENOMEM;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		sm_error_set(err, SM_E_IO, -rc, "create %s", tmp);
		free(tmp);
		return rc;
	}
	rc = file_write_full(fd, buf, len);
	if (rc == 0 && fchmod(fd, 0644) < 0)
		rc = -errno;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc == 0)
		rc = fsync_dir_of(path);
	if (rc < 0) {
		sm_error_set(err, SM_E_IO, -rc, "write %s", path);
		unlink(tmp);
	}
	free(tmp);
	return rc;
}

int file_read_all(const char *path, size_t max, char **buf, size_t *len, sm_error **err)
{
	struct stat stt;
	char *b;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;
		sm_error_set(err, e == ENOENT ? SM_E_NOT_FOUND : SM_E_IO, e, "open %s", path);
		return -e;
	}
	if (fstat(fd, &stt) < 0) {
		int e = errno;
		sm_error_set(err, SM_E_IO, e, "stat %s", path);
		close(fd);
		return -e;
	}
	if (!S_ISREG(stt.st_mode) || (uint64_t)stt.st_size > max) {
		sm_error_set(err, SM_E_INVALID, 0, "%s: not a regular file of at most %zu bytes",
			     path, max);
		close(fd);
		return -EINVAL;
	}
	b = malloc((size_t)stt.st_size + 1);
	if (!b) {
		close(fd);
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "read %s", path);
		return -ENOMEM;
	}
	while (got < (size_t)stt.st_size) {
		ssize_t n = read(fd, b + got, (size_t)stt.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			sm_error_set(err, SM_E_IO, e, "read %s", path);
			free(b);
			close(fd);
			return -e;
		}
		got += (size_t)n;
	}
	close(fd);
	b[got] = '\0';
	*buf = b;
	*len = got;
	return 0;
}

int file_commit(const char *tmp, const char *dst, mode_t mode)
{
	int fd = open(tmp, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0 || fsync(fd) < 0 || fchmod(fd, mode) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (rc == 0 && rename(tmp, dst) < 0)
		rc = -errno;
	if (rc == 0)
		rc = fsync_dir_of(dst);
	return rc;
}
