/*
 * Writing the final tree as an ext4 image with libext2fs.
 *
 * The filesystem is made the way mke2fs makes it (ext4 features minus the
 * journal and resize inode, which a read-only root never uses), on a sparse
 * file whose inode tables read as zeros. Files are then written directly:
 * we know every inode's number, every directory's entries and every file's
 * block count up front, so each directory is written once, each file's
 * blocks are allocated as one contiguous run, and all-zero blocks stay
 * holes.
 */
#include "oci/rootfs.h"

#include <errno.h>
#include <et/com_err.h>
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INODE_SIZE 256
#define EXTRA_ISIZE ((int)(sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE))
#define DIR_TAIL ((unsigned)sizeof(struct ext2_dir_entry_tail))
#define DIR_ROOM (FS_BLOCK - DIR_TAIL)
#define EXTENT_MAX_LEN 32768u
#define COPY_BUF (1u << 20)
/* In-inode xattr room: inode size - large inode - magic - end marker. */
#define XATTR_IN_INODE (INODE_SIZE - (int)sizeof(struct ext2_inode_large) - 8)
#define XATTR_IN_BLOCK ((int)FS_BLOCK - 32 - 4)

struct ext4w {
	ext2_filsys fs;
	int fd;       /* the image, for file data (libext2fs never reads it) */
	blk64_t goal;
};

struct run {
	uint64_t lblk;
	blk64_t pblk;
	uint32_t len;
};

__attribute__((format(printf, 3, 4))) static int efail(struct where *w, errcode_t e,
						       const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	if (e && n >= 0 && (size_t)n < sizeof(w->why))
		snprintf(w->why + n, sizeof(w->why) - (size_t)n, ": %s", error_message(e));
	if (e == EXT2_ET_BLOCK_ALLOC_FAIL || e == EXT2_ET_INODE_ALLOC_FAIL ||
	    e == EXT2_ET_DIR_NO_SPACE)
		w->nospace = true;
	return -1;
}

/* ---- the filesystem ---- */

static void set_features(struct ext2_super_block *p)
{
	ext2fs_set_feature_xattr(p);
	ext2fs_set_feature_dir_index(p);
	ext2fs_set_feature_filetype(p);
	ext2fs_set_feature_extents(p);
	ext2fs_set_feature_64bit(p);
	ext2fs_set_feature_flex_bg(p);
	ext2fs_set_feature_sparse_super(p);
	ext2fs_set_feature_large_file(p);
	ext2fs_set_feature_huge_file(p);
	ext2fs_set_feature_dir_nlink(p);
	ext2fs_set_feature_extra_isize(p);
	ext2fs_set_feature_metadata_csum(p);
}

static void super_identity(ext2_filsys fs, const uint8_t uuid[16])
{
	struct ext2_super_block *sb = fs->super;

	memcpy(sb->s_uuid, uuid, 16);
	for (int i = 0; i < 4; i++)
		sb->s_hash_seed[i] = ((uint32_t)uuid[15 - i] << 24 | (uint32_t)uuid[11 - i] << 16 |
				      (uint32_t)uuid[7 - i] << 8 | uuid[3 - i]) ^ 0x5a5aa5a5u;
	sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
	sb->s_flags |= ((char)-1 < 0) ? EXT2_FLAGS_SIGNED_HASH : EXT2_FLAGS_UNSIGNED_HASH;
	sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
	sb->s_max_mnt_count = -1;
	snprintf((char *)sb->s_volume_name, sizeof(sb->s_volume_name), "rootfs");
	ext2fs_init_csum_seed(fs);
}

/* Inodes 1..10 are reserved; like mke2fs we give them valid checksums. */
static int reserve_inodes(ext2_filsys fs, struct where *w)
{
	struct ext2_inode_large zero;
	ext2_badblocks_list bb = NULL;
	errcode_t e;

	memset(&zero, 0, sizeof(zero));
	for (ext2_ino_t ino = 1; ino < EXT2_FIRST_INODE(fs->super); ino++) {
		e = ext2fs_write_inode_full(fs, ino, (struct ext2_inode *)&zero, sizeof(zero));
		if (e)
			return efail(w, e, "write reserved inode %u", ino);
		if (ino != EXT2_ROOT_INO)
			ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
	}
	e = ext2fs_badblocks_list_create(&bb, 0);
	if (!e)
		e = ext2fs_update_bb_inode(fs, bb);
	ext2fs_badblocks_list_free(bb);
	return e ? efail(w, e, "bad blocks inode") : 0;
}

