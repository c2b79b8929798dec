/*
 * virtio-net (virtio 1.x section 5.1) backed by libslirp inside the
 * worker: user-mode NAT, no root, no TAP. The guest network is fixed:
 *
 *   network   10.0.2.0/24
 *   guest     10.0.2.15   (also what slirp's DHCP hands out)
 *   gateway   10.0.2.2    (the host: 10.0.2.2:P reaches the host's 127.0.0.1:P)
 *   DNS       10.0.2.3    (slirp forwards to the host's resolvers)
 *   MAC       52:54:00:12:34:56 unless configured
 *
 * IPv4 only. Outbound TCP and UDP are NATed through ordinary host sockets;
 * inbound connections need a host forward (virtio_net_add_hostfwd).
 * slirp runs on the worker's event loop: its sockets sit in a private
 * epoll set registered with the loop, its timers and poll timeout on one
 * timerfd.
 */
#ifndef SM_DEVICES_VIRTIO_NET_H
#define SM_DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "base/evloop.h"
#include "devices/virtio/virtio.h"

#define VIRTIO_NET_GUEST_ADDR "10.0.2.15"
#define VIRTIO_NET_GATEWAY_ADDR "10.0.2.2"
#define VIRTIO_NET_DNS_ADDR "10.0.2.3"
#define VIRTIO_NET_NETWORK "10.0.2.0"
#define VIRTIO_NET_NETMASK "255.255.255.0"

struct virtio_net_config {
	uint8_t mac[6];       /* all zero: the default MAC above */
	bool no_host_loopback; /* 10.0.2.2 does not reach the host's 127.0.0.1 */
	bool restricted;       /* the guest reaches only the host and forwards */
};

/*
 * cfg may be NULL for the defaults. Returns NULL with errno set on failure.
 * Freed (slirp and its sockets closed) with virtio_dev_free().
 */
struct virtio_dev *virtio_net_create(const struct guest_mem *mem, struct evloop *loop,
				     const struct virtio_net_config *cfg);

/*
 * Forwards host_addr:host_port (TCP, or UDP if udp) to the guest's
 * guest_port. host_addr NULL means 127.0.0.1. Any thread. Returns 0, or
 * -EINVAL for a bad address or port, -EADDRINUSE if slirp could not bind.
 */
int virtio_net_add_hostfwd(struct virtio_dev *d, bool udp, const char *host_addr, uint16_t host_port,
			   uint16_t guest_port);
int virtio_net_remove_hostfwd(struct virtio_dev *d, bool udp, const char *host_addr, uint16_t host_port);

struct virtio_net_stats {
	uint64_t tx_frames, tx_bytes;  /* guest -> slirp */
	uint64_t rx_frames, rx_bytes;  /* slirp -> guest */
	uint64_t tx_dropped;           /* malformed frames from the guest */
	uint64_t rx_dropped;           /* no room in the guest or our bounded backlog */
};
void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *s);

/*
 * The worker's control command "net" (a control_fn; opaque is the device):
 *   net [stats]
 *   net hostfwd add tcp|udp [ADDR:]HOSTPORT GUESTPORT
 *   net hostfwd rm tcp|udp [ADDR:]HOSTPORT
 */
void virtio_net_control(void *dev, const char *args, char *reply, size_t len);

#endif
