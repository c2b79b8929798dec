/*
 * virtio-vsock (virtio 1.x section 5.10) served by the worker itself, not
 * vhost. The host end is Firecracker's "hybrid" unix-socket scheme:
 *
 *   host -> guest   a client connects to the unix socket at uds_path,
 *                   writes "CONNECT <port>\n", reads "OK <hostport>\n" once
 *                   the guest's listener on <port> accepted, then bytes flow.
 *                   No listener (the guest answers RST), a garbage line or a
 *                   handshake timeout: the client's socket is closed.
 *   guest -> host   a guest connect() to CID 2 port P is connected to the
 *                   unix socket "<uds_path>_P"; no preamble either way.
 *
 * All state lives on the worker's event loop thread under dev->lock; see
 * docs/devices.md for the flow control and the limits.
 */
#ifndef SM_DEVICES_VIRTIO_VSOCK_H
#define SM_DEVICES_VIRTIO_VSOCK_H

#include <stdint.h>

#include "base/evloop.h"
#include "devices/virtio/virtio.h"

#define VSOCK_HOST_CID 2

/* Bounds on what one device may hold on behalf of the guest and host peers. */
struct virtio_vsock_limits {
	/* Per-connection guest->host buffer, also the credit (buf_alloc) the
	 * guest is given: a guest can never make us hold more than this per
	 * connection. */
	uint32_t buf_alloc;
	/* Connections open at once, counting handshakes and draining ones. */
	uint32_t max_conns;
	/* CONNECT line + guest RESPONSE, and SHUTDOWN -> RST, must finish
	 * within this many milliseconds. */
	uint32_t timeout_ms;
};

#define VSOCK_DEFAULT_BUF_ALLOC (256u * 1024)
#define VSOCK_DEFAULT_MAX_CONNS 1024u
#define VSOCK_DEFAULT_TIMEOUT_MS 10000u

/*
 * Creates the device and starts listening on uds_path (a stale socket
 * nobody answers on is replaced; a live one is EADDRINUSE). guest_cid >= 3. limits may be NULL for the defaults above. The
 * device's fds are watched through loop from now on; the returned device
 * still needs its placement (mmio_base, gsi, irq_fd) from the VMM.
 * Returns NULL with errno set on failure. virtio_dev_free() closes every
 * connection and the listener, unlinks uds_path and frees the device.
 */
struct virtio_dev *virtio_vsock_create(const struct guest_mem *mem, struct evloop *loop,
				       uint64_t guest_cid, const char *uds_path,
				       const struct virtio_vsock_limits *limits);

/*
 * From now on a guest's connect to host port P reaches "<uds>_P" through
 * a descriptor of uds's directory opened here (/proc/self/fd/N/NAME_P),
 * not by its path: a jailed worker's root has no such path
 * (docs/security.md), only a /proc. Any thread. 0 or -errno.
 */
int virtio_vsock_connect_via(struct virtio_dev *d);

/*
 * Drops every connection (host sockets closed) and sends the guest
 * VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, as after a snapshot restore: guest
 * listeners survive, connections do not. Any thread. If the driver has no
 * event buffer posted yet, the event goes out when it posts one.
 */
void virtio_vsock_transport_reset(struct virtio_dev *d);

/* Counters, for tests and the worker's stats. */
struct virtio_vsock_stats {
	uint32_t conns;          /* open now */
	uint64_t buffered;       /* guest bytes held for slow host peers, now */
	uint64_t conns_total;    /* ever opened */
	uint64_t bytes_to_guest, bytes_from_guest;
	uint64_t pkts_dropped;   /* malformed or misaddressed guest packets */
	uint64_t credit_violations;
	uint64_t rsts_dropped;   /* RST replies dropped because the queue of them was full */
};
void virtio_vsock_get_stats(struct virtio_dev *d, struct virtio_vsock_stats *s);

/*
 * The worker's control command "vsock" (a control_fn; opaque is the
 * device): "vsock stats" replies with the counters, "vsock reset" does a
 * transport reset.
 */
void virtio_vsock_control(void *dev, const char *args, char *reply, size_t len);

#endif
