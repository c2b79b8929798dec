/*
 * The virtio-fs FUSE server (src/devices/virtio/fs_fuse.c, fs_node.c)
 * driven with hand-built FUSE requests over a temporary directory: every
 * operation, the three symlink policies, read-only mounts, the refused
 * names, modes and devices, the escapes (symlinks, a directory swapped
 * for a symlink between LOOKUP and OPEN, hard links), the handle cap, and
 * the tables through a snapshot, with a file gone and with hostile state.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "devices/virtio/fs_internal.h"
#include "vmm/sandbox.h"
#include "base/snapshot.h"

#define ROOT FS_ROOT_ID

struct fx {
	char dir[64];
	struct fs_server *s;
	uint64_t unique;
	struct fuse_out_header oh;
	uint8_t *body; /* the reply after its header */
	size_t body_len;
	uid_t uid;     /* the caller every request names (asked before any sandbox) */
	gid_t gid;
};

static struct fx fx;

/* Removes one entry of a tree; a directory made unreadable is opened up first (never through a symlink). */
static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag == FTW_DP || flag == FTW_DNR)
		chmod(path, 0700);
	return remove(path);
}

static void server_open(const char *dir, bool ro, enum virtio_fs_symlinks policy, uint32_t max_nodes);

static void fx_setup(void)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/sm-vfs-XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	server_open(fx.dir, false, VIRTIO_FS_SYMLINKS_OPAQUE, 0);
}

