/* oci_rootfs_write: layers -> tree (pass 1) -> sized ext4 image (pass 2). */
#include "oci/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a hostile image may make us hold or chew through. */
#define ENTRIES_MAX (4u << 20)
#define CONTENT_MAX_BLOCKS ((256ull << 30) / FS_BLOCK)
#define TAR_MAX_BYTES (512ull << 30)
#define LOST_FOUND_INO 11u
#define ROOT_INO 2u

struct build {
	const struct oci_layer_src *layers;
	size_t n;
	struct tree tree;
	struct oci_rootfs_stats st;
	uint64_t seen_blocks;    /* data blocks over all layers, for the limit */
	uint64_t need_blocks;    /* for the final tree */
	uint64_t need_inodes;
	uint32_t next_ino;
	bool lost_found;         /* we add /lost+found (the image has none) */
	struct tinode lf;
	uint64_t raw_total;      /* for progress */
	oci_progress_fn progress;
	void *progress_arg;
	uint64_t progress_last;
	struct spool spool;
	struct entry_bufs bufs;
};

static int layer_fail(struct build *b, size_t i, const char *entry, sm_code code,
		      const struct where *w, sm_error **err)
{
	const char *label = b->layers[i].label ? b->layers[i].label : b->layers[i].path;

	if (entry)
		sm_error_set(err, code, 0, "layer %zu (%s): entry '%.300s': %s", i + 1, label, entry,
			     w->why);
	else
		sm_error_set(err, code, 0, "layer %zu (%s): %s", i + 1, label, w->why);
	return -1;
}

/* Reports the tar bytes read; -1 when the callback asks to cancel. */
static int build_progress(struct build *b, uint64_t raw, bool force)
{
	struct oci_progress p = { .phase = "building", .bytes_done = raw,
				  .layers_total = (unsigned)b->n };

	if (!b->progress || (!force && raw - b->progress_last < (8u << 20)))
		return 0;
	b->progress_last = raw;
	return b->progress(&p, b->progress_arg) ? -1 : 0;
}

/* ---- pass 1 ---- */

static int scan_data(struct build *b, struct layer_reader *r, struct tinode *ti,
		     struct where *w)
{
	const void *buf;
	size_t size;
	la_int64_t off;
	int rc;

	spool_begin(&b->spool, ti);
	while ((rc = archive_read_data_block(r->inner, &buf, &size, &off)) == ARCHIVE_OK) {
		if (off < 0 || (uint64_t)off + size > ti->size)
			return where_fail(w, "data beyond the declared size");
		if (b->raw_total + r->raw_bytes > TAR_MAX_BYTES)
			return where_fail(w, "layers expand beyond %llu GiB", TAR_MAX_BYTES >> 30);
		if (spool_feed(&b->spool, (uint64_t)off, buf, size, w) < 0)
			return -1;
	}
	if (rc != ARCHIVE_EOF)
		return where_fail(w, "bad file data: %s", layer_error(r));
	if (spool_end(&b->spool, w) < 0)
		return -1;
	b->seen_blocks += ti->data_blocks;
	if (b->seen_blocks > CONTENT_MAX_BLOCKS)
		return where_fail(w, "image content exceeds %llu GiB",
				  CONTENT_MAX_BLOCKS * FS_BLOCK >> 30);
	return 0;
}

