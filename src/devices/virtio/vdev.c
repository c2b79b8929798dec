#include "devices/virtio/vdev.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *vdev_alloc(size_t size, const struct virtio_dev_ops *ops, const struct guest_mem *mem)
{
	struct virtio_dev *d = calloc(1, size);

	if (d)
		virtio_dev_init(d, ops, d, mem, 0, 0, -1);
	return d;
}

void virtio_dev_free(struct virtio_dev *d)
{
	if (!d)
		return;
	/* The order the models' own destroy functions used: lock, state, memory. */
	virtio_dev_destroy(d);
	if (d->ops->destroy)
		d->ops->destroy(d);
	free(d);
}

void vdev_stats_reply(struct virtio_dev *d, char *reply, size_t len)
{
	struct virtio_dev_stats s = { 0 };
	size_t used;

	d->ops->stats(d, &s);
	used = (size_t)snprintf(reply, len, "ok");
	/* Cut at len like one snprintf of the whole line. */
	for (unsigned i = 0; i < VIRTIO_DEV_STATS_MAX && s.f[i].key && used < len; i++)
		used += (size_t)snprintf(reply + used, len - used, " %s=%llu", s.f[i].key,
					 (unsigned long long)s.f[i].val);
}

void vdev_warn_once(const struct virtio_dev *d, struct vdev_pending *p, unsigned kind,
		    const char *fmt, ...)
{
	FILE *f = d->log ? d->log : stderr;
	va_list ap;

	if (kind < 64) {
		if (p->warned & (1ull << kind))
			return;
		p->warned |= 1ull << kind;
	}
	fprintf(f, "virtio-%s: ", d->ops && d->ops->name ? d->ops->name : "?");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputs(" (logged once)\n", f);
	fflush(f);
}

void vdev_defer_fail(struct vdev_pending *p, const char *fmt, ...)
{
	va_list ap;

	if (p->fail_reason[0])
		return;
	va_start(ap, fmt);
	vsnprintf(p->fail_reason, sizeof(p->fail_reason), fmt, ap);
	va_end(ap);
}

void vdev_pending_clear(struct vdev_pending *p)
{
	p->notify_mask = 0;
	p->config_changed = false;
	p->fail_reason[0] = 0;
}

int vdev_pop(struct virtio_dev *d, struct vdev_pending *p, uint16_t qi, struct virtq_chain *c)
{
	struct virtq *q;
	int rc;

	if (qi >= VIRTIO_MAX_QUEUES || vdev_failing(p))
		return 0;
	q = &d->vq[qi];
	if (!q->ready)
		return 0;
	rc = virtq_pop(q, c);
	if (rc == 0) {
		virtq_set_avail_event(q);
		rc = virtq_pop(q, c);
	}
	if (rc < 0)
		vdev_defer_fail(p, "queue %u: malformed ring or descriptor chain", qi);
	return rc;
}

void vdev_push(struct virtio_dev *d, struct vdev_pending *p, uint16_t qi, uint16_t head, uint32_t written)
{
	if (virtq_push(&d->vq[qi], head, written) < 0) {
		vdev_defer_fail(p, "queue %u: used ring outside guest memory", qi);
		return;
	}
	p->notify_mask |= 1u << qi;
}

void vdev_unlock(struct virtio_dev *d, struct vdev_pending *p)
{
	uint32_t mask = p->notify_mask;
	bool cfg = p->config_changed;
	char reason[sizeof(p->fail_reason)];

	memcpy(reason, p->fail_reason, sizeof(reason));
	vdev_pending_clear(p);
	pthread_mutex_unlock(&d->lock);
	if (reason[0]) {
		virtio_dev_fail(d, "%s", reason);
		return;
	}
	for (uint16_t q = 0; q < VIRTIO_MAX_QUEUES; q++)
		if (mask & (1u << q))
			virtio_dev_notify_used(d, q);
	if (cfg)
		virtio_dev_config_changed(d);
}