static void fx_teardown(void)
{
	fs_server_free(fx.s);
	fx.s = NULL;
	nftw(fx.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- requests ---- */

/* Sends opcode on node with up to three argument parts; returns the reply's error (0 or -errno). */
static int call(uint32_t op, uint64_t node, const void *a, size_t alen, const void *b, size_t blen,
		const void *c, size_t clen)
{
	size_t len = sizeof(struct fuse_in_header) + alen + blen + clen;
	uint8_t *in = malloc(len);
	struct fuse_in_header h = { .len = (uint32_t)len, .opcode = op, .unique = ++fx.unique, .nodeid = node,
				    .uid = fx.uid, .gid = fx.gid };

	cr_assert_not_null(in);
	memcpy(in, &h, sizeof(h));
	if (alen)
		memcpy(in + sizeof(h), a, alen);
	if (blen)
		memcpy(in + sizeof(h) + alen, b, blen);
	if (clen)
		memcpy(in + sizeof(h) + alen + blen, c, clen);
	size_t n = fs_dispatch(fx.s, in, len, FS_MAX_REPLY);
	free(in);
	if (n == 0)
		return 1; /* no reply */
	cr_assert_geq(n, sizeof(fx.oh));
	memcpy(&fx.oh, fx.s->reply, sizeof(fx.oh));
	cr_assert_eq(fx.oh.len, n);
	cr_assert_eq(fx.oh.unique, h.unique);
	fx.body = fx.s->reply + sizeof(fx.oh);
	fx.body_len = n - sizeof(fx.oh);
	return fx.oh.error;
}

#define CALL0(op, node) call(op, node, NULL, 0, NULL, 0, NULL, 0)
#define CALL1(op, node, a) call(op, node, &(a), sizeof(a), NULL, 0, NULL, 0)
#define NAME(s) (s), strlen(s) + 1

static void server_open(const char *dir, bool ro, enum virtio_fs_symlinks policy, uint32_t max_nodes)
{
	struct virtio_fs_options o = { .tag = "t", .read_only = ro, .symlinks = policy, .max_nodes = max_nodes };
	int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct fuse_init_in init = { .major = 7, .minor = 38, .max_readahead = 1 << 17,
				     .flags = FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_ASYNC_READ };

	cr_assert_geq(fd, 0);
	fx.uid = getuid();
	fx.gid = getgid();
	fs_server_free(fx.s);
	fx.s = fs_server_new(fd, &o);
	cr_assert_not_null(fx.s);
	cr_assert_eq(CALL1(FUSE_INIT, 0, init), 0);
	struct fuse_init_out out;
	cr_assert_eq(fx.body_len, sizeof(out));
	memcpy(&out, fx.body, sizeof(out));
	cr_assert_eq(out.major, 7);
	cr_assert_eq(out.max_write, FS_MAX_IO);
	cr_assert_eq(out.flags, FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_ASYNC_READ);
}

static int lookup(uint64_t parent, const char *name, struct fuse_entry_out *e)
{
	int rc = call(FUSE_LOOKUP, parent, NAME(name), NULL, 0, NULL, 0);

	if (rc == 0 && e) {
		cr_assert_eq(fx.body_len, sizeof(*e));
		memcpy(e, fx.body, sizeof(*e));
	}
	return rc;
}

static uint64_t node_of(uint64_t parent, const char *name)
{
	struct fuse_entry_out e;

	cr_assert_eq(lookup(parent, name, &e), 0, "lookup %s", name);
	return e.nodeid;
}

static int create_file(uint64_t dir, const char *name, uint32_t mode, uint64_t *node, uint64_t *fh)
{
	struct fuse_create_in in = { .flags = O_RDWR | O_CREAT | O_EXCL, .mode = S_IFREG | mode };
	int rc = call(FUSE_CREATE, dir, &in, sizeof(in), NAME(name), NULL, 0);

	if (rc == 0) {
		struct fuse_entry_out e;
		struct fuse_open_out o;
		cr_assert_eq(fx.body_len, sizeof(e) + sizeof(o));
		memcpy(&e, fx.body, sizeof(e));
		memcpy(&o, fx.body + sizeof(e), sizeof(o));
		if (node)
			*node = e.nodeid;
		if (fh)
			*fh = o.fh;
	}
	return rc;
}

static int open_node(uint32_t op, uint64_t node, uint32_t flags, uint64_t *fh)
{
	struct fuse_open_in in = { .flags = flags };
	int rc = CALL1(op, node, in);

	if (rc == 0) {
		struct fuse_open_out o;
		memcpy(&o, fx.body, sizeof(o));
		*fh = o.fh;
	}
	return rc;
}

static int write_at(uint64_t node, uint64_t fh, uint64_t off, const void *data, size_t len)
{
	struct fuse_write_in in = { .fh = fh, .offset = off, .size = (uint32_t)len };

	return call(FUSE_WRITE, node, &in, sizeof(in), data, len, NULL, 0);
}

static int read_at(uint64_t node, uint64_t fh, uint64_t off, uint32_t size)
{
	struct fuse_read_in in = { .fh = fh, .offset = off, .size = size };

	return CALL1(FUSE_READ, node, in);
}

static int release(uint32_t op, uint64_t node, uint64_t fh)
{
	struct fuse_release_in in = { .fh = fh };

	return CALL1(op, node, in);
}

static int mkdir_at(uint64_t dir, const char *name, uint32_t mode)
{
	struct fuse_mkdir_in in = { .mode = mode };

	return call(FUSE_MKDIR, dir, &in, sizeof(in), NAME(name), NULL, 0);
}

static struct fuse_attr getattr(uint64_t node)
{
	struct fuse_getattr_in in = { 0 };
	struct fuse_attr_out out;

	cr_assert_eq(CALL1(FUSE_GETATTR, node, in), 0);
	memcpy(&out, fx.body, sizeof(out));
	return out.attr;
}

/* A host path in the shared directory; four in a row can be live at once. */
static char *host(const char *rel)
{
	static char path[4][256];
	static unsigned next;
	char *p = path[next++ % 4];

	snprintf(p, sizeof(path[0]), "%s/%s", fx.dir, rel);
	return p;
}

static void host_write(const char *rel, const char *text)
{
	FILE *f = fopen(host(rel), "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* ---- operations ---- */

Test(virtio_fs, files_are_created_written_read_and_truncated, .init = fx_setup, .fini = fx_teardown)
{
	uint64_t node, fh;
	char big[100000];

	cr_assert_eq(create_file(ROOT, "a.txt", 0644, &node, &fh), 0);
	memset(big, 'x', sizeof(big));
	cr_assert_eq(write_at(node, fh, 0, "hello world", 11), 0);
	struct fuse_write_out wo;
	memcpy(&wo, fx.body, sizeof(wo));
	cr_expect_eq(wo.size, 11);
	cr_assert_eq(read_at(node, fh, 6, 100), 0);
	cr_expect_eq(fx.body_len, 5);
	cr_expect_eq(memcmp(fx.body, "world", 5), 0);
	/* a sparse write far out, then a hole and data found by lseek */
	cr_assert_eq(write_at(node, fh, 5ull << 30, big, sizeof(big)), 0);
	cr_expect_eq(getattr(node).size, (5ull << 30) + sizeof(big));
	struct fuse_lseek_in ls = { .fh = fh, .offset = 4096, .whence = SEEK_DATA };
	cr_assert_eq(CALL1(FUSE_LSEEK, node, ls), 0);
	struct fuse_lseek_out lo;
	memcpy(&lo, fx.body, sizeof(lo));
	cr_expect_geq(lo.offset, 4096);
	struct fuse_setattr_in sa = { .valid = FATTR_SIZE | FATTR_FH, .fh = fh, .size = 5 };
	cr_assert_eq(CALL1(FUSE_SETATTR, node, sa), 0);
	cr_expect_eq(getattr(node).size, 5);
	sa = (struct fuse_setattr_in){ .valid = FATTR_SIZE, .size = 3 }; /* without the handle */
	cr_assert_eq(CALL1(FUSE_SETATTR, node, sa), 0);
	cr_expect_eq(getattr(node).size, 3);
	struct fuse_fallocate_in fa = { .fh = fh, .offset = 0, .length = 8192 };
	cr_expect_eq(CALL1(FUSE_FALLOCATE, node, fa), 0);
	struct fuse_fsync_in fs = { .fh = fh, .fsync_flags = FUSE_FSYNC_FDATASYNC };
	cr_expect_eq(CALL1(FUSE_FSYNC, node, fs), 0);
	struct fuse_flush_in fl = { .fh = fh };
	cr_expect_eq(CALL1(FUSE_FLUSH, node, fl), 0);
	cr_expect_eq(release(FUSE_RELEASE, node, fh), 0);
	cr_expect_eq(read_at(node, fh, 0, 10), -EBADF);
	/* opened again, with O_TRUNC */
	cr_assert_eq(open_node(FUSE_OPEN, node, O_RDWR | O_TRUNC, &fh), 0);
	cr_expect_eq(getattr(node).size, 0);
	cr_expect_eq(release(FUSE_RELEASE, node, fh), 0);
	cr_expect_eq(create_file(ROOT, "a.txt", 0644, NULL, NULL), -EEXIST);
}

Test(virtio_fs, metadata_operations, .init = fx_setup, .fini = fx_teardown)
{
	uint64_t node, fh;
	struct fuse_statfs_out sf;
	struct fuse_access_in acc = { .mask = R_OK | W_OK };

	cr_assert_eq(create_file(ROOT, "f", 0600, &node, &fh), 0);
	cr_expect_eq(release(FUSE_RELEASE, node, fh), 0);
	struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = 0640 };
	cr_assert_eq(CALL1(FUSE_SETATTR, node, sa), 0);
	cr_expect_eq(getattr(node).mode & 07777, 0640);
	sa = (struct fuse_setattr_in){ .valid = FATTR_MTIME | FATTR_ATIME, .mtime = 1000000, .atime = 2000000 };
	cr_assert_eq(CALL1(FUSE_SETATTR, node, sa), 0);
	cr_expect_eq(getattr(node).mtime, 1000000);
	cr_expect_eq(getattr(node).atime, 2000000);
	sa = (struct fuse_setattr_in){ .valid = FATTR_UID | FATTR_GID, .uid = fx.uid, .gid = fx.gid };
	cr_expect_eq(CALL1(FUSE_SETATTR, node, sa), 0);
	cr_assert_eq(CALL0(FUSE_STATFS, ROOT), 0);
	memcpy(&sf, fx.body, sizeof(sf));
	cr_expect_gt(sf.st.blocks, 0);
	cr_expect_eq(sf.st.namelen, 255);
	cr_expect_eq(CALL1(FUSE_ACCESS, node, acc), 0);
	/* a fifo, opened for metadata without blocking */
	struct fuse_mknod_in mk = { .mode = S_IFIFO | 0600 };
	cr_assert_eq(call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("pipe"), NULL, 0), 0);
	struct fuse_entry_out e;
	memcpy(&e, fx.body, sizeof(e));
	sa = (struct fuse_setattr_in){ .valid = FATTR_MODE, .mode = 0644 };
	cr_expect_eq(CALL1(FUSE_SETATTR, e.nodeid, sa), 0);
	cr_expect_eq(CALL0(12345, ROOT), -ENOSYS);
}

Test(virtio_fs, directories_rename_link_and_unlink, .init = fx_setup, .fini = fx_teardown)
{
	uint64_t node, fh;
	struct stat st;

	cr_assert_eq(mkdir_at(ROOT, "d", 0755), 0);
	uint64_t d = node_of(ROOT, "d");
	cr_assert_eq(create_file(d, "x", 0644, &node, &fh), 0);
	cr_assert_eq(write_at(node, fh, 0, "data", 4), 0);
	cr_expect_eq(release(FUSE_RELEASE, node, fh), 0);
	struct fuse_rename_in rn = { .newdir = ROOT };
	cr_assert_eq(call(FUSE_RENAME, d, &rn, sizeof(rn), NAME("x"), NAME("y")), 0);
	cr_expect_eq(stat(host("y"), &st), 0);
	/* the node follows the rename: it opens at its new name */
	cr_assert_eq(open_node(FUSE_OPEN, node, O_RDONLY, &fh), 0);
	cr_assert_eq(read_at(node, fh, 0, 10), 0);
	cr_expect_eq(fx.body_len, 4);
	cr_expect_eq(release(FUSE_RELEASE, node, fh), 0);
	/* RENAME2: no-replace refuses, exchange swaps */
	host_write("z", "zz");
	struct fuse_rename2_in r2 = { .newdir = ROOT, .flags = RENAME_NOREPLACE };
	cr_expect_eq(call(FUSE_RENAME2, ROOT, &r2, sizeof(r2), NAME("y"), NAME("z")), -EEXIST);
	r2.flags = RENAME_EXCHANGE;
	cr_expect_eq(call(FUSE_RENAME2, ROOT, &r2, sizeof(r2), NAME("y"), NAME("z")), 0);
	cr_expect_eq(stat(host("z"), &st), 0);
	cr_expect_eq(st.st_size, 4);
	r2.flags = RENAME_WHITEOUT;
	cr_expect_eq(call(FUSE_RENAME2, ROOT, &r2, sizeof(r2), NAME("y"), NAME("z")), -EINVAL);
	/* a hard link inside the root */
	struct fuse_link_in ln = { .oldnodeid = node };
	cr_assert_eq(call(FUSE_LINK, d, &ln, sizeof(ln), NAME("hard"), NULL, 0), 0);
	cr_expect_eq(stat(host("d/hard"), &st), 0);
	cr_expect_eq(st.st_nlink, 2);
	ln.oldnodeid = d;
	cr_expect_eq(call(FUSE_LINK, ROOT, &ln, sizeof(ln), NAME("dirlink"), NULL, 0), -EPERM);
	cr_expect_eq(call(FUSE_RMDIR, ROOT, NAME("d"), NULL, 0, NULL, 0), -ENOTEMPTY);
	cr_expect_eq(call(FUSE_UNLINK, d, NAME("hard"), NULL, 0, NULL, 0), 0);
	cr_expect_eq(call(FUSE_RMDIR, ROOT, NAME("d"), NULL, 0, NULL, 0), 0);
	cr_expect_eq(stat(host("d"), &st), -1);
	cr_expect_eq(lookup(ROOT, "d", NULL), -ENOENT);
}

/* Reads a whole directory with small READDIR(PLUS) requests; returns the names seen. */
static unsigned read_dir(uint64_t dir, bool plus, unsigned *with_node)
{
	uint64_t fh, off = 0;
	unsigned names = 0;

	*with_node = 0;
	cr_assert_eq(open_node(FUSE_OPENDIR, dir, O_RDONLY, &fh), 0);
	for (;;) {
		struct fuse_read_in in = { .fh = fh, .offset = off, .size = 1024 };
		cr_assert_eq(CALL1(plus ? FUSE_READDIRPLUS : FUSE_READDIR, dir, in), 0);
		if (fx.body_len == 0)
			break;
		for (size_t at = 0; at < fx.body_len;) {
			struct fuse_entry_out e = { 0 };
			struct fuse_dirent d;
			if (plus) {
				memcpy(&e, fx.body + at, sizeof(e));
				at += sizeof(e);
			}
			memcpy(&d, fx.body + at, sizeof(d));
			cr_assert_leq(at + FUSE_DIRENT_SIZE(&d), fx.body_len);
			at += FUSE_DIRENT_SIZE(&d);
			off = d.off;
			names++;
			if (e.nodeid) {
				(*with_node)++;
				fs_node_forget(fx.s, e.nodeid, 1);
			}
		}
	}
	cr_expect_eq(release(FUSE_RELEASEDIR, dir, fh), 0);
	return names;
}

Test(virtio_fs, readdir_of_many_entries_in_small_pieces, .init = fx_setup, .fini = fx_teardown)
{
	char name[32];
	unsigned with_node;

	for (int i = 0; i < 1500; i++) {
		snprintf(name, sizeof(name), "file-%04d-with-a-longer-name", i);
		host_write(name, "");
	}
	cr_expect_eq(read_dir(ROOT, false, &with_node), 1502); /* and "." and ".." */
	cr_expect_eq(with_node, 0);
	cr_expect_eq(read_dir(ROOT, true, &with_node), 1502);
	cr_expect_eq(with_node, 1500);
	cr_expect_eq(fx.s->nodes_used, 1, "READDIRPLUS references were forgotten");
	/* a buffer too small for one entry */
	uint64_t fh = 0;
	cr_assert_eq(open_node(FUSE_OPENDIR, ROOT, O_RDONLY, &fh), 0);
	struct fuse_read_in in = { .fh = fh, .size = 8 };
	cr_expect_eq(CALL1(FUSE_READDIR, ROOT, in), -EINVAL);
	cr_expect_eq(open_node(FUSE_OPEN, ROOT, O_RDONLY, &fh), -EISDIR);
}

Test(virtio_fs, forget_frees_nodes, .init = fx_setup, .fini = fx_teardown)
{
	host_write("f", "");
	mkdir(host("d"), 0755);
	host_write("d/g", "");
	uint64_t f = node_of(ROOT, "f");
	cr_expect_eq(node_of(ROOT, "f"), f, "one node per host object");
	uint64_t d = node_of(ROOT, "d");
	uint64_t g = node_of(d, "g");
	cr_expect_eq(fx.s->nodes_used, 4);
	struct fuse_forget_in fg = { .nlookup = 2 };
	cr_expect_eq(CALL1(FUSE_FORGET, f, fg), 1, "FORGET takes no reply");
	fg.nlookup = 1;
	cr_expect_eq(CALL1(FUSE_FORGET, d, fg), 1);
	cr_expect_eq(fx.s->nodes_used, 3, "d is held by its child");
	struct { struct fuse_batch_forget_in h; struct fuse_forget_one one[2]; } bf = {
		{ .count = 2 }, { { g, 1 }, { 999999, 5 } } };
	cr_expect_eq(CALL1(FUSE_BATCH_FORGET, ROOT, bf), 1);
	cr_expect_eq(fx.s->nodes_used, 1);
	/* as the hiprio queue carries it: no room for a reply at all */
	f = node_of(ROOT, "f");
	struct { struct fuse_in_header h; struct fuse_forget_in in; } req = {
		{ .len = sizeof(req), .opcode = FUSE_FORGET, .unique = 99, .nodeid = f }, { 1 } };
	cr_expect_eq(fs_dispatch(fx.s, (const uint8_t *)&req, sizeof(req), 0), 0);
	cr_expect_eq(fx.s->nodes_used, 1);
	cr_expect_eq(getattr(ROOT).mode & S_IFMT, S_IFDIR);
	struct fuse_getattr_in ga = { 0 };
	cr_expect_eq(CALL1(FUSE_GETATTR, g, ga), -ESTALE);
}

/*
 * A lookup that grows the node table: the parent must be found again
 * after it moved (ASan saw the old table used once a directory held more
 * nodes than the first allocation).
 */
Test(virtio_fs, lookups_past_the_first_table_keep_their_parents, .init = fx_setup, .fini = fx_teardown)
{
	char name[32];
	uint64_t d, n;

	mkdir(host("d"), 0755);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "d/f%03d", i);
		host_write(name, "");
	}
	d = node_of(ROOT, "d");
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		n = node_of(d, name);
		cr_assert_eq(fs_node_get(fx.s, n)->parent, d, "f%03d's parent", i);
	}
	cr_expect_eq(fx.s->nodes_used, 302);
	cr_expect_eq(fs_node_get(fx.s, d)->refs, 300, "d is held by each child");
}

