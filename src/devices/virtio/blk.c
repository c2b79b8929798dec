#include "devices/virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/snapshot.h"
#include "devices/virtio/vdev.h"

#define BLK_QUEUE 0
#define BLK_SEG_MAX 128
/* Chains handled per kick before yielding the event loop to other fds. */
#define BLK_BUDGET 64
#define BLK_HEADER_BYTES 16
/* Larger than any real request, small enough that the used length fits. */
#define BLK_MAX_REQUEST (1ULL << 30)

struct blk_header {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* The config space up to blk_size: what the features we offer cover. */
struct blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
} __attribute__((packed));

_Static_assert(sizeof(struct blk_config) == 24, "virtio-blk config through blk_size");

struct blk_dev {
	struct virtio_dev dev;
	int fd;
	bool ro;
	bool has_id;
	uint8_t id[VIRTIO_BLK_ID_BYTES];
	uint64_t capacity; /* sectors */
	struct blk_config cfg;
	struct vdev_pending pend;
	struct virtio_blk_stats stats;
	struct virtq_chain *chain;
	struct iovec iov[VIRTQ_MAX_CHAIN];
};

static struct blk_dev *blk_of(struct virtio_dev *d)
{
	return d->priv;
}

static uint64_t blk_features(struct virtio_dev *d)
{
	struct blk_dev *b = blk_of(d);
	uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ULL << VIRTIO_BLK_F_FLUSH);

	if (b->ro)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	return f;
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, (const uint8_t *)&blk_of(d)->cfg + off, len);
}

static void blk_reset(struct virtio_dev *d)
{
	vdev_pending_clear(&blk_of(d)->pend);
}

/*
 * iovecs over a chain's segments [first, first + n), skipping `skip` bytes
 * and covering at most `limit` bytes. Returns the iovec count.
 */
static int blk_iov(struct blk_dev *b, const struct virtq_chain *c, unsigned first, unsigned n,
		   uint64_t skip, uint64_t limit)
{
	int cnt = 0;

	for (unsigned i = first; i < first + n && limit; i++) {
		uint64_t len = c->seg[i].len;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		uint64_t take = len - skip;
		if (take > limit)
			take = limit;
		b->iov[cnt].iov_base = c->seg[i].hva + skip;
		b->iov[cnt].iov_len = take;
		cnt++;
		limit -= take;
		skip = 0;
	}
	return cnt;
}

