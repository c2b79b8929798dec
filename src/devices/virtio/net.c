/*
 * virtio-net device on libslirp (see net.h for the addressing).
 *
 * slirp is driven the way its API expects a poll() loop to drive it, mapped
 * onto the worker's epoll-based event loop:
 *   - after anything happened, slirp_pollfds_fill() says which fds it wants
 *     watched for what; we bring a private epoll set (level-triggered, like
 *     poll) in line with that list, and arm one timerfd for the earliest of
 *     slirp's own timers and the poll timeout it asked for (TCP timers);
 *   - when that epoll set or the timerfd fires, we collect revents per fd,
 *     hand them to slirp_pollfds_poll(), run expired timers, and refill.
 * slirp closes its sockets behind our back; the kernel drops a closed fd
 * from our epoll set by itself, and a reused fd number is re-added.
 *
 * Frames to the guest go straight into a posted rx buffer; without one they
 * wait in a bounded backlog (then are dropped: TCP retransmits, and slirp
 * reads a host TCP socket only as far as the guest's window allows).
 *
 * Locking: slirp is single-threaded; every call into it happens under
 * dev->lock, which every entry point takes.
 */
#include "devices/virtio/net.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <slirp/libslirp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/vdev.h"
#include "vmm/snapshot.h"

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
#define NET_EPOLL_BATCH 64
#define NET_TIMER_RUNS 64

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

enum {
	WARN_TX_SHORT,
	WARN_TX_LONG,
	WARN_TX_OFFLOAD,
	WARN_RX_SMALL,
	WARN_RX_DROP,
	WARN_GUEST,
	WARN_EPOLL,
};

struct net_dev;

struct net_timer {
	struct net_dev *n;
	SlirpTimerCb cb;       /* old-style timer, or */
	SlirpTimerId id;       /* one handed back through slirp_handle_timer */
	void *cb_opaque;
	int64_t expire_ms;
	bool armed;
	TAILQ_ENTRY(net_timer) link;
};

/* What slirp asked to watch in the current round, by fd number. */
struct net_fd {
	unsigned gen;      /* round in which slirp last asked for it */
	uint32_t want;     /* epoll events slirp asked for in that round */
	int revents;       /* SLIRP_POLL_* seen this wakeup */
	bool registered;
};

struct net_dev {
	struct virtio_dev dev;
	struct evloop *loop;
	Slirp *slirp;
	int epfd, timer_fd;
	struct net_config cfg;

	TAILQ_HEAD(, net_timer) timers;
	int *pollfd;            /* fd of each index slirp got from add_poll */
	unsigned npoll, pollcap;
	struct net_fd *fds;     /* indexed by fd */
	unsigned nfds;
	int *reg;               /* fds registered in epfd */
	unsigned nreg, regcap;
	unsigned gen;
	bool run_soon;          /* work left over: wake up again at once */

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

static int64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

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

/* slirp -> guest. Runs inside slirp calls, so under dev->lock. */
static ssize_t net_slirp_send(const void *buf, size_t len, void *opaque)
{
	struct net_dev *n = opaque;

	if (!virtio_dev_live(&n->dev) || vdev_failing(&n->pend)) {
		n->stats.rx_dropped++;
		return (ssize_t)len;
	}
	if (n->bl_count || !net_rx_deliver(n, buf, len))
		net_backlog_add(n, buf, len);
	return (ssize_t)len;
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
	slirp_input(n->slirp, n->txbuf, (int)len);
}

/* Makes the loop call us again right away, through the timerfd (which
 * net_timer_arm then keeps armed for "now" until we have run). */
static int net_run_soon(struct net_dev *n)
{
	struct itimerspec its = { .it_value = { .tv_nsec = 1 } };

	n->run_soon = true;
	return timerfd_settime(n->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
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
	 * wakeup, which net_run_soon makes immediate. */
	if (virtq_has_avail(&n->dev.vq[NET_TXQ]) > 0)
		net_run_soon(n);
}

/* ---- slirp's timers ------------------------------------------------------------ */

static void *net_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct net_dev *n = opaque;
	struct net_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->n = n;
	t->id = id;
	t->cb_opaque = cb_opaque;
	TAILQ_INSERT_TAIL(&n->timers, t, link);
	return t;
}

static void *net_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_timer *t = net_timer_new_opaque(SLIRP_TIMER_NUM, cb_opaque, opaque);