/* ---- what is refused ---- */

Test(virtio_fs, bad_names_are_refused, .init = fx_setup, .fini = fx_teardown)
{
	char longname[NAME_MAX + 2];

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	mkdir(host("d"), 0755);
	const char *bad[] = { "..", ".", "", "a/b", "/etc", "../etc", longname };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int want = bad[i] == longname ? -ENAMETOOLONG : -EINVAL;
		cr_expect_eq(lookup(ROOT, bad[i], NULL), want, "lookup '%s'", bad[i]);
		cr_expect_eq(mkdir_at(ROOT, bad[i], 0755), want, "mkdir '%s'", bad[i]);
		cr_expect_eq(create_file(ROOT, bad[i], 0644, NULL, NULL), want, "create '%s'", bad[i]);
	}
	/* a name without its NUL, and one with a NUL inside the declared length */
	cr_expect_eq(call(FUSE_LOOKUP, ROOT, "d", 1, NULL, 0, NULL, 0), -EINVAL);
	struct fuse_rename_in rn = { .newdir = ROOT };
	cr_expect_eq(call(FUSE_RENAME, ROOT, &rn, sizeof(rn), NAME("d"), NAME("..")), -EINVAL);
	cr_expect_eq(call(FUSE_UNLINK, ROOT, NAME(".."), NULL, 0, NULL, 0), -EINVAL);
	cr_expect_eq(call(FUSE_SYMLINK, ROOT, NAME("a/b"), NAME("x"), NULL, 0), -EINVAL);
	cr_expect_gt(fx.s->stats.escapes, 20);
	/* a header whose length disagrees with the request */
	struct fuse_in_header h = { .len = 9999, .opcode = FUSE_GETATTR, .unique = 7, .nodeid = ROOT };
	cr_expect_eq(fs_dispatch(fx.s, (const uint8_t *)&h, sizeof(h), 64), sizeof(struct fuse_out_header));
	struct fuse_out_header oh;
	memcpy(&oh, fx.s->reply, sizeof(oh));
	cr_expect_eq(oh.error, -EINVAL);
	cr_expect_eq(lookup(987654, "d", NULL), -ESTALE);
}

