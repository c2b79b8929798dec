/*
 * The FUSE server behind virtio-fs (<linux/fuse.h>): parses each request
 * the guest sends, checks it, runs it against the node and handle tables
 * (fs_node.c) and writes the reply. Every length and name comes from the
 * guest: arguments are copied out of the request before use, every name
 * passes fs_name_ok(), every reply is bounded by the room the guest gave.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "devices/virtio/fs_internal.h"

/* chmod that can refuse to follow (Linux 6.6); older headers lack the number */
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

/* A handler's "the request takes no reply" (FORGET, INTERRUPT). */
#define NO_REPLY 1
/* The open flags a guest may ask for; the rest (O_CREAT, O_PATH, O_NOFOLLOW, ...) are ours. */
#define OPEN_FLAGS (O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_SYNC | O_DSYNC | O_DIRECT)
/* The INIT flags the server takes when the guest offers them. */
#define INIT_FLAGS (FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_AUTO_INVAL_DATA | \
		    FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | \
		    FUSE_CACHE_SYMLINKS)

/* What getdents64() fills in (the kernel's struct, which libc does not declare). */
struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

struct req {
	struct fs_server *s;
	struct fuse_in_header h;
	const uint8_t *arg;   /* what follows the header, not yet taken */
	size_t left;
	uint8_t *out;         /* the reply's body, after its header */
	size_t room, len;
};

/* ---- arguments and replies ---- */

static int take(struct req *r, void *dst, size_t n)
{
	if (r->left < n)
		return -EINVAL;
	memcpy(dst, r->arg, n);
	r->arg += n;
	r->left -= n;
	return 0;
}

/* A NUL-terminated string among the arguments, at most max bytes. */
static int take_str(struct req *r, const char **s, size_t *len, size_t max)
{
	const uint8_t *end = memchr(r->arg, 0, r->left < max + 1 ? r->left : max + 1);

	if (!end)
		return r->left > max ? -ENAMETOOLONG : -EINVAL;
	*s = (const char *)r->arg;
	*len = (size_t)(end - r->arg);
	r->arg = end + 1;
	r->left -= *len + 1;
	return 0;
}

/* A name for a directory entry: one component, never "." or "..". */
static int take_name(struct req *r, const char **name)
{
	size_t len;
	int rc = take_str(r, name, &len, NAME_MAX);

	if (rc == 0 && !fs_name_ok(*name, len))
		rc = -EINVAL;
	if (rc < 0)
		r->s->stats.escapes++;
	return rc;
}

static int put(struct req *r, const void *src, size_t n)
{
	if (r->room - r->len < n)
		return -ERANGE;
	memcpy(r->out + r->len, src, n);
	r->len += n;
	return 0;
}

static struct fs_node *req_node(struct req *r)
{
	return fs_node_get(r->s, r->h.nodeid);
}

/* The request's node, which must be live and a directory. */
static int req_dir(struct req *r, struct fs_node **dir)
{
	*dir = req_node(r);
	if (!*dir || (*dir)->fd < 0)
		return -ESTALE;
	return (*dir)->type == S_IFDIR ? 0 : -ENOTDIR;
}

/* A request on an entry: its fixed arguments (n bytes into in; none if n is 0), a name, its directory. */
static int take_entry(struct req *r, void *in, size_t n, const char **name, struct fs_node **dir)
{
	int rc = n ? take(r, in, n) : 0;

	if (rc == 0)
		rc = take_name(r, name);
	if (rc == 0)
		rc = req_dir(r, dir);
	return rc;
}

/*
 * A request on an open handle: its arguments (n bytes into in, the
 * handle first, as in every such FUSE struct) and the handle, which must
 * be of the kind asked for and live.
 */
static int take_handle(struct req *r, void *in, size_t n, bool dir, struct fs_handle **h)
{
	uint64_t fh;

	if (take(r, in, n) < 0)
		return -EINVAL;
	memcpy(&fh, in, sizeof(fh));
	*h = fs_handle_get(r->s, fh);
	if (!*h || (*h)->dir != dir)
		return -EBADF;
	return (*h)->fd < 0 ? -ESTALE : 0;
}

static void fill_attr(struct fuse_attr *a, const struct stat *st)
{
	*a = (struct fuse_attr){
		.ino = st->st_ino, .size = (uint64_t)st->st_size, .blocks = (uint64_t)st->st_blocks,
		.atime = (uint64_t)st->st_atim.tv_sec, .mtime = (uint64_t)st->st_mtim.tv_sec,
		.ctime = (uint64_t)st->st_ctim.tv_sec, .atimensec = (uint32_t)st->st_atim.tv_nsec,
		.mtimensec = (uint32_t)st->st_mtim.tv_nsec, .ctimensec = (uint32_t)st->st_ctim.tv_nsec,
		.mode = st->st_mode, .nlink = (uint32_t)st->st_nlink, .uid = st->st_uid, .gid = st->st_gid,
		.rdev = (uint32_t)st->st_rdev, .blksize = (uint32_t)st->st_blksize,
	};
}

