/*
 * Small pieces every queue-driven device model (vsock, net, balloon)
 * needs around the transport: complaints logged once, and the work that
 * must wait until dev->lock is dropped (failing the device, interrupts).
 *
 * Pattern: an entry point takes dev->lock, records what it pushed with
 * vdev_pushed() and what went wrong with vdev_defer_fail(), then calls
 * vdev_unlock(), which releases the lock and only then talks to the
 * transport, whose helpers may take the lock themselves.
 */
#ifndef SM_DEVICES_VIRTIO_VDEV_H
#define SM_DEVICES_VIRTIO_VDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"

/*
 * The preamble every device model shares: a zeroed container of size bytes
 * whose first member is its struct virtio_dev, set up with
 * virtio_dev_init() (priv = the container, no placement). Freed with
 * virtio_dev_free(). NULL with errno set.
 */
void *vdev_alloc(size_t size, const struct virtio_dev_ops *ops, const struct guest_mem *mem);

/* "ok key=value ..." from ops->stats: the control socket's stats reply. */
void vdev_stats_reply(struct virtio_dev *d, char *reply, size_t len);

struct vdev_pending {
	uint32_t notify_mask;  /* queues with new used buffers */
	bool config_changed;
	char fail_reason[128]; /* empty: the device is fine */
	uint64_t warned;       /* kinds of warning already logged */
};

/* Logs "virtio-<name>: <msg>" once per kind (0..63) for the device's life. */
__attribute__((format(printf, 4, 5)))
void vdev_warn_once(const struct virtio_dev *d, struct vdev_pending *p, unsigned kind,
		    const char *fmt, ...);

/* The guest broke the protocol: fail the device when the lock is dropped. */
__attribute__((format(printf, 2, 3)))
void vdev_defer_fail(struct vdev_pending *p, const char *fmt, ...);

static inline bool vdev_failing(const struct vdev_pending *p) { return p->fail_reason[0] != 0; }

/* Forget deferred work (device reset). Keeps the warned mask. */
void vdev_pending_clear(struct vdev_pending *p);

/*
 * Next available chain of queue qi: 1 got one, 0 empty (or a queue the
 * driver never set up), -EINVAL broken (already deferred as a failure).
 * On empty, with EVENT_IDX, asks the driver for a kick on its next add and
 * looks once more so an add racing with that request is not missed.
 */
int vdev_pop(struct virtio_dev *d, struct vdev_pending *p, uint16_t qi, struct virtq_chain *c);

/* Returns a chain; interrupts later from vdev_unlock(). */
void vdev_push(struct virtio_dev *d, struct vdev_pending *p, uint16_t qi, uint16_t head, uint32_t written);

/* Unlocks dev->lock, then fails the device or raises the owed interrupts. */
void vdev_unlock(struct virtio_dev *d, struct vdev_pending *p);

#endif
