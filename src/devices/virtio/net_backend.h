/*
 * What virtio-net (net.c) needs from the network behind it, so that the
 * device model does not care which one it is: libslirp's user-mode
 * networking today (net_slirp.c); a TAP device or passt would be another
 * struct net_backend_ops.
 *
 * Locking: the backend runs under the device's dev->lock, always. The
 * device calls every op with it held; the backend's own loop callback takes
 * it, calls net_backend_host.process, and leaves through vdev_unlock().
 */
#ifndef SM_DEVICES_VIRTIO_NET_BACKEND_H
#define SM_DEVICES_VIRTIO_NET_BACKEND_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/net.h"
#include "devices/virtio/vdev.h"

/* Kinds of complaint, each logged once per device (vdev_warn_once): the
 * device's and its backend's share one mask, so one list. */
enum {
	WARN_TX_SHORT,
	WARN_TX_LONG,
	WARN_TX_OFFLOAD,
	WARN_RX_SMALL,
	WARN_RX_DROP,
	WARN_GUEST,
	WARN_EPOLL,
};

/* The device, as its backend sees it. */
struct net_backend_host {
	struct virtio_dev *dev;
	struct vdev_pending *pend;
	/* A frame from the network for the guest (Ethernet, no virtio header). */
	void (*receive)(struct virtio_dev *d, const void *frame, size_t len);
	/* The device's work on a wakeup of the backend (tx queue, backlog). */
	void (*process)(struct virtio_dev *d);
};

struct net_backend;

struct net_backend_ops {
	/* A frame from the guest for the network. */
	void (*send)(struct net_backend *be, const uint8_t *frame, size_t len);
	/* Anything happened: bring what the loop watches for the backend (its
	 * fds, its timers) up to date. */
	void (*refill)(struct net_backend *be);
	/* Have the loop wake the backend, and so the device, at once. */
	int (*run_soon)(struct net_backend *be);
	/* Host port forwards (host:host_port -> guest:guest_port): 0, or
	 * -EADDRINUSE / -ENOENT. */
	int (*hostfwd_add)(struct net_backend *be, bool udp, struct in_addr host, uint16_t host_port,
			   struct in_addr guest, uint16_t guest_port);
	int (*hostfwd_remove)(struct net_backend *be, bool udp, struct in_addr host, uint16_t host_port);
	/* Stops watching, closes and frees everything. No save or restore
	 * hooks: a backend's connections are not captured in snapshots. */
	void (*destroy)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
};

/* libslirp (net_slirp.c): NULL with *err set (-errno). */
struct net_backend *net_slirp_new(const struct net_backend_host *host, struct evloop *loop,
				  const struct virtio_net_config *cfg, int *err);

#endif
