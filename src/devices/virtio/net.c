/*
 * virtio-net device (see net.h for the addressing). The network behind it
 * is a backend (net_backend.h): libslirp, in net_slirp.c.
 *
 * Frames to the guest go straight into a posted rx buffer; without one they
 * wait in a bounded backlog (then are dropped: TCP retransmits, and slirp
 * reads a host TCP socket only as far as the guest's window allows).
 *
 * Locking: every entry point takes dev->lock, and every call into the
 * backend happens under it (slirp is single-threaded).
 */
#include "devices/virtio/net.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/snapshot.h"
#include "devices/virtio/net_backend.h"
#include "devices/virtio/vdev.h"

#define NET_RXQ 0
#define NET_TXQ 1
#define NET_NUM_QUEUES 2

#define NET_F_MAC 5
#define NET_F_STATUS 16
#define NET_S_LINK_UP 1

#define NET_HDR_GSO_NONE 0
#define NET_HDR_F_NEEDS_CSUM 1

#define NET_ETH_HLEN 14
/* Largest frame we take from the guest: an IPv4 datagram of 64 KiB plus
 * an Ethernet header and a VLAN tag. */
#define NET_MAX_FRAME (65535 + NET_ETH_HLEN + 4)
/* Frames waiting for guest rx buffers: at most this many, each at most a
 * slot (slirp's frames are if_mtu 1500 + 14). */
#define NET_BACKLOG 256
#define NET_SLOT 1536
#define NET_BUDGET 256

struct net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));
_Static_assert(sizeof(struct net_hdr) == 12, "virtio_net_hdr_v1 is 12 bytes");

struct net_config {
	uint8_t mac[6];
	uint16_t status;
} __attribute__((packed));


struct net_dev {
	struct virtio_dev dev;
	struct net_backend *be;
	struct net_config cfg;

	uint8_t *txbuf;         /* NET_MAX_FRAME */
	uint8_t *backlog;       /* NET_BACKLOG slots, allocated on first use */
	uint16_t backlog_len[NET_BACKLOG];
	unsigned bl_head, bl_count;

	/* Separate scratch chains: a tx frame fed to slirp can make it answer
	 * at once (ARP, ICMP), which fills an rx chain before the tx one is
	 * pushed. */
	struct virtq_chain *tx_chain, *rx_chain;
	struct vdev_pending pend;
	struct virtio_net_stats stats;
};

static struct net_dev *net_of(struct virtio_dev *d) { return d->priv; }

#define net_warn(n, kind, ...) vdev_warn_once(&(n)->dev, &(n)->pend, kind, __VA_ARGS__)

/* ---- frames to the guest ------------------------------------------------------ */

/* Puts one frame in the next rx buffer. False if the guest posted none. */
static bool net_rx_deliver(struct net_dev *n, const uint8_t *frame, size_t len)
{
	struct net_hdr h = { .gso_type = NET_HDR_GSO_NONE, .num_buffers = htole16(1) };
	struct virtq_chain *ch = n->rx_chain;

	if (vdev_pop(&n->dev, &n->pend, NET_RXQ, ch) <= 0)
		return false;
	if (ch->in_len < sizeof(h) + len) {
		/* Linux posts 1518 + header bytes; a smaller buffer goes back
		 * empty, which the driver counts as a length error. */
		n->stats.rx_dropped++;
		net_warn(n, WARN_RX_SMALL, "rx buffer of %llu bytes cannot hold a %zu-byte frame",
			 (unsigned long long)ch->in_len, len);
		vdev_push(&n->dev, &n->pend, NET_RXQ, ch->head, 0);
		return true;
	}
	virtq_chain_write(ch, 0, &h, sizeof(h));
	virtq_chain_write(ch, sizeof(h), frame, len);
	vdev_push(&n->dev, &n->pend, NET_RXQ, ch->head, (uint32_t)(sizeof(h) + len));
	n->stats.rx_frames++;
	n->stats.rx_bytes += len;
	return true;
}