int ext4w_create(const char *path, const struct ext4_plan *p, struct ext4w **out,
		 struct where *w)
{
	struct ext2_super_block param;
	struct ext4w *x = calloc(1, sizeof(*x));
	errcode_t e;
	int fd;

	if (!x)
		return efail(w, 0, "out of memory");
	x->fd = -1;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)(p->blocks * FS_BLOCK)) < 0) {
		efail(w, 0, "create %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(x);
		return -1;
	}
	close(fd);
	memset(&param, 0, sizeof(param));
	param.s_rev_level = EXT2_DYNAMIC_REV;
	param.s_log_block_size = 2; /* 1024 << 2 */
	param.s_log_cluster_size = 2;
	ext2fs_blocks_count_set(&param, p->blocks);
	param.s_inodes_count = (uint32_t)p->inodes;
	param.s_inode_size = INODE_SIZE;
	param.s_min_extra_isize = param.s_want_extra_isize = EXTRA_ISIZE;
	param.s_log_groups_per_flex = 4;
	param.s_creator_os = EXT2_OS_LINUX;
	set_features(&param);
	e = ext2fs_initialize(path, EXT2_FLAG_64BITS, &param, unix_io_manager, &x->fs);
	if (e) {
		free(x);
		return efail(w, e, "initialize ext4 of %ju blocks", (uintmax_t)p->blocks);
	}
	super_identity(x->fs, p->uuid);
	e = ext2fs_allocate_tables(x->fs);
	if (e) {
		ext4w_abort(x);
		return efail(w, e, "allocate ext4 tables");
	}
	/* The file is brand new and sparse: its inode tables read as zeros. */
	for (dgrp_t g = 0; g < x->fs->group_desc_count; g++) {
		ext2fs_bg_flags_set(x->fs, g, EXT2_BG_INODE_ZEROED);
		ext2fs_group_desc_csum_set(x->fs, g);
	}
	if (reserve_inodes(x->fs, w) < 0) {
		ext4w_abort(x);
		return -1;
	}
	x->fd = open(path, O_WRONLY | O_CLOEXEC);
	if (x->fd < 0) {
		ext4w_abort(x);
		return efail(w, 0, "open %s: %s", path, strerror(errno));
	}
	x->goal = x->fs->super->s_first_data_block;
	*out = x;
	return 0;
}

void ext4w_free_counts(const struct ext4w *x, uint64_t *blocks, uint64_t *inodes)
{
	blk64_t used = 0;
	blk64_t total = ext2fs_blocks_count(x->fs->super);

	ext2fs_count_used_clusters(x->fs, x->fs->super->s_first_data_block, total - 1, &used);
	*blocks = total - used - x->fs->super->s_first_data_block;
	*inodes = x->fs->super->s_inodes_count - EXT2_FIRST_INODE(x->fs->super) + 1;
}

uint32_t ext4w_first_ino(const struct ext4w *x) { return EXT2_FIRST_INODE(x->fs->super); }

int ext4w_close(struct ext4w *x, struct where *w)
{
	errcode_t e = ext2fs_close_free(&x->fs);
	int rc = close(x->fd);

	free(x);
	if (rc < 0)
		return efail(w, 0, "write file data: %s", strerror(errno));
	return e ? efail(w, e, "write ext4 metadata") : 0;
}

void ext4w_abort(struct ext4w *x)
{
	if (!x)
		return;
	if (x->fs) {
		/* Nothing of a half-built image needs to reach the disk. */
		x->fs->flags &= ~EXT2_FLAG_DIRTY;
		ext2fs_free(x->fs);
	}
	if (x->fd >= 0)
		close(x->fd);
	free(x);
}

/* ---- blocks and extents ---- */

static int alloc_run(struct ext4w *x, uint64_t want, blk64_t *start, uint64_t *got,
		     struct where *w)
{
	blk64_t pblk = 0, plen = 0;
	errcode_t e;

