/* Durable file writes and the helpers they are made of (fsutil.h). */
#include "base/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int fsync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int rc;

	if (!copy)
		return -ENOMEM;
	rc = fsync_dir(dirname(copy));
	free(copy);
	return rc;
}

int durable_rename(const char *from, const char *to)
{
	if (rename(from, to) < 0)
		return -errno;
	return fsync_dir_of(to);
}

/* The data before the name: fsync (and chmod) before the rename exposes it. */
static int sync_close(int fd, mode_t mode)
{
	int rc = 0;

	if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

int durable_install(const char *tmp, const char *path, mode_t mode)
{
	int fd = open(tmp, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = sync_close(fd, mode);
	if (rc == 0)
		rc = durable_rename(tmp, path);
	return rc;
}

int durable_write(const char *path, const void *buf, size_t len, mode_t mode)
{
	char *tmp = NULL;
	int fd, rc;

	/* unique, so two writers of one path never share (or truncate) a temp */
	if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = file_write_full(fd, buf, len);
	if (rc < 0)
		close(fd);
	else
		rc = sync_close(fd, mode);
	if (rc == 0)
		rc = durable_rename(tmp, path);
	if (rc < 0)
		unlink(tmp); /* ENOENT when only the directory fsync failed */
out:
	free(tmp);
	return rc;
}