static void net_backlog_add(struct net_dev *n, const uint8_t *frame, size_t len)
{
	unsigned slot;

	if (!n->backlog)
		n->backlog = malloc((size_t)NET_BACKLOG * NET_SLOT);
	if (!n->backlog || n->bl_count == NET_BACKLOG || len > NET_SLOT) {
		n->stats.rx_dropped++;
		net_warn(n, WARN_RX_DROP, "guest is not taking frames: dropping (backlog %u frames)",
			 n->bl_count);
		return;
	}
	slot = (n->bl_head + n->bl_count) % NET_BACKLOG;
	memcpy(n->backlog + (size_t)slot * NET_SLOT, frame, len);
	n->backlog_len[slot] = (uint16_t)len;
	n->bl_count++;
}

static void net_backlog_flush(struct net_dev *n)
{
	while (n->bl_count && virtio_dev_live(&n->dev)) {
		unsigned slot = n->bl_head;
		if (!net_rx_deliver(n, n->backlog + (size_t)slot * NET_SLOT, n->backlog_len[slot]))
			return;
		n->bl_head = (n->bl_head + 1) % NET_BACKLOG;
		n->bl_count--;
	}
}

/* network -> guest. Runs inside backend calls, so under dev->lock. */
static void net_receive(struct virtio_dev *d, const void *buf, size_t len)
{
	struct net_dev *n = net_of(d);

	if (!virtio_dev_live(&n->dev) || vdev_failing(&n->pend)) {
		n->stats.rx_dropped++;
		return;
	}
	if (n->bl_count || !net_rx_deliver(n, buf, len))
		net_backlog_add(n, buf, len);
}

/* ---- frames from the guest ------------------------------------------------------ */

static void net_tx_frame(struct net_dev *n, const struct virtq_chain *ch)
{
	struct net_hdr h;
	uint64_t len;

	if (ch->out_len < sizeof(h) + NET_ETH_HLEN) {
		n->stats.tx_dropped++;
		net_warn(n, WARN_TX_SHORT, "tx chain of %llu bytes holds no frame: dropped",
			 (unsigned long long)ch->out_len);
		return;
	}
	len = ch->out_len - sizeof(h);
	if (len > NET_MAX_FRAME) {
		n->stats.tx_dropped++;
		net_warn(n, WARN_TX_LONG, "tx frame of %llu bytes is over %u: dropped",
			 (unsigned long long)len, NET_MAX_FRAME);
		return;
	}
	virtq_chain_read(ch, 0, &h, sizeof(h));
	if (h.gso_type != NET_HDR_GSO_NONE || (h.flags & NET_HDR_F_NEEDS_CSUM)) {
		/* We offered neither checksum nor segmentation offload. */
		n->stats.tx_dropped++;
		net_warn(n, WARN_TX_OFFLOAD, "tx frame asks for offloads never negotiated (flags %#x gso %u): dropped",
			 h.flags, h.gso_type);
		return;
	}
	virtq_chain_read(ch, sizeof(h), n->txbuf, len);
	n->stats.tx_frames++;
	n->stats.tx_bytes += len;
	n->be->ops->send(n->be, n->txbuf, len);
}

static void net_tx_process(struct net_dev *n)
{
	for (unsigned budget = NET_BUDGET; budget; budget--) {
		if (vdev_pop(&n->dev, &n->pend, NET_TXQ, n->tx_chain) <= 0)
			return;
		net_tx_frame(n, n->tx_chain);
		vdev_push(&n->dev, &n->pend, NET_TXQ, n->tx_chain->head, 0);
	}
	/* More queued than one turn's budget: leave the rest for the next
	 * wakeup, which the backend's run_soon makes immediate. */
	if (virtq_has_avail(&n->dev.vq[NET_TXQ]) > 0)
		n->be->ops->run_soon(n->be);
}

static void net_process(struct virtio_dev *d)
{
	struct net_dev *n = net_of(d);

	if (virtio_dev_live(&n->dev)) {
		net_backlog_flush(n);
		net_tx_process(n);
	}
}

/* ---- virtio ops ---------------------------------------------------------------------- */

static uint64_t net_features(struct virtio_dev *d) { return (1ull << NET_F_MAC) | (1ull << NET_F_STATUS); }

static void net_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, (uint8_t *)&net_of(d)->cfg + off, len);
}

static void net_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* mac is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR, never offered. */
}