	if (t)
		t->cb = cb;
	return t;
}

static void net_timer_free(void *timer, void *opaque)
{
	struct net_timer *t = timer;

	if (!t)
		return;
	TAILQ_REMOVE(&t->n->timers, t, link);
	free(t);
}

static void net_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct net_timer *t = timer;

	if (!t)
		return;
	t->expire_ms = expire_ms;
	t->armed = true;
}

/* Fires expired timers. A callback may free or re-arm any timer, so each
 * firing restarts the scan; the cap stops a timer re-armed in the past
 * from spinning here. */
static void net_timers_run(struct net_dev *n)
{
	int64_t now_ms = net_now_ns() / 1000000;
	struct net_timer *t;

	for (unsigned runs = 0; runs < NET_TIMER_RUNS; runs++) {
		TAILQ_FOREACH(t, &n->timers, link)
			if (t->armed && t->expire_ms <= now_ms)
				break;
		if (!t)
			return;
		t->armed = false;
		if (t->cb)
			t->cb(t->cb_opaque);
		else
			slirp_handle_timer(n->slirp, t->id, t->cb_opaque);
	}
}

/* Arms the timerfd for the earliest timer or slirp's poll timeout. */
static void net_timer_arm(struct net_dev *n, uint32_t timeout_ms)
{
	int64_t now = net_now_ns(), when = 0;
	struct itimerspec its = { 0 };
	struct net_timer *t;

	if (n->run_soon)
		when = now;
	else if (timeout_ms != UINT32_MAX)
		when = now + (int64_t)timeout_ms * 1000000;
	TAILQ_FOREACH(t, &n->timers, link) {
		int64_t at = t->expire_ms * 1000000;
		if (t->armed && (!when || at < when))
			when = at;
	}
	if (when && when <= now)
		when = now + 1; /* 0 would disarm */
	its.it_value.tv_sec = when / 1000000000;
	its.it_value.tv_nsec = when % 1000000000;
	timerfd_settime(n->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- slirp's sockets ------------------------------------------------------------ */

static bool net_grow(void **arr, unsigned *cap, unsigned need, size_t elem)
{
	unsigned ncap = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return true;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return false;
	memset((uint8_t *)p + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
	*arr = p;
	*cap = ncap;
	return true;
}

static int net_add_poll(int fd, int events, void *opaque)
{
	struct net_dev *n = opaque;
	struct net_fd *f;
	uint32_t ev = 0;

	if (fd < 0 || !net_grow((void **)&n->pollfd, &n->pollcap, n->npoll + 1, sizeof(int)) ||
	    !net_grow((void **)&n->fds, &n->nfds, (unsigned)fd + 1, sizeof(struct net_fd)))
		return -1;
	f = &n->fds[fd];
	if (events & SLIRP_POLL_IN)
		ev |= EPOLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= EPOLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= EPOLLPRI;
	if (f->gen != n->gen) {
		f->gen = n->gen;
		f->want = 0;
	}
	f->want |= ev;
	n->pollfd[n->npoll] = fd;
	return (int)n->npoll++;
}

static int net_get_revents(int idx, void *opaque)
{
	struct net_dev *n = opaque;

	if (idx < 0 || (unsigned)idx >= n->npoll)
		return 0;
	return n->fds[n->pollfd[idx]].revents;
}

static int net_epoll_set(struct net_dev *n, int fd, uint32_t events, bool known)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };
	int op = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (epoll_ctl(n->epfd, op, fd, &ev) == 0)
		return 0;
	/* Closed and reused behind our back (ENOENT), or still there (EEXIST). */
	if (errno == ENOENT || errno == EEXIST)
		return epoll_ctl(n->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
	return -1;
}

/* Makes the epoll set watch what slirp asked for in this round, and no more. */
static void net_epoll_sync(struct net_dev *n)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < n->npoll; i++) {
		int fd = n->pollfd[i];
		struct net_fd *f = &n->fds[fd];
		/* Re-set even when unchanged, as poll() would: slirp may have
		 * closed the fd without telling us and got the number again for
		 * a new socket, which our epoll set does not hold yet. */
		if (net_epoll_set(n, fd, f->want, f->registered) < 0) {
			net_warn(n, WARN_EPOLL, "watching slirp fd %d: %s", fd, strerror(errno));
			continue;
		}
		if (!f->registered && net_grow((void **)&n->reg, &n->regcap, n->nreg + 1, sizeof(int))) {
			n->reg[n->nreg++] = fd;
			f->registered = true;
		}
	}
	for (unsigned i = 0; i < n->nreg; i++) {
		struct net_fd *f = &n->fds[n->reg[i]];
		if (f->gen == n->gen) {
			n->reg[keep++] = n->reg[i];
			continue;
		}
		/* slirp no longer wants it (or closed it: then this fails harmlessly). */
		epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->reg[i], NULL);
		f->registered = false;
	}
	n->nreg = keep;
}

