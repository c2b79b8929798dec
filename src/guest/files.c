/* write_file, read_file and an exec's staged files: DATA frames until one with EOF. */
#include "guest/init.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_target(const char *path, uint32_t mode, uid_t uid, gid_t gid, char *why, size_t whylen)
{
	struct stat st;
	int fd;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s is a directory", path);
		return -EISDIR;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		int e = errno;
		snprintf(why, whylen, "open %s: %s%s", path, strerror(e),
			 e == ENOENT ? " (the parent directory does not exist)" : "");
		return -e;
	}
	/* The mode asked for, whatever the umask or an existing file's mode. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if (fchmod(fd, (mode_t)mode) < 0 || ((uid || gid) && fchown(fd, uid, gid) < 0)) {
			int e = errno;
			snprintf(why, whylen, "chmod/chown %s: %s", path, strerror(e));
			close(fd);
			return -e;
		}
	}
	return fd;
}

int files_receive(int conn, struct proto_reader *rd, const char *path, uint32_t mode, uid_t uid,
		  gid_t gid, char *why, size_t whylen)
{
	int fd = path ? open_target(path, mode, uid, gid, why, whylen) : -1;
	int err = fd < 0 && path ? fd : 0;

	/*
	 * On a write error keep reading to the EOF frame, so the host gets a
	 * clean error frame instead of a reset in the middle of its upload.
	 */
	for (;;) {
		struct proto_frame f;
		int rc = proto_reader_next(rd, conn, &f);

		if (rc <= 0) {
			if (fd >= 0)
				close(fd);
			snprintf(why, whylen, "reading %s's data from the host: %s", path ? path : "a file",
				 rc == -EPROTO ? "malformed frame" : "connection closed");
			return rc == 0 ? -EAGAIN : -EPROTO;
		}
		if (f.type != PROTO_DATA) {
			if (fd >= 0)
				close(fd);
			snprintf(why, whylen, "expected data for %s, got a '%s' frame", path ? path : "a file",
				 proto_type_name(f.type));
			return -EPROTO;
		}
		if (!err && fd >= 0 && f.len) {
			err = proto_write_all(fd, f.payload, f.len);
			if (err)
				snprintf(why, whylen, "write %s: %s", path, strerror(-err));
		}
		if (f.flags & PROTO_FLAG_EOF)
			break;
	}
	if (fd >= 0 && close(fd) < 0 && !err) {
		err = -errno;
		snprintf(why, whylen, "close %s: %s", path, strerror(-err));
	}
	return err;
}

int files_write(int conn, struct proto_reader *rd, const struct proto_frame *req)
{
	struct proto_file file;
	struct proto_buf out = { 0 };
	char why[PROTO_MAX_MESSAGE];
	int rc;

	if (proto_decode_file(req, &file) < 0)
		return -EPROTO;
	rc = files_receive(conn, rd, file.path, file.mode, 0, 0, why, sizeof(why));
	if (rc == -EPROTO)
		agent_log("write-file: %s; closing the connection", why);
	if (rc == -EPROTO || rc == -EAGAIN)
		return -EPROTO;
	if (rc < 0)
		proto_encode_error(&out, -rc, "%s", why);
	else
		proto_encode_empty(&out, PROTO_OK);
	rc = init_flush(&out, conn);
	proto_buf_free(&out);
	return rc;
}

static int send_error_errno(int conn, int err, const char *what, const char *path)
{
	struct proto_buf out = { 0 };
	int rc;

	proto_encode_error(&out, err, "%s %s: %s", what, path, strerror(err));
	rc = init_flush(&out, conn);
	proto_buf_free(&out);
	return rc;
}

int files_read(int conn, const struct proto_frame *req)
{
	struct proto_buf out = { 0 };
	struct proto_file_info info;
	const char *path;
	struct stat st;
	uint8_t *chunk;
	int fd, rc;

	if (proto_decode_path(req, &path) < 0)
		return -EPROTO;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return send_error_errno(conn, errno, "open", path);
	if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? EISDIR : errno;
		close(fd);
		return send_error_errno(conn, rc, "read", path);
	}
	chunk = malloc(PROTO_CHUNK);
	if (!chunk) {
		close(fd);
		return send_error_errno(conn, ENOMEM, "read", path);
	}
	info = (struct proto_file_info){ .size = (uint64_t)st.st_size, .mode = st.st_mode };
	rc = proto_encode_file_info(&out, &info);
	while (rc == 0) {
		ssize_t n = read(fd, chunk, PROTO_CHUNK);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			proto_encode_error(&out, e, "read %s: %s", path, strerror(e));
			init_flush(&out, conn);
			break;
		}
		rc = proto_encode_data(&out, PROTO_DATA, n ? 0 : PROTO_FLAG_EOF, chunk, (size_t)n);
		if (rc == 0)
			rc = init_flush(&out, conn);
		if (n == 0)
			break;
	}
	free(chunk);
	close(fd);
	proto_buf_free(&out);
	return rc;
}
