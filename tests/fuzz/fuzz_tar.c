#include "fuzz_host.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define REC_HDR 8
#define REC_END 7

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void entry_type(struct archive_entry *e, uint8_t type, const char *data)
{
	static const mode_t types[] = { AE_IFREG, AE_IFDIR, AE_IFLNK, 0, AE_IFCHR, AE_IFBLK, AE_IFIFO };

	if (type == 3) {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_hardlink(e, data);
		return;
	}
	archive_entry_set_filetype(e, type < sizeof(types) / sizeof(types[0]) ? types[type] : AE_IFREG);
	if (type == 2)
		archive_entry_set_symlink(e, data);
	if (type == 4 || type == 5)
		archive_entry_set_rdev(e, makedev(data[0] ? (unsigned char)data[0] : 1, 3));
}

/* One record into the archive; returns its length in the input, 0 at the end. */
static size_t entry_write(struct archive *a, const uint8_t *p, size_t left)
{
	size_t nlen, dlen;
	char name[1024], data[65536 + 1];
	struct archive_entry *e;

	if (left < REC_HDR || p[0] == REC_END)
		return left < REC_HDR ? 0 : REC_HDR;
	nlen = le16(p + 4) % sizeof(name);
	dlen = le16(p + 6);
	if (nlen > left - REC_HDR)
		nlen = left - REC_HDR;
	if (dlen > left - REC_HDR - nlen)
		dlen = left - REC_HDR - nlen;
	memcpy(name, p + REC_HDR, nlen);
	name[nlen] = 0;
	memcpy(data, p + REC_HDR + nlen, dlen);
	data[dlen] = 0;
	if (!(e = archive_entry_new()))
		abort();
	archive_entry_set_pathname(e, name);
	archive_entry_set_perm(e, le16(p + 2) & 07777);
	archive_entry_set_mtime(e, 1700000000, 0);
	entry_type(e, p[0], data);
	if (p[1] & 1)
		archive_entry_xattr_add_entry(e, "user.fuzz", data, dlen);
	if (p[1] & 2) {
		archive_entry_set_uid(e, 1000);
		archive_entry_set_gid(e, 1000);
	}
	if (p[1] & 4)
		archive_entry_xattr_add_entry(e, "security.capability", data, dlen);
	if (p[0] == 0 || p[0] > REC_END)
		archive_entry_set_size(e, (la_int64_t)dlen);
	if (archive_write_header(a, e) == ARCHIVE_OK && archive_entry_size(e) > 0)
		archive_write_data(a, data, dlen);
	archive_entry_free(e);
	return REC_HDR + nlen + dlen;
}

int fuzz_tar_write(const char *path, const uint8_t *data, size_t size, size_t *off)
{
	struct archive *a = archive_write_new();
	int n = 0;

	if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_open_filename(a, path) != ARCHIVE_OK) {
		archive_write_free(a);
		return -1;
	}
	while (*off < size) {
		size_t used = entry_write(a, data + *off, size - *off);
		if (!used)
			break;
		bool end = data[*off] == REC_END;
		*off += used;
		if (end)
			break;
		n++;
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		n = -1;
	archive_write_free(a);
	return n;
}