/* After anything happened: ask slirp what to watch and until when. */
static void net_slirp_refill(struct net_dev *n)
{
	uint32_t timeout = UINT32_MAX;

	n->gen++;
	n->npoll = 0;
	slirp_pollfds_fill(n->slirp, &timeout, net_add_poll, n);
	net_epoll_sync(n);
	net_timer_arm(n, timeout);
}

/* Collects what the epoll set saw into per-fd revents for slirp. */
static void net_collect(struct net_dev *n)
{
	struct epoll_event ev[NET_EPOLL_BATCH];
	int got;

	do {
		got = epoll_wait(n->epfd, ev, NET_EPOLL_BATCH, 0);
		for (int i = 0; i < got; i++) {
			int fd = ev[i].data.fd, r = 0;
			uint64_t count;
			if (fd == n->timer_fd) {
				if (read(fd, &count, sizeof(count)) < 0) {
					/* EAGAIN: a re-arm raced the expiry; nothing to do. */
				}
				continue;
			}
			if ((unsigned)fd >= n->nfds)
				continue;
			if (ev[i].events & EPOLLIN)
				r |= SLIRP_POLL_IN;
			if (ev[i].events & EPOLLOUT)
				r |= SLIRP_POLL_OUT;
			if (ev[i].events & EPOLLPRI)
				r |= SLIRP_POLL_PRI;
			if (ev[i].events & EPOLLERR)
				r |= SLIRP_POLL_ERR;
			if (ev[i].events & EPOLLHUP)
				r |= SLIRP_POLL_HUP;
			n->fds[fd].revents |= r;
		}
	} while (got == NET_EPOLL_BATCH);
}

static void net_process(struct net_dev *n)
{
	if (virtio_dev_live(&n->dev)) {
		net_backlog_flush(n);
		net_tx_process(n);
	}
}

/* The loop callback: a slirp socket or the timerfd is ready. */
static void net_on_events(void *opaque, uint32_t events)
{
	struct net_dev *n = opaque;

	pthread_mutex_lock(&n->dev.lock);
	n->run_soon = false;
	for (unsigned i = 0; i < n->npoll; i++)
		n->fds[n->pollfd[i]].revents = 0;
	net_collect(n);
	slirp_pollfds_poll(n->slirp, 0, net_get_revents, n);
	net_timers_run(n);
	net_process(n);
	net_slirp_refill(n);
	vdev_unlock(&n->dev, &n->pend);
}

/* ---- slirp's other callbacks ------------------------------------------------------ */

static void net_slirp_guest_error(const char *msg, void *opaque)
{
	struct net_dev *n = opaque;

	net_warn(n, WARN_GUEST, "slirp: %s", msg);
}

static int64_t net_slirp_clock(void *opaque) { return net_now_ns(); }

static void net_slirp_register(int fd, void *opaque) {}

/* slirp is about to close fd: drop it now, before its number can be reused. */
static void net_slirp_unregister(int fd, void *opaque)
{
	struct net_dev *n = opaque;

	if (fd < 0 || (unsigned)fd >= n->nfds || !n->fds[fd].registered)
		return;
	epoll_ctl(n->epfd, EPOLL_CTL_DEL, fd, NULL);
	n->fds[fd].registered = false;
	for (unsigned i = 0; i < n->nreg; i++) {
		if (n->reg[i] == fd) {
			n->reg[i] = n->reg[--n->nreg];
			break;
		}
	}
}
/* We refill after every call into slirp anyway. */
static void net_slirp_notify(void *opaque) {}

