/*
 * virtio-fs device (fs.h): the virtio side of the FUSE server in
 * fs_fuse.c. Each chain is one request: its readable part (header,
 * arguments, WRITE data) is copied out of guest memory before it is
 * parsed, so the guest cannot change it under the parser; the reply is
 * built apart and copied into the writable part. Requests run on the
 * event loop thread to completion, so a snapshot never sees one half
 * done and the node and handle tables are all the state there is.
 */
#include "devices/virtio/fs.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio/fs_internal.h"
#include "devices/virtio/vdev.h"
#include "base/snapshot.h"

#define FS_HIPRIO_QUEUE 0
#define FS_REQUEST_QUEUE 1
#define FS_BUDGET 64
#define FS_IN_HEADER_BYTES 40

struct fs_config {
	char tag[VIRTIO_FS_TAG_BYTES];
	uint32_t num_request_queues;
} __attribute__((packed));

struct fs_dev {
	struct virtio_dev dev;
	struct fs_server *srv;
	struct fs_config cfg;
	struct vdev_pending pend;
	struct virtq_chain *chain;
	uint8_t *in;         /* FS_MAX_REQUEST bytes: the request copied out */
};

static struct fs_dev *fs_of(struct virtio_dev *d)
{
	return d->priv;
}

static uint64_t fs_features(struct virtio_dev *d)
{
	return 0;
}

static void fs_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, (const uint8_t *)&fs_of(d)->cfg + off, len);
}

static void fs_reset(struct virtio_dev *d)
{
	struct fs_dev *f = fs_of(d);

	vdev_pending_clear(&f->pend);
	fs_server_clear(f->srv);
}

/* One chain: -EINVAL when it has no room for a request header at all. */
static int fs_chain(struct fs_dev *f, const struct virtq_chain *c, uint32_t *written)
{
	uint64_t n = c->out_len < FS_MAX_REQUEST ? c->out_len : FS_MAX_REQUEST;

	*written = 0;
	if (n < FS_IN_HEADER_BYTES)
		return -EINVAL;
	virtq_chain_read(c, 0, f->in, n);
	size_t room = c->in_len < FS_MAX_REPLY ? (size_t)c->in_len : FS_MAX_REPLY;
	size_t len = fs_dispatch(f->srv, f->in, (size_t)n, room);
	if (len)
		*written = (uint32_t)virtq_chain_write(c, 0, f->srv->reply, len);
	return 0;
}

static void fs_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct fs_dev *f = fs_of(d);
	unsigned done = 0;

	pthread_mutex_lock(&d->lock);
	if (q > FS_REQUEST_QUEUE || !virtio_dev_live(d)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	while (done < FS_BUDGET && vdev_pop(d, &f->pend, q, f->chain) == 1) {
		uint32_t written;
		if (fs_chain(f, f->chain, &written) < 0) {
			vdev_defer_fail(&f->pend, "request of %llu bytes: shorter than a FUSE header",
					(unsigned long long)f->chain->out_len);
			break;
		}
		vdev_push(d, &f->pend, q, f->chain->head, written);
		done++;
	}
	if (done == FS_BUDGET)
		virtio_dev_requeue(d, q);
	vdev_unlock(d, &f->pend);
}

/* ---- snapshot: the mount's settings, then the node and handle tables ---- */

/* Node IDs in an order where each parent comes before its children. */
static uint32_t *save_order(struct fs_server *s, uint32_t *count)
{
	uint32_t *order = malloc((size_t)s->nodes_cap * sizeof(*order));
	uint32_t *stack = malloc((size_t)s->nodes_cap * sizeof(*stack));
	uint8_t *seen = calloc(s->nodes_cap, 1);
	uint32_t n = 0;

	if (!order || !stack || !seen) {
		free(order);
		order = NULL;
		goto out;
	}
	seen[0] = 1;
	for (uint32_t i = 1; i < s->nodes_cap; i++) {
		uint32_t depth = 0;
		for (uint32_t j = i; s->nodes[j].used && !seen[j]; j = (uint32_t)s->nodes[j].parent - 1) {
			seen[j] = 1;
			stack[depth++] = j;
		}
		while (depth)
			order[n++] = stack[--depth] + 1;
	}
out:
	free(stack);
	free(seen);
	*count = n;
	return order;
}