Test(virtio_fs, requests_before_init_fail)
{
	char dir[] = "/tmp/sm-vfs-XXXXXX";
	struct virtio_fs_options o = { .tag = "t" };

	cr_assert_not_null(mkdtemp(dir));
	fx.uid = getuid();
	fx.gid = getgid();
	fx.s = fs_server_new(open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), &o);
	cr_assert_not_null(fx.s);
	cr_expect_eq(CALL0(FUSE_STATFS, ROOT), -EIO);
	fs_server_free(fx.s);
	fx.s = NULL;
	rmdir(dir);
}

Test(virtio_fs, devices_and_setuid_bits_are_refused, .init = fx_setup, .fini = fx_teardown)
{
	struct fuse_mknod_in mk = { .mode = S_IFCHR | 0666, .rdev = makedev(1, 3) };
	struct stat st;
	uint64_t node, fh;

	cr_expect_eq(call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("null"), NULL, 0), -EPERM);
	mk.mode = S_IFBLK | 0600;
	cr_expect_eq(call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("blk"), NULL, 0), -EPERM);
	mk.mode = S_IFSOCK | 0600;
	cr_expect_eq(call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("sock"), NULL, 0), -EPERM);
	cr_expect_eq(stat(host("null"), &st), -1);
	mk = (struct fuse_mknod_in){ .mode = S_IFREG | S_ISUID | S_ISGID | 0755 };
	cr_assert_eq(call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("reg"), NULL, 0), 0);
	cr_assert_eq(stat(host("reg"), &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0755);
	cr_assert_eq(create_file(ROOT, "suid", S_ISUID | S_ISGID | 0755, &node, &fh), 0);
	cr_assert_eq(stat(host("suid"), &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0755);
	struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = S_ISUID | S_ISGID | 0700 };
	cr_assert_eq(CALL1(FUSE_SETATTR, node, sa), 0);
	cr_assert_eq(stat(host("suid"), &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0700);
	/* a directory keeps setgid (group inheritance), never setuid */
	cr_assert_eq(mkdir_at(ROOT, "sg", S_ISUID | S_ISGID | 0755), 0);
	cr_assert_eq(stat(host("sg"), &st), 0);
	cr_expect_eq(st.st_mode & S_ISUID, 0);
}

Test(virtio_fs, read_only_mounts_refuse_every_write, .init = fx_setup, .fini = fx_teardown)
{
	uint64_t fh = 0;

	host_write("f", "content");
	mkdir(host("d"), 0755);
	server_open(fx.dir, true, VIRTIO_FS_SYMLINKS_OPAQUE, 0);
	uint64_t f = node_of(ROOT, "f");
	struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = 0777 };
	struct fuse_mknod_in mk = { .mode = S_IFREG | 0644 };
	struct fuse_rename_in rn = { .newdir = ROOT };
	struct fuse_link_in ln = { .oldnodeid = f };
	struct fuse_setxattr_in sx = { .size = 1 };
	struct fuse_access_in acc = { .mask = W_OK };

	cr_expect_eq(create_file(ROOT, "new", 0644, NULL, NULL), -EROFS);
	cr_expect_eq(mkdir_at(ROOT, "new", 0755), -EROFS);
	cr_expect_eq(CALL1(FUSE_SETATTR, f, sa), -EROFS);
	cr_expect_eq(call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("n"), NULL, 0), -EROFS);
	cr_expect_eq(call(FUSE_SYMLINK, ROOT, NAME("l"), NAME("f"), NULL, 0), -EROFS);
	cr_expect_eq(call(FUSE_UNLINK, ROOT, NAME("f"), NULL, 0, NULL, 0), -EROFS);
	cr_expect_eq(call(FUSE_RMDIR, ROOT, NAME("d"), NULL, 0, NULL, 0), -EROFS);
	cr_expect_eq(call(FUSE_RENAME, ROOT, &rn, sizeof(rn), NAME("f"), NAME("g")), -EROFS);
	cr_expect_eq(call(FUSE_LINK, ROOT, &ln, sizeof(ln), NAME("h"), NULL, 0), -EROFS);
	cr_expect_eq(call(FUSE_SETXATTR, f, &sx, 8, NAME("user.a"), "v", 1), -EROFS);
	cr_expect_eq(call(FUSE_REMOVEXATTR, f, NAME("user.a"), NULL, 0, NULL, 0), -EROFS);
	cr_expect_eq(CALL1(FUSE_ACCESS, f, acc), -EROFS);
	cr_expect_eq(open_node(FUSE_OPEN, f, O_WRONLY, &fh), -EROFS);
	cr_expect_eq(open_node(FUSE_OPEN, f, O_RDONLY | O_TRUNC, &fh), -EROFS);
	cr_assert_eq(open_node(FUSE_OPEN, f, O_RDONLY, &fh), 0);
	cr_expect_eq(write_at(f, fh, 0, "x", 1), -EROFS);
	struct fuse_fallocate_in fa = { .fh = fh, .length = 10 };
	cr_expect_eq(CALL1(FUSE_FALLOCATE, f, fa), -EROFS);
	cr_assert_eq(read_at(f, fh, 0, 100), 0);
	cr_expect_eq(fx.body_len, 7);
	struct stat st;
	cr_expect_eq(stat(host("f"), &st), 0);
	cr_expect_eq(st.st_size, 7);
}

