/*
 * The in-memory tree layers are applied to (OCI image spec, "Applying
 * Changesets"). Paths resolve inside the tree only: a symlink in a parent
 * component is followed, but an absolute target starts again at the tree's
 * root and '..' stops there, the way a chroot would. So a layer can point
 * a name anywhere; it can never reach outside the image.
 */
#include "oci/rootfs.h"

#include <errno.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SYMLINK_HOPS 40
#define NAME_MAX_EXT4 255
#define DEPTH_MAX 512
#define LINKS_MAX 65000 /* ext4's i_links_count */

int where_fail(struct where *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	return -1;
}

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tnode *)a)->name, ((const struct tnode *)b)->name);
}

static struct tinode *tinode_new(uint32_t mode)
{
	struct tinode *ti = calloc(1, sizeof(*ti));

	if (ti)
		ti->mode = mode;
	return ti;
}

static void tinode_put(struct tinode *ti)
{
	if (!ti)
		return;
	if (ti->nlink > 1) {
		ti->nlink--;
		return;
	}
	for (size_t i = 0; i < ti->nxattrs; i++) {
		free(ti->xattrs[i].name);
		free(ti->xattrs[i].value);
	}
	free(ti->xattrs);
	free(ti->link);
	free(ti->runs);
	free(ti);
}

static void node_free(void *p)
{
	struct tnode *n = p;

	if (n->children)
		tdestroy(n->children, node_free);
	tinode_put(n->ino);
	free(n->name);
	free(n);
}

int tree_init(struct tree *t)
{
	t->root = calloc(1, sizeof(*t->root));
	if (!t->root)
		return -1;
	t->root->name = strdup("");
	t->root->ino = tinode_new(S_IFDIR | 0755);
	if (!t->root->name || !t->root->ino) {
		free(t->root->name);
		free(t->root->ino);
		free(t->root);
		t->root = NULL;
		return -1;
	}
	t->root->ino->nlink = 1;
	return 0;
}

void tree_free(struct tree *t)
{
	if (t->root)
		node_free(t->root);
	t->root = NULL;
}

static struct tnode *node_lookup(const struct tnode *dir, const char *name)
{
	struct tnode key = { .name = (char *)name };
	struct tnode **hit = tfind(&key, &dir->children, node_cmp);

	return hit ? *hit : NULL;
}

static bool is_dir(const struct tnode *n) { return S_ISDIR(n->ino->mode); }

static void node_remove(struct tnode *n)
{
	struct tnode *parent = n->parent;

	tdelete(n, &parent->children, node_cmp);
	parent->nchildren--;
	node_free(n);
}

static struct tnode *node_add(struct tnode *dir, const char *name, size_t len,
			      struct tinode *ti, uint32_t layer)
{
	struct tnode *n = calloc(1, sizeof(*n));

	if (!n || !(n->name = strndup(name, len))) {
		free(n);
		return NULL;
	}
	if (!tsearch(n, &dir->children, node_cmp)) {
		free(n->name);
		free(n);
		return NULL;
	}
	n->parent = dir;
	n->ino = ti;
	n->layer = layer;
	ti->nlink++;
	dir->nchildren++;
	return n;
}

/* Steps *p past its next component other than "" and "."; NULL at the end. */
static const char *path_next(const char **p, size_t *len)
{
	while (**p) {
		const char *c;
		while (**p == '/')
			(*p)++;
		c = *p;
		while (**p && **p != '/')
			(*p)++;
		*len = (size_t)(*p - c);
		if (*len && !(*len == 1 && c[0] == '.'))
			return c;
	}
	return NULL;
}

static bool is_dotdot(const char *c, size_t len) { return len == 2 && c[0] == '.' && c[1] == '.'; }