static int scan_layer(struct build *b, size_t i, sm_error **err)
{
	const struct oci_layer_src *l = &b->layers[i];
	struct layer_reader r;
	struct archive_entry *ae;
	struct where w = { 0 };
	char got[OCI_DIGEST_SIZE];
	uint64_t k = 0;
	int rc;

	if (layer_open(&r, l->path, l->diff_id != NULL, &w) < 0) {
		layer_close(&r);
		return layer_fail(b, i, NULL, SM_E_IMAGE, &w, err);
	}
	while ((rc = archive_read_next_header(r.inner, &ae)) != ARCHIVE_EOF) {
		struct tar_entry e;
		struct tinode *file;
		if (rc < ARCHIVE_WARN) {
			where_fail(&w, "corrupt archive after entry %ju: %s",
				 (uintmax_t)k, layer_error(&r));
			goto fail;
		}
		k++;
		if (b->st.entries >= ENTRIES_MAX) {
			where_fail(&w, "more than %u entries in the image", ENTRIES_MAX);
			goto fail;
		}
		b->bufs.display[0] = '\0';
		if (layer_entry(ae, &e, &b->bufs, &w) < 0 ||
		    tree_apply(&b->tree, (uint32_t)i + 1, &e, &file, &w) < 0 ||
		    (file && scan_data(b, &r, file, &w) < 0))
			goto fail_entry;
		b->st.entries++;
		if (build_progress(b, b->raw_total + r.raw_bytes, false) < 0) {
			layer_close(&r);
			return sm_error_set(err, SM_E_CANCELED, 0, "building the root filesystem: canceled"), -1;
		}
	}
	if (l->diff_id) {
		if (layer_finish_hash(&r, got, &w) < 0)
			goto fail;
		if (strcmp(got, l->diff_id)) {
			where_fail(&w,
				 "uncompressed content is %s, the image config says %s", got,
				 l->diff_id);
			b->raw_total += r.raw_bytes;
			layer_close(&r);
			return layer_fail(b, i, NULL, SM_E_DIGEST, &w, err);
		}
	}
	b->raw_total += r.raw_bytes;
	layer_close(&r);
	return 0;
fail_entry:
	layer_close(&r);
	return layer_fail(b, i, b->bufs.display[0] ? b->bufs.display : "?", SM_E_IMAGE, &w, err);
fail:
	layer_close(&r);
	return layer_fail(b, i, NULL, SM_E_IMAGE, &w, err);
}

/* ---- planning ---- */

static int dir_specs(const struct tnode *dir, struct dirent_spec **out, size_t *n,
		     uint32_t *nsub, bool add_lf)
{
	struct tnode **kids;
	size_t k;
	struct dirent_spec *s;

	if (tree_children(dir, &kids, &k) < 0)
		return -1;
	s = calloc(k + 2, sizeof(*s));
	if (!s) {
		free(kids);
		return -1;
	}
	*nsub = 0;
	for (size_t i = 0; i < k; i++) {
		s[i] = (struct dirent_spec){ kids[i]->name, kids[i]->ino->ino, kids[i]->ino->mode };
		*nsub += S_ISDIR(kids[i]->ino->mode);
	}
	if (add_lf) {
		s[k++] = (struct dirent_spec){ "lost+found", LOST_FOUND_INO, S_IFDIR | 0700 };
		(*nsub)++;
	}
	free(kids);
	*out = s;
	*n = k;
	return 0;
}

static int plan_visit(struct tnode *n, void *arg)
{
	struct build *b = arg;
	struct tinode *ti = n->ino;

	if (S_ISDIR(ti->mode)) {
		/* A directory's entries need inode numbers: number them now,
		 * before the walk reaches them. */
		struct tnode **kids;
		size_t k;
		if (tree_children(n, &kids, &k) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < k; i++)
			if (!kids[i]->ino->ino) {
				kids[i]->ino->ino = b->next_ino++;
				b->need_inodes++;
			}
		free(kids);
		struct dirent_spec *s;
		size_t ns;
		uint32_t sub;
		if (dir_specs(n, &s, &ns, &sub, n == b->tree.root && b->lost_found) < 0)
			return -ENOMEM;
		b->need_blocks += ext4_dir_blocks(s, ns);
		free(s);
	}
	if (ti->written)
		return 0; /* counted through another name */
	ti->written = true;
	if (S_ISREG(ti->mode))
		b->need_blocks += ti->data_blocks + ext4_extent_blocks(ti->nruns, ti->data_blocks);
	if (S_ISLNK(ti->mode) && strlen(ti->link) >= 60)
		b->need_blocks++;
	if (ext4_xattrs_need_block(ti->xattrs, ti->nxattrs))
		b->need_blocks++;
	return 0;
}

static int plan_reset(struct tnode *n, void *arg)
{
	(void)arg;
	n->ino->written = false;
	return 0;
}

static int build_plan(struct build *b)
{
	struct tnode *root = b->tree.root;

	b->lost_found = true;
	{
		struct tnode **kids;
		size_t k;
		if (tree_children(root, &kids, &k) < 0)
			return -1;
		for (size_t i = 0; i < k; i++)
			if (!strcmp(kids[i]->name, "lost+found"))
				b->lost_found = false;
		free(kids);
	}
	root->ino->ino = ROOT_INO;
	b->next_ino = LOST_FOUND_INO + (b->lost_found ? 1 : 0);
	b->need_inodes = 1 + b->lost_found;
	b->need_blocks = b->lost_found;
	if (tree_walk(&b->tree, plan_visit, b) < 0)
		return -1;
	tree_walk(&b->tree, plan_reset, NULL);
	memset(&b->lf, 0, sizeof(b->lf));
	b->lf = (struct tinode){ .mode = S_IFDIR | 0700, .ino = LOST_FOUND_INO,
				 .mtime = root->ino->mtime, .atime = root->ino->mtime,
				 .ctime = root->ino->mtime, .nlink = 1 };
	return 0;
}