Test(virtio_fs, xattrs_outside_security_and_trusted, .init = fx_setup, .fini = fx_teardown)
{
	host_write("f", "");
	if (setxattr(host("f"), "user.probe", "1", 1, 0) < 0)
		cr_skip_test("no user xattrs on %s", fx.dir);
	uint64_t f = node_of(ROOT, "f");
	struct fuse_setxattr_in sx = { .size = 3 };
	struct fuse_getxattr_in gx = { .size = 0 };

	cr_assert_eq(call(FUSE_SETXATTR, f, &sx, 8, NAME("user.k"), "abc", 3), 0);
	cr_assert_eq(call(FUSE_GETXATTR, f, &gx, sizeof(gx), NAME("user.k"), NULL, 0), 0);
	struct fuse_getxattr_out go;
	memcpy(&go, fx.body, sizeof(go));
	cr_expect_eq(go.size, 3);
	/* the probe as the guest sends it: room for the size only */
	struct { struct fuse_in_header h; struct fuse_getxattr_in in; char name[7]; } probe = {
		{ .len = sizeof(probe), .opcode = FUSE_GETXATTR, .unique = 5, .nodeid = f }, { 0 }, "user.k" };
	cr_expect_eq(fs_dispatch(fx.s, (const uint8_t *)&probe, sizeof(probe), 16 + sizeof(go)), 16 + sizeof(go));
	memcpy(&go, fx.s->reply + 16, sizeof(go));
	cr_expect_eq(go.size, 3);
	gx.size = 64;
	cr_assert_eq(call(FUSE_GETXATTR, f, &gx, sizeof(gx), NAME("user.k"), NULL, 0), 0);
	cr_expect_eq(fx.body_len, 3);
	cr_expect_eq(memcmp(fx.body, "abc", 3), 0);
	gx.size = 2;
	cr_expect_eq(call(FUSE_GETXATTR, f, &gx, sizeof(gx), NAME("user.k"), NULL, 0), -ERANGE);
	gx.size = 4096;
	cr_assert_eq(CALL1(FUSE_LISTXATTR, f, gx), 0);
	cr_expect(memmem(fx.body, fx.body_len, "user.k", 7) != NULL);
	cr_expect_eq(call(FUSE_SETXATTR, f, &sx, 8, NAME("security.capability"), "abc", 3), -EOPNOTSUPP);
	cr_expect_eq(call(FUSE_SETXATTR, f, &sx, 8, NAME("trusted.overlay"), "abc", 3), -EOPNOTSUPP);
	cr_expect_eq(call(FUSE_GETXATTR, f, &gx, sizeof(gx), NAME("security.selinux"), NULL, 0), -EOPNOTSUPP);
	cr_expect_eq(call(FUSE_REMOVEXATTR, f, NAME("trusted.x"), NULL, 0, NULL, 0), -EOPNOTSUPP);
	cr_expect_eq(call(FUSE_REMOVEXATTR, f, NAME("user.k"), NULL, 0, NULL, 0), 0);
	gx.size = 64;
	cr_expect_eq(call(FUSE_GETXATTR, f, &gx, sizeof(gx), NAME("user.k"), NULL, 0), -ENODATA);
}

/* ---- symlinks and escapes ---- */

/* The host symlinks every policy test starts from. */
static void host_links(void)
{
	mkdir(host("sub"), 0755);
	host_write("sub/x", "inside");
	cr_assert_eq(symlink("/etc", host("abs")), 0);
	cr_assert_eq(symlink("../..", host("sub/up")), 0);
	cr_assert_eq(symlink("sub/x", host("in")), 0);
	cr_assert_eq(symlink("../x", host("sub/in2")), 0);
}

static uint32_t entry_type(uint64_t parent, const char *name)
{
	struct fuse_entry_out e;

	cr_assert_eq(lookup(parent, name, &e), 0, "lookup %s", name);
	return e.attr.mode & S_IFMT;
}

