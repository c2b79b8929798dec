#include "devices/virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "devices/virtio/vdev.h"

#define RNG_QUEUE 0
/* Per buffer: a guest asking for more gets a short (still valid) answer. */
#define RNG_MAX_PER_CHAIN (64 * 1024)
#define RNG_BUDGET 64

struct rng_dev {
	struct virtio_dev dev;
	struct vdev_pending pend;
	struct virtq_chain *chain;
	uint64_t bytes;
};

static struct rng_dev *rng_of(struct virtio_dev *d)
{
	return d->priv;
}

static void rng_reset(struct virtio_dev *d)
{
	vdev_pending_clear(&rng_of(d)->pend);
}

/* Fills the chain's in-segments; returns the bytes written, -EIO if getrandom fails. */
static int64_t rng_fill(const struct virtq_chain *c)
{
	uint64_t total = 0;

	for (unsigned i = c->n_out; i < (unsigned)c->n_out + c->n_in; i++) {
		uint64_t len = c->seg[i].len;
		if (len > RNG_MAX_PER_CHAIN - total)
			len = RNG_MAX_PER_CHAIN - total;
		for (uint64_t done = 0; done < len;) {
			ssize_t n = getrandom(c->seg[i].hva + done, len - done, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -EIO;
			done += (uint64_t)n;
		}
		total += len;
		if (total == RNG_MAX_PER_CHAIN)
			break;
	}
	return (int64_t)total;
}

static void rng_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct rng_dev *r = rng_of(d);
	unsigned done = 0;

	pthread_mutex_lock(&d->lock);
	if (q != RNG_QUEUE || !virtio_dev_live(d)) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	while (done < RNG_BUDGET && vdev_pop(d, &r->pend, RNG_QUEUE, r->chain) == 1) {
		int64_t n = rng_fill(r->chain);
		if (n < 0) {
			vdev_warn_once(d, &r->pend, 0, "getrandom failed; answering with no bytes");
			n = 0;
		}
		r->bytes += (uint64_t)n;
		vdev_push(d, &r->pend, RNG_QUEUE, r->chain->head, (uint32_t)n);
		done++;
	}
	if (done == RNG_BUDGET)
		virtio_dev_requeue(d, RNG_QUEUE);
	vdev_unlock(d, &r->pend);
}

static void rng_destroy(struct virtio_dev *d)
{
	free(rng_of(d)->chain);
}

static const struct virtio_dev_ops rng_ops = {
	.name = "rng",
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.reset = rng_reset,
	.queue_notify = rng_queue_notify,
	/* No save/restore: nothing outlives a request. */
	.state_version = 1,
	.destroy = rng_destroy,
};

struct virtio_dev *virtio_rng_create(const struct guest_mem *mem)
{
	struct rng_dev *r = vdev_alloc(sizeof(*r), &rng_ops, mem);

	if (!r)
		return NULL;
	r->chain = malloc(sizeof(*r->chain));
	if (!r->chain) {
		virtio_dev_free(&r->dev);
		errno = ENOMEM;
		return NULL;
	}
	return &r->dev;
}

uint64_t virtio_rng_bytes(struct virtio_dev *d)
{
	pthread_mutex_lock(&d->lock);
	uint64_t n = rng_of(d)->bytes;
	pthread_mutex_unlock(&d->lock);
	return n;
}
