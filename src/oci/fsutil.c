/* Small file helpers: atomic replacement with an error that says where, whole-file reads. */
#include "oci/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_write_atomic(const char *path, const void *buf, size_t len, sm_error **err)
{
	int rc = durable_write(path, buf, len, 0644);

	if (rc < 0)
		sm_error_set(err, rc == -ENOMEM ? SM_E_NOMEM : SM_E_IO, -rc, "write %s", path);
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