Test(virtio_fs, opaque_policy, .init = fx_setup, .fini = fx_teardown)
{
	host_links();
	uint64_t sub = node_of(ROOT, "sub");
	char t[64];

	cr_expect_eq(lookup(ROOT, "abs", NULL), -EACCES);
	cr_expect_eq(lookup(sub, "up", NULL), -EACCES);
	cr_expect_eq(entry_type(ROOT, "in"), S_IFLNK);
	cr_expect_eq(entry_type(sub, "in2"), S_IFLNK);
	/* the guest plants escape -> /etc/passwd: readable as a link, never followed */
	cr_assert_eq(call(FUSE_SYMLINK, ROOT, NAME("escape"), NAME("/etc/passwd"), NULL, 0), 0);
	struct fuse_entry_out e;
	memcpy(&e, fx.body, sizeof(e));
	cr_expect_eq(e.attr.mode & S_IFMT, S_IFLNK);
	cr_assert_eq(CALL0(FUSE_READLINK, e.nodeid), 0);
	cr_expect_eq(fx.body_len, 11);
	cr_expect_eq(memcmp(fx.body, "/etc/passwd", 11), 0);
	cr_expect_eq(readlink(host("escape"), t, sizeof(t)), 11);
	cr_expect_eq(entry_type(ROOT, "escape"), S_IFLNK);
	uint64_t fh = 0;
	cr_expect_eq(open_node(FUSE_OPEN, e.nodeid, O_RDONLY, &fh), -ELOOP);
	struct fuse_getxattr_in gx = { .size = 64 };
	cr_expect_eq(call(FUSE_GETXATTR, e.nodeid, &gx, sizeof(gx), NAME("user.k"), NULL, 0), -EOPNOTSUPP);
	/* a hard link to the planted symlink links the symlink, not /etc/passwd */
	struct fuse_link_in ln = { .oldnodeid = e.nodeid };
	cr_assert_eq(call(FUSE_LINK, ROOT, &ln, sizeof(ln), NAME("escape2"), NULL, 0), 0);
	struct stat st;
	cr_assert_eq(lstat(host("escape2"), &st), 0);
	cr_expect(S_ISLNK(st.st_mode));
	cr_expect_eq(call(FUSE_UNLINK, ROOT, NAME("escape2"), NULL, 0, NULL, 0), 0);
}

Test(virtio_fs, deny_policy, .init = fx_setup, .fini = fx_teardown)
{
	host_links();
	server_open(fx.dir, false, VIRTIO_FS_SYMLINKS_DENY, 0);
	cr_expect_eq(call(FUSE_SYMLINK, ROOT, NAME("l"), NAME("sub/x"), NULL, 0), -EPERM);
	cr_expect_eq(lookup(ROOT, "abs", NULL), -EACCES);
	cr_expect_eq(lookup(node_of(ROOT, "sub"), "up", NULL), -EACCES);
	cr_expect_eq(entry_type(ROOT, "in"), S_IFLNK);
}

Test(virtio_fs, follow_policy, .init = fx_setup, .fini = fx_teardown)
{
	host_links();
	server_open(fx.dir, false, VIRTIO_FS_SYMLINKS_FOLLOW, 0);
	struct fuse_entry_out e;
	struct stat st;
	uint64_t fh = 0;

	cr_assert_eq(lookup(ROOT, "abs", &e), 0);
	cr_assert_eq(stat("/etc", &st), 0);
	cr_expect_eq(e.attr.ino, st.st_ino, "followed to the host's /etc");
	cr_expect_eq(e.attr.mode & S_IFMT, S_IFDIR);
	cr_assert_eq(open_node(FUSE_OPENDIR, e.nodeid, O_RDONLY, &fh), 0);
	cr_expect_eq(release(FUSE_RELEASEDIR, e.nodeid, fh), 0);
	cr_expect_eq(entry_type(ROOT, "in"), S_IFLNK, "links inside stay links");
	cr_assert_eq(call(FUSE_SYMLINK, ROOT, NAME("l"), NAME("sub/x"), NULL, 0), 0);
	/* nothing reached outside is linked into the root */
	struct fuse_entry_out pw;
	if (lookup(e.nodeid, "hostname", &pw) == 0) {
		struct fuse_link_in ln = { .oldnodeid = pw.nodeid };
		cr_expect_eq(call(FUSE_LINK, ROOT, &ln, sizeof(ln), NAME("stolen"), NULL, 0), -EXDEV);
	}
	struct fuse_rename_in rn = { .newdir = e.nodeid };
	cr_expect_eq(call(FUSE_RENAME, ROOT, &rn, sizeof(rn), NAME("sub"), NAME("sub")), -EXDEV);
}

/*
 * The race the policies exist for: the guest looks a name up, the name is
 * swapped for a symlink to "/" (here by the host, as another guest
 * process or a second mount of the directory could), and the guest then
 * opens and looks below the node it got. Nothing it reaches is outside.
 */
Test(virtio_fs, a_directory_swapped_for_a_symlink_reaches_nothing_outside, .init = fx_setup, .fini = fx_teardown)
{
	uint64_t fh = 0;
	unsigned with_node;

	mkdir(host("d"), 0755);
	host_write("d/own", "mine");
	host_write("f", "file");
	uint64_t d = node_of(ROOT, "d");
	uint64_t f = node_of(ROOT, "f");
	cr_assert_eq(rename(host("d"), host("d.old")), 0);
	cr_assert_eq(symlink("/", host("d")), 0);
	cr_assert_eq(unlink(host("f")), 0);
	cr_assert_eq(symlink("/etc/passwd", host("f")), 0);
	/* below d: the old directory's entries, never the host's / */
	cr_expect_eq(lookup(d, "etc", NULL), -ENOENT);
	cr_expect_eq(lookup(d, "own", NULL), 0);
	cr_expect_eq(read_dir(d, false, &with_node), 3);
	/* f opens by name with no symlink allowed: refused, not /etc/passwd */
	int rc = open_node(FUSE_OPEN, f, O_RDONLY, &fh);
	cr_expect(rc == -ELOOP || rc == -ESTALE, "open of a swapped file: %d", rc);
	cr_expect_eq(lookup(ROOT, "d", NULL), -EACCES);
	cr_expect_eq(lookup(ROOT, "f", NULL), -EACCES);
	/* a file swapped for another one inside: the inode check says so */
	host_write("g", "one");
	uint64_t g = node_of(ROOT, "g");
	cr_assert_eq(rename(host("d.old/own"), host("g")), 0);
	cr_expect_eq(open_node(FUSE_OPEN, g, O_RDONLY, &fh), -ESTALE);
}

Test(virtio_fs, open_handles_are_capped, .init = fx_setup, .fini = fx_teardown)
{
	struct rlimit rl;
	uint64_t fh = 0;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < VIRTIO_FS_MAX_HANDLES + 64)
		cr_skip_test("RLIMIT_NOFILE %llu is below the cap", (unsigned long long)rl.rlim_cur);
	host_write("f", "");
	uint64_t f = node_of(ROOT, "f");
	for (unsigned i = 0; i < VIRTIO_FS_MAX_HANDLES; i++)
		cr_assert_eq(open_node(FUSE_OPEN, f, O_RDONLY, &fh), 0, "open %u", i);
	cr_expect_eq(open_node(FUSE_OPEN, f, O_RDONLY, &fh), -EMFILE);
	cr_expect_eq(open_node(FUSE_OPENDIR, ROOT, O_RDONLY, &fh), -EMFILE);
	cr_expect_eq(create_file(ROOT, "g", 0644, NULL, NULL), -EMFILE);
	cr_expect_eq(release(FUSE_RELEASE, f, 1), 0);
	cr_expect_eq(open_node(FUSE_OPEN, f, O_RDONLY, &fh), 0);
	cr_expect_eq(fh, 1);
}

