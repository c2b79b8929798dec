/*
 * virtio-fs node and handle tables (fs_internal.h): what the guest's node
 * IDs and file handles stand for on the host, and the only code that
 * turns a name into a host object.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "devices/virtio/fs_internal.h"


int fs_openat2(int dirfd, const char *name, int flags, mode_t mode, uint64_t resolve)
{
	struct open_how how = { .flags = (uint64_t)(unsigned)flags | O_CLOEXEC, .resolve = resolve };
	int fd;

	if (flags & O_CREAT)
		how.mode = mode;
	do
		fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN);
	return fd < 0 ? -errno : fd;
}

bool fs_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > NAME_MAX || memchr(name, '/', len) || memchr(name, 0, len))
		return false;
	return !(len == 1 && name[0] == '.') && !(len == 2 && name[0] == '.' && name[1] == '.');
}

static uint32_t bucket_of(dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 32)) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 40) & (FS_HASH_BUCKETS - 1);
}

struct fs_node *fs_node_get(struct fs_server *s, uint64_t id)
{
	if (id == 0 || id > s->nodes_cap || !s->nodes[id - 1].used)
		return NULL;
	return &s->nodes[id - 1];
}

static uint64_t node_id(const struct fs_server *s, const struct fs_node *n)
{
	return (uint64_t)(n - s->nodes) + 1;
}

/* Room for one more node: the table grows by doubling up to max_nodes. */
static int node_slot(struct fs_server *s, uint32_t *slot)
{
	if (s->free_nodes) {
		*slot = s->free_nodes - 1;
		s->free_nodes = s->nodes[*slot].hash_next;
		return 0;
	}
	if (s->nodes_cap == s->max_nodes)
		return -ENFILE;
	uint32_t cap = s->nodes_cap * 2 > s->max_nodes ? s->max_nodes : s->nodes_cap * 2;
	struct fs_node *n = realloc(s->nodes, (size_t)cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	memset(n + s->nodes_cap, 0, (size_t)(cap - s->nodes_cap) * sizeof(*n));
	s->nodes = n;
	/* the new slots past the first go on the free list, lowest first */
	for (uint32_t i = cap - 1; i > s->nodes_cap; i--) {
		n[i].hash_next = s->free_nodes;
		s->free_nodes = i + 1;
	}
	*slot = s->nodes_cap;
	s->nodes_cap = cap;
	return 0;
}

static void hash_unlink(struct fs_server *s, uint32_t slot)
{
	struct fs_node *n = &s->nodes[slot];
	uint32_t *p = &s->hash[bucket_of(n->dev, n->ino)];

	while (*p && *p != slot + 1)
		p = &s->nodes[*p - 1].hash_next;
	if (*p)
		*p = n->hash_next;
}

/* Frees a node nobody holds, then each parent that only it held. */
static void node_put(struct fs_server *s, struct fs_node *n)
{
	while (n && n->used && n->nlookup == 0 && n->refs == 0 && node_id(s, n) != FS_ROOT_ID) {
		uint32_t slot = (uint32_t)(n - s->nodes);
		struct fs_node *parent = fs_node_get(s, n->parent);
		hash_unlink(s, slot);
		if (n->fd >= 0)
			close(n->fd);
		free(n->name);
		*n = (struct fs_node){ .fd = -1, .hash_next = s->free_nodes };
		s->free_nodes = slot + 1;
		s->nodes_used--;
		if (parent)
			parent->refs--;
		n = parent;
	}
}

void fs_node_forget(struct fs_server *s, uint64_t id, uint64_t count)
{
	struct fs_node *n = fs_node_get(s, id);

	if (!n || id == FS_ROOT_ID)
		return;
	n->nlookup = count > n->nlookup ? 0 : n->nlookup - count;
	node_put(s, n);
}

void fs_node_ref(struct fs_server *s, uint64_t id)
{
	struct fs_node *n = fs_node_get(s, id);

	if (n)
		n->refs++;
}

void fs_node_unref(struct fs_server *s, uint64_t id)
{
	struct fs_node *n = fs_node_get(s, id);

	if (n && n->refs) {
		n->refs--;
		node_put(s, n);
	}
}

/* The node of (dev, ino) that is name in parent, or NULL. */
static struct fs_node *node_find(struct fs_server *s, dev_t dev, ino_t ino, uint64_t parent,
				 const char *name)
{
	for (uint32_t i = s->hash[bucket_of(dev, ino)]; i; i = s->nodes[i - 1].hash_next) {
		struct fs_node *n = &s->nodes[i - 1];
		if (n->dev == dev && n->ino == ino && (!name || (n->parent == parent && !strcmp(n->name, name))))
			return n;
	}
	return NULL;
}

/* A new node for fd (taken over) as name in parent. */
static int node_add(struct fs_server *s, struct fs_node *parent, const char *name, int fd,
		    const struct stat *st, bool followed, uint64_t *id)
{
	uint32_t slot;
	int rc = node_slot(s, &slot);
	char *copy = rc == 0 ? strdup(name) : NULL;

	if (!copy) {
		if (rc == 0) {
			s->nodes[slot].hash_next = s->free_nodes;
			s->free_nodes = slot + 1;
		}
		close(fd);
		return rc < 0 ? rc : -ENOMEM;
	}
	uint32_t b = bucket_of(st->st_dev, st->st_ino);
	s->nodes[slot] = (struct fs_node){
		.fd = fd, .parent = node_id(s, parent), .name = copy, .nlookup = 1,
		.dev = st->st_dev, .ino = st->st_ino, .type = st->st_mode & S_IFMT,
		.followed = followed, .outside = followed || parent->outside, .used = true,
		.hash_next = s->hash[b],
	};
	s->hash[b] = slot + 1;
	parent->refs++;
	s->nodes_used++;
	*id = slot + 1;
	return 0;
}

/* The node is now name in directory node to (a rename, or a directory moved on the host). */
static void node_relink(struct fs_server *s, struct fs_node *n, uint64_t to, const char *name)
{
	struct fs_node *dst = fs_node_get(s, to);
	uint64_t from = n->parent;
	char *copy;

	if (!dst || (from == to && !strcmp(n->name, name)) || !(copy = strdup(name)))
		return;
	free(n->name);
	n->name = copy;
	if (from != to) {
		struct fs_node *old = fs_node_get(s, from);
		dst->refs++;
		n->parent = to;
		if (old && old->refs) {
			old->refs--;
			node_put(s, old);
		}
	}
}

void fs_node_moved(struct fs_server *s, dev_t dev, ino_t ino, uint64_t from, const char *name,
		   uint64_t to, const char *to_name)
{
	struct fs_node *n = node_find(s, dev, ino, from, name);

	if (n)
		node_relink(s, n, to, to_name);
}

unsigned fs_node_depth(struct fs_server *s, const struct fs_node *n)
{
	unsigned depth = 0;

	while (n && n->parent && depth <= s->max_nodes) {
		n = fs_node_get(s, n->parent);
		depth++;
	}
	return depth;
}

/*
 * Does a symlink in a directory depth levels below the root lead out of
 * it? Absolute targets name host paths; a relative one leaves when its
 * ".." climb above the root. Lexical on purpose: the guest resolves the
 * target itself, one LOOKUP per component, each checked here again.
 */
static bool target_leaves(const char *t, size_t len, unsigned depth)
{
	long d = depth;

	if (len && t[0] == '/')
		return true;
	for (size_t i = 0; i < len;) {
		size_t n = 0;
		while (i + n < len && t[i + n] != '/')
			n++;
		if (n == 2 && t[i] == '.' && t[i + 1] == '.')
			d--;
		else if (n && !(n == 1 && t[i] == '.'))
			d++;
		if (d < 0)
			return true;
		i += n + 1;
	}
	return false;
}

/*
 * A host symlink found at LOOKUP. 0: show it as a symlink; 1: follow it
 * (policy follow); -EACCES: it leads out and the policy hides it.
 */
static int symlink_verdict(struct fs_server *s, struct fs_node *parent, int fd, const struct stat *st)
{
	char t[PATH_MAX];
	ssize_t len;

	if (fs_guest_link_has(s, st->st_dev, st->st_ino))
		return 0;
	len = readlinkat(fd, "", t, sizeof(t));
	if (len < 0)
		return -errno;
	/* below a followed link the depth is unknown: only absolute targets lead out */
	unsigned depth = parent->outside ? (unsigned)PATH_MAX : fs_node_depth(s, parent);
	if (!target_leaves(t, (size_t)len, depth))
		return 0;
	if (s->opt.symlinks == VIRTIO_FS_SYMLINKS_FOLLOW)
		return 1;
	s->stats.escapes++;
	return -EACCES;
}

/* The entry itself (symlinks not followed), or the object a followed symlink leads to. */
static int lookup_open(struct fs_server *s, struct fs_node *p, const char *name, struct stat *st,
		       bool *followed)
{
	int fd = fs_openat2(p->fd, name, O_PATH | O_NOFOLLOW, 0, p->outside ? RESOLVE_NO_MAGICLINKS : FS_RESOLVE);

	*followed = false;
	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0)
		return close(fd), -errno;
	if (!S_ISLNK(st->st_mode))
		return fd;
	int v = symlink_verdict(s, p, fd, st);
	if (v <= 0)
		return v < 0 ? (close(fd), v) : fd;
	close(fd);
	fd = fs_openat2(p->fd, name, O_PATH, 0, RESOLVE_NO_MAGICLINKS);
	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0)
		return close(fd), -errno;
	*followed = true;
	return fd;
}

