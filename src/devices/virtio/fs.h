/*
 * virtio-fs (virtio 1.2 section 5.11): one host directory served to the
 * guest over FUSE (<linux/fuse.h>), from inside the sandboxed worker.
 * Two queues: hiprio (FORGET) and one request queue, both handled on the
 * event loop thread like virtio-blk. Symlink policies, read-only mounts,
 * ownership and the cache mode: docs/mounts.md.
 */
#ifndef SM_DEVICES_VIRTIO_FS_H
#define SM_DEVICES_VIRTIO_FS_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"

#define VIRTIO_ID_FS 26
/* the config space's tag field (virtio 1.2, 5.11.4): not NUL-terminated when full */
#define VIRTIO_FS_TAG_BYTES 36
/* Open files and directories per device: past it OPEN answers EMFILE. */
#define VIRTIO_FS_MAX_HANDLES 4096u
/* Host objects the guest holds at once per device: past it LOOKUP answers ENFILE. */
#define VIRTIO_FS_MAX_NODES (1u << 17)

/* What symlinks may do (docs/mounts.md); the worker's --fs policy, in the device's terms. */
enum virtio_fs_symlinks {
	VIRTIO_FS_SYMLINKS_OPAQUE = 0,
	VIRTIO_FS_SYMLINKS_DENY,
	VIRTIO_FS_SYMLINKS_FOLLOW,
};
/* "opaque", "deny", "follow"; NULL for anything else. */
const char *virtio_fs_symlinks_name(enum virtio_fs_symlinks s);

struct virtio_fs_options {
	const char *tag;            /* 1..36 bytes */
	bool read_only;             /* every write answers EROFS */
	enum virtio_fs_symlinks symlinks;
	uint32_t max_nodes;         /* 0: VIRTIO_FS_MAX_NODES */
};

/*
 * Opens the shared directory dir (an O_PATH | O_DIRECTORY fd, so it is
 * open before the sandbox locks the worker down). Returns an fd, or -errno:
 * -ENOENT, -ENOTDIR for a file.
 */
int virtio_fs_open_root(const char *dir);

/*
 * The device over root_fd (from virtio_fs_open_root(); taken over, closed
 * with the device). NULL with errno set (EINVAL: a bad tag). Freed with
 * virtio_dev_free().
 */
struct virtio_dev *virtio_fs_create(const struct guest_mem *mem, int root_fd,
				    const struct virtio_fs_options *opt);

struct virtio_fs_stats {
	uint64_t requests, errors, unsupported;
	uint64_t lookups, forgets, opens, reads, writes, bytes_read, bytes_written;
	uint64_t escapes;   /* requests refused for leaving the root or a bad name */
	uint64_t nodes, handles;
};
void virtio_fs_get_stats(struct virtio_dev *d, struct virtio_fs_stats *s);

#endif