	if (want > (1u << 30))
		want = 1u << 30;
	e = ext2fs_new_range(x->fs, 0, x->goal, want, NULL, &pblk, &plen);
	if (e)
		return efail(w, e, "allocate %ju blocks", (uintmax_t)want);
	if (plen > want)
		plen = want;
	ext2fs_block_alloc_stats_range(x->fs, pblk, (blk_t)plen, +1);
	x->goal = pblk + plen;
	*start = pblk;
	*got = plen;
	return 0;
}

static int runs_push(struct run **v, size_t *n, size_t *cap, uint64_t lblk, blk64_t pblk)
{
	struct run *last = *n ? &(*v)[*n - 1] : NULL;

	if (last && last->lblk + last->len == lblk && last->pblk + last->len == pblk &&
	    last->len < EXTENT_MAX_LEN) {
		last->len++;
		return 0;
	}
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 4;
		struct run *nv = realloc(*v, c * sizeof(*nv));
		if (!nv)
			return -1;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = (struct run){ .lblk = lblk, .pblk = pblk, .len = 1 };
	return 0;
}

/* Builds the inode's extent tree (libext2fs splits nodes and allocates
 * index blocks as it needs). */
static int map_runs(struct ext4w *x, ext2_ino_t ino, struct ext2_inode_large *in,
		    const struct run *runs, size_t n, struct where *w)
{
	ext2_extent_handle_t h;
	errcode_t e;

	e = ext2fs_extent_open2(x->fs, ino, (struct ext2_inode *)in, &h);
	if (e)
		return efail(w, e, "extent tree of inode %u", ino);
	for (size_t i = 0; i < n && !e; i++) {
		struct ext2fs_extent ext = {
			.e_pblk = runs[i].pblk, .e_lblk = runs[i].lblk, .e_len = runs[i].len
		};
		if (i > 0)
			e = ext2fs_extent_goto(h, runs[i - 1].lblk);
		if (!e)
			e = ext2fs_extent_insert(h, i ? EXT2_EXTENT_INSERT_AFTER : 0, &ext);
		if (!e)
			e = ext2fs_extent_fix_parents(h);
	}
	ext2fs_extent_free(h);
	return e ? efail(w, e, "map blocks of inode %u", ino) : 0;
}

uint64_t ext4_extent_blocks(uint64_t runs, uint64_t data_blocks)
{
	uint64_t extents = runs + data_blocks / EXTENT_MAX_LEN;
	uint64_t leaves, total = 0;

	if (extents <= 4)
		return 0;
	/* 340 extents per 4 KiB node; index levels above the leaves. */
	for (leaves = (extents + 339) / 340; leaves > 4; leaves = (leaves + 339) / 340)
		total += leaves;
	return total + leaves + 1;
}

/* ---- inodes ---- */

static void time_enc(int64_t sec, uint32_t ns, __u32 *lo, __u32 *extra)
{
	/* ext4 keeps 34 bits of seconds: 32 in the inode, 2 epoch bits in
	 * the extra field (Linux's ext4_encode_extra_time). */
	const int64_t min = -(1LL << 31), max = (1LL << 34) - (1LL << 31) - 1;

	if (sec < min)
		sec = min, ns = 0;
	if (sec > max)
		sec = max, ns = 0;
	*lo = (__u32)(uint32_t)sec;
	*extra = (ns << 2) | (uint32_t)(((sec - (int32_t)(uint32_t)sec) >> 32) & 3);
}

static void inode_fill(struct ext2_inode_large *in, const struct tinode *ti, uint32_t links)
{
	memset(in, 0, sizeof(*in));
	in->i_mode = (__u16)ti->mode;
	in->i_uid = (__u16)ti->uid;
	ext2fs_set_i_uid_high(*in, ti->uid >> 16);
	in->i_gid = (__u16)ti->gid;
	ext2fs_set_i_gid_high(*in, ti->gid >> 16);
	in->i_links_count = (__u16)(links > 65000 ? 1 : links);
	in->i_extra_isize = EXTRA_ISIZE;
	time_enc(ti->mtime, ti->mtime_ns, &in->i_mtime, &in->i_mtime_extra);
	time_enc(ti->atime, ti->atime_ns, &in->i_atime, &in->i_atime_extra);
	time_enc(ti->ctime, ti->ctime_ns, &in->i_ctime, &in->i_ctime_extra);
	time_enc(ti->mtime, ti->mtime_ns, &in->i_crtime, &in->i_crtime_extra);
}

