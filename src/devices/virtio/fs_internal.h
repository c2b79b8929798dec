/*
 * virtio-fs inside: the FUSE server (fs_fuse.c) and its node and handle
 * tables (fs_node.c), apart from the virtio transport (fs.c) so unit tests
 * and the fuzzer drive the server with plain byte buffers over a temp
 * directory.
 *
 * Every host access goes through a node's O_PATH fd (the shared root's, or
 * one that LOOKUP opened relative to its parent's): one name component at
 * a time, checked by fs_name_ok(), through openat2() with RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS or an *at() call with
 * AT_SYMLINK_NOFOLLOW. No host path string is ever joined; snapshots keep
 * each node's name and parent and walk them again from the root.
 */
#ifndef SM_DEVICES_VIRTIO_FS_INTERNAL_H
#define SM_DEVICES_VIRTIO_FS_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/openat2.h>
#include <sys/types.h>

#include "devices/virtio/fs.h"

/* The biggest READ/WRITE payload (what INIT tells the guest) and its pages. */
#define FS_MAX_IO (1u << 20)
#define FS_MAX_PAGES (FS_MAX_IO / 4096)
/* A request: in header, the largest argument block (WRITE's), its payload. */
#define FS_MAX_REQUEST (FS_MAX_IO + 4096)
/* A reply: out header and FS_MAX_IO of data (READ, READDIR, xattr values). */
#define FS_MAX_REPLY (FS_MAX_IO + 16)
#define FS_MAX_XATTR_SIZE 65536u
#define FS_HASH_BUCKETS (1u << 15)
/* Guest-made symlinks leading out of the root that LOOKUP must still show. */
#define FS_MAX_GUEST_LINKS 4096u
/* Cache timeouts given with every entry and attribute (docs/mounts.md). */
#define FS_TIMEOUT_SEC 1

/* One host object the guest knows by a node ID (= slot + 1). */
struct fs_node {
	int fd;            /* O_PATH | O_NOFOLLOW; -1: stale (vanished at a restore) */
	uint64_t parent;   /* node ID; 0 for the root */
	char *name;        /* the entry in parent it was looked up by */
	uint64_t nlookup;  /* the guest's references (LOOKUP, CREATE, ... minus FORGET) */
	uint32_t refs;     /* children and open handles holding it */
	dev_t dev;
	ino_t ino;
	mode_t type;       /* S_IFMT bits */
	bool followed;     /* a host symlink out of the root, followed (policy follow) */
	bool outside;      /* followed, or below a followed one: out of the root */
	bool used;
	uint32_t hash_next; /* slot + 1 of the next node in its bucket; 0 ends */
};

struct fs_handle {
	int fd;            /* -1: free slot, or stale after a restore */
	uint64_t node;
	uint32_t flags;    /* the open flags, for a restore to open it again */
	bool used, dir;
};

struct fs_guest_link {
	dev_t dev;
	ino_t ino;
};

struct fs_server {
	struct virtio_fs_options opt;
	int root_fd;           /* owned: O_PATH | O_DIRECTORY */
	bool initialized;      /* INIT seen */
	bool as_root;          /* the worker's euid is 0 (read before the sandbox forbids asking) */
	struct fs_node *nodes;
	uint32_t nodes_cap, nodes_used, max_nodes;
	uint32_t free_nodes;   /* slot + 1 of the first free slot (chained by hash_next); 0: none */
	uint32_t hash[FS_HASH_BUCKETS];
	struct fs_handle *handles;
	uint32_t handles_cap, handles_used, handle_hint;
	struct fs_guest_link *guest_links;
	uint32_t nguest_links;
	struct virtio_fs_stats stats;
	uint8_t *reply;        /* FS_MAX_REPLY bytes */
};

/* ---- fs_node.c ---- */

/* Every resolution the device makes: nothing above the directory fd, no /proc magic. */
#define FS_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)
#define FS_ROOT_ID 1

/* openat2(dirfd, name) with O_CLOEXEC added, mode for O_CREAT: an fd or -errno. */
int fs_openat2(int dirfd, const char *name, int flags, mode_t mode, uint64_t resolve);

