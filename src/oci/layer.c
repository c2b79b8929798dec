/*
 * Reading layers with libarchive. Two readers are stacked: the outer one
 * only decompresses (format "raw"), the inner one parses tar from the
 * outer's bytes. That lets us hash the exact uncompressed stream for the
 * diff_id while parsing it, in one read.
 */
#include "oci/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define XATTR_VALUE_MAX 65536
#define XATTRS_PER_ENTRY_MAX 256

static la_ssize_t inner_read(struct archive *a, void *arg, const void **buf)
{
	struct layer_reader *r = arg;
	size_t size = 0;
	la_int64_t off;
	int rc;

	(void)a;
	rc = archive_read_data_block(r->outer, buf, &size, &off);
	if (rc == ARCHIVE_EOF)
		return 0;
	if (rc != ARCHIVE_OK) {
		r->outer_failed = true;
		return -1;
	}
	if (r->hashing)
		sha256_update(&r->h, *buf, size);
	r->raw_bytes += size;
	return (la_ssize_t)size;
}

/* Filters that libarchive implements itself; none that would run a
 * program on hostile input. */
static int outer_filters(struct archive *a)
{
	if (archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
	    archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
	    archive_read_support_filter_xz(a) != ARCHIVE_OK ||
	    archive_read_support_filter_bzip2(a) != ARCHIVE_OK)
		return -1;
	return 0;
}

int layer_open(struct layer_reader *r, const char *path, bool hash, struct where *w)
{
	struct archive_entry *e;

	memset(r, 0, sizeof(*r));
	r->outer = archive_read_new();
	r->inner = archive_read_new();
	if (!r->outer || !r->inner)
		return where_fail(w, "out of memory");
	if (outer_filters(r->outer) < 0)
		return where_fail(w, "libarchive lacks built-in gzip/zstd support");
	archive_read_support_format_raw(r->outer);
	archive_read_support_format_tar(r->inner);
	if (hash && sha256_init(&r->h) < 0)
		return where_fail(w, "out of memory");
	r->hashing = hash;
	if (archive_read_open_filename(r->outer, path, 1 << 17) != ARCHIVE_OK)
		return where_fail(w, "%s", archive_error_string(r->outer));
	if (archive_read_next_header(r->outer, &e) != ARCHIVE_OK)
		return where_fail(w, "empty or unreadable layer: %s",
			    archive_error_string(r->outer) ? archive_error_string(r->outer)
							   : "no data");
	if (archive_read_open2(r->inner, r, NULL, inner_read, NULL, NULL) != ARCHIVE_OK)
		return where_fail(w, "not a tar archive: %s", layer_error(r));
	return 0;
}

const char *layer_error(struct layer_reader *r)
{
	const char *s = NULL;

	if (r->outer_failed)
		s = archive_error_string(r->outer);
	if (!s)
		s = archive_error_string(r->inner);
	return s ? s : "unknown error";
}

void layer_close(struct layer_reader *r)
{
	if (r->inner)
		archive_read_free(r->inner);
	if (r->outer)
		archive_read_free(r->outer);
	if (r->h.ctx)
		sha256_free(&r->h);
	memset(r, 0, sizeof(*r));
}

int layer_finish_hash(struct layer_reader *r, char out[OCI_DIGEST_SIZE], struct where *w)
{
	const void *buf;
	size_t size;
	la_int64_t off;
	int rc;

	/* The diff_id covers the whole stream, padding after the tar's end
	 * marker included. */
	while ((rc = archive_read_data_block(r->outer, &buf, &size, &off)) == ARCHIVE_OK) {
		sha256_update(&r->h, buf, size);
		r->raw_bytes += size;
	}
	if (rc != ARCHIVE_EOF)
		return where_fail(w, "%s", archive_error_string(r->outer));
	sha256_final(&r->h, out);
	r->hashing = false;
	return 0;
}

static bool xattr_name_ok(const char *n)
{
	static const char *const prefixes[] = { "user.", "trusted.", "security." };

	if (!strcmp(n, "system.posix_acl_access") || !strcmp(n, "system.posix_acl_default"))
		return true;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);
		if (!strncmp(n, prefixes[i], pl) && n[pl] && strlen(n) - pl <= 255)
			return true;
	}
	return false;
}

static int entry_xattrs(struct archive_entry *ae, struct tar_entry *e, struct xattr *buf,
			struct where *w)
{
	const char *name;
	const void *value;
	size_t size;

	e->xattrs = buf;
	e->nxattrs = 0;
	archive_entry_xattr_reset(ae);
	while (archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
		/* Other namespaces (macOS metadata, NFSv4 ACLs) have no
		 * meaning on Linux ext4: dropped, as docker does. */
		if (!name || !xattr_name_ok(name))
			continue;
		if (size > XATTR_VALUE_MAX)
			return where_fail(w, "xattr %s of %zu bytes is too large", name, size);
		size_t i;
		for (i = 0; i < e->nxattrs && strcmp(buf[i].name, name); i++)
			;
		if (i == e->nxattrs) {
			if (e->nxattrs == XATTRS_PER_ENTRY_MAX)
				return where_fail(w, "more than %d xattrs", XATTRS_PER_ENTRY_MAX);
			e->nxattrs++;
		}
		buf[i].name = (char *)name;
		buf[i].value = (void *)value;
		buf[i].len = size;
	}
	return ext4_xattrs_check(e->xattrs, e->nxattrs, w);
}