static int inode_write(struct ext4w *x, ext2_ino_t ino, struct ext2_inode_large *in, bool dir,
		       struct where *w)
{
	errcode_t e = ext2fs_write_inode_full(x->fs, ino, (struct ext2_inode *)in, sizeof(*in));

	if (e)
		return efail(w, e, "write inode %u", ino);
	ext2fs_inode_alloc_stats2(x->fs, ino, +1, dir);
	return 0;
}

/* Allocates nblocks (as few runs as the free space allows), recording
 * logical -> physical runs. */
static int alloc_blocks(struct ext4w *x, uint64_t nblocks, struct run **runs, size_t *nruns,
			size_t *cap, struct where *w)
{
	uint64_t done = 0;

	while (done < nblocks) {
		blk64_t start;
		uint64_t got;
		if (alloc_run(x, nblocks - done, &start, &got, w) < 0)
			return -1;
		for (uint64_t i = 0; i < got; i++)
			if (runs_push(runs, nruns, cap, done + i, start + i) < 0)
				return efail(w, 0, "out of memory");
		done += got;
	}
	return 0;
}

/* ---- directories ---- */

static unsigned rec_len(size_t namelen) { return (unsigned)(8 + ((namelen + 3) & ~3u)); }

static int ftype_of(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return EXT2_FT_REG_FILE;
	case S_IFDIR:
		return EXT2_FT_DIR;
	case S_IFCHR:
		return EXT2_FT_CHRDEV;
	case S_IFBLK:
		return EXT2_FT_BLKDEV;
	case S_IFIFO:
		return EXT2_FT_FIFO;
	case S_IFSOCK:
		return EXT2_FT_SOCK;
	case S_IFLNK:
		return EXT2_FT_SYMLINK;
	default:
		return EXT2_FT_UNKNOWN;
	}
}

struct dir_packer {
	unsigned char *buf; /* NULL: only count */
	uint64_t block;     /* current block index */
	unsigned off;       /* offset in it */
	unsigned last;      /* offset of its last entry */
};

static void pack_close_block(struct dir_packer *p)
{
	if (p->buf) {
		struct ext2_dir_entry *d =
			(struct ext2_dir_entry *)(p->buf + p->block * FS_BLOCK + p->last);
		d->rec_len = (__u16)(DIR_ROOM - p->last);
	}
}

static void pack_entry(struct dir_packer *p, const char *name, size_t len, uint32_t ino,
		       int ftype)
{
	unsigned rl = rec_len(len);

	if (p->off + rl > DIR_ROOM) {
		pack_close_block(p);
		p->block++;
		p->off = 0;
	}
	if (p->buf) {
		struct ext2_dir_entry *d =
			(struct ext2_dir_entry *)(p->buf + p->block * FS_BLOCK + p->off);
		d->inode = ino;
		d->rec_len = (__u16)rl;
		ext2fs_dirent_set_name_len(d, (int)len);
		ext2fs_dirent_set_file_type(d, ftype);
		memcpy(d->name, name, len);
	}
	p->last = p->off;
	p->off += rl;
}

static uint64_t dir_pack(unsigned char *buf, uint32_t self, uint32_t parent,
			 const struct dirent_spec *ents, size_t n)
{
	struct dir_packer p = { .buf = buf };

	pack_entry(&p, ".", 1, self, EXT2_FT_DIR);
	pack_entry(&p, "..", 2, parent, EXT2_FT_DIR);
	for (size_t i = 0; i < n; i++)
		pack_entry(&p, ents[i].name, strlen(ents[i].name), ents[i].ino,
			   ftype_of(ents[i].mode));
	pack_close_block(&p);
	return p.block + 1;
}

uint64_t ext4_dir_blocks(const struct dirent_spec *ents, size_t n)
{
	return dir_pack(NULL, 0, 0, ents, n);
}