/* A server over the directory root_fd (taken over, closed by fs_server_free). NULL, errno set. */
struct fs_server *fs_server_new(int root_fd, const struct virtio_fs_options *opt);
void fs_server_free(struct fs_server *s);
/* Drops every node but the root and every handle (device reset, restore). */
void fs_server_clear(struct fs_server *s);

/* A name the guest may give: no '/', NUL, ".", "..", empty or over NAME_MAX. */
bool fs_name_ok(const char *name, size_t len);

/* The live node with this ID, or NULL. */
struct fs_node *fs_node_get(struct fs_server *s, uint64_t id);
/*
 * LOOKUP: name in directory node parent, under the symlink policy. On 0,
 * *id is the node (nlookup taken) and *st its attributes. -errno otherwise
 * (-EACCES: a host symlink leading outside the root that the policy hides).
 */
int fs_node_lookup(struct fs_server *s, uint64_t parent, const char *name, uint64_t *id,
		   struct stat *st);
/* The guest drops n references. */
void fs_node_forget(struct fs_server *s, uint64_t id, uint64_t n);
/* Takes/drops a reference held by a handle. */
void fs_node_ref(struct fs_server *s, uint64_t id);
void fs_node_unref(struct fs_server *s, uint64_t id);
/* A rename the guest made: the node of inode (dev, ino) at (from, name) follows it to (to, to_name). */
void fs_node_moved(struct fs_server *s, dev_t dev, ino_t ino, uint64_t from, const char *name,
		   uint64_t to, const char *to_name);
/* How many directories below the root the node is (its parent chain's length). */
unsigned fs_node_depth(struct fs_server *s, const struct fs_node *n);
/*
 * Opens the node's object for I/O with flags (O_RDONLY, O_WRONLY, O_RDWR,
 * O_APPEND, O_TRUNC, O_DIRECTORY...): a directory through "." of its own
 * fd, anything else through its name in its parent, refusing symlinks,
 * and only if that is still the same inode (-ESTALE otherwise). Never
 * through /proc/self/fd: see the comment in fs_node.c. Returns an fd or -errno.
 */
int fs_node_open(struct fs_server *s, struct fs_node *n, int flags);
/* Guest-made symlinks leading out of the root: is it one, remember one (-ENOSPC past the cap), forget one. */
bool fs_guest_link_has(const struct fs_server *s, dev_t dev, ino_t ino);
int fs_guest_link_add(struct fs_server *s, dev_t dev, ino_t ino);
void fs_guest_link_drop(struct fs_server *s, dev_t dev, ino_t ino);

/* A handle for fd on node: its ID (slot + 1), or -EMFILE past the cap. */
int64_t fs_handle_new(struct fs_server *s, int fd, uint64_t node, uint32_t flags, bool dir);
struct fs_handle *fs_handle_get(struct fs_server *s, uint64_t fh);
void fs_handle_release(struct fs_server *s, uint64_t fh);

/*
 * A restore (fs.c checks the saved values first): node id as name in
 * parent (restored before it), opened again as LOOKUP did; one that is
 * gone stays as a stale node (ESTALE to the guest). -EINVAL for an id
 * out of range or taken, or an unknown parent. fs_nodes_restored() ends
 * the nodes; then each handle, opened again with its flags (stale when
 * that fails). Call fs_server_clear() first.
 */
int fs_node_restore(struct fs_server *s, uint64_t id, uint64_t parent, const char *name,
		    uint64_t nlookup, bool followed);
void fs_nodes_restored(struct fs_server *s);
int fs_handle_restore(struct fs_server *s, uint64_t fh, uint64_t node, uint32_t flags, bool dir);

/* ---- fs_fuse.c ---- */

/*
 * One FUSE request: in_len bytes starting with its fuse_in_header. The
 * reply (fuse_out_header first) goes to s->reply; returns its length,
 * never over room, or 0 when the request takes no reply (FORGET).
 */
size_t fs_dispatch(struct fs_server *s, const uint8_t *in, size_t in_len, size_t room);

/* ---- fs.c: the snapshot of the tables ---- */
struct snap_writer;
struct snap_reader;
void fs_server_save(struct fs_server *s, struct snap_writer *w);
int fs_server_restore(struct fs_server *s, struct snap_reader *r);

#endif