static int entry_type(struct archive_entry *ae, uint32_t *type, struct where *w)
{
	switch (archive_entry_filetype(ae)) {
	case AE_IFREG:
		*type = S_IFREG;
		return 0;
	case AE_IFDIR:
		*type = S_IFDIR;
		return 0;
	case AE_IFLNK:
		*type = S_IFLNK;
		return 0;
	case AE_IFCHR:
		*type = S_IFCHR;
		return 0;
	case AE_IFBLK:
		*type = S_IFBLK;
		return 0;
	case AE_IFIFO:
		*type = S_IFIFO;
		return 0;
	default:
		return where_fail(w, "unsupported entry type 0%o", archive_entry_filetype(ae));
	}
}

static int entry_owner(struct archive_entry *ae, struct tar_entry *e, struct where *w)
{
	la_int64_t uid = archive_entry_uid(ae), gid = archive_entry_gid(ae);

	if (uid < 0 || uid >= 0xffffffffLL || gid < 0 || gid >= 0xffffffffLL)
		return where_fail(w, "owner %lld:%lld is out of range", (long long)uid, (long long)gid);
	e->uid = (uint32_t)uid;
	e->gid = (uint32_t)gid;
	return 0;
}

static void entry_times(struct archive_entry *ae, struct tar_entry *e)
{
	long ns;

	e->mtime = archive_entry_mtime_is_set(ae) ? archive_entry_mtime(ae) : 0;
	ns = archive_entry_mtime_is_set(ae) ? archive_entry_mtime_nsec(ae) : 0;
	e->mtime_ns = ns >= 0 && ns < 1000000000 ? (uint32_t)ns : 0;
	e->atime = e->mtime;
	e->atime_ns = e->mtime_ns;
	e->ctime = e->mtime;
	e->ctime_ns = e->mtime_ns;
	if (archive_entry_atime_is_set(ae)) {
		e->atime = archive_entry_atime(ae);
		ns = archive_entry_atime_nsec(ae);
		e->atime_ns = ns >= 0 && ns < 1000000000 ? (uint32_t)ns : 0;
	}
	if (archive_entry_ctime_is_set(ae)) {
		e->ctime = archive_entry_ctime(ae);
		ns = archive_entry_ctime_nsec(ae);
		e->ctime_ns = ns >= 0 && ns < 1000000000 ? (uint32_t)ns : 0;
	}
}

int layer_entry(struct archive_entry *ae, struct tar_entry *e, struct entry_bufs *b,
		struct where *w)
{
	const char *path = archive_entry_pathname(ae);
	const char *hl = archive_entry_hardlink(ae);
	la_int64_t size;

	memset(e, 0, sizeof(*e));
	if (!path)
		path = archive_entry_pathname_utf8(ae);
	if (!path)
		return where_fail(w, "entry without a usable name");
	snprintf(b->display, sizeof(b->display), "%s", path);
	if (tree_path_norm(path, b->path, sizeof(b->path), w) < 0)
		return -1;
	e->path = b->path;
	if (hl) {
		if (tree_path_norm(hl, b->link, sizeof(b->link), w) < 0) {
			char why[sizeof(w->why)];
			snprintf(why, sizeof(why), "%s", w->why);
			return where_fail(w, "hardlink target '%.200s': %s", hl, why);
		}
		if (!b->link[0])
			return where_fail(w, "hardlink to the root");
		e->hardlink = b->link;
		e->type = 0;
	} else if (entry_type(ae, &e->type, w) < 0) {
		return -1;
	}
	if (e->type == S_IFLNK) {
		e->symlink = archive_entry_symlink(ae);
		if (!e->symlink)
			e->symlink = archive_entry_symlink_utf8(ae);
		if (!e->symlink || !*e->symlink)
			return where_fail(w, "symlink without a target");
		if (strlen(e->symlink) >= FS_BLOCK)
			return where_fail(w, "symlink target longer than %u bytes", FS_BLOCK - 1);
	}
	if (entry_owner(ae, e, w) < 0)
		return -1;
	entry_times(ae, e);
	e->perm = archive_entry_perm(ae) & 07777;
	size = archive_entry_size_is_set(ae) ? archive_entry_size(ae) : 0;
	if (size < 0)
		return where_fail(w, "negative size");
	e->size = (uint64_t)size;
	if (e->type == S_IFREG && e->size > LAYER_FILE_MAX)
		return where_fail(w, "size of %llu bytes is beyond what ext4 can hold",
			    (unsigned long long)e->size);
	if (e->type == S_IFCHR || e->type == S_IFBLK) {
		dev_t ma = archive_entry_rdevmajor(ae), mi = archive_entry_rdevminor(ae);
		if (ma >= 4096 || mi >= (1u << 20))
			return where_fail(w, "device number %ju:%ju is out of range", (uintmax_t)ma,
				    (uintmax_t)mi);
		e->rdev_major = (uint32_t)ma;
		e->rdev_minor = (uint32_t)mi;
	}
	return entry_xattrs(ae, e, b->xattrs, w);
}
