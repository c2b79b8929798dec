/* Durable file writes and the helpers they are made of, flat directories (fsutil.h). */
#include "base/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
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

/* ---- flat directories ---- */

static void dir_failed(char *failed, size_t len, const char *dir, const char *name)
{
	if (failed && len)
		snprintf(failed, len, "%s%s%s", dir, name ? "/" : "", name ? name : "");
}

int dir_empty_at(int dfd, const char *dir, char *failed, size_t failed_len)
{
	int fd = dup(dfd), rc = 0;
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;

	if (!d) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		dir_failed(failed, failed_len, dir, NULL);
		return rc;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* unlinkat without AT_REMOVEDIR takes a symlink itself, even one to a directory */
		if (unlinkat(dfd, de->d_name, 0) == 0 ||
		    (errno == EISDIR && unlinkat(dfd, de->d_name, AT_REMOVEDIR) == 0) || errno == ENOENT)
			continue; /* ENOENT: gone already, as wanted */
		if (rc == 0) {
			rc = -errno;
			dir_failed(failed, failed_len, dir, de->d_name);
		}
	}
	closedir(d);
	return rc;
}

int dir_remove_flat(const char *dir, char *failed, size_t failed_len)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc;

	if (dfd < 0) {
		rc = -errno;
		dir_failed(failed, failed_len, dir, NULL);
		return rc;
	}
	rc = dir_empty_at(dfd, dir, failed, failed_len);
	close(dfd);
	if (rmdir(dir) < 0 && rc == 0) {
		rc = -errno;
		dir_failed(failed, failed_len, dir, NULL);
	}
	return rc;
}

static bool name_ends(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = suffix ? strlen(suffix) : 0;

	return !suffix || (n >= k && strcmp(name + n - k, suffix) == 0);
}

int dir_usage_add(const char *dir, const char *suffix, struct dir_usage *u)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct stat st;

	if (!d)
		return -errno;
	if (fstat(dirfd(d), &st) == 0 && st.st_mtime > u->newest)
		u->newest = st.st_mtime; /* files come and go: the directory changes with them */
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (st.st_mtime > u->newest)
			u->newest = st.st_mtime;
		if (S_ISREG(st.st_mode) && name_ends(de->d_name, suffix)) {
			u->files++;
			u->bytes += (uint64_t)st.st_blocks * 512u;
		}
	}
	closedir(d);
	return 0;
}