void fs_server_save(struct fs_server *s, struct snap_writer *w)
{
	uint32_t n;
	uint32_t *order = save_order(s, &n);

	if (!order) {
		snap_writer_fail(w, -ENOMEM, "virtio-fs: no memory for the node list");
		return;
	}
	snap_put_u8(w, s->initialized);
	snap_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct fs_node *node = &s->nodes[order[i] - 1];
		snap_put_u32(w, order[i]);
		snap_put_u32(w, (uint32_t)node->parent);
		snap_put_u64(w, node->nlookup);
		snap_put_u8(w, node->followed);
		snap_put_blob(w, node->name, strlen(node->name));
	}
	free(order);
	snap_put_u32(w, s->handles_used);
	for (uint32_t i = 0; i < s->handles_cap; i++) {
		const struct fs_handle *h = &s->handles[i];
		if (!h->used)
			continue;
		snap_put_u32(w, i + 1);
		snap_put_u32(w, (uint32_t)h->node);
		snap_put_u32(w, h->flags);
		snap_put_u8(w, h->dir);
	}
	snap_put_u32(w, s->nguest_links);
	for (uint32_t i = 0; i < s->nguest_links; i++) {
		snap_put_u64(w, (uint64_t)s->guest_links[i].dev);
		snap_put_u64(w, (uint64_t)s->guest_links[i].ino);
	}
}

static int restore_nodes(struct fs_server *s, struct snap_reader *r)
{
	uint32_t n, id, parent;
	uint64_t nlookup;
	uint8_t followed;
	char name[NAME_MAX + 1];
	size_t len;

	if (snap_get_u32(r, &n) < 0)
		return -EBADMSG;
	if (n >= s->max_nodes)
		return snap_reader_fail(r, "virtio-fs: %u nodes; this device holds at most %u", n, s->max_nodes - 1);
	for (uint32_t i = 0; i < n; i++) {
		if (snap_get_u32(r, &id) < 0 || snap_get_u32(r, &parent) < 0 || snap_get_u64(r, &nlookup) < 0 ||
		    snap_get_u8(r, &followed) < 0 || snap_get_blob_max(r, name, NAME_MAX, &len) < 0)
			return -EBADMSG;
		name[len] = 0;
		if (!fs_name_ok(name, len) || followed > 1)
			return snap_reader_fail(r, "virtio-fs: node %u: a bad name or flag", id);
		int rc = fs_node_restore(s, id, parent, name, nlookup, followed);
		if (rc == -EINVAL)
			return snap_reader_fail(r, "virtio-fs: node %u in %u: the ID is out of range or taken, or "
						"its parent is unknown", id, parent);
		if (rc < 0)
			return snap_reader_fail(r, "virtio-fs: node %u: %s", id, strerror(-rc));
	}
	fs_nodes_restored(s);
	return 0;
}

#define FS_HANDLE_FLAGS (O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC | O_DIRECT)

static int restore_handles(struct fs_server *s, struct snap_reader *r)
{
	uint32_t n, fh, node, flags;
	uint8_t dir;

	if (snap_get_u32(r, &n) < 0)
		return -EBADMSG;
	if (n > VIRTIO_FS_MAX_HANDLES)
		return snap_reader_fail(r, "virtio-fs: %u open files; at most %u", n, VIRTIO_FS_MAX_HANDLES);
	for (uint32_t i = 0; i < n; i++) {
		if (snap_get_u32(r, &fh) < 0 || snap_get_u32(r, &node) < 0 || snap_get_u32(r, &flags) < 0 ||
		    snap_get_u8(r, &dir) < 0)
			return -EBADMSG;
		if (dir > 1 || (flags & ~(uint32_t)FS_HANDLE_FLAGS) || (s->opt.read_only && (flags & O_ACCMODE)))
			return snap_reader_fail(r, "virtio-fs: open file %u: bad flags %#x", fh, flags);
		if (fs_handle_restore(s, fh, node, flags, dir) < 0)
			return snap_reader_fail(r, "virtio-fs: open file %u of node %u: the ID is out of range or "
						"taken, or the node is unknown or of another kind", fh, node);
	}
	return 0;
}

