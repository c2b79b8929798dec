/*
 * Root filesystem building, in two passes:
 *
 *  1. tree: read every layer once (tar headers and data: diff_ids are
 *     verified, all-zero blocks found) and apply it to an in-memory tree:
 *     whiteouts, opaque directories, replacements, hardlinks, symlinks
 *     followed inside the tree. Nothing touches any filesystem but a spool:
 *     the non-zero blocks of every regular file, appended to an unlinked
 *     temporary file. The tree is then the exact final tree, so the ext4
 *     image can be sized to it.
 *  2. ext4: write that tree with libext2fs; file data is copied from the
 *     spool (copy_file_range), so no layer is decompressed twice.
 */
#ifndef SM_OCI_ROOTFS_H
#define SM_OCI_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FS_BLOCK 4096u

/* File blocks [lblk, lblk+len) are spool blocks [sblk, sblk+len). */
struct spool_run {
	uint64_t lblk;
	uint64_t sblk;
	uint32_t len;
};

struct xattr {
	char *name;
	void *value;
	size_t len;
};

struct tinode {
	uint32_t mode; /* S_IFMT bits | permissions */
	uint32_t uid, gid;
	int64_t mtime, atime, ctime;
	uint32_t mtime_ns, atime_ns, ctime_ns;
	uint64_t size;
	uint32_t rdev_major, rdev_minor;
	char *link;    /* symlink target */
	struct xattr *xattrs;
	size_t nxattrs;
	uint32_t nlink;      /* names in the tree */
	/* regular files: the blocks holding a non-zero byte, in the spool */
	uint64_t data_blocks;
	struct spool_run *runs;
	uint32_t nruns;
	uint32_t ino;         /* ext4 inode number, assigned before writing */
	bool written;
};

struct tnode {
	char *name;
	struct tnode *parent;
	struct tinode *ino;
	void *children; /* tsearch(3) tree of struct tnode, by name */
	uint32_t nchildren;
	uint32_t layer; /* the layer that last created or declared it */
};

struct tree {
	struct tnode *root;
	/* Directories a layer implies without listing them get the mtime of
	 * the entry that implied them: deterministic, unlike "now". */
	int64_t implicit_mtime;
};

/* Where something failed, for "layer N (label): entry 'path': why". */
struct where {
	char why[512];
	bool nospace; /* the image was sized too small: worth a bigger retry */
};

/* Formats w->why; returns -1 for `return where_fail(w, ...)`. */
int where_fail(struct where *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int tree_init(struct tree *t);
void tree_free(struct tree *t);

struct tar_entry {
	const char *path;     /* normalized: no leading '/', no '.' or '..' */
	uint32_t type;        /* S_IFREG etc.; 0 for a hardlink */
	const char *hardlink; /* normalized target, for hardlinks */
	const char *symlink;  /* raw target, for symlinks */
	uint32_t perm;
	uint32_t uid, gid;
	int64_t mtime, atime, ctime;
	uint32_t mtime_ns, atime_ns, ctime_ns;
	uint64_t size;
	uint32_t rdev_major, rdev_minor;
	struct xattr *xattrs; /* borrowed; copied by tree_apply */
	size_t nxattrs;
};

/* Applies one tar entry of layer `layer` (1-based). A regular file's inode
 * is returned in *file so the caller can account its data. Returns 0, or
 * -1 with w->why set. */
int tree_apply(struct tree *t, uint32_t layer, const struct tar_entry *e,
	       struct tinode **file, struct where *w);

/* Normalizes a tar path into buf: strips leading '/' and './', collapses
 * '//' and '.', refuses '..'. Returns 0 or -1 with w->why. */
int tree_path_norm(const char *in, char *buf, size_t n, struct where *w);

/* Visits every node depth-first, parents before children, children in name
 * order. */
typedef int (*tree_visit_fn)(struct tnode *n, void *arg);
int tree_walk(struct tree *t, tree_visit_fn fn, void *arg);
/* Children of a directory in name order (caller frees the array). */
int tree_children(const struct tnode *dir, struct tnode ***out, size_t *n);

/* ---- ext4 (ext4.c) ---- */

struct ext4w;

struct ext4_plan {
	uint64_t blocks;  /* filesystem size in blocks */
	uint64_t inodes;
	uint8_t uuid[16];
};

int ext4w_create(const char *path, const struct ext4_plan *p, struct ext4w **out,
		 struct where *w);
/* Blocks and inodes the filesystem has left after its own metadata. */
void ext4w_free_counts(const struct ext4w *x, uint64_t *blocks, uint64_t *inodes);
/* The first inode number free for files (lost+found takes it when made). */
uint32_t ext4w_first_ino(const struct ext4w *x);
int ext4w_close(struct ext4w *x, struct where *w);
void ext4w_abort(struct ext4w *x);

struct dirent_spec {
	const char *name;
	uint32_t ino;
	uint32_t mode;
};
/* Blocks a directory with these entries takes. */
uint64_t ext4_dir_blocks(const struct dirent_spec *ents, size_t n);
int ext4w_dir(struct ext4w *x, const struct tinode *ti, uint32_t parent,
	      const struct dirent_spec *ents, size_t n, uint32_t nsubdirs, struct where *w);
/* Symlinks, devices, fifos, sockets, and regular files without data. */
int ext4w_special(struct ext4w *x, const struct tinode *ti, struct where *w);

/* A regular file with data: blocks allocated contiguously, filled from
 * the spool. */
int ext4w_file_copy(struct ext4w *x, const struct tinode *ti, int spool_fd, struct where *w);

int ext4w_xattrs(struct ext4w *x, const struct tinode *ti, struct where *w);

/* ---- the spool (spool.c) ---- */

struct spool {
	int fd;
	uint64_t next;          /* first free spool block */
	unsigned char *batch;   /* blocks not yet written, from batch_first */
	uint64_t batch_first;
	uint32_t batch_n;
	struct tinode *ti;      /* file being spooled */
	int64_t cur;            /* its block being assembled, -1 none */
	bool cur_nz;
	size_t runs_cap;
	unsigned char blk[FS_BLOCK];
};

/* An unlinked file in dir (the output's directory: same filesystem, so
 * copy_file_range can stay in the kernel). */
int spool_open(struct spool *s, const char *dir, struct where *w);
void spool_begin(struct spool *s, struct tinode *ti);
/* File data at offset off, in increasing offsets. */
int spool_feed(struct spool *s, uint64_t off, const void *buf, size_t len, struct where *w);
int spool_end(struct spool *s, struct where *w);
/* Writes out what is batched; the spool is then complete on its fd. */
int spool_flush(struct spool *s, struct where *w);
void spool_close(struct spool *s);

/* Extent tree blocks a file with this many runs needs beyond its inode. */
uint64_t ext4_extent_blocks(uint64_t runs, uint64_t data_blocks);
/* Whether xattrs need a block of their own. */
bool ext4_xattrs_need_block(const struct xattr *xs, size_t n);
/* Checks that xattrs fit ext4 at all; -1 with w->why if not. */
int ext4_xattrs_check(const struct xattr *xs, size_t n, struct where *w);

#endif