int fs_node_lookup(struct fs_server *s, uint64_t parent, const char *name, uint64_t *id,
		   struct stat *st)
{
	struct fs_node *p = fs_node_get(s, parent);
	bool followed;

	if (!p)
		return -ESTALE;
	if (p->fd < 0)
		return -ESTALE;
	if (p->type != S_IFDIR)
		return -ENOTDIR;
	int fd = lookup_open(s, p, name, st, &followed);
	if (fd < 0)
		return fd;
	/* one node per host object: a file by any of its names, a directory by its one name */
	struct fs_node *n = node_find(s, st->st_dev, st->st_ino, parent, name);
	if (!n)
		n = node_find(s, st->st_dev, st->st_ino, 0, NULL);
	if (n && n->followed == followed) {
		close(fd);
		if (n->type == S_IFDIR)
			node_relink(s, n, parent, name);
		n->nlookup++;
		*id = node_id(s, n);
		return 0;
	}
	return node_add(s, p, name, fd, st, followed, id);
}

/*
 * Why not open("/proc/self/fd/N") on the node's O_PATH fd, as other
 * servers do: that is a magic link, which RESOLVE_NO_MAGICLINKS exists
 * to ban; /proc need not be there in the sandbox; and it would open
 * whatever the fd holds without looking at the name the guest sees. A
 * directory opens through "." of its own fd, which is the same inode by
 * construction. Anything else opens by its name in its parent's fd with
 * O_NOFOLLOW and no symlinks allowed, so a name swapped for a symlink
 * (to "/" or anywhere) fails with ELOOP; a name swapped for another
 * object inside the root is caught by the inode check (ESTALE). Either
 * way the open never leaves the directory the parent's fd holds. O_TRUNC
 * waits for that check.
 */
