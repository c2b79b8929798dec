#include "lib/guestcfg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

/* One newc entry: header, name, padding, data, padding (the kernel's 4-byte alignment). */
static void cpio_entry(struct proto_buf *b, uint32_t ino, uint32_t mode, uint32_t nlink, const char *name,
		       const void *data, size_t len)
{
	static const uint8_t zeros[4];
	char hdr[111];
	size_t namesize = strlen(name) + 1;

	snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino, mode, 0u, 0u,
		 nlink, 0u, (unsigned)len, 0u, 0u, 0u, 0u, (unsigned)namesize, 0u);
	proto_put_bytes(b, hdr, 110);
	proto_put_bytes(b, name, namesize);
	proto_put_bytes(b, zeros, (4 - (110 + namesize) % 4) % 4);
	proto_put_bytes(b, data, len);
	proto_put_bytes(b, zeros, (4 - len % 4) % 4);
}

int guestcfg_append(int fd, const struct proto_config *cfg, sm_error **err)
{
	static const uint8_t zeros[4];
	struct proto_buf frame = { 0 }, arc = { 0 };
	off_t end = lseek(fd, 0, SEEK_END);
	int rc;

	if (end < 0) {
		sm_error_set(err, SM_E_IO, errno, "guest config: seek");
		return -1;
	}
	rc = proto_encode_config(&frame, cfg);
	if (rc < 0) {
		sm_error_set(err, rc == -E2BIG ? SM_E_INVALID : SM_E_NOMEM, -rc,
			     "guest config: encoding (env and argv together must fit in %u bytes)", PROTO_MAX_PAYLOAD);
		return -1;
	}
	/* The next archive must start 4-aligned; the kernel skips the zeros. */
	proto_put_bytes(&arc, zeros, (4 - (size_t)end % 4) % 4);
	cpio_entry(&arc, 0x5d000001u, 040755, 2, "sm", NULL, 0);
	cpio_entry(&arc, 0x5d000002u, 0100600, 1, INIT_CONFIG_NAME, frame.data, frame.len);
	cpio_entry(&arc, 0, 0, 1, "TRAILER!!!", NULL, 0);
	rc = arc.failed ? -ENOMEM : proto_write_all(fd, arc.data, arc.len);
	proto_buf_free(&frame);
	proto_buf_free(&arc);
	if (rc < 0) {
		sm_error_set(err, SM_E_IO, -rc, "guest config: writing the initramfs");
		return -1;
	}
	return 0;
}

int guestcfg_write_initrd(const char *base, const struct proto_config *cfg, const char *out_path, sm_error **err)
{
	char buf[65536];
	int in = open(base, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
	ssize_t n;

	if (in < 0) {
		sm_error_set(err, errno == ENOENT ? SM_E_NOT_FOUND : SM_E_IO, errno, "open initramfs %s", base);
		return -1;
	}
	out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		sm_error_set(err, SM_E_IO, errno, "create %s", out_path);
		goto done;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		int w = proto_write_all(out, buf, (size_t)n);
		if (w < 0) {
			sm_error_set(err, SM_E_IO, -w, "write %s", out_path);
			goto done;
		}
	}
	if (n < 0) {
		sm_error_set(err, SM_E_IO, errno, "read %s", base);
		goto done;
	}
	rc = guestcfg_append(out, cfg, err);
done:
	if (out >= 0 && close(out) < 0 && rc == 0) {
		sm_error_set(err, SM_E_IO, errno, "close %s", out_path);
		rc = -1;
	}
	close(in);
	return rc;
}