int ext4w_dir(struct ext4w *x, const struct tinode *ti, uint32_t parent,
	      const struct dirent_spec *ents, size_t n, uint32_t nsubdirs, struct where *w)
{
	uint64_t nblocks = ext4_dir_blocks(ents, n);
	unsigned char *buf = calloc(nblocks, FS_BLOCK);
	struct ext2_inode_large in;
	struct run *runs = NULL;
	size_t nruns = 0, cap = 0;
	int rc = -1;

	if (!buf)
		return efail(w, 0, "out of memory");
	dir_pack(buf, ti->ino, parent, ents, n);
	/* The inode goes first: directory block checksums read it. */
	inode_fill(&in, ti, 2 + nsubdirs);
	for (uint64_t b = 0; b < nblocks; b++)
		ext2fs_initialize_dirent_tail(
			x->fs, (struct ext2_dir_entry_tail *)(buf + b * FS_BLOCK + DIR_ROOM));
	if (ext2fs_write_inode_full(x->fs, ti->ino, (struct ext2_inode *)&in, sizeof(in))) {
		efail(w, 0, "write directory inode %u", ti->ino);
		goto out;
	}
	if (alloc_blocks(x, nblocks, &runs, &nruns, &cap, w) < 0)
		goto out;
	for (size_t r = 0, b = 0; r < nruns; r++)
		for (uint32_t k = 0; k < runs[r].len; k++, b++) {
			errcode_t e = ext2fs_write_dir_block4(x->fs, runs[r].pblk + k,
							      buf + b * FS_BLOCK, 0, ti->ino);
			if (e) {
				efail(w, e, "write directory block");
				goto out;
			}
		}
	if (map_runs(x, ti->ino, &in, runs, nruns, w) < 0)
		goto out;
	ext2fs_iblk_add_blocks(x->fs, (struct ext2_inode *)&in, nblocks);
	ext2fs_inode_size_set(x->fs, (struct ext2_inode *)&in, nblocks * FS_BLOCK);
	rc = inode_write(x, ti->ino, &in, true, w);
out:
	free(runs);
	free(buf);
	return rc;
}

/* ---- everything that is not a directory or a file with data ---- */

static int special_symlink(struct ext4w *x, const struct tinode *ti,
			   struct ext2_inode_large *in, struct where *w)
{
	size_t len = strlen(ti->link);
	unsigned char *blk;
	struct run *runs = NULL;
	size_t nruns = 0, cap = 0;
	int rc;

	in->i_size = (__u32)len;
	if (len < sizeof(in->i_block)) {
		memcpy(in->i_block, ti->link, len);
		return 0;
	}
	blk = calloc(1, FS_BLOCK);
	if (!blk)
		return efail(w, 0, "out of memory");
	memcpy(blk, ti->link, len);
	rc = alloc_blocks(x, 1, &runs, &nruns, &cap, w);
	if (rc == 0) {
		errcode_t e = io_channel_write_blk64(x->fs->io, runs[0].pblk, 1, blk);
		rc = e ? efail(w, e, "write symlink block") : 0;
	}
	if (rc == 0)
		rc = map_runs(x, ti->ino, in, runs, nruns, w);
	if (rc == 0)
		ext2fs_iblk_add_blocks(x->fs, (struct ext2_inode *)in, 1);
	free(runs);
	free(blk);
	return rc;
}

int ext4w_special(struct ext4w *x, const struct tinode *ti, struct where *w)
{
	struct ext2_inode_large in;
	uint32_t ma = ti->rdev_major, mi = ti->rdev_minor;

	inode_fill(&in, ti, ti->nlink);
	switch (ti->mode & S_IFMT) {
	case S_IFLNK:
		if (special_symlink(x, ti, &in, w) < 0)
			return -1;
		break;
	case S_IFCHR:
	case S_IFBLK:
		/* Linux's old/new device encodings (ext4_inode i_block[0]/[1]). */
		if (ma < 256 && mi < 256)
			in.i_block[0] = ma << 8 | mi;
		else
			in.i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
		break;
	case S_IFREG:
		/* no data blocks: an empty extent tree, and maybe a big hole */
		if (map_runs(x, ti->ino, &in, NULL, 0, w) < 0)
			return -1;
		ext2fs_inode_size_set(x->fs, (struct ext2_inode *)&in, ti->size);
		break;
	default:
		break;
	}
	return inode_write(x, ti->ino, &in, false, w);
}

/* ---- regular files ---- */

/* Copies len bytes between files, in the kernel when it can. */
static int copy_range(int in, uint64_t ioff, int out, uint64_t ooff, uint64_t len,
		      struct where *w)
{
	char *buf = NULL;
	int rc = 0;