/* Anything the driver queued before DRIVER_OK (kicks were ignored until
 * now): have the loop look at once. */
static int net_activate(struct virtio_dev *d) { return net_of(d)->be->ops->run_soon(net_of(d)->be); }

static void net_reset(struct virtio_dev *d)
{
	struct net_dev *n = net_of(d);

	n->bl_head = n->bl_count = 0;
	vdev_pending_clear(&n->pend);
}

static void net_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct net_dev *n = net_of(d);

	pthread_mutex_lock(&d->lock);
	net_process(d);
	n->be->ops->refill(n->be);
	vdev_unlock(d, &n->pend);
}

/*
 * slirp's state (its NAT sockets and their TCP state) is not captured: a
 * restored guest's connections to the outside are gone (slirp answers
 * their next segment with a reset), new ones work. Only the MAC is pinned.
 */
static int net_save(struct virtio_dev *d, struct snap_writer *w)
{
	snap_put_bytes(w, net_of(d)->cfg.mac, sizeof(net_of(d)->cfg.mac));
	return 0;
}

static int net_restore(struct virtio_dev *d, struct snap_reader *r)
{
	uint8_t mac[sizeof(net_of(d)->cfg.mac)];

	if (snap_get_bytes(r, mac, sizeof(mac)) < 0)
		return -EBADMSG;
	if (memcmp(mac, net_of(d)->cfg.mac, sizeof(mac)) != 0)
		return snap_reader_fail(r, "virtio-net: the MAC address differs from the capture's");
	return 0;
}

static void net_destroy(struct virtio_dev *d);

static void net_stats(struct virtio_dev *d, struct virtio_dev_stats *out)
{
	struct virtio_net_stats s;

	virtio_net_get_stats(d, &s);
	*out = (struct virtio_dev_stats){ {
		{ "tx_frames", s.tx_frames }, { "tx_bytes", s.tx_bytes }, { "rx_frames", s.rx_frames },
		{ "rx_bytes", s.rx_bytes }, { "tx_dropped", s.tx_dropped }, { "rx_dropped", s.rx_dropped },
	} };
}

static const struct virtio_dev_ops net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.num_queues = NET_NUM_QUEUES,
	.features = net_features,
	.config_size = sizeof(struct net_config),
	.config_read = net_config_read,
	.config_write = net_config_write,
	.activate = net_activate,
	.reset = net_reset,
	.queue_notify = net_queue_notify,
	.save = net_save,
	.restore = net_restore,
	.state_version = 1,
	.destroy = net_destroy,
	.stats = net_stats,
};

/* ---- lifetime ------------------------------------------------------------------------ */

static void net_destroy(struct virtio_dev *d)
{
	struct net_dev *n = net_of(d);

	/* The backend first: slirp_cleanup may still hand frames to the device. */
	if (n->be)
		n->be->ops->destroy(n->be);
	free(n->txbuf);
	free(n->backlog);
	free(n->tx_chain);
	free(n->rx_chain);
}

struct virtio_dev *virtio_net_create(const struct guest_mem *mem, struct evloop *loop,
				     const struct virtio_net_config *cfg)
{
	static const uint8_t default_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	static const uint8_t zero_mac[6];
	struct net_dev *n;
	int rc;

	if (!mem || !loop) {
		errno = EINVAL;
		return NULL;
	}
	n = vdev_alloc(sizeof(*n), &net_ops, mem);
	if (!n)
		return NULL;
	memcpy(n->cfg.mac, cfg && memcmp(cfg->mac, zero_mac, 6) ? cfg->mac : default_mac, 6);
	n->cfg.status = htole16(NET_S_LINK_UP);
	n->txbuf = malloc(NET_MAX_FRAME);
	n->tx_chain = malloc(sizeof(*n->tx_chain));
	n->rx_chain = malloc(sizeof(*n->rx_chain));
	if (!n->txbuf || !n->tx_chain || !n->rx_chain) {
		virtio_dev_free(&n->dev);
		errno = ENOMEM;
		return NULL;
	}
	struct net_backend_host host = {
		.dev = &n->dev,
		.pend = &n->pend,
		.receive = net_receive,
		.process = net_process,
	};
	n->be = net_slirp_new(&host, loop, cfg, &rc);
	if (!n->be) {
		virtio_dev_free(&n->dev);
		errno = -rc;
		return NULL;
	}
	return &n->dev;
}