static const SlirpCb net_slirp_cb = {
	.send_packet = net_slirp_send,
	.guest_error = net_slirp_guest_error,
	.clock_get_ns = net_slirp_clock,
	.timer_new = net_timer_new,
	.timer_free = net_timer_free,
	.timer_mod = net_timer_mod,
	.register_poll_fd = net_slirp_register,
	.unregister_poll_fd = net_slirp_unregister,
	.notify = net_slirp_notify,
	.timer_new_opaque = net_timer_new_opaque,
};

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
static int net_activate(struct virtio_dev *d) { return net_run_soon(net_of(d)); }

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
	net_process(n);
	net_slirp_refill(n);
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

static void net_stats(struct virtio_dev *d, char *buf, size_t len)
{
	struct virtio_net_stats s;

	virtio_net_get_stats(d, &s);
	snprintf(buf, len,
		 "tx_frames=%llu tx_bytes=%llu rx_frames=%llu rx_bytes=%llu tx_dropped=%llu rx_dropped=%llu",
		 (unsigned long long)s.tx_frames, (unsigned long long)s.tx_bytes,
		 (unsigned long long)s.rx_frames, (unsigned long long)s.rx_bytes,
		 (unsigned long long)s.tx_dropped, (unsigned long long)s.rx_dropped);
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

static Slirp *net_slirp_new(struct net_dev *n, const struct virtio_net_config *cfg)
{
	SlirpConfig sc = {
		.version = 4,
		.restricted = cfg && cfg->restricted,
		.in_enabled = true,
		.in6_enabled = false,
		.disable_host_loopback = cfg && cfg->no_host_loopback,
	};

	inet_pton(AF_INET, VIRTIO_NET_NETWORK, &sc.vnetwork);
	inet_pton(AF_INET, VIRTIO_NET_NETMASK, &sc.vnetmask);
	inet_pton(AF_INET, VIRTIO_NET_GATEWAY_ADDR, &sc.vhost);
	inet_pton(AF_INET, VIRTIO_NET_GUEST_ADDR, &sc.vdhcp_start);
	inet_pton(AF_INET, VIRTIO_NET_DNS_ADDR, &sc.vnameserver);
	return slirp_new(&sc, &net_slirp_cb, n);
}

static void net_destroy(struct virtio_dev *d)
{
	struct net_dev *n = net_of(d);
	struct net_timer *t;

	if (n->epfd >= 0 && n->loop)
		evloop_del(n->loop, n->epfd);
	if (n->slirp)
		slirp_cleanup(n->slirp);
	while ((t = TAILQ_FIRST(&n->timers)))
		net_timer_free(t, n);
	if (n->epfd >= 0)
		close(n->epfd);
	if (n->timer_fd >= 0)
		close(n->timer_fd);
	free(n->pollfd);
	free(n->fds);
	free(n->reg);
	free(n->txbuf);
	free(n->backlog);
	free(n->tx_chain);
	free(n->rx_chain);
}

static int net_open(struct net_dev *n, const struct virtio_net_config *cfg)
{
	struct epoll_event ev = { .events = EPOLLIN };

	n->epfd = epoll_create1(EPOLL_CLOEXEC);
	n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (n->epfd < 0 || n->timer_fd < 0)
		return -errno;
	ev.data.fd = n->timer_fd;
	if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->timer_fd, &ev) < 0)
		return -errno;
	n->slirp = net_slirp_new(n, cfg);
	if (!n->slirp)
		return -ENOMEM;
	net_slirp_refill(n);
	return evloop_add(n->loop, n->epfd, EPOLLIN, net_on_events, n);
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
	n->loop = loop;
	n->epfd = n->timer_fd = -1;
	TAILQ_INIT(&n->timers);
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
	rc = net_open(n, cfg);
	if (rc < 0) {
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
	rc = slirp_add_hostfwd(n->slirp, udp, host, host_port, guest, guest_port) < 0 ? -EADDRINUSE : 0;
	net_slirp_refill(n);
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
	rc = slirp_remove_hostfwd(n->slirp, udp, host, host_port) < 0 ? -ENOENT : 0;
	net_slirp_refill(n);
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