static int restore_links(struct fs_server *s, struct snap_reader *r)
{
	uint32_t n;
	uint64_t dev, ino;

	if (snap_get_u32(r, &n) < 0)
		return -EBADMSG;
	if (n > FS_MAX_GUEST_LINKS)
		return snap_reader_fail(r, "virtio-fs: %u guest symlinks; at most %u", n, FS_MAX_GUEST_LINKS);
	for (uint32_t i = 0; i < n; i++) {
		if (snap_get_u64(r, &dev) < 0 || snap_get_u64(r, &ino) < 0)
			return -EBADMSG;
		if (fs_guest_link_add(s, (dev_t)dev, (ino_t)ino) < 0)
			return snap_reader_fail(r, "virtio-fs: no memory for the guest symlinks");
	}
	return 0;
}

int fs_server_restore(struct fs_server *s, struct snap_reader *r)
{
	uint8_t init;
	int rc;

	fs_server_clear(s);
	if (snap_get_u8(r, &init) < 0)
		return -EBADMSG;
	if (init > 1)
		return snap_reader_fail(r, "virtio-fs: bad state byte %u", init);
	if ((rc = restore_nodes(s, r)) < 0 || (rc = restore_handles(s, r)) < 0 || (rc = restore_links(s, r)) < 0) {
		fs_server_clear(s);
		return rc;
	}
	s->initialized = init;
	return 0;
}

static int fs_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct fs_dev *f = fs_of(d);

	snap_put_bytes(w, f->cfg.tag, sizeof(f->cfg.tag));
	snap_put_u8(w, f->srv->opt.read_only);
	snap_put_u8(w, (uint8_t)f->srv->opt.symlinks);
	fs_server_save(f->srv, w); /* a failure is recorded in w, reported when it is written */
	return 0;
}

/* The mount given at restore must be the one captured: same tag, read-only-ness and policy. */
static int fs_restore(struct virtio_dev *d, struct snap_reader *r)
{
	struct fs_dev *f = fs_of(d);
	char tag[VIRTIO_FS_TAG_BYTES];
	uint8_t ro, policy;

	if (snap_get_bytes(r, tag, sizeof(tag)) < 0 || snap_get_u8(r, &ro) < 0 || snap_get_u8(r, &policy) < 0)
		return -EBADMSG;
	if (memcmp(tag, f->cfg.tag, sizeof(tag)) != 0)
		return snap_reader_fail(r, "virtio-fs: the mount's tag is '%.36s'; at the capture it was '%.36s'",
					f->cfg.tag, tag);
	if ((ro != 0) != f->srv->opt.read_only || policy != (uint8_t)f->srv->opt.symlinks)
		return snap_reader_fail(r, "virtio-fs %.36s: read-only %s and symlinks=%s given; at the capture: "
					"read-only %s, symlinks=%s", f->cfg.tag, f->srv->opt.read_only ? "yes" : "no",
					virtio_fs_symlinks_name(f->srv->opt.symlinks), ro ? "yes" : "no",
					virtio_fs_symlinks_name((enum virtio_fs_symlinks)policy) ?
					virtio_fs_symlinks_name((enum virtio_fs_symlinks)policy) : "(bad)");
	vdev_pending_clear(&f->pend);
	return fs_server_restore(f->srv, r);
}

static void fs_destroy(struct virtio_dev *d)
{
	struct fs_dev *f = fs_of(d);

	fs_server_free(f->srv);
	free(f->chain);
	free(f->in);
}