static int net_fwd_addr(const char *host_addr, struct in_addr *a)
{
	return inet_pton(AF_INET, host_addr ? host_addr : "127.0.0.1", a) == 1 ? 0 : -EINVAL;
}

int virtio_net_add_hostfwd(struct virtio_dev *d, bool udp, const char *host_addr, uint16_t host_port,
			   uint16_t guest_port)
{
	struct net_dev *n = net_of(d);
	struct in_addr host, guest;
	int rc;

	if (net_fwd_addr(host_addr, &host) < 0 || !host_port || !guest_port)
		return -EINVAL;
	inet_pton(AF_INET, VIRTIO_NET_GUEST_ADDR, &guest);
	pthread_mutex_lock(&d->lock);
	rc = n->be->ops->hostfwd_add(n->be, udp, host, host_port, guest, guest_port);
	n->be->ops->refill(n->be);
	vdev_unlock(d, &n->pend);
	return rc;
}

int virtio_net_remove_hostfwd(struct virtio_dev *d, bool udp, const char *host_addr, uint16_t host_port)
{
	struct net_dev *n = net_of(d);
	struct in_addr host;
	int rc;

	if (net_fwd_addr(host_addr, &host) < 0)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	rc = n->be->ops->hostfwd_remove(n->be, udp, host, host_port);
	n->be->ops->refill(n->be);
	vdev_unlock(d, &n->pend);
	return rc;
}

void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *s)
{
	pthread_mutex_lock(&d->lock);
	*s = net_of(d)->stats;
	pthread_mutex_unlock(&d->lock);
}

/* "[ADDR:]PORT" -> addr (NULL when absent) in buf, port. */
static int net_parse_hostport(const char *s, char *addr, size_t alen, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	const char *p = colon ? colon + 1 : s;
	char *end;
	unsigned long v;

	addr[0] = 0;
	if (colon) {
		if ((size_t)(colon - s) >= alen)
			return -EINVAL;
		memcpy(addr, s, (size_t)(colon - s));
		addr[colon - s] = 0;
	}
	errno = 0;
	v = strtoul(p, &end, 10);
	if (errno || *end || p == end || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static void net_control_hostfwd(struct virtio_dev *d, const char *args, char *reply, size_t len)
{
	char op[8], proto[8], hostspec[64], addr[48];
	unsigned long guest = 0;
	uint16_t hport;
	int n, rc;

	n = sscanf(args, "%7s %7s %63s %lu", op, proto, hostspec, &guest);
	if (n < 3 || (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0) ||
	    net_parse_hostport(hostspec, addr, sizeof(addr), &hport) < 0)
		goto usage;
	if (strcmp(op, "add") == 0 && n == 4 && guest > 0 && guest <= 65535)
		rc = virtio_net_add_hostfwd(d, proto[0] == 'u', addr[0] ? addr : NULL, hport, (uint16_t)guest);
	else if (strcmp(op, "rm") == 0 && n == 3)
		rc = virtio_net_remove_hostfwd(d, proto[0] == 'u', addr[0] ? addr : NULL, hport);
	else
		goto usage;
	if (rc < 0)
		snprintf(reply, len, "error hostfwd %s %s %s: %s", op, proto, hostspec, strerror(-rc));
	else
		snprintf(reply, len, "ok");
	return;
usage:
	snprintf(reply, len, "error usage: net hostfwd add tcp|udp [ADDR:]HOSTPORT GUESTPORT | "
			     "net hostfwd rm tcp|udp [ADDR:]HOSTPORT");
}

void virtio_net_control(void *dev, const char *args, char *reply, size_t len)
{
	if (strncmp(args, "hostfwd ", 8) == 0) {
		net_control_hostfwd(dev, args + 8, reply, len);
		return;
	}
	if (args[0] && strcmp(args, "stats") != 0) {
		snprintf(reply, len, "error usage: net [stats] | net hostfwd ...");
		return;
	}
	vdev_stats_reply(dev, reply, len);
}