/* preadv/pwritev until done; a short transfer (the file shrank) is an error. */
static int blk_rw(struct blk_dev *b, int cnt, uint64_t off, bool write)
{
	struct iovec *iov = b->iov;

	while (cnt > 0) {
		ssize_t n = write ? pwritev(b->fd, iov, cnt, (off_t)off) : preadv(b->fd, iov, cnt, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		off += (uint64_t)n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static bool blk_range_ok(const struct blk_dev *b, uint64_t sector, uint64_t bytes)
{
	if (bytes % VIRTIO_BLK_SECTOR || bytes > BLK_MAX_REQUEST)
		return false;
	return sector <= b->capacity && bytes / VIRTIO_BLK_SECTOR <= b->capacity - sector;
}

static uint8_t blk_read(struct blk_dev *b, const struct virtq_chain *c, uint64_t sector,
			uint32_t *written)
{
	uint64_t len = c->in_len - 1;

	b->stats.reads++;
	if (!blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	int cnt = blk_iov(b, c, c->n_out, c->n_in, 0, len);
	if (blk_rw(b, cnt, sector * VIRTIO_BLK_SECTOR, false) < 0)
		return VIRTIO_BLK_S_IOERR;
	b->stats.bytes_read += len;
	*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_write(struct blk_dev *b, const struct virtq_chain *c, uint64_t sector)
{
	uint64_t len = c->out_len - BLK_HEADER_BYTES;

	b->stats.writes++;
	if (b->ro || !blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	int cnt = blk_iov(b, c, 0, c->n_out, BLK_HEADER_BYTES, len);
	if (blk_rw(b, cnt, sector * VIRTIO_BLK_SECTOR, true) < 0)
		return VIRTIO_BLK_S_IOERR;
	b->stats.bytes_written += len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct blk_dev *b, const struct virtq_chain *c, uint32_t *written)
{
	uint64_t room = c->in_len - 1;

	uint32_t n = room < VIRTIO_BLK_ID_BYTES ? (uint32_t)room : VIRTIO_BLK_ID_BYTES;

	b->stats.get_ids++;
	if (!b->has_id)
		return VIRTIO_BLK_S_UNSUPP;
	*written = (uint32_t)virtq_chain_write(c, 0, b->id, n);
	return VIRTIO_BLK_S_OK;
}

/*
 * One request. Returns its status byte and sets *written to the data bytes
 * put in the in-segments; -EINVAL for a chain with no header or no room for
 * the status byte, which no status can answer.
 */
static int blk_request(struct blk_dev *b, const struct virtq_chain *c, uint8_t *status,
		       uint32_t *written)
{
	struct blk_header h;

	*written = 0;
	if (c->out_len < BLK_HEADER_BYTES || c->in_len < 1)
		return -EINVAL;
	virtq_chain_read(c, 0, &h, sizeof(h));
	h.sector = le64toh(h.sector);
	switch (le32toh(h.type)) {
	case VIRTIO_BLK_T_IN:
		*status = blk_read(b, c, h.sector, written);
		break;
	case VIRTIO_BLK_T_OUT:
		*status = blk_write(b, c, h.sector);
		break;
	case VIRTIO_BLK_T_FLUSH:
		b->stats.flushes++;
		*status = !b->ro && fdatasync(b->fd) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID:
		*status = blk_get_id(b, c, written);
		break;
	default:
		b->stats.unsupported++;
		*status = VIRTIO_BLK_S_UNSUPP;
		return 0;
	}
	if (*status == VIRTIO_BLK_S_IOERR)
		b->stats.errors++;
	else if (*status == VIRTIO_BLK_S_UNSUPP)
		b->stats.unsupported++;
	return 0;
}

static void blk_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct blk_dev *b = blk_of(d);
	unsigned done = 0;

	pthread_mutex_lock(&d->lock);
	if (q != BLK_QUEUE || !virtio_dev_live(d)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	while (done < BLK_BUDGET && vdev_pop(d, &b->pend, BLK_QUEUE, b->chain) == 1) {
		struct virtq_chain *c = b->chain;
		uint8_t status;
		uint32_t written;
		if (blk_request(b, c, &status, &written) < 0) {
			vdev_defer_fail(&b->pend, "request without header or status byte (out %llu, in %llu bytes)",
					(unsigned long long)c->out_len, (unsigned long long)c->in_len);
			break;
		}
		virtq_chain_write(c, c->in_len - 1, &status, 1);
		vdev_push(d, &b->pend, BLK_QUEUE, c->head, written + 1);
		done++;
	}
	/* Out of budget with more queued: come back after the loop's other fds. */
	if (done == BLK_BUDGET)
		virtio_dev_requeue(d, BLK_QUEUE);
	vdev_unlock(d, &b->pend);
}

/* What the disk looked like at the capture: a restore must get the same one. */
static int blk_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct blk_dev *b = blk_of(d);

	snap_put_u64(w, b->capacity);
	snap_put_u8(w, b->ro);
	return 0;
}

static int blk_restore(struct virtio_dev *d, struct snap_reader *r)
{
	struct blk_dev *b = blk_of(d);
	uint64_t capacity;
	uint8_t ro;

	if (snap_get_u64(r, &capacity) < 0 || snap_get_u8(r, &ro) < 0)
		return -EBADMSG;
	if (capacity != b->capacity)
		return snap_reader_fail(r, "virtio-blk: the disk has %llu sectors; at the capture it had %llu",
					(unsigned long long)b->capacity, (unsigned long long)capacity);
	if ((ro != 0) != b->ro)
		return snap_reader_fail(r, "virtio-blk: the disk is %s; at the capture it was %s",
					b->ro ? "read-only" : "writable", ro ? "read-only" : "writable");
	return 0;
}

static void blk_destroy(struct virtio_dev *d)
{
	struct blk_dev *b = blk_of(d);

	/* -1 only when blk_open failed */
	if (b->fd >= 0)
		close(b->fd);
	free(b->chain);
}

static void blk_stats(struct virtio_dev *d, struct virtio_dev_stats *out)
{
	struct virtio_blk_stats s;

	virtio_blk_get_stats(d, &s);
	*out = (struct virtio_dev_stats){ {
		{ "reads", s.reads }, { "writes", s.writes }, { "flushes", s.flushes },
		{ "bytes_read", s.bytes_read }, { "bytes_written", s.bytes_written },
		{ "errors", s.errors }, { "unsupported", s.unsupported },
	} };
}

static const struct virtio_dev_ops blk_ops = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.features = blk_features,
	.config_size = sizeof(struct blk_config),
	.config_read = blk_config_read,
	.reset = blk_reset,
	.queue_notify = blk_queue_notify,
	/* Requests complete before the loop moves on, so the transport's queue
	 * state is all the in-flight state; save/restore only pin the disk. */
	.save = blk_save,
	.restore = blk_restore,
	.state_version = 1,
	.destroy = blk_destroy,
	.stats = blk_stats,
};

static int blk_open(struct blk_dev *b, const struct virtio_blk_options *opt)
{
	struct stat st;

	b->fd = open(opt->path, (opt->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0)
		return -errno;
	if (flock(b->fd, (opt->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
		return -errno;
	if (fstat(b->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -EINVAL;
	off_t size = lseek(b->fd, 0, SEEK_END);
	if (size < 0)
		return -errno;
	b->capacity = (uint64_t)size / VIRTIO_BLK_SECTOR;
	return 0;
}

struct virtio_dev *virtio_blk_create(const struct guest_mem *mem,
				     const struct virtio_blk_options *opt)
{
	struct blk_dev *b = vdev_alloc(sizeof(*b), &blk_ops, mem);
	int rc = -ENOMEM;

	if (!b)
		goto fail;
	b->fd = -1;
	b->chain = malloc(sizeof(*b->chain));
	if (!b->chain)
		goto fail;
	if (opt->id && strlen(opt->id) > VIRTIO_BLK_ID_BYTES) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	rc = blk_open(b, opt);
	if (rc < 0)
		goto fail;
	b->ro = opt->read_only;
	if (opt->id) {
		b->has_id = true;
		memcpy(b->id, opt->id, strlen(opt->id));
	}
	b->cfg.capacity = htole64(b->capacity);
	b->cfg.seg_max = htole32(BLK_SEG_MAX);
	b->cfg.blk_size = htole32(VIRTIO_BLK_SECTOR);
	return &b->dev;
fail:
	if (b)
		virtio_dev_free(&b->dev);
	errno = -rc;
	return NULL;
}

void virtio_blk_get_stats(struct virtio_dev *d, struct virtio_blk_stats *s)
{
	pthread_mutex_lock(&d->lock);
	*s = blk_of(d)->stats;
	pthread_mutex_unlock(&d->lock);
}

uint64_t virtio_blk_capacity(struct virtio_dev *d)
{
	return blk_of(d)->capacity;
}