static void fs_stats(struct virtio_dev *d, struct virtio_dev_stats *out)
{
	struct virtio_fs_stats s;

	virtio_fs_get_stats(d, &s);
	*out = (struct virtio_dev_stats){ {
		{ "requests", s.requests }, { "errors", s.errors }, { "unsupported", s.unsupported },
		{ "lookups", s.lookups }, { "forgets", s.forgets }, { "opens", s.opens },
		{ "reads", s.reads }, { "writes", s.writes }, { "bytes_read", s.bytes_read },
		{ "bytes_written", s.bytes_written }, { "refused", s.escapes }, { "nodes", s.nodes },
		{ "handles", s.handles },
	} };
}

static const struct virtio_dev_ops fs_ops = {
	.name = "fs",
	.device_id = VIRTIO_ID_FS,
	.num_queues = 2,
	.features = fs_features,
	.config_size = sizeof(struct fs_config),
	.config_read = fs_config_read,
	.reset = fs_reset,
	.queue_notify = fs_queue_notify,
	.save = fs_save,
	.restore = fs_restore,
	.state_version = 1,
	.destroy = fs_destroy,
	.stats = fs_stats,
};

int virtio_fs_open_root(const char *dir)
{
	int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/*
 * One O_PATH fd per node the guest holds (a guest that creates 10 000
 * files keeps them all cached): room for a device's whole node and handle
 * tables where the worker may raise its hard limit (root, as virtiofsd
 * does), else as many as the hard limit allows. Past it the guest gets
 * EMFILE, never more.
 */
static void raise_fd_limit(void)
{
	const rlim_t want = (rlim_t)VIRTIO_FS_MAX_NODES + VIRTIO_FS_MAX_HANDLES + 1024;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_max < want && setrlimit(RLIMIT_NOFILE, &(struct rlimit){ want, want }) == 0)
		return; /* fails without CAP_SYS_RESOURCE, or past fs.nr_open */
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static const char *const symlinks_names[] = {
	[VIRTIO_FS_SYMLINKS_OPAQUE] = "opaque",
	[VIRTIO_FS_SYMLINKS_DENY] = "deny",
	[VIRTIO_FS_SYMLINKS_FOLLOW] = "follow",
};

const char *virtio_fs_symlinks_name(enum virtio_fs_symlinks s)
{
	return (unsigned)s < sizeof(symlinks_names) / sizeof(symlinks_names[0]) ? symlinks_names[s] : NULL;
}

struct virtio_dev *virtio_fs_create(const struct guest_mem *mem, int root_fd,
				    const struct virtio_fs_options *opt)
{
	size_t taglen = opt->tag ? strlen(opt->tag) : 0;
	struct fs_dev *f = NULL;
	int rc = -EINVAL;

	if (taglen == 0 || taglen > VIRTIO_FS_TAG_BYTES || !virtio_fs_symlinks_name(opt->symlinks))
		goto fail;
	rc = -ENOMEM;
	if (!(f = vdev_alloc(sizeof(*f), &fs_ops, mem)) || !(f->chain = malloc(sizeof(*f->chain))) ||
	    !(f->in = malloc(FS_MAX_REQUEST)))
		goto fail;
	f->srv = fs_server_new(root_fd, opt);
	root_fd = -1;
	if (!f->srv) {
		rc = -errno;
		goto fail;
	}
	f->srv->opt.tag = NULL; /* not ours to keep */
	memcpy(f->cfg.tag, opt->tag, taglen);
	f->cfg.num_request_queues = htole32(1);
	raise_fd_limit();
	return &f->dev;
fail:
	if (root_fd >= 0)
		close(root_fd);
	if (f)
		virtio_dev_free(&f->dev);
	errno = -rc;
	return NULL;
}

void virtio_fs_get_stats(struct virtio_dev *d, struct virtio_fs_stats *s)
{
	struct fs_dev *f = fs_of(d);

	pthread_mutex_lock(&d->lock);
	*s = f->srv->stats;
	s->nodes = f->srv->nodes_used;
	s->handles = f->srv->handles_used;
	pthread_mutex_unlock(&d->lock);
}