int fs_node_open(struct fs_server *s, struct fs_node *n, int flags)
{
	struct fs_node *p = fs_node_get(s, n->parent);
	bool trunc = flags & O_TRUNC;
	struct stat st;
	int fd;

	flags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_PATH);
	if (n->fd < 0)
		return -ESTALE;
	if (n->type == S_IFLNK)
		return -ELOOP;
	if (n->type == S_IFDIR)
		fd = fs_openat2(n->fd, ".", flags | O_DIRECTORY, 0, n->outside ? RESOLVE_NO_MAGICLINKS : FS_RESOLVE);
	else if (!p || p->fd < 0)
		return -ESTALE;
	else if (n->followed)
		fd = fs_openat2(p->fd, n->name, flags, 0, RESOLVE_NO_MAGICLINKS);
	else
		fd = fs_openat2(p->fd, n->name, flags | O_NOFOLLOW, 0, p->outside ? RESOLVE_NO_MAGICLINKS : FS_RESOLVE);
	if (fd < 0)
		return fd == -ENOENT ? -ESTALE : fd;
	if (fstat(fd, &st) < 0 || st.st_dev != n->dev || st.st_ino != n->ino)
		return close(fd), -ESTALE;
	if (trunc && ftruncate(fd, 0) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

bool fs_guest_link_has(const struct fs_server *s, dev_t dev, ino_t ino)
{
	for (uint32_t i = 0; i < s->nguest_links; i++)
		if (s->guest_links[i].dev == dev && s->guest_links[i].ino == ino)
			return true;
	return false;
}

int fs_guest_link_add(struct fs_server *s, dev_t dev, ino_t ino)
{
	if (fs_guest_link_has(s, dev, ino))
		return 0;
	if (s->nguest_links == FS_MAX_GUEST_LINKS)
		return -ENOSPC;
	if (!s->guest_links && !(s->guest_links = calloc(FS_MAX_GUEST_LINKS, sizeof(*s->guest_links))))
		return -ENOMEM;
	s->guest_links[s->nguest_links++] = (struct fs_guest_link){ dev, ino };
	return 0;
}

void fs_guest_link_drop(struct fs_server *s, dev_t dev, ino_t ino)
{
	for (uint32_t i = 0; i < s->nguest_links; i++)
		if (s->guest_links[i].dev == dev && s->guest_links[i].ino == ino)
			s->guest_links[i] = s->guest_links[--s->nguest_links];
}

/* ---- handles ---- */

int64_t fs_handle_new(struct fs_server *s, int fd, uint64_t node, uint32_t flags, bool dir)
{
	if (s->handles_used == VIRTIO_FS_MAX_HANDLES)
		return -EMFILE;
	if (s->handles_used == s->handles_cap) {
		uint32_t cap = s->handles_cap ? s->handles_cap * 2 : 64;
		struct fs_handle *h = realloc(s->handles, (size_t)cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		memset(h + s->handles_cap, 0, (size_t)(cap - s->handles_cap) * sizeof(*h));
		s->handle_hint = s->handles_cap;
		s->handles = h;
		s->handles_cap = cap;
	}
	uint32_t i = s->handle_hint;
	while (s->handles[i].used)
		i = (i + 1) % s->handles_cap;
	s->handles[i] = (struct fs_handle){ .fd = fd, .node = node, .flags = flags, .used = true, .dir = dir };
	s->handle_hint = (i + 1) % s->handles_cap;
	s->handles_used++;
	fs_node_ref(s, node);
	return (int64_t)i + 1;
}

struct fs_handle *fs_handle_get(struct fs_server *s, uint64_t fh)
{
	if (fh == 0 || fh > s->handles_cap || !s->handles[fh - 1].used)
		return NULL;
	return &s->handles[fh - 1];
}

void fs_handle_release(struct fs_server *s, uint64_t fh)
{
	struct fs_handle *h = fs_handle_get(s, fh);

	if (!h)
		return;
	if (h->fd >= 0)
		close(h->fd);
	uint64_t node = h->node;
	*h = (struct fs_handle){ .fd = -1 };
	s->handles_used--;
	fs_node_unref(s, node);
}

/* ---- the server ---- */

void fs_server_clear(struct fs_server *s)
{
	for (uint32_t i = 0; i < s->handles_cap; i++)
		if (s->handles[i].used && s->handles[i].fd >= 0)
			close(s->handles[i].fd);
	if (s->handles)
		memset(s->handles, 0, (size_t)s->handles_cap * sizeof(*s->handles));
	s->handles_used = 0;
	s->handle_hint = 0;
	memset(s->hash, 0, sizeof(s->hash));
	s->free_nodes = 0;
	for (uint32_t i = s->nodes_cap; i-- > 1;) {
		if (s->nodes[i].used) {
			if (s->nodes[i].fd >= 0)
				close(s->nodes[i].fd);
			free(s->nodes[i].name);
		}
		s->nodes[i] = (struct fs_node){ .fd = -1, .hash_next = s->free_nodes };
		s->free_nodes = i + 1;
	}
	struct fs_node *root = &s->nodes[0];
	root->refs = 0;
	root->hash_next = 0;
	s->hash[bucket_of(root->dev, root->ino)] = 1;
	s->nodes_used = 1;
	s->nguest_links = 0;
	s->initialized = false;
}

struct fs_server *fs_server_new(int root_fd, const struct virtio_fs_options *opt)
{
	struct fs_server *s = calloc(1, sizeof(*s));
	struct stat st;

	if (!s || fstat(root_fd, &st) < 0 || !(s->reply = malloc(FS_MAX_REPLY)) ||
	    !(s->nodes = calloc(64, sizeof(*s->nodes)))) {
		int e = s ? errno : ENOMEM;
		if (s)
			free(s->reply);
		free(s);
		close(root_fd);
		errno = e;
		return NULL;
	}
	s->opt = *opt;
	s->root_fd = root_fd;
	s->as_root = geteuid() == 0;
	s->max_nodes = opt->max_nodes ? opt->max_nodes : VIRTIO_FS_MAX_NODES;
	if (s->max_nodes < 2)
		s->max_nodes = 2;
	s->nodes_cap = 64 < s->max_nodes ? 64 : s->max_nodes;
	s->nodes[0] = (struct fs_node){
		.fd = root_fd, .name = NULL, .nlookup = 1, .dev = st.st_dev, .ino = st.st_ino,
		.type = S_IFDIR, .used = true,
	};
	fs_server_clear(s);
	return s;
}

void fs_server_free(struct fs_server *s)
{
	if (!s)
		return;
	fs_server_clear(s);
	close(s->root_fd);
	free(s->nodes);
	free(s->handles);
	free(s->guest_links);
	free(s->reply);
	free(s);
}

/* ---- a restore: the tables rebuilt from a snapshot (fs.c reads and checks it) ---- */

/* Makes slot id - 1 exist (the table grows as needed); false past max_nodes. */
static bool node_slot_at(struct fs_server *s, uint64_t id)
{
	if (id < 2 || id > s->max_nodes)
		return false;
	if (id <= s->nodes_cap)
		return true;
	struct fs_node *n = realloc(s->nodes, (size_t)id * sizeof(*n));
	if (!n)
		return false;
	memset(n + s->nodes_cap, 0, (size_t)(id - s->nodes_cap) * sizeof(*n));
	for (uint32_t i = s->nodes_cap; i < id; i++)
		n[i].fd = -1;
	s->nodes = n;
	s->nodes_cap = (uint32_t)id;
	return true;
}

/* Opens name in p again as LOOKUP did; -errno when it is gone or not allowed any more. */
static int reopen_entry(struct fs_server *s, struct fs_node *p, const char *name, bool followed)
{
	if (p->fd < 0 || p->type != S_IFDIR)
		return -ESTALE;
	if (!followed)
		return fs_openat2(p->fd, name, O_PATH | O_NOFOLLOW, 0,
				  p->outside ? RESOLVE_NO_MAGICLINKS : FS_RESOLVE);
	if (s->opt.symlinks != VIRTIO_FS_SYMLINKS_FOLLOW)
		return -EACCES;
	return fs_openat2(p->fd, name, O_PATH, 0, RESOLVE_NO_MAGICLINKS);
}

int fs_node_restore(struct fs_server *s, uint64_t id, uint64_t parent, const char *name,
		    uint64_t nlookup, bool followed)
{
	struct fs_node *p = fs_node_get(s, parent);
	struct stat st;

	if (!p || !node_slot_at(s, id) || s->nodes[id - 1].used)
		return -EINVAL;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	int fd = reopen_entry(s, p, name, followed);
	if (fd >= 0 && fstat(fd, &st) < 0) {
		close(fd);
		fd = -1;
	}
	struct fs_node *n = &s->nodes[id - 1];
	*n = (struct fs_node){ .fd = fd < 0 ? -1 : fd, .parent = parent, .name = copy, .nlookup = nlookup,
			       .followed = followed, .outside = followed || p->outside, .used = true };
	p->refs++;
	s->nodes_used++;
	if (fd < 0)
		return 0; /* vanished: the guest gets ESTALE on it */
	n->dev = st.st_dev;
	n->ino = st.st_ino;
	n->type = st.st_mode & S_IFMT;
	uint32_t b = bucket_of(st.st_dev, st.st_ino);
	n->hash_next = s->hash[b];
	s->hash[b] = (uint32_t)id;
	return 0;
}

/* After the nodes are back: every slot nobody took goes on the free list. */
void fs_nodes_restored(struct fs_server *s)
{
	s->free_nodes = 0;
	for (uint32_t i = s->nodes_cap; i-- > 1;)
		if (!s->nodes[i].used) {
			s->nodes[i] = (struct fs_node){ .fd = -1, .hash_next = s->free_nodes };
			s->free_nodes = i + 1;
		}
}

int fs_handle_restore(struct fs_server *s, uint64_t fh, uint64_t node, uint32_t flags, bool dir)
{
	struct fs_node *n = fs_node_get(s, node);

	if (!n || fh == 0 || fh > VIRTIO_FS_MAX_HANDLES || (n->fd >= 0 && dir != (n->type == S_IFDIR)))
		return -EINVAL;
	while (s->handles_cap < fh) {
		uint32_t cap = s->handles_cap ? s->handles_cap * 2 : 64;
		struct fs_handle *h = realloc(s->handles, (size_t)cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		memset(h + s->handles_cap, 0, (size_t)(cap - s->handles_cap) * sizeof(*h));
		s->handles = h;
		s->handles_cap = cap;
	}
	if (s->handles[fh - 1].used)
		return -EINVAL;
	int fd = fs_node_open(s, n, (int)flags);
	s->handles[fh - 1] = (struct fs_handle){ .fd = fd < 0 ? -1 : fd, .node = node, .flags = flags,
						 .used = true, .dir = dir };
	s->handles_used++;
	n->refs++;
	return 0;
}