static void fill_entry(struct fuse_entry_out *e, uint64_t id, const struct stat *st)
{
	*e = (struct fuse_entry_out){ .nodeid = id, .entry_valid = FS_TIMEOUT_SEC, .attr_valid = FS_TIMEOUT_SEC };
	fill_attr(&e->attr, st);
}

static int node_stat(struct fs_node *n, struct stat *st)
{
	if (n->fd < 0)
		return -ESTALE;
	return fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* LOOKUP's reply for name in dir: the entry, its node's reference taken. */
static int reply_entry(struct req *r, uint64_t dir, const char *name)
{
	struct fuse_entry_out e;
	struct stat st;
	uint64_t id;
	int rc = fs_node_lookup(r->s, dir, name, &id, &st);

	if (rc < 0)
		return rc;
	fill_entry(&e, id, &st);
	if (put(r, &e, sizeof(e)) < 0) {
		fs_node_forget(r->s, id, 1);
		return -ERANGE;
	}
	return 0;
}

/*
 * A root worker makes what the guest creates belong to the guest's caller
 * (its uid and gid map 1:1); any other worker leaves it its own, as the
 * host kernel made it. docs/mounts.md.
 */
static void own(struct req *r, int dirfd, const char *name)
{
	if (r->s->as_root && fchownat(dirfd, name, r->h.uid, r->h.gid, AT_SYMLINK_NOFOLLOW) < 0)
		r->s->stats.errors++;
}

/* The guest's mode for something it creates: permission bits, no setuid, setgid only on directories. */
static mode_t created_mode(uint32_t mode, bool dir)
{
	return (mode_t)mode & (dir ? (07777 & ~S_ISUID) : (07777 & ~(S_ISUID | S_ISGID)));
}

/* ---- requests ---- */

static int op_init(struct req *r)
{
	struct fuse_init_in in = { 0 };
	size_t n = r->left < sizeof(in) ? r->left : sizeof(in);

	if (n < 16 || take(r, &in, n) < 0)
		return -EINVAL;
	if (in.major < FUSE_KERNEL_VERSION)
		return -EPROTO;
	struct fuse_init_out out = {
		.major = FUSE_KERNEL_VERSION,
		.minor = in.minor < FUSE_KERNEL_MINOR_VERSION ? in.minor : FUSE_KERNEL_MINOR_VERSION,
		.max_readahead = in.max_readahead < FS_MAX_IO ? in.max_readahead : FS_MAX_IO,
		.flags = in.flags & INIT_FLAGS,
		.max_background = 64,
		.congestion_threshold = 48,
		.max_write = FS_MAX_IO,
		.time_gran = 1,
		.max_pages = FS_MAX_PAGES,
	};
	r->s->initialized = true;
	return put(r, &out, sizeof(out));
}

static int op_lookup(struct req *r)
{
	const char *name;
	int rc = take_name(r, &name);

	if (rc < 0)
		return rc;
	r->s->stats.lookups++;
	return reply_entry(r, r->h.nodeid, name);
}

static int op_forget(struct req *r)
{
	struct fuse_forget_in in;

	if (take(r, &in, sizeof(in)) == 0) {
		fs_node_forget(r->s, r->h.nodeid, in.nlookup);
		r->s->stats.forgets++;
	}
	return NO_REPLY;
}

static int op_batch_forget(struct req *r)
{
	struct fuse_batch_forget_in in;
	struct fuse_forget_one one;

	if (take(r, &in, sizeof(in)) < 0)
		return NO_REPLY;
	for (uint32_t i = 0; i < in.count && take(r, &one, sizeof(one)) == 0; i++) {
		fs_node_forget(r->s, one.nodeid, one.nlookup);
		r->s->stats.forgets++;
	}
	return NO_REPLY;
}

static int reply_attr(struct req *r, const struct stat *st)
{
	struct fuse_attr_out out = { .attr_valid = FS_TIMEOUT_SEC };

	fill_attr(&out.attr, st);
	return put(r, &out, sizeof(out));
}

static int op_getattr(struct req *r)
{
	struct fuse_getattr_in in;
	struct fs_node *n = req_node(r);
	struct fs_handle *h;
	struct stat st;
	int rc;

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	if (!n)
		return -ESTALE;
	h = (in.getattr_flags & FUSE_GETATTR_FH) ? fs_handle_get(r->s, in.fh) : NULL;
	if (h && h->fd >= 0)
		rc = fstat(h->fd, &st) < 0 ? -errno : 0;
	else
		rc = node_stat(n, &st);
	return rc < 0 ? rc : reply_attr(r, &st);
}

/* An fd for data or metadata calls on node n: the guest's handle if it gave one, else opened here. */
static int io_fd(struct req *r, struct fs_node *n, uint64_t fh, bool use_fh, int flags, bool *close_it)
{
	struct fs_handle *h = use_fh ? fs_handle_get(r->s, fh) : NULL;

	*close_it = false;
	if (h && h->fd >= 0 && h->node == r->h.nodeid)
		return h->fd;
	if (n->type != S_IFREG && n->type != S_IFDIR)
		flags |= O_NONBLOCK; /* a fifo must not block the event loop */
	int fd = fs_node_open(r->s, n, flags);
	if (fd == -EACCES && (flags & O_ACCMODE) == O_RDONLY)
		fd = fs_node_open(r->s, n, (flags & ~O_ACCMODE) | O_WRONLY);
	*close_it = fd >= 0;
	return fd;
}

/* chmod without following: fchmodat2 on the O_PATH fd, else fchmod on a fresh open. */
static int set_mode(struct req *r, struct fs_node *n, const struct fuse_setattr_in *in)
{
	mode_t mode = created_mode(in->mode, n->type == S_IFDIR);
	bool close_it;

	if (n->type == S_IFLNK)
		return -EOPNOTSUPP;
	if (syscall(SYS_fchmodat2, n->fd, "", mode, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOSYS && errno != EINVAL)
		return -errno;
	int fd = io_fd(r, n, in->fh, in->valid & FATTR_FH, O_RDONLY, &close_it);
	if (fd < 0)
		return fd;
	int rc = fchmod(fd, mode) < 0 ? -errno : 0;
	if (close_it)
		close(fd);
	return rc;
}

static int set_size(struct req *r, struct fs_node *n, const struct fuse_setattr_in *in)
{
	bool close_it;

	if (n->type != S_IFREG)
		return n->type == S_IFDIR ? -EISDIR : -EINVAL;
	int fd = io_fd(r, n, in->fh, in->valid & FATTR_FH, O_WRONLY, &close_it);
	if (fd < 0)
		return fd;
	int rc = ftruncate(fd, (off_t)in->size) < 0 ? -errno : 0;
	if (close_it)
		close(fd);
	return rc;
}

static struct timespec set_time(uint32_t valid, uint32_t set, uint32_t now, uint64_t sec, uint32_t nsec)
{
	if (valid & now)
		return (struct timespec){ .tv_nsec = UTIME_NOW };
	if (!(valid & set))
		return (struct timespec){ .tv_nsec = UTIME_OMIT };
	return (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = nsec < 1000000000u ? nsec : 0 };
}

static int set_times(struct fs_node *n, const struct fuse_setattr_in *in)
{
	struct timespec ts[2] = {
		set_time(in->valid, FATTR_ATIME, FATTR_ATIME_NOW, in->atime, in->atimensec),
		set_time(in->valid, FATTR_MTIME, FATTR_MTIME_NOW, in->mtime, in->mtimensec),
	};

	return utimensat(n->fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int op_setattr(struct req *r)
{
	struct fuse_setattr_in in;
	struct fs_node *n = req_node(r);
	struct stat st;
	int rc = 0;

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	if (!n || n->fd < 0)
		return -ESTALE;
	if (in.valid & FATTR_MODE)
		rc = set_mode(r, n, &in);
	if (rc == 0 && (in.valid & (FATTR_UID | FATTR_GID)))
		rc = fchownat(n->fd, "", in.valid & FATTR_UID ? in.uid : (uid_t)-1,
			      in.valid & FATTR_GID ? in.gid : (gid_t)-1,
			      AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (rc == 0 && (in.valid & FATTR_SIZE))
		rc = set_size(r, n, &in);
	if (rc == 0 && (in.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)))
		rc = set_times(n, &in);
	if (rc == 0)
		rc = node_stat(n, &st);
	return rc < 0 ? rc : reply_attr(r, &st);
}

static int op_readlink(struct req *r)
{
	struct fs_node *n = req_node(r);
	char t[PATH_MAX];

	if (!n || n->fd < 0)
		return -ESTALE;
	if (n->type != S_IFLNK)
		return -EINVAL;
	ssize_t len = readlinkat(n->fd, "", t, sizeof(t));
	if (len < 0)
		return -errno;
	return put(r, t, (size_t)len);
}

static int op_symlink(struct req *r)
{
	struct fs_node *dir;
	const char *name, *target;
	size_t tlen;
	struct stat st;
	int rc = take_name(r, &name);

	if (rc == 0)
		rc = take_str(r, &target, &tlen, PATH_MAX - 1);
	if (rc == 0)
		rc = req_dir(r, &dir);
	if (rc < 0)
		return rc;
	if (r->s->opt.symlinks == VIRTIO_FS_SYMLINKS_DENY || tlen == 0)
		return tlen ? -EPERM : -ENOENT;
	if (symlinkat(target, dir->fd, name) < 0)
		return -errno;
	own(r, dir->fd, name);
	/* a target out of the root is remembered, so LOOKUP shows it (policy opaque) */
	if (fstatat(dir->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (rc = fs_guest_link_add(r->s, st.st_dev, st.st_ino)) < 0) {
		unlinkat(dir->fd, name, 0);
		return rc;
	}
	return reply_entry(r, r->h.nodeid, name);
}

static int op_mknod(struct req *r)
{
	struct fuse_mknod_in in;
	struct fs_node *dir;
	const char *name;
	int rc = take_entry(r, &in, sizeof(in), &name, &dir);

	if (rc < 0)
		return rc;
	/* regular files and fifos only: no devices, no sockets bound to the host */
	if (!S_ISREG(in.mode) && !S_ISFIFO(in.mode)) {
		r->s->stats.escapes++;
		return -EPERM;
	}
	if (mknodat(dir->fd, name, (in.mode & S_IFMT) | created_mode(in.mode, false), 0) < 0)
		return -errno;
	own(r, dir->fd, name);
	return reply_entry(r, r->h.nodeid, name);
}

static int op_mkdir(struct req *r)
{
	struct fuse_mkdir_in in;
	struct fs_node *dir;
	const char *name;
	int rc = take_entry(r, &in, sizeof(in), &name, &dir);

	if (rc < 0)
		return rc;
	if (mkdirat(dir->fd, name, created_mode(in.mode, true)) < 0)
		return -errno;
	own(r, dir->fd, name);
	return reply_entry(r, r->h.nodeid, name);
}

static int remove_entry(struct req *r, int flags)
{
	struct fs_node *dir;
	const char *name;
	struct stat st;
	int rc = take_entry(r, NULL, 0, &name, &dir);

	if (rc < 0)
		return rc;
	bool link = fstatat(dir->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
	if (unlinkat(dir->fd, name, flags) < 0)
		return -errno;
	if (link)
		fs_guest_link_drop(r->s, st.st_dev, st.st_ino);
	return 0;
}

static int op_unlink(struct req *r)
{
	return remove_entry(r, 0);
}

static int op_rmdir(struct req *r)
{
	return remove_entry(r, AT_REMOVEDIR);
}

static int do_rename(struct req *r, uint64_t newdir, uint32_t flags)
{
	struct fs_node *dir, *to = fs_node_get(r->s, newdir);
	const char *name, *newname;
	struct stat a, b;
	int rc = take_name(r, &name);

	if (rc == 0)
		rc = take_name(r, &newname);
	if (rc == 0)
		rc = req_dir(r, &dir);
	if (rc < 0)
		return rc;
	if (!to || to->fd < 0 || to->type != S_IFDIR)
		return !to || to->fd < 0 ? -ESTALE : -ENOTDIR;
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (dir->outside != to->outside)
		return -EXDEV;
	bool have_a = fstatat(dir->fd, name, &a, AT_SYMLINK_NOFOLLOW) == 0;
	bool have_b = (flags & RENAME_EXCHANGE) && fstatat(to->fd, newname, &b, AT_SYMLINK_NOFOLLOW) == 0;
	if (renameat2(dir->fd, name, to->fd, newname, flags) < 0)
		return -errno;
	if (have_a)
		fs_node_moved(r->s, a.st_dev, a.st_ino, r->h.nodeid, name, newdir, newname);
	if (have_b)
		fs_node_moved(r->s, b.st_dev, b.st_ino, newdir, newname, r->h.nodeid, name);
	return 0;
}

static int op_rename(struct req *r)
{
	struct fuse_rename_in in;

	return take(r, &in, sizeof(in)) < 0 ? -EINVAL : do_rename(r, in.newdir, 0);
}

static int op_rename2(struct req *r)
{
	struct fuse_rename2_in in;

	return take(r, &in, sizeof(in)) < 0 ? -EINVAL : do_rename(r, in.newdir, in.flags);
}

/*
 * A hard link to a node: linked by its name in its parent's fd, never
 * following, then checked to be that node's inode; one reached outside
 * the root (policy follow) is never linked in.
 */
static int op_link(struct req *r)
{
	struct fuse_link_in in;
	struct fs_node *dir, *src, *sp;
	const char *name;
	struct stat st;
	int rc = take_entry(r, &in, sizeof(in), &name, &dir);

	if (rc < 0)
		return rc;
	src = fs_node_get(r->s, in.oldnodeid);
	sp = src ? fs_node_get(r->s, src->parent) : NULL;
	if (!src || !sp || src->fd < 0 || sp->fd < 0)
		return src && src->type == S_IFDIR ? -EPERM : -ESTALE;
	if (src->type == S_IFDIR)
		return -EPERM;
	if (src->outside || dir->outside) {
		r->s->stats.escapes++;
		return -EXDEV;
	}
	if (linkat(sp->fd, src->name, dir->fd, name, 0) < 0)
		return -errno;
	if (fstatat(dir->fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_ino != src->ino ||
	    st.st_dev != src->dev) {
		unlinkat(dir->fd, name, 0);
		return -ESTALE;
	}
	return reply_entry(r, r->h.nodeid, name);
}

static int reply_open(struct req *r, int fd, uint64_t node, uint32_t flags, bool dir)
{
	int64_t fh = fs_handle_new(r->s, fd, node, flags, dir);
	struct fuse_open_out out = { 0 };

	if (fh < 0) {
		close(fd);
		return (int)fh;
	}
	out.fh = (uint64_t)fh;
	r->s->stats.opens++;
	if (put(r, &out, sizeof(out)) < 0) {
		fs_handle_release(r->s, (uint64_t)fh);
		return -ERANGE;
	}
	return 0;
}

static bool writes(uint32_t flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static int op_open(struct req *r, bool dir)
{
	struct fuse_open_in in;
	struct fs_node *n = req_node(r);

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	if (!n)
		return -ESTALE;
	uint32_t flags = in.flags & (dir ? O_ACCMODE : OPEN_FLAGS);
	if (r->s->opt.read_only && writes(flags))
		return -EROFS;
	if (dir != (n->type == S_IFDIR))
		return dir ? -ENOTDIR : -EISDIR;
	int fd = fs_node_open(r->s, n, (int)flags);
	if (fd < 0)
		return fd;
	return reply_open(r, fd, r->h.nodeid, flags & ~(uint32_t)O_TRUNC, dir);
}

/* CREATE's entry for the file just opened as fd: its node, if the name still holds that file. */
static int created_entry(struct req *r, int fd, const char *name, uint64_t *id)
{
	struct fuse_entry_out e;
	struct stat st;
	size_t at = r->len;
	int rc = reply_entry(r, r->h.nodeid, name);

	if (rc < 0)
		return rc;
	memcpy(&e, r->out + at, sizeof(e));
	*id = e.nodeid;
	/* the name now holds something else: a swap between the create and the lookup */
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != e.attr.ino) {
		fs_node_forget(r->s, e.nodeid, 1);
		return -ESTALE;
	}
	return 0;
}

static int op_create(struct req *r)
{
	struct fuse_create_in in;
	struct fs_node *dir;
	const char *name;
	uint64_t id;
	int rc = take_entry(r, &in, sizeof(in), &name, &dir);

	if (rc < 0)
		return rc;
	uint32_t flags = in.flags & (OPEN_FLAGS | O_EXCL);
	int fd = fs_openat2(dir->fd, name, (int)flags | O_CREAT | O_NOFOLLOW, created_mode(in.mode, false),
			    dir->outside ? RESOLVE_NO_MAGICLINKS : FS_RESOLVE);
	if (fd < 0)
		return fd;
	if (r->s->as_root && fchown(fd, r->h.uid, r->h.gid) < 0)
		r->s->stats.errors++;
	rc = created_entry(r, fd, name, &id);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	rc = reply_open(r, fd, id, flags & ~(uint32_t)(O_TRUNC | O_EXCL), false);
	if (rc < 0)
		fs_node_forget(r->s, id, 1);
	return rc;
}

static struct fs_handle *req_handle(struct req *r, uint64_t fh, bool dir)
{
	struct fs_handle *h = fs_handle_get(r->s, fh);

	return h && h->dir == dir ? h : NULL;
}

static int op_read(struct req *r)
{
	struct fuse_read_in in;
	struct fs_handle *h;

	int rc = take_handle(r, &in, sizeof(in), false, &h);

	if (rc < 0)
		return rc;
	size_t n = in.size < r->room - r->len ? in.size : r->room - r->len;
	if (n > FS_MAX_IO)
		n = FS_MAX_IO;
	ssize_t got = pread(h->fd, r->out + r->len, n, (off_t)in.offset);
	if (got < 0)
		return -errno;
	r->len += (size_t)got;
	r->s->stats.reads++;
	r->s->stats.bytes_read += (uint64_t)got;
	return 0;
}

static int op_write(struct req *r)
{
	struct fuse_write_in in;
	struct fs_handle *h;
	size_t done = 0;

	int rc = take_handle(r, &in, sizeof(in), false, &h);

	if (rc < 0)
		return rc;
	if (in.size > r->left || in.size > FS_MAX_IO)
		return -EINVAL;
	while (done < in.size) {
		ssize_t n = pwrite(h->fd, r->arg + done, in.size - done, (off_t)(in.offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (done == 0)
				return n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	r->s->stats.writes++;
	r->s->stats.bytes_written += done;
	struct fuse_write_out out = { .size = (uint32_t)done };
	return put(r, &out, sizeof(out));
}

static int op_statfs(struct req *r)
{
	struct fs_node *n = req_node(r);
	struct statfs sf;

	if (!n || n->fd < 0)
		return -ESTALE;
	if (fstatfs(n->fd, &sf) < 0)
		return -errno;
	struct fuse_statfs_out out = { .st = {
		.blocks = sf.f_blocks, .bfree = sf.f_bfree, .bavail = sf.f_bavail, .files = sf.f_files,
		.ffree = sf.f_ffree, .bsize = (uint32_t)sf.f_bsize, .namelen = (uint32_t)sf.f_namelen,
		.frsize = (uint32_t)sf.f_frsize,
	} };
	return put(r, &out, sizeof(out));
}

static int op_release(struct req *r, bool dir)
{
	struct fuse_release_in in;

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	if (!req_handle(r, in.fh, dir))
		return -EBADF;
	fs_handle_release(r->s, in.fh);
	return 0;
}

static int op_fsync(struct req *r, bool dir)
{
	struct fuse_fsync_in in;
	struct fs_handle *h;

	int rc = take_handle(r, &in, sizeof(in), dir, &h);

	if (rc < 0)
		return rc;
	rc = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h->fd) : fsync(h->fd);
	return rc < 0 ? -errno : 0;
}

static int op_flush(struct req *r)
{
	struct fuse_flush_in in;

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	return req_handle(r, in.fh, false) ? 0 : -EBADF;
}

/* One directory entry into the reply; false when it does not fit. */
static bool put_dirent(struct req *r, const struct linux_dirent64 *d, size_t namelen,
		       const struct fuse_entry_out *e)
{
	size_t head = e ? sizeof(*e) : 0;
	size_t size = head + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
	struct fuse_dirent fd = { .ino = d->d_ino, .off = (uint64_t)d->d_off,
				  .namelen = (uint32_t)namelen, .type = d->d_type };

	if (r->room - r->len < size)
		return false;
	memset(r->out + r->len, 0, size);
	if (e)
		memcpy(r->out + r->len, e, sizeof(*e));
	memcpy(r->out + r->len + head, &fd, sizeof(fd));
	memcpy(r->out + r->len + head + FUSE_NAME_OFFSET, d->d_name, namelen);
	r->len += size;
	return true;
}

/* READDIRPLUS: the entry's node and attributes (nodeid 0 for ".", ".." and what LOOKUP refuses). */
static void plus_entry(struct req *r, uint64_t dir, const struct linux_dirent64 *d, size_t namelen,
		       struct fuse_entry_out *e)
{
	struct stat st;
	uint64_t id = 0;

	memset(e, 0, sizeof(*e));
	if (fs_name_ok(d->d_name, namelen) && fs_node_lookup(r->s, dir, d->d_name, &id, &st) == 0)
		fill_entry(e, id, &st);
}

static int emit_dirents(struct req *r, const struct fs_handle *h, const uint8_t *buf, size_t n, bool plus)
{
	struct fuse_entry_out e;
	size_t emitted = 0;

	for (size_t at = 0; at + offsetof(struct linux_dirent64, d_name) < n;) {
		const struct linux_dirent64 *d = (const void *)(buf + at);
		if (d->d_reclen <= offsetof(struct linux_dirent64, d_name) || d->d_reclen > n - at)
			break;
		size_t namelen = strnlen(d->d_name, d->d_reclen - offsetof(struct linux_dirent64, d_name));
		size_t need = (plus ? sizeof(e) : 0) + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
		if (r->room - r->len < need)
			break;
		if (plus)
			plus_entry(r, h->node, d, namelen, &e);
		put_dirent(r, d, namelen, plus ? &e : NULL);
		emitted++;
		at += d->d_reclen;
	}
	/* nothing fits: the guest's buffer is smaller than one entry */
	return emitted == 0 && n > 0 ? -EINVAL : 0;
}

static int op_readdir(struct req *r, bool plus)
{
	struct fuse_read_in in;
	struct fs_handle *h;
	uint8_t buf[16384] __attribute__((aligned(8)));

	int rc = take_handle(r, &in, sizeof(in), true, &h);

	if (rc < 0)
		return rc;
	size_t want = in.size < r->room - r->len ? in.size : r->room - r->len;
	if (want > sizeof(buf))
		want = sizeof(buf);
	/* the offset is the d_off of the last entry the guest got: start over from there */
	if (lseek(h->fd, (off_t)in.offset, SEEK_SET) < 0)
		return -errno;
	ssize_t n = getdents64(h->fd, buf, want);
	if (n < 0)
		return -errno;
	return emit_dirents(r, h, buf, (size_t)n, plus);
}

static int op_access(struct req *r)
{
	struct fuse_access_in in;
	struct fs_node *n = req_node(r);

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	if (!n || n->fd < 0)
		return -ESTALE;
	if ((in.mask & W_OK) && r->s->opt.read_only)
		return -EROFS;
	if (syscall(SYS_faccessat2, n->fd, "", in.mask & (R_OK | W_OK | X_OK), AT_EMPTY_PATH | AT_EACCESS) < 0)
		return -errno;
	return 0;
}

static int op_fallocate(struct req *r)
{
	struct fuse_fallocate_in in;
	struct fs_handle *h;

	int rc = take_handle(r, &in, sizeof(in), false, &h);

	if (rc < 0)
		return rc;
	if (in.mode & ~(uint32_t)(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	return fallocate(h->fd, (int)in.mode, (off_t)in.offset, (off_t)in.length) < 0 ? -errno : 0;
}

static int op_lseek(struct req *r)
{
	struct fuse_lseek_in in;
	struct fs_handle *h;

	int rc = take_handle(r, &in, sizeof(in), false, &h);

	if (rc < 0)
		return rc;
	if (in.whence != SEEK_SET && in.whence != SEEK_CUR && in.whence != SEEK_END &&
	    in.whence != SEEK_DATA && in.whence != SEEK_HOLE)
		return -EINVAL;
	off_t off = lseek(h->fd, (off_t)in.offset, (int)in.whence);
	if (off < 0)
		return -errno;
	struct fuse_lseek_out out = { .offset = (uint64_t)off };
	return put(r, &out, sizeof(out));
}

/* ---- extended attributes: security.* and trusted.* stay the host's ---- */

static bool xattr_hidden(const char *name)
{
	return !strncmp(name, "security.", 9) || !strncmp(name, "trusted.", 8);
}

static int take_xattr_name(struct req *r, const char **name)
{
	size_t len;
	int rc = take_str(r, name, &len, 255);

	if (rc == 0 && len == 0)
		rc = -EINVAL;
	if (rc == 0 && xattr_hidden(*name)) {
		r->s->stats.escapes++;
		rc = -EOPNOTSUPP;
	}
	return rc;
}

/* An fd to read or change the node's xattrs through: files and directories only. */
static int xattr_fd(struct req *r, struct fs_node **n)
{
	*n = req_node(r);
	if (!*n || (*n)->fd < 0)
		return -ESTALE;
	if ((*n)->type != S_IFREG && (*n)->type != S_IFDIR)
		return -EOPNOTSUPP;
	int fd = fs_node_open(r->s, *n, O_RDONLY | O_NONBLOCK);
	if (fd == -EACCES)
		fd = fs_node_open(r->s, *n, O_WRONLY | O_NONBLOCK);
	return fd;
}

/* A size-probing request (size 0) gets the size; otherwise the bytes, ERANGE past size. */
static int reply_sized(struct req *r, const void *data, size_t len, uint32_t size)
{
	if (size == 0) {
		struct fuse_getxattr_out out = { .size = (uint32_t)len };
		return put(r, &out, sizeof(out));
	}
	return len > size ? -ERANGE : put(r, data, len);
}

static int op_getxattr(struct req *r)
{
	struct fuse_getxattr_in in;
	const char *name;
	struct fs_node *n;
	int rc = take(r, &in, sizeof(in));

	if (rc == 0)
		rc = take_xattr_name(r, &name);
	if (rc < 0)
		return rc;
	int fd = xattr_fd(r, &n);
	if (fd < 0)
		return fd;
	/* a probe (size 0) asks for the length only: no room for the value needed */
	size_t cap = in.size < r->room - r->len ? in.size : r->room - r->len;
	if (cap > FS_MAX_XATTR_SIZE)
		cap = FS_MAX_XATTR_SIZE;
	ssize_t len = fgetxattr(fd, name, in.size ? r->out + r->len : NULL, in.size ? cap : 0);
	rc = len < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	if (in.size == 0)
		return reply_sized(r, NULL, (size_t)len, 0);
	r->len += (size_t)len;
	return 0;
}

/* Drops the hidden namespaces' names from a listxattr() result; the new length. */
static size_t list_filter(char *list, size_t len)
{
	size_t out = 0;

	for (size_t at = 0; at < len;) {
		size_t n = strnlen(list + at, len - at) + 1;
		if (!xattr_hidden(list + at)) {
			memmove(list + out, list + at, n);
			out += n;
		}
		at += n;
	}
	return out > len ? len : out;
}

static int op_listxattr(struct req *r)
{
	struct fuse_getxattr_in in;
	struct fs_node *n;
	char list[FS_MAX_XATTR_SIZE];

	if (take(r, &in, sizeof(in)) < 0)
		return -EINVAL;
	int fd = xattr_fd(r, &n);
	if (fd < 0)
		return fd;
	ssize_t len = flistxattr(fd, list, sizeof(list));
	int rc = len < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	return reply_sized(r, list, list_filter(list, (size_t)len), in.size);
}

static int op_setxattr(struct req *r)
{
	struct fuse_setxattr_in in = { 0 };
	const char *name;
	struct fs_node *n;
	int rc = take(r, &in, FUSE_COMPAT_SETXATTR_IN_SIZE);

	if (rc == 0)
		rc = take_xattr_name(r, &name);
	if (rc == 0 && (in.size > r->left || in.size > FS_MAX_XATTR_SIZE))
		rc = -E2BIG;
	if (rc < 0)
		return rc;
	int fd = xattr_fd(r, &n);
	if (fd < 0)
		return fd;
	rc = fsetxattr(fd, name, r->arg, in.size, (int)(in.flags & (XATTR_CREATE | XATTR_REPLACE))) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int op_removexattr(struct req *r)
{
	const char *name;
	struct fs_node *n;
	int rc = take_xattr_name(r, &name);

	if (rc < 0)
		return rc;
	int fd = xattr_fd(r, &n);
	if (fd < 0)
		return fd;
	rc = fremovexattr(fd, name) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int op_destroy(struct req *r)
{
	fs_server_clear(r->s);
	return 0;
}

/* ---- dispatch ---- */

/* Does the opcode change the directory (EROFS on a read-only mount)? */
static bool op_writes(uint32_t op)
{
	switch (op) {
	case FUSE_SETATTR: case FUSE_SYMLINK: case FUSE_MKNOD: case FUSE_MKDIR: case FUSE_UNLINK:
	case FUSE_RMDIR: case FUSE_RENAME: case FUSE_RENAME2: case FUSE_LINK: case FUSE_CREATE:
	case FUSE_WRITE: case FUSE_SETXATTR: case FUSE_REMOVEXATTR: case FUSE_FALLOCATE:
		return true;
	default:
		return false;
	}
}

static int run_op(struct req *r)
{
	switch (r->h.opcode) {
	case FUSE_INIT: return op_init(r);
	case FUSE_LOOKUP: return op_lookup(r);
	case FUSE_FORGET: return op_forget(r);
	case FUSE_BATCH_FORGET: return op_batch_forget(r);
	case FUSE_INTERRUPT: return NO_REPLY; /* every request is done before the next is read */
	case FUSE_GETATTR: return op_getattr(r);
	case FUSE_SETATTR: return op_setattr(r);
	case FUSE_READLINK: return op_readlink(r);
	case FUSE_SYMLINK: return op_symlink(r);
	case FUSE_MKNOD: return op_mknod(r);
	case FUSE_MKDIR: return op_mkdir(r);
	case FUSE_UNLINK: return op_unlink(r);
	case FUSE_RMDIR: return op_rmdir(r);
	case FUSE_RENAME: return op_rename(r);
	case FUSE_RENAME2: return op_rename2(r);
	case FUSE_LINK: return op_link(r);
	case FUSE_OPEN: return op_open(r, false);
	case FUSE_OPENDIR: return op_open(r, true);
	case FUSE_CREATE: return op_create(r);
	case FUSE_READ: return op_read(r);
	case FUSE_WRITE: return op_write(r);
	case FUSE_STATFS: return op_statfs(r);
	case FUSE_RELEASE: return op_release(r, false);
	case FUSE_RELEASEDIR: return op_release(r, true);
	case FUSE_FSYNC: return op_fsync(r, false);
	case FUSE_FSYNCDIR: return op_fsync(r, true);
	case FUSE_FLUSH: return op_flush(r);
	case FUSE_READDIR: return op_readdir(r, false);
	case FUSE_READDIRPLUS: return op_readdir(r, true);
	case FUSE_ACCESS: return op_access(r);
	case FUSE_FALLOCATE: return op_fallocate(r);
	case FUSE_LSEEK: return op_lseek(r);
	case FUSE_GETXATTR: return op_getxattr(r);
	case FUSE_SETXATTR: return op_setxattr(r);
	case FUSE_LISTXATTR: return op_listxattr(r);
	case FUSE_REMOVEXATTR: return op_removexattr(r);
	case FUSE_DESTROY: return op_destroy(r);
	default:
		r->s->stats.unsupported++;
		return -ENOSYS;
	}
}

size_t fs_dispatch(struct fs_server *s, const uint8_t *in, size_t in_len, size_t room)
{
	struct fuse_out_header oh = { 0 };
	struct req r = { .s = s };
	int rc;

	if (room > FS_MAX_REPLY)
		room = FS_MAX_REPLY;
	if (in_len < sizeof(r.h))
		return 0;
	memcpy(&r.h, in, sizeof(r.h));
	r.arg = in + sizeof(r.h);
	/* the header's length must agree with what the queue carried */
	r.left = r.h.len >= sizeof(r.h) && r.h.len <= in_len ? r.h.len - sizeof(r.h) : 0;
	r.out = s->reply + sizeof(oh);
	/* FORGET comes with no room for a reply at all; it still runs */
	r.room = room > sizeof(oh) ? room - sizeof(oh) : 0;
	s->stats.requests++;
	if (r.h.len < sizeof(r.h) || r.h.len > in_len)
		rc = -EINVAL;
	else if (!s->initialized && r.h.opcode != FUSE_INIT)
		rc = -EIO;
	else if (s->opt.read_only && op_writes(r.h.opcode))
		rc = -EROFS;
	else
		rc = run_op(&r);
	if (rc == NO_REPLY || room < sizeof(oh))
		return 0;
	if (rc < 0) {
		s->stats.errors++;
		r.len = 0;
	}
	oh = (struct fuse_out_header){ .len = (uint32_t)(sizeof(oh) + r.len), .error = rc < 0 ? rc : 0,
				       .unique = r.h.unique };
	memcpy(s->reply, &oh, sizeof(oh));
	return oh.len;
}