int tree_path_norm(const char *in, char *buf, size_t n, struct where *w)
{
	size_t len = 0;
	const char *p = in;
	const char *c;
	size_t clen;

	while ((c = path_next(&p, &clen))) {
		if (is_dotdot(c, clen))
			return where_fail(w, "path has a '..' component");
		if (clen > NAME_MAX_EXT4)
			return where_fail(w, "path component longer than %d bytes", NAME_MAX_EXT4);
		if (len + clen + 2 > n)
			return where_fail(w, "path longer than %zu bytes", n - 1);
		if (len)
			buf[len++] = '/';
		memcpy(buf + len, c, clen);
		len += clen;
	}
	buf[len] = '\0';
	return 0;
}

static struct tnode *implicit_dir(struct tree *t, struct tnode *dir, const char *name,
				  size_t len, uint32_t layer)
{
	struct tinode *ti = tinode_new(S_IFDIR | 0755);
	struct tnode *n = ti ? node_add(dir, name, len, ti, layer) : NULL;

	if (!n) {
		free(ti);
		return NULL;
	}
	ti->mtime = ti->atime = ti->ctime = t->implicit_mtime;
	return n;
}

/*
 * Resolves `path` (relative to `start`) to a directory, following every
 * symlink inside the tree. With `create`, missing directories are made, as
 * extracting onto a real filesystem would.
 */
static int resolve_dir(struct tree *t, struct tnode *start, const char *path, bool create,
		       uint32_t layer, int *hops, int depth, struct tnode **out, struct where *w)
{
	struct tnode *cur = start;
	const char *p = path;

	if (depth > DEPTH_MAX)
		return where_fail(w, "symlinks nest too deeply");
	const char *c;
	size_t len;

	while ((c = path_next(&p, &len))) {
		char name[NAME_MAX_EXT4 + 1];
		if (is_dotdot(c, len)) {
			if (cur->parent)
				cur = cur->parent;
			continue;
		}
		if (len > NAME_MAX_EXT4)
			return where_fail(w, "path component longer than %d bytes", NAME_MAX_EXT4);
		memcpy(name, c, len);
		name[len] = '\0';
		struct tnode *next = node_lookup(cur, name);
		if (!next) {
			if (!create) {
				*out = NULL;
				return 0;
			}
			next = implicit_dir(t, cur, name, len, layer);
			if (!next)
				return where_fail(w, "out of memory");
		}
		if (S_ISLNK(next->ino->mode)) {
			if (++*hops > SYMLINK_HOPS)
				return where_fail(w, "too many levels of symlinks");
			const char *target = next->ino->link;
			struct tnode *base = target[0] == '/' ? t->root : cur;
			if (resolve_dir(t, base, target, create, layer, hops, depth + 1, &next, w) <
			    0)
				return -1;
			if (!next) {
				*out = NULL;
				return 0;
			}
		} else if (!is_dir(next)) {
			return where_fail(w, "'%s' is not a directory", name);
		}
		cur = next;
	}
	*out = cur;
	return 0;
}

/* Splits "a/b/c" into the directory "a/b" (resolved) and the name "c". */
static int resolve_parent(struct tree *t, const char *path, bool create, uint32_t layer,
			  struct tnode **dir, const char **name, struct where *w)
{
	char buf[4096];
	const char *slash = strrchr(path, '/');
	int hops = 0;

	if (!slash) {
		*dir = t->root;
		*name = path;
		return 0;
	}
	if ((size_t)(slash - path) >= sizeof(buf))
		return where_fail(w, "path too long");
	memcpy(buf, path, (size_t)(slash - path));
	buf[slash - path] = '\0';
	*name = slash + 1;
	return resolve_dir(t, t->root, buf, create, layer, &hops, 0, dir, w);
}

struct collect {
	struct tnode **v;
	size_t n;
};

static void collect_action(const void *nodep, VISIT which, void *arg)
{
	struct collect *c = arg;

	if (which == postorder || which == leaf)
		c->v[c->n++] = *(struct tnode *const *)nodep;
}