/* ---- pass 2 ---- */

struct writer {
	struct build *b;
	struct ext4w *x;
	struct where w;
};

static int meta_visit(struct tnode *n, void *arg)
{
	struct writer *wr = arg;
	struct tinode *ti = n->ino;
	int rc;

	if (S_ISDIR(ti->mode)) {
		struct dirent_spec *s;
		size_t ns;
		uint32_t sub;
		bool root = n == wr->b->tree.root;
		if (dir_specs(n, &s, &ns, &sub, root && wr->b->lost_found) < 0)
			return -ENOMEM;
		rc = ext4w_dir(wr->x, ti, root ? ti->ino : n->parent->ino->ino, s, ns, sub, &wr->w);
		free(s);
		if (rc == 0 && root && wr->b->lost_found)
			rc = ext4w_dir(wr->x, &wr->b->lf, ti->ino, NULL, 0, 0, &wr->w);
		return rc < 0 ? -1 : ext4w_xattrs(wr->x, ti, &wr->w);
	}
	if (ti->written)
		return 0;
	ti->written = true;
	if (S_ISREG(ti->mode) && ti->data_blocks)
		return 0; /* the data pass writes it */
	if (ext4w_special(wr->x, ti, &wr->w) < 0)
		return -1;
	return ext4w_xattrs(wr->x, ti, &wr->w);
}

struct pending {
	struct tinode **v;
	size_t n, cap;
};

static int pending_visit(struct tnode *n, void *arg)
{
	struct pending *p = arg;
	struct tinode *ti = n->ino;

	if (!S_ISREG(ti->mode) || !ti->data_blocks || ti->written)
		return 0;
	ti->written = true;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		struct tinode **v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = ti;
	return 0;
}

/* Fills each file from the spool. */
static int data_pass(struct writer *wr, struct tinode **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (ext4w_file_copy(wr->x, v[i], wr->b->spool.fd, &wr->w) < 0 ||
		    ext4w_xattrs(wr->x, v[i], &wr->w) < 0)
			return -1;
		wr->b->st.data_bytes += v[i]->data_blocks * FS_BLOCK;
	}
	return 0;
}

static void uuid_from_seed(const char *seed, uint8_t out[16])
{
	char d[OCI_DIGEST_SIZE];

	if (seed) {
		sha256_buf(seed, strlen(seed), d);
		for (int i = 0; i < 16; i++) {
			unsigned v;
			sscanf(d + 7 + 2 * i, "%2x", &v);
			out[i] = (uint8_t)v;
		}
	} else if (getrandom(out, 16, 0) != 16) {
		memset(out, 0x5a, 16);
	}
	out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
	out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

/* Creates the filesystem, growing it until the tree fits. */
static int create_sized(struct build *b, const char *path, struct ext4_plan *p,
			struct ext4w **x, struct where *w)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t free_blocks, free_inodes;
		if (ext4w_create(path, p, x, w) < 0)
			return -1;
		ext4w_free_counts(*x, &free_blocks, &free_inodes);
		uint64_t want = b->need_blocks + b->need_blocks / 64 + 64;
		if (free_blocks >= want && free_inodes >= b->need_inodes)
			return 0;
		ext4w_abort(*x);
		*x = NULL;
		if (free_blocks < want)
			p->blocks += want - free_blocks + p->blocks / 32;
		if (free_inodes < b->need_inodes)
			p->inodes += b->need_inodes - free_inodes + 16;
	}
	where_fail(w, "could not size the filesystem");
	return -1;
}

static int write_image(struct build *b, const char *path, struct ext4_plan *p, sm_error **err)
{
	struct writer wr = { .b = b };
	struct pending pend = { 0 };
	int rc = -1;

	if (create_sized(b, path, p, &wr.x, &wr.w) < 0) {
		sm_error_set(err, SM_E_IO, 0, "create %s: %s", path, wr.w.why);
		return -1;
	}
	if (tree_walk(&b->tree, meta_visit, &wr) != 0) {
		sm_error_set(err, wr.w.nospace ? SM_E_INTERNAL : SM_E_IO, 0, "write %s: %s", path,
			     wr.w.why);
		goto out;
	}
	tree_walk(&b->tree, plan_reset, NULL);
	if (tree_walk(&b->tree, pending_visit, &pend) != 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "plan file data");
		goto out;
	}
	if (data_pass(&wr, pend.v, pend.n) < 0) {
		sm_error_set(err, wr.w.nospace ? SM_E_INTERNAL : SM_E_IO, 0, "write %s: %s", path,
			     wr.w.why);
		goto out;
	}
	rc = ext4w_close(wr.x, &wr.w);
	wr.x = NULL;
	if (rc < 0)
		sm_error_set(err, SM_E_IO, 0, "%s: %s", path, wr.w.why);