Test(virtio_fs, nodes_are_capped)
{
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/sm-vfs-XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	server_open(fx.dir, false, VIRTIO_FS_SYMLINKS_OPAQUE, 3);
	host_write("a", "");
	host_write("b", "");
	host_write("c", "");
	node_of(ROOT, "a");
	node_of(ROOT, "b");
	cr_expect_eq(lookup(ROOT, "c", NULL), -ENFILE);
	fx_teardown();
}

/* ---- snapshots ---- */

#define TAG SNAP_TAG('T', 'E', 'S', 'T')

/* A state file of one section that put fills, parsed again; the reader is in the section. */
static struct snap_reader *state_of(void (*put)(struct snap_writer *, const void *), const void *arg)
{
	struct snap_writer *w = snap_writer_new();
	struct snap_reader *r;
	struct vmm_err err;
	size_t len;

	cr_assert_not_null(w);
	snap_section_begin(w, TAG, 0, 1);
	put(w, arg);
	snap_section_end(w);
	const uint8_t *buf = snap_writer_encode(w, &len);
	cr_assert_not_null(buf);
	cr_assert_eq(snap_reader_parse(&r, "t/state", buf, len, &err), 0, "%s", err.msg);
	snap_writer_free(w);
	cr_assert_eq(snap_section_enter(r, TAG, 0), 0);
	return r;
}

static void put_server(struct snap_writer *w, const void *arg)
{
	fs_server_save(fx.s, w);
}

Test(virtio_fs, nodes_and_handles_survive_a_snapshot, .init = fx_setup, .fini = fx_teardown)
{
	uint64_t keep_fh = 0, gone_fh = 0, dir_fh = 0;

	mkdir(host("a"), 0755);
	mkdir(host("a/b"), 0755);
	host_write("a/b/keep", "kept");
	host_write("a/gone", "gone");
	uint64_t a = node_of(ROOT, "a");
	uint64_t b = node_of(a, "b");
	uint64_t keep = node_of(b, "keep");
	uint64_t gone = node_of(a, "gone");
	/* a move makes a parent with a higher ID than its child: saved parent first anyway */
	cr_assert_eq(mkdir_at(ROOT, "z", 0755), 0);
	uint64_t z = node_of(ROOT, "z");
	struct fuse_rename_in rn = { .newdir = z };
	cr_assert_eq(call(FUSE_RENAME, ROOT, &rn, sizeof(rn), NAME("a"), NAME("a")), 0);
	cr_assert_eq(open_node(FUSE_OPEN, keep, O_RDWR, &keep_fh), 0);
	cr_assert_eq(open_node(FUSE_OPEN, gone, O_RDONLY, &gone_fh), 0);
	cr_assert_eq(open_node(FUSE_OPENDIR, b, O_RDONLY, &dir_fh), 0);
	struct snap_reader *r = state_of(put_server, NULL);

	cr_assert_eq(unlink(host("z/a/gone")), 0);
	server_open(fx.dir, false, VIRTIO_FS_SYMLINKS_OPAQUE, 0);
	cr_assert_eq(fs_server_restore(fx.s, r), 0);
	cr_expect_eq(snap_section_left(r), 0);
	snap_reader_free(r);
	cr_assert_eq(read_at(keep, keep_fh, 0, 100), 0);
	cr_expect_eq(fx.body_len, 4);
	cr_expect_eq(memcmp(fx.body, "kept", 4), 0);
	cr_expect_eq(write_at(keep, keep_fh, 4, "!", 1), 0);
	cr_expect_eq(read_at(gone, gone_fh, 0, 100), -ESTALE);
	struct fuse_getattr_in ga = { 0 };
	cr_expect_eq(CALL1(FUSE_GETATTR, gone, ga), -ESTALE);
	cr_expect_eq(lookup(b, "keep", NULL), 0);
	struct fuse_read_in rd = { .fh = dir_fh, .size = 4096 };
	cr_expect_eq(CALL1(FUSE_READDIR, b, rd), 0);
	cr_expect_eq(release(FUSE_RELEASE, gone, gone_fh), 0);
	cr_expect_eq(release(FUSE_RELEASE, keep, keep_fh), 0);
	/* the stale node is dropped like any other once forgotten */
	fs_node_forget(fx.s, gone, 1);
	cr_expect_null(fs_node_get(fx.s, gone));
}

/* A saved state put by fill; its restore must fail with want in the message (NULL: any error). */
struct hostile {
	uint8_t init;
	uint32_t nnodes;
	uint32_t id, parent;
	uint8_t followed;
	const char *name;
	uint32_t nhandles, fh, hnode, flags;
	uint8_t dir;
	bool truncate;
};

static void put_hostile(struct snap_writer *w, const void *arg)
{
	const struct hostile *h = arg;

	snap_put_u8(w, h->init);
	if (h->truncate)
		return;
	snap_put_u32(w, h->nnodes);
	if (h->nnodes) {
		snap_put_u32(w, h->id);
		snap_put_u32(w, h->parent);
		snap_put_u64(w, 1);
		snap_put_u8(w, h->followed);
		snap_put_blob(w, h->name, strlen(h->name));
	}
	snap_put_u32(w, h->nhandles);
	if (h->nhandles) {
		snap_put_u32(w, h->fh);
		snap_put_u32(w, h->hnode);
		snap_put_u32(w, h->flags);
		snap_put_u8(w, h->dir);
	}
	snap_put_u32(w, 0);
}

static void expect_hostile(const struct hostile *h, const char *want)
{
	struct snap_reader *r = state_of(put_hostile, h);
	struct vmm_err err;

	cr_expect_lt(fs_server_restore(fx.s, r), 0, "restored: %s", want ? want : "(truncated)");
	if (want) {
		cr_assert_lt(snap_reader_error(r, &err), 0);
		cr_expect(strstr(err.msg, want), "'%s' not in: %s", want, err.msg);
	}
	snap_reader_free(r);
	cr_expect_eq(fx.s->nodes_used, 1, "a failed restore leaves only the root");
}