	while (len && rc == 0) {
		ssize_t n;
		if (!buf) {
			loff_t a = (loff_t)ioff, b = (loff_t)ooff;
			n = copy_file_range(in, &a, out, &b, len, 0);
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				buf = malloc(COPY_BUF);
				if (!buf)
					rc = efail(w, 0, "out of memory");
				continue;
			}
		} else {
			n = pread(in, buf, len < COPY_BUF ? len : COPY_BUF, (off_t)ioff);
			if (n > 0)
				n = pwrite(out, buf, (size_t)n, (off_t)ooff);
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = efail(w, 0, "copy file data: %s", n ? strerror(errno) : "short spool");
			break;
		}
		ioff += (uint64_t)n;
		ooff += (uint64_t)n;
		len -= (uint64_t)n;
	}
	free(buf);
	return rc;
}

int ext4w_file_copy(struct ext4w *x, const struct tinode *ti, int spool_fd, struct where *w)
{
	struct ext2_inode_large in;
	struct run *ext = NULL;
	size_t next = 0, cap = 0;
	blk64_t avail_start = 0;
	uint64_t avail = 0, left = ti->data_blocks;
	int rc = -1;

	for (uint32_t r = 0; r < ti->nruns; r++) {
		uint64_t lblk = ti->runs[r].lblk, sblk = ti->runs[r].sblk, len = ti->runs[r].len;
		while (len) {
			if (!avail && alloc_run(x, left, &avail_start, &avail, w) < 0)
				goto out;
			uint64_t k = len < avail ? len : avail;
			if (copy_range(spool_fd, sblk * FS_BLOCK, x->fd, avail_start * FS_BLOCK,
				       k * FS_BLOCK, w) < 0)
				goto out;
			for (uint64_t i = 0; i < k; i++)
				if (runs_push(&ext, &next, &cap, lblk + i, avail_start + i) < 0) {
					efail(w, 0, "out of memory");
					goto out;
				}
			lblk += k, sblk += k, len -= k;
			avail_start += k, avail -= k, left -= k;
		}
	}
	inode_fill(&in, ti, ti->nlink);
	if (map_runs(x, ti->ino, &in, ext, next, w) < 0)
		goto out;
	ext2fs_iblk_add_blocks(x->fs, (struct ext2_inode *)&in, ti->data_blocks);
	ext2fs_inode_size_set(x->fs, (struct ext2_inode *)&in, ti->size);
	rc = inode_write(x, ti->ino, &in, false, w);
out:
	free(ext);
	return rc;
}

/* ---- extended attributes ---- */

static size_t xattr_name_len(const char *name)
{
	static const char *const prefixes[] = { "user.", "trusted.", "security." };

	if (!strncmp(name, "system.posix_acl_", 17))
		return 0;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
			return strlen(name) - strlen(prefixes[i]);
	return strlen(name);
}

static size_t xattrs_room(const struct xattr *xs, size_t n)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++)
		total += ((16 + xattr_name_len(xs[i].name) + 3) & ~3u) + ((xs[i].len + 3) & ~3u);
	return total;
}

bool ext4_xattrs_need_block(const struct xattr *xs, size_t n)
{
	return n && xattrs_room(xs, n) > (size_t)XATTR_IN_INODE;
}

int ext4_xattrs_check(const struct xattr *xs, size_t n, struct where *w)
{
	if (xattrs_room(xs, n) > (size_t)XATTR_IN_BLOCK)
		return efail(w, 0, "xattrs take %zu bytes, more than ext4 holds for one inode",
			     xattrs_room(xs, n));
	return 0;
}

int ext4w_xattrs(struct ext4w *x, const struct tinode *ti, struct where *w)
{
	struct ext2_xattr_handle *h = NULL;
	errcode_t e;

	if (!ti->nxattrs)
		return 0;
	e = ext2fs_xattrs_open(x->fs, ti->ino, &h);
	if (!e)
		e = ext2fs_xattrs_read(h);
	for (size_t i = 0; !e && i < ti->nxattrs; i++) {
		e = ext2fs_xattr_set(h, ti->xattrs[i].name, ti->xattrs[i].value, ti->xattrs[i].len);
		if (e) {
			if (h)
				ext2fs_xattrs_close(&h);
			return efail(w, e, "xattr %s", ti->xattrs[i].name);
		}
	}
	if (h) {
		errcode_t c = ext2fs_xattrs_close(&h);
		if (!e)
			e = c;
	}
	return e ? efail(w, e, "write xattrs") : 0;
}