out:
	if (wr.x)
		ext4w_abort(wr.x);
	if (rc < 0 && wr.w.nospace)
		rc = -ENOSPC;
	free(pend.v);
	return rc;
}

/* The spool lives next to the output: same filesystem, so the final copy
 * stays in the kernel, and space is checked where it will be used. */
static int spool_at(struct build *b, const char *out_path, sm_error **err)
{
	char *dir = strdup(out_path);
	struct where w = { 0 };
	int rc;

	if (!dir) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "spool");
		return -1;
	}
	rc = spool_open(&b->spool, dirname(dir), &w);
	free(dir);
	if (rc < 0)
		sm_error_set(err, SM_E_IO, 0, "%s", w.why);
	return rc;
}

int oci_rootfs_write(const struct oci_layer_src *layers, size_t n, const char *out_path,
		     const char *uuid_seed, oci_progress_fn progress, void *progress_arg,
		     struct oci_rootfs_stats *stats, sm_error **err)
{
	struct build *b = calloc(1, sizeof(*b));
	struct ext4_plan plan = { 0 };
	struct where w = { 0 };
	char *tmp = NULL;
	int rc = -1, fd;

	if (!b || tree_init(&b->tree) < 0) {
		free(b);
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "build rootfs");
		return -1;
	}
	b->layers = layers;
	b->n = n;
	b->progress = progress;
	b->progress_arg = progress_arg;
	b->spool.fd = -1;
	if (spool_at(b, out_path, err) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (scan_layer(b, i, err) < 0)
			goto out;
	if (spool_flush(&b->spool, &w) < 0) {
		sm_error_set(err, SM_E_IO, 0, "%s", w.why);
		goto out;
	}
	b->st.tar_bytes = b->raw_total;
	if (build_plan(b) < 0) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "plan rootfs");
		goto out;
	}
	uuid_from_seed(uuid_seed, plan.uuid);
	/* Room for the tree, ~1.5% + 256 KiB spare, and the inode tables;
	 * create_sized() grows this if libext2fs's overhead needs more. */
	plan.inodes = b->need_inodes + LOST_FOUND_INO + 16;
	plan.blocks = b->need_blocks + b->need_blocks / 64 + 64 + plan.inodes * 256 / FS_BLOCK + 64;
	if (asprintf(&tmp, "%s.tmp-XXXXXX", out_path) < 0 || (fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		sm_error_set(err, SM_E_IO, errno, "create a file next to %s", out_path);
		goto out;
	}
	/* Readable by the VM workers, whoever they run as. */
	if (fchmod(fd, 0644) < 0) {
		sm_error_set(err, SM_E_IO, errno, "chmod %s", tmp);
		close(fd);
		goto out;
	}
	close(fd);
	for (int attempt = 0;; attempt++) {
		sm_error *e = NULL;
		rc = write_image(b, tmp, &plan, &e);
		if (rc != -ENOSPC || attempt == 2) {
			if (rc < 0 && err && !*err)
				*err = e, e = NULL;
			sm_error_free(e);
			break;
		}
		/* Our size estimate was short: grow and write again. */
		sm_error_free(e);
		tree_walk(&b->tree, plan_reset, NULL);
		plan.blocks += plan.blocks / 2;
	}
	if (rc < 0)
		goto out;
	rc = durable_install(tmp, out_path, 0644);
	if (rc < 0)
		sm_error_set(err, SM_E_IO, -rc, "store %s", out_path);
	if (rc == 0) {
		struct stat s;
		b->st.files = b->need_inodes;
		if (stat(out_path, &s) == 0)
			b->st.image_bytes = (uint64_t)s.st_size;
		if (stats)
			*stats = b->st;
		(void)build_progress(b, b->raw_total, true); /* built: too late to cancel */
	}
out:
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	spool_close(&b->spool);
	tree_free(&b->tree);
	free(b);
	return rc < 0 ? -1 : 0;
}