Test(virtio_fs, hostile_saved_state_is_refused, .init = fx_setup, .fini = fx_teardown)
{
	const struct hostile good = { .init = 1, .nnodes = 1, .id = 2, .parent = ROOT, .name = "x" };
	char longname[NAME_MAX + 2];
	struct hostile h;

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	host_write("x", "");
	h = good, h.id = 0;
	expect_hostile(&h, "out of range");
	h = good, h.id = ROOT;
	expect_hostile(&h, "out of range or taken");
	h = good, h.id = VIRTIO_FS_MAX_NODES + 1;
	expect_hostile(&h, "out of range");
	h = good, h.parent = 77;
	expect_hostile(&h, "parent is unknown");
	h = good, h.name = "..";
	expect_hostile(&h, "bad name");
	h = good, h.name = "a/b";
	expect_hostile(&h, "bad name");
	h = good, h.name = "";
	expect_hostile(&h, "bad name");
	h = good, h.name = longname;
	expect_hostile(&h, NULL);
	h = good, h.followed = 5;
	expect_hostile(&h, "bad name or flag");
	h = good, h.nnodes = 0xffffffff;
	expect_hostile(&h, "at most");
	h = good, h.init = 7;
	expect_hostile(&h, "state byte");
	h = good, h.truncate = true;
	expect_hostile(&h, NULL);
	/* handles: on a node nobody saved, with bad flags, bad IDs, of the wrong kind */
	const struct hostile hgood = { .init = 1, .nhandles = 1, .fh = 1, .hnode = ROOT, .flags = O_RDONLY, .dir = 1 };
	h = hgood, h.hnode = 9;
	expect_hostile(&h, "node is unknown");
	h = hgood, h.flags = O_CREAT;
	expect_hostile(&h, "bad flags");
	h = hgood, h.fh = 0;
	expect_hostile(&h, "out of range");
	h = hgood, h.fh = VIRTIO_FS_MAX_HANDLES + 1;
	expect_hostile(&h, "out of range");
	h = hgood, h.dir = 0;
	expect_hostile(&h, "another kind");
	h = hgood, h.nhandles = 100000;
	expect_hostile(&h, "at most");
	/* and the good one restores */
	struct snap_reader *r = state_of(put_hostile, &good);
	cr_expect_eq(fs_server_restore(fx.s, r), 0);
	snap_reader_free(r);
	cr_expect_eq(fx.s->nodes_used, 2);
}

/* ---- the worker's seccomp filter ---- */

/* Every kind of host call the server makes; the step that failed as the exit status. */
static int session(void)
{
	uint64_t node, fh, dfh;
	unsigned with_node;
	struct fuse_setattr_in sa = { .valid = FATTR_MODE | FATTR_MTIME | FATTR_SIZE, .mode = 0600, .size = 2 };
	struct fuse_setxattr_in sx = { .size = 1 };
	struct fuse_getxattr_in gx = { .size = 4096 };
	struct fuse_link_in ln;
	struct fuse_rename2_in r2 = { .newdir = ROOT, .flags = RENAME_NOREPLACE };
	struct fuse_mknod_in mk = { .mode = S_IFIFO | 0600 };
	struct fuse_access_in acc = { .mask = R_OK };
	struct fuse_fsync_in fs = { .fsync_flags = FUSE_FSYNC_FDATASYNC };
	struct fuse_fallocate_in fa = { .length = 4096 };
	struct fuse_lseek_in ls = { .whence = SEEK_DATA };

	if (mkdir_at(ROOT, "d", 0755) || create_file(node_of(ROOT, "d"), "f", 0644, &node, &fh))
		return 10;
	fs.fh = fa.fh = ls.fh = fh;
	if (write_at(node, fh, 0, "abc", 3) || read_at(node, fh, 0, 3) || CALL1(FUSE_FSYNC, node, fs) ||
	    CALL1(FUSE_FALLOCATE, node, fa) || CALL1(FUSE_LSEEK, node, ls))
		return 11;
	if (CALL1(FUSE_SETATTR, node, sa) || CALL1(FUSE_ACCESS, node, acc) || CALL0(FUSE_STATFS, node))
		return 12;
	(void)call(FUSE_SETXATTR, node, &sx, 8, NAME("user.k"), "v", 1); /* xattr support is the fs's */
	(void)CALL1(FUSE_LISTXATTR, node, gx);
	if (call(FUSE_SYMLINK, ROOT, NAME("l"), NAME("d/f"), NULL, 0) || CALL0(FUSE_READLINK, node_of(ROOT, "l")))
		return 13;
	ln.oldnodeid = node;
	if (call(FUSE_LINK, ROOT, &ln, sizeof(ln), NAME("h"), NULL, 0) ||
	    call(FUSE_RENAME2, ROOT, &r2, sizeof(r2), NAME("h"), NAME("h2")) ||
	    call(FUSE_MKNOD, ROOT, &mk, sizeof(mk), NAME("p"), NULL, 0))
		return 14;
	if (read_dir(ROOT, true, &with_node) != 6 || open_node(FUSE_OPENDIR, ROOT, O_RDONLY, &dfh))
		return 15;
	if (release(FUSE_RELEASE, node, fh) || call(FUSE_UNLINK, ROOT, NAME("h2"), NULL, 0, NULL, 0) ||
	    call(FUSE_UNLINK, node_of(ROOT, "d"), NAME("f"), NULL, 0, NULL, 0) ||
	    call(FUSE_RMDIR, ROOT, NAME("d"), NULL, 0, NULL, 0))
		return 16;
	fs_server_clear(fx.s);
	return 0;
}

/* Runs session() in a child under the worker's filter; its wait status, its stderr in err. */
static int sandboxed_session(bool mounts, char *err, size_t errlen)
{
	int pipefd[2];

	cr_assert_eq(pipe(pipefd), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sandbox_options o = { .mode = SANDBOX_ENFORCE, .mounts = mounts };
		struct vmm_err e;
		dup2(pipefd[1], STDERR_FILENO);
		if (sandbox_apply(&o, &e) < 0)
			_exit(99);
		_exit(session());
	}
	close(pipefd[1]);
	ssize_t n = read(pipefd[0], err, errlen - 1);
	err[n > 0 ? n : 0] = 0;
	close(pipefd[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return status;
}

Test(virtio_fs, every_operation_runs_under_the_worker_sandbox, .init = fx_setup, .fini = fx_teardown)
{
	char err[4096];
	int st = sandboxed_session(true, err, sizeof(err));

	cr_assert(WIFEXITED(st), "killed by signal %d: %s", WTERMSIG(st), err);
	cr_expect_eq(WEXITSTATUS(st), 0, "step %d failed: %s", WEXITSTATUS(st), err);
	/* and without mounts the same calls are not allowed */
	nftw(fx.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	mkdir(fx.dir, 0700);
	server_open(fx.dir, false, VIRTIO_FS_SYMLINKS_OPAQUE, 0);
	st = sandboxed_session(false, err, sizeof(err));
	cr_assert(WIFEXITED(st));
	cr_expect_eq(WEXITSTATUS(st), SANDBOX_EXIT_STATUS, "%s", err);
}