int tree_children(const struct tnode *dir, struct tnode ***out, size_t *n)
{
	struct collect c = { .v = calloc(dir->nchildren + 1, sizeof(*c.v)) };

	if (!c.v)
		return -1;
	if (dir->children)
		twalk_r(dir->children, collect_action, &c);
	*out = c.v;
	*n = c.n;
	return 0;
}

/* Removes what lower layers put under dir, keeping what this layer made
 * (an opaque directory, or a whiteout of a directory this layer declared). */
static int remove_lower(struct tnode *dir, uint32_t layer)
{
	struct tnode **kids;
	size_t n;

	if (tree_children(dir, &kids, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (kids[i]->layer < layer)
			node_remove(kids[i]);
		else if (is_dir(kids[i]) && remove_lower(kids[i], layer) < 0) {
			free(kids);
			return -1;
		}
	}
	free(kids);
	return 0;
}

static int apply_whiteout(struct tree *t, uint32_t layer, const char *path, const char *base,
			  struct where *w)
{
	char dirpath[4096];
	struct tnode *dir = NULL, *victim;
	size_t dlen = (size_t)(base - path);
	int hops = 0;

	if (dlen >= sizeof(dirpath))
		return where_fail(w, "path too long");
	memcpy(dirpath, path, dlen);
	dirpath[dlen] = '\0';
	if (resolve_dir(t, t->root, dirpath, false, layer, &hops, 0, &dir, w) < 0)
		return -1;
	if (!dir)
		return 0; /* nothing below to hide */
	if (!strcmp(base, ".wh..wh..opq"))
		return remove_lower(dir, layer) < 0 ? where_fail(w, "out of memory") : 0;
	if (!strncmp(base, ".wh..wh.", 8))
		return 0; /* aufs bookkeeping (.wh..wh.plnk etc.): no meaning here */
	const char *name = base + 4;
	if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return where_fail(w, "whiteout of '%s' is not allowed", name);
	victim = node_lookup(dir, name);
	if (!victim)
		return 0;
	if (victim->layer < layer) {
		node_remove(victim);
		return 0;
	}
	/* Declared again by this very layer: only lower content goes. */
	if (is_dir(victim) && remove_lower(victim, layer) < 0)
		return where_fail(w, "out of memory");
	return 0;
}

static int xattrs_copy(struct tinode *ti, const struct xattr *xs, size_t n)
{
	if (n == 0)
		return 0;
	ti->xattrs = calloc(n, sizeof(*xs));
	if (!ti->xattrs)
		return -1;
	for (size_t i = 0; i < n; i++) {
		ti->xattrs[i].name = strdup(xs[i].name);
		ti->xattrs[i].value = malloc(xs[i].len ? xs[i].len : 1);
		ti->nxattrs = i + 1;
		if (!ti->xattrs[i].name || !ti->xattrs[i].value)
			return -1;
		memcpy(ti->xattrs[i].value, xs[i].value, xs[i].len);
		ti->xattrs[i].len = xs[i].len;
	}
	return 0;
}

static void meta_set(struct tinode *ti, const struct tar_entry *e)
{
	ti->mode = (ti->mode & S_IFMT) | (e->perm & 07777);
	ti->uid = e->uid;
	ti->gid = e->gid;
	ti->mtime = e->mtime;
	ti->mtime_ns = e->mtime_ns;
	ti->atime = e->atime;
	ti->atime_ns = e->atime_ns;
	ti->ctime = e->ctime;
	ti->ctime_ns = e->ctime_ns;
}

static void xattrs_clear(struct tinode *ti)
{
	for (size_t i = 0; i < ti->nxattrs; i++) {
		free(ti->xattrs[i].name);
		free(ti->xattrs[i].value);
	}
	free(ti->xattrs);
	ti->xattrs = NULL;
	ti->nxattrs = 0;
}

static int apply_hardlink(struct tree *t, uint32_t layer, struct tnode *dir, const char *name,
			  const struct tar_entry *e, struct where *w)
{
	struct tnode *tdir = NULL, *target, *existing;
	const char *tname;

	if (resolve_parent(t, e->hardlink, false, layer, &tdir, &tname, w) < 0)
		return -1;
	target = tdir && *tname ? node_lookup(tdir, tname) : NULL;
	if (!target)
		return where_fail(w, "hardlink to '%s', which does not exist (yet) in the image",
			    e->hardlink);
	if (is_dir(target))
		return where_fail(w, "hardlink to directory '%s'", e->hardlink);
	if (target->ino->nlink >= LINKS_MAX)
		return where_fail(w, "more than %d hardlinks to '%s'", LINKS_MAX, e->hardlink);
	existing = node_lookup(dir, name);
	if (existing == target)
		return 0;
	/* The target may live under what this name replaces: hold it. */
	struct tinode *ti = target->ino;
	ti->nlink++;
	if (existing)
		node_remove(existing);
	struct tnode *n = node_add(dir, name, strlen(name), ti, layer);
	tinode_put(ti);
	return n ? 0 : where_fail(w, "out of memory");
}

int tree_apply(struct tree *t, uint32_t layer, const struct tar_entry *e,
	       struct tinode **file, struct where *w)
{
	const char *base = strrchr(e->path, '/');
	struct tnode *dir, *existing;
	struct tinode *ti;
	const char *name;

	*file = NULL;
	t->implicit_mtime = e->mtime;
	base = base ? base + 1 : e->path;
	if (!e->path[0]) {
		/* the root itself ("./") */
		if (e->type != S_IFDIR)
			return where_fail(w, "the root is not a directory");
		meta_set(t->root->ino, e);
		xattrs_clear(t->root->ino);
		t->root->layer = layer;
		return xattrs_copy(t->root->ino, e->xattrs, e->nxattrs) < 0 ? where_fail(w, "out of memory")
									       : 0;
	}
	if (!strncmp(base, ".wh.", 4))
		return apply_whiteout(t, layer, e->path, base, w);
	if (resolve_parent(t, e->path, true, layer, &dir, &name, w) < 0)
		return -1;
	if (e->type == 0)
		return apply_hardlink(t, layer, dir, name, e, w);
	existing = node_lookup(dir, name);
	if (existing && is_dir(existing) && e->type == S_IFDIR) {
		/* Directories merge: new metadata, children kept. */
		meta_set(existing->ino, e);
		xattrs_clear(existing->ino);
		existing->layer = layer;
		return xattrs_copy(existing->ino, e->xattrs, e->nxattrs) < 0
			       ? where_fail(w, "out of memory")
			       : 0;
	}
	if (existing)
		node_remove(existing);
	ti = tinode_new(e->type);
	if (!ti)
		return where_fail(w, "out of memory");
	meta_set(ti, e);
	if (e->type == S_IFLNK && !(ti->link = strdup(e->symlink))) {
		free(ti);
		return where_fail(w, "out of memory");
	}
	ti->rdev_major = e->rdev_major;
	ti->rdev_minor = e->rdev_minor;
	if (e->type == S_IFREG) {
		ti->size = e->size;
		*file = ti;
	}
	if (!node_add(dir, name, strlen(name), ti, layer)) {
		tinode_put(ti);
		return where_fail(w, "out of memory");
	}
	if (xattrs_copy(ti, e->xattrs, e->nxattrs) < 0)
		return where_fail(w, "out of memory");
	return 0;
}

static int walk_rec(struct tnode *n, tree_visit_fn fn, void *arg)
{
	struct tnode **kids;
	size_t k;
	int rc = fn(n, arg);

	if (rc || !is_dir(n) || !n->nchildren)
		return rc;
	if (tree_children(n, &kids, &k) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < k && !rc; i++)
		rc = walk_rec(kids[i], fn, arg);
	free(kids);
	return rc;
}

int tree_walk(struct tree *t, tree_visit_fn fn, void *arg)
{
	return walk_rec(t->root, fn, arg);
}
