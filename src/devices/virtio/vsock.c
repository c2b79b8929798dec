/*
 * virtio-vsock device, host end on unix sockets (see vsock.h).
 *
 * Every host fd of the device (the listener, each connection, a timerfd
 * and a kick eventfd) sits in one private epoll set, edge-triggered, and
 * only that epoll fd is registered with the worker's event loop. That
 * keeps connection churn away from the loop and lets us close a
 * connection in the middle of a batch of events safely: closed
 * connections are parked on a dead list and freed when the batch ends.
 *
 * Flow control (virtio 1.x 5.10.6.3):
 *   guest -> host  we advertise buf_alloc bytes per connection and count
 *                  what we forwarded to the host socket (fwd_cnt). What the
 *                  socket does not take at once is copied into a ring of
 *                  buf_alloc bytes; a guest that sends beyond its credit
 *                  gets the connection reset, so the ring never overflows.
 *   host -> guest  we read the host socket straight into the guest's rx
 *                  buffer, never more than the guest's advertised credit
 *                  (peer buf_alloc - (tx_cnt - peer fwd_cnt)). With no
 *                  credit or no rx buffer we stop reading: the host
 *                  socket's own buffer is the only backlog.
 *
 * Locking: all state is under dev->lock, taken by every entry point (the
 * loop callback, queue_notify, the exported functions); reset and activate
 * arrive with it held. Interrupts are raised after the lock is dropped.
 */
#include "devices/virtio/vsock.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/vdev.h"
#include "vmm/snapshot.h"

#define VSOCK_RXQ 0
#define VSOCK_TXQ 1
#define VSOCK_EVQ 2
#define VSOCK_NUM_QUEUES 3

#define VSOCK_TYPE_STREAM 1

enum {
	VSOCK_OP_INVALID,
	VSOCK_OP_REQUEST,
	VSOCK_OP_RESPONSE,
	VSOCK_OP_RST,
	VSOCK_OP_SHUTDOWN,
	VSOCK_OP_RW,
	VSOCK_OP_CREDIT_UPDATE,
	VSOCK_OP_CREDIT_REQUEST,
};

#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_EVENT_TRANSPORT_RESET 0

/* Largest payload we accept in one guest packet (Linux sends <= 64 KiB). */
#define VSOCK_MAX_PKT_PAYLOAD (64u * 1024)
/* Work done per wakeup before yielding the loop thread to other devices. */
#define VSOCK_BUDGET 256
#define VSOCK_HASH_BITS 8
#define VSOCK_RST_RING 256
#define VSOCK_LINE_MAX 32
/* Host-side ports we hand out for host-initiated connections. */
#define VSOCK_LOCAL_PORT_FIRST (1u << 30)

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum vsock_state {
	VSOCK_HANDSHAKE,   /* host client accepted; reading "CONNECT <port>\n" */
	VSOCK_CONNECTING,  /* REQUEST to the guest queued or sent; awaiting RESPONSE */
	VSOCK_ESTABLISHED,
	VSOCK_CLOSING,     /* sent SHUTDOWN(both); awaiting the guest's RST */
	VSOCK_DRAINING,    /* the guest is gone; flushing buffered bytes to the host */
	VSOCK_DEAD,        /* freed at the end of the current batch */
};

/* Control packets a connection owes the guest, in the order they go out. */
enum {
	PEND_REQUEST = 1 << 0,
	PEND_RESPONSE = 1 << 1,
	PEND_CREDIT_UPDATE = 1 << 2,
	PEND_CREDIT_REQUEST = 1 << 3,
	PEND_SHUTDOWN = 1 << 4,
};

/* Kinds of complaint, each logged once per device. */
enum {
	WARN_SHORT_HDR,
	WARN_BAD_LEN,
	WARN_BAD_CID,
	WARN_BAD_TYPE,
	WARN_BAD_OP,
	WARN_CREDIT,
	WARN_PROTO,
	WARN_RST_FULL,
	WARN_CONN_LIMIT,
	WARN_CONNECT_LINE,
	WARN_TIMEOUT,
	WARN_HOST_IO,
	WARN_PATH,
};

struct vsock_dev;

struct vsock_conn {
	struct vsock_dev *v;
	int fd;
	enum vsock_state state;
	uint32_t host_port, guest_port;
	unsigned pend;
	uint32_t shutdown_flags; /* for PEND_SHUTDOWN */

	/* edge-triggered readiness, cleared when the socket says EAGAIN */
	bool readable, writable;
	bool host_eof;       /* read returned 0: the host sends no more */
	bool host_hup;       /* the host closed both directions */
	bool host_wr_dead;   /* writes fail: drop what the guest sends */
	bool host_wr_shut;   /* we did shutdown(SHUT_WR) */
	bool guest_shut_rcv, guest_shut_send;
	bool credit_requested;
	bool in_rxq;

	/* guest -> host: ring of v->lim.buf_alloc bytes, allocated on first use */
	uint32_t rx_cnt;       /* bytes received from the guest */
	uint32_t fwd_cnt;      /* of those, bytes the host socket took (or we dropped) */
	uint32_t fwd_cnt_sent; /* fwd_cnt as last told to the guest */
	uint8_t *buf;
	uint32_t buf_head;     /* ring offset of the oldest buffered byte */

	/* host -> guest */
	uint32_t tx_cnt;       /* bytes sent to the guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt;

	char line[VSOCK_LINE_MAX];
	unsigned line_len;
	uint64_t deadline_ns;  /* 0: none */

	TAILQ_ENTRY(vsock_conn) all;
	TAILQ_ENTRY(vsock_conn) rxq;
	LIST_ENTRY(vsock_conn) hash;
	bool hashed;
};

struct vsock_rst {
	uint32_t host_port, guest_port;
};

struct vsock_dev {
	struct virtio_dev dev;
	struct evloop *loop;
	uint64_t guest_cid;
	char *uds_path;
	struct virtio_vsock_limits lim;
	int listen_fd, epfd, timer_fd, kick_fd;
	bool bound;              /* uds_path is ours to unlink */
	uint64_t timer_armed_ns; /* 0: disarmed */

	TAILQ_HEAD(, vsock_conn) conns;
	TAILQ_HEAD(, vsock_conn) rxq;
	TAILQ_HEAD(, vsock_conn) dead;
	LIST_HEAD(, vsock_conn) table[1u << VSOCK_HASH_BITS];
	uint32_t nconns;
	uint32_t next_local_port;

	struct vsock_rst rst[VSOCK_RST_RING];
	unsigned rst_head, rst_count;
	bool event_pending;
	/*
	 * The guest drops every connection it has when it handles a
	 * TRANSPORT_RESET, which can be after a host client connected anew
	 * (right after a restore, say). New REQUESTs wait until the driver
	 * has handed the event buffer back, which Linux does once it has
	 * handled the event: reset_mark is avail->idx when we sent it.
	 */
	bool reset_settling;
	uint16_t reset_mark;

	struct virtq_chain *tx_chain;
	struct virtq_chain *rx_chain;
	bool rx_held;          /* rx_chain popped but not yet used */
	struct iovec *iov;     /* VIRTQ_MAX_CHAIN entries */

	struct vdev_pending pend;
	struct virtio_vsock_stats stats;
};

#define TAG_LISTEN 1u
#define TAG_TIMER 2u
#define TAG_KICK 3u

static struct vsock_dev *vsock_of(struct virtio_dev *d) { return d->priv; }

static uint64_t vsock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define vsock_warn(v, kind, ...) vdev_warn_once(&(v)->dev, &(v)->pend, kind, __VA_ARGS__)
#define vsock_fail(v, ...) vdev_defer_fail(&(v)->pend, __VA_ARGS__)

static bool vsock_failed(const struct vsock_dev *v) { return vdev_failing(&v->pend); }

/* ---- connection table ---------------------------------------------------- */

static unsigned vsock_hash(uint32_t host_port, uint32_t guest_port)
{
	uint64_t k = ((uint64_t)host_port << 32) | guest_port;

	return (unsigned)((k * 0x9E3779B97F4A7C15ull) >> (64 - VSOCK_HASH_BITS));
}

static struct vsock_conn *vsock_lookup(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port)
{
	struct vsock_conn *c;

	LIST_FOREACH(c, &v->table[vsock_hash(host_port, guest_port)], hash)
		if (c->host_port == host_port && c->guest_port == guest_port)
			return c;
	return NULL;
}

static void vsock_hash_add(struct vsock_dev *v, struct vsock_conn *c)
{
	LIST_INSERT_HEAD(&v->table[vsock_hash(c->host_port, c->guest_port)], c, hash);
	c->hashed = true;
}

static void vsock_hash_del(struct vsock_conn *c)
{
	if (!c->hashed)
		return;
	LIST_REMOVE(c, hash);
	c->hashed = false;
}

/* ---- timers -------------------------------------------------------------- */

static void vsock_timer_arm(struct vsock_dev *v, uint64_t when_ns)
{
	struct itimerspec its = { 0 };

	if (when_ns && v->timer_armed_ns && v->timer_armed_ns <= when_ns)
		return;
	its.it_value.tv_sec = (time_t)(when_ns / 1000000000ull);
	its.it_value.tv_nsec = (long)(when_ns % 1000000000ull);
	if (timerfd_settime(v->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		v->timer_armed_ns = when_ns;
}

static void vsock_set_deadline(struct vsock_dev *v, struct vsock_conn *c)
{
	c->deadline_ns = vsock_now_ns() + (uint64_t)v->lim.timeout_ms * 1000000ull;
	vsock_timer_arm(v, c->deadline_ns);
}

/* ---- connection lifetime ------------------------------------------------- */

static void vsock_queue_rst(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port)
{
	struct vsock_rst *r;

	if (v->rst_count == VSOCK_RST_RING) {
		v->stats.rsts_dropped++;
		vsock_warn(v, WARN_RST_FULL, "RST queue full (guest posts no rx buffers): dropping RSTs");
		return;
	}
	r = &v->rst[(v->rst_head + v->rst_count) % VSOCK_RST_RING];
	r->host_port = host_port;
	r->guest_port = guest_port;
	v->rst_count++;
}

static void vsock_close_host(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(v->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

static void vsock_rxq_del(struct vsock_dev *v, struct vsock_conn *c)
{
	if (!c->in_rxq)
		return;
	TAILQ_REMOVE(&v->rxq, c, rxq);
	c->in_rxq = false;
}

/* Forget the connection now; its memory goes when the current batch ends. */
static void vsock_conn_kill(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->state == VSOCK_DEAD)
		return;
	vsock_close_host(v, c);
	vsock_hash_del(c);
	vsock_rxq_del(v, c);
	TAILQ_REMOVE(&v->conns, c, all);
	TAILQ_INSERT_TAIL(&v->dead, c, all);
	c->state = VSOCK_DEAD;
	v->nconns--;
}

/* Tell the guest the connection is gone and forget it. */
static void vsock_conn_reset(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->hashed)
		vsock_queue_rst(v, c->host_port, c->guest_port);
	vsock_conn_kill(v, c);
}

static void vsock_free_dead(struct vsock_dev *v)
{
	struct vsock_conn *c;

	while ((c = TAILQ_FIRST(&v->dead))) {
		TAILQ_REMOVE(&v->dead, c, all);
		free(c->buf);
		free(c);
	}
}

static void vsock_kill_all(struct vsock_dev *v)
{
	struct vsock_conn *c;

	while ((c = TAILQ_FIRST(&v->conns)))
		vsock_conn_kill(v, c);
	v->rst_count = 0;
}

static struct vsock_conn *vsock_conn_new(struct vsock_dev *v, int fd, enum vsock_state state)
{
	struct vsock_conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };

	if (!c)
		return NULL;
	c->v = v;
	c->fd = fd;
	c->state = state;
	ev.data.ptr = c;
	if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&v->conns, c, all);
	v->nconns++;
	v->stats.conns_total++;
	return c;
}

/* ---- credit -------------------------------------------------------------- */

static uint32_t vsock_buffered(const struct vsock_conn *c) { return c->rx_cnt - c->fwd_cnt; }

/*
 * Bytes the guest lets us send. Its buf_alloc and fwd_cnt are untrusted: a
 * fwd_cnt ahead of what we sent, or a shrunken buf_alloc, gives no credit
 * (that connection stalls) rather than a wrapped-around huge one.
 */
static uint32_t vsock_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	if (in_flight > c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

static void vsock_take_credit(struct vsock_conn *c, const struct vsock_hdr *h)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (vsock_peer_credit(c))
		c->credit_requested = false;
}

/* Owe the guest a credit update once it believes it has under half its window. */
static void vsock_maybe_credit_update(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->fwd_cnt == c->fwd_cnt_sent)
		return;
	if (c->rx_cnt - c->fwd_cnt_sent >= v->lim.buf_alloc / 2)
		c->pend |= PEND_CREDIT_UPDATE;
}

/* ---- scheduling rx work ---------------------------------------------------- */

static bool vsock_can_read_host(const struct vsock_conn *c)
{
	return c->state == VSOCK_ESTABLISHED && c->fd >= 0 && !c->host_eof && !c->guest_shut_rcv;
}

static bool vsock_wants_rx(struct vsock_conn *c)
{
	if (c->state == VSOCK_DEAD || c->state == VSOCK_DRAINING || c->state == VSOCK_HANDSHAKE)
		return false;
	if (c->pend)
		return true;
	if (!c->readable || !vsock_can_read_host(c))
		return false;
	if (vsock_peer_credit(c))
		return true;
	if (!c->credit_requested) {
		c->credit_requested = true;
		c->pend |= PEND_CREDIT_REQUEST;
		return true;
	}
	return false;
}

static bool vsock_requests_held(const struct vsock_dev *v) { return v->event_pending || v->reset_settling; }

static void vsock_conn_sched(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->in_rxq || !vsock_wants_rx(c))
		return;
	if ((c->pend & PEND_REQUEST) && vsock_requests_held(v))
		return; /* vsock_reset_settle() schedules it */
	TAILQ_INSERT_TAIL(&v->rxq, c, rxq);
	c->in_rxq = true;
}

/* ---- guest -> host bytes --------------------------------------------------- */

/* iovecs over segments seg[0..nseg), skipping `off` bytes, at most `len` bytes. */
static unsigned vsock_iov(const struct virtq_seg *seg, unsigned nseg, uint64_t off, uint64_t len,
			  struct iovec *iov)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nseg && len; i++) {
		uint64_t l = seg[i].len;
		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		iov[n].iov_base = seg[i].hva + off;
		iov[n].iov_len = l;
		n++;
		len -= l;
		off = 0;
	}
	return n;
}

/* Writes to the host socket; returns bytes taken, 0 on EAGAIN, -1 if the host is gone. */
static ssize_t vsock_host_send(struct vsock_conn *c, struct iovec *iov, unsigned n)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t r;

	if (n == 0)
		return 0;
	do
		r = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		c->writable = false;
		return 0;
	}
	return -1;
}

/* The host stopped taking bytes for good: drop what we hold, keep reading. */
static void vsock_host_write_dead(struct vsock_conn *c)
{
	c->host_wr_dead = true;
	c->fwd_cnt = c->rx_cnt;
	free(c->buf);
	c->buf = NULL;
	c->buf_head = 0;
}

static void vsock_conn_finish(struct vsock_dev *v, struct vsock_conn *c);

/* Pushes the ring to the host socket as far as it goes. */
static void vsock_flush(struct vsock_dev *v, struct vsock_conn *c)
{
	uint32_t cap = v->lim.buf_alloc;

	while (vsock_buffered(c) && c->writable && !c->host_wr_dead) {
		uint32_t len = vsock_buffered(c);
		uint32_t first = cap - c->buf_head < len ? cap - c->buf_head : len;
		struct iovec iov[2] = {
			{ c->buf + c->buf_head, first },
			{ c->buf, len - first },
		};
		ssize_t r = vsock_host_send(c, iov, len > first ? 2 : 1);
		if (r < 0) {
			vsock_host_write_dead(c);
			break;
		}
		c->buf_head = (uint32_t)((c->buf_head + (uint64_t)r) % cap);
		c->fwd_cnt += (uint32_t)r;
		if (r == 0)
			break;
	}
	vsock_maybe_credit_update(v, c);
	vsock_conn_finish(v, c);
}

/* Copies chain bytes [off, off+len) into the ring; the caller checked credit. */
static int vsock_buffer(struct vsock_dev *v, struct vsock_conn *c, const struct virtq_chain *ch,
			uint64_t off, uint32_t len)
{
	uint32_t cap = v->lim.buf_alloc;
	uint32_t tail = (uint32_t)(((uint64_t)c->buf_head + vsock_buffered(c)) % cap);
	uint32_t first = cap - tail < len ? cap - tail : len;

	if (!c->buf) {
		c->buf = malloc(cap);
		if (!c->buf)
			return -ENOMEM;
		c->buf_head = 0;
		tail = 0;
		first = len;
	}
	virtq_chain_read(ch, off, c->buf + tail, first);
	virtq_chain_read(ch, off + first, c->buf, len - first);
	c->rx_cnt += len;
	return 0;
}

static void vsock_guest_rw(struct vsock_dev *v, struct vsock_conn *c, const struct vsock_hdr *h,
			   const struct virtq_chain *ch)
{
	uint32_t len = h->len;
	ssize_t sent = 0;

	if (c->state == VSOCK_CLOSING) {
		/* The host is gone and we said so; the guest had not seen it yet. */
		c->rx_cnt += len;
		c->fwd_cnt += len;
		return;
	}
	if (c->state != VSOCK_ESTABLISHED || c->guest_shut_send) {
		vsock_warn(v, WARN_PROTO, "RW on port %u->%u in a state that allows none: reset",
			   h->src_port, h->dst_port);
		vsock_conn_reset(v, c);
		return;
	}
	if (len == 0)
		return;
	if ((uint64_t)vsock_buffered(c) + len > v->lim.buf_alloc) {
		v->stats.credit_violations++;
		vsock_warn(v, WARN_CREDIT, "guest port %u sent %u bytes beyond its credit: reset",
			   h->src_port, len);
		vsock_conn_reset(v, c);
		return;
	}
	v->stats.bytes_from_guest += len;
	if (c->host_wr_dead) {
		c->rx_cnt += len;
		c->fwd_cnt += len;
	} else if (vsock_buffered(c) == 0 && c->writable) {
		unsigned n = vsock_iov(ch->seg, ch->n_out, sizeof(struct vsock_hdr), len, v->iov);
		sent = vsock_host_send(c, v->iov, n);
		if (sent < 0) {
			vsock_host_write_dead(c);
			sent = len;
		}
		c->rx_cnt += (uint32_t)sent;
		c->fwd_cnt += (uint32_t)sent;
	}
	if ((uint32_t)sent < len &&
	    vsock_buffer(v, c, ch, sizeof(struct vsock_hdr) + (uint64_t)sent, len - (uint32_t)sent) < 0) {
		vsock_warn(v, WARN_HOST_IO, "out of memory buffering port %u: reset", h->src_port);
		vsock_conn_reset(v, c);
		return;
	}
	vsock_maybe_credit_update(v, c);
}

/*
 * The guest is done with the connection: RST to it now, its ports free for
 * reuse; bytes still in our ring go on to the host peer (DRAINING), then
 * the socket closes.
 */
static void vsock_conn_release(struct vsock_dev *v, struct vsock_conn *c)
{
	if (vsock_buffered(c) == 0 || c->host_wr_dead) {
		vsock_conn_reset(v, c);
		return;
	}
	vsock_queue_rst(v, c->host_port, c->guest_port);
	vsock_hash_del(c);
	vsock_rxq_del(v, c);
	c->state = VSOCK_DRAINING;
}

/*
 * Called whenever a connection may be done: both directions shut, or the
 * guest gone and the ring drained.
 */
static void vsock_conn_finish(struct vsock_dev *v, struct vsock_conn *c)
{
	bool drained = vsock_buffered(c) == 0;

	if (c->state == VSOCK_DRAINING) {
		if (drained || c->host_wr_dead)
			vsock_conn_kill(v, c);
		return;
	}
	if (c->state != VSOCK_ESTABLISHED)
		return;
	if (c->guest_shut_send && drained && !c->host_wr_shut && c->fd >= 0) {
		shutdown(c->fd, SHUT_WR);
		c->host_wr_shut = true;
	}
	/* Both sides said they are done sending: close as Linux expects, with RST. */
	if (c->guest_shut_send && c->host_eof && !(c->pend & PEND_SHUTDOWN))
		vsock_conn_release(v, c);
}

/* ---- guest packets (tx queue) ---------------------------------------------- */

static void vsock_guest_shutdown(struct vsock_dev *v, struct vsock_conn *c, uint32_t flags)
{
	if (flags & VSOCK_SHUTDOWN_RCV)
		c->guest_shut_rcv = true;
	if (flags & VSOCK_SHUTDOWN_SEND)
		c->guest_shut_send = true;
	if (c->state == VSOCK_CLOSING || c->state == VSOCK_CONNECTING) {
		vsock_conn_reset(v, c);
		return;
	}
	if (c->guest_shut_rcv && c->guest_shut_send) {
		vsock_conn_release(v, c); /* the guest closed and waits for our RST */
		return;
	}
	vsock_conn_finish(v, c);
}

static void vsock_guest_response(struct vsock_dev *v, struct vsock_conn *c)
{
	char ok[24];
	int n;

	if (c->state != VSOCK_CONNECTING || (c->pend & PEND_REQUEST)) {
		vsock_warn(v, WARN_PROTO, "unexpected RESPONSE on port %u->%u: reset",
			   c->guest_port, c->host_port);
		vsock_conn_reset(v, c);
		return;
	}
	/* The client has not been sent anything yet, so its socket buffer has
	 * room for this short line; a short write means it is gone. */
	n = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
	if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		vsock_conn_reset(v, c);
		return;
	}
	c->state = VSOCK_ESTABLISHED;
	c->deadline_ns = 0;
}

/* A guest connect() to host port h->dst_port: connect "<uds>_<port>". */
static void vsock_guest_connect(struct vsock_dev *v, const struct vsock_hdr *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vsock_conn *c;
	int fd, n;

	if (v->nconns >= v->lim.max_conns) {
		vsock_warn(v, WARN_CONN_LIMIT, "connection limit (%u) reached: refusing", v->lim.max_conns);
		goto refuse;
	}
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->uds_path, h->dst_port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		vsock_warn(v, WARN_PATH, "socket path for port %u too long: refusing", h->dst_port);
		goto refuse;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto refuse;
	/* Non-blocking: a host listener with a full backlog (EAGAIN) is a
	 * refusal, not a stall of the whole event loop. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		goto refuse;
	}
	c = vsock_conn_new(v, fd, VSOCK_ESTABLISHED);
	if (!c) {
		close(fd);
		goto refuse;
	}
	c->host_port = h->dst_port;
	c->guest_port = h->src_port;
	c->pend = PEND_RESPONSE;
	vsock_take_credit(c, h);
	vsock_hash_add(v, c);
	return;
refuse:
	vsock_queue_rst(v, h->dst_port, h->src_port);
}

static void vsock_guest_pkt_conn(struct vsock_dev *v, struct vsock_conn *c, const struct vsock_hdr *h,
				 const struct virtq_chain *ch)
{
	vsock_take_credit(c, h);
	switch (h->op) {
	case VSOCK_OP_REQUEST:
		vsock_warn(v, WARN_PROTO, "REQUEST for open connection %u->%u: reset", h->src_port, h->dst_port);
		vsock_conn_reset(v, c);
		return;
	case VSOCK_OP_RESPONSE:
		vsock_guest_response(v, c);
		break;
	case VSOCK_OP_RST:
		vsock_conn_kill(v, c);
		return;
	case VSOCK_OP_SHUTDOWN:
		vsock_guest_shutdown(v, c, h->flags);
		break;
	case VSOCK_OP_RW:
		vsock_guest_rw(v, c, h, ch);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;
	case VSOCK_OP_CREDIT_REQUEST:
		c->pend |= PEND_CREDIT_UPDATE;
		break;
	default:
		v->stats.pkts_dropped++;
		vsock_warn(v, WARN_BAD_OP, "unknown op %u on %u->%u: reset", h->op, h->src_port, h->dst_port);
		vsock_conn_reset(v, c);
		return;
	}
	if (c->state != VSOCK_DEAD)
		vsock_conn_sched(v, c);
}

static bool vsock_hdr_read(struct vsock_dev *v, const struct virtq_chain *ch, struct vsock_hdr *h)
{
	if (ch->out_len < sizeof(*h)) {
		v->stats.pkts_dropped++;
		vsock_warn(v, WARN_SHORT_HDR, "tx chain of %llu bytes has no header: dropped",
			   (unsigned long long)ch->out_len);
		return false;
	}
	virtq_chain_read(ch, 0, h, sizeof(*h));
	h->src_cid = le64toh(h->src_cid);
	h->dst_cid = le64toh(h->dst_cid);
	h->src_port = le32toh(h->src_port);
	h->dst_port = le32toh(h->dst_port);
	h->len = le32toh(h->len);
	h->type = le16toh(h->type);
	h->op = le16toh(h->op);
	h->flags = le32toh(h->flags);
	h->buf_alloc = le32toh(h->buf_alloc);
	h->fwd_cnt = le32toh(h->fwd_cnt);
	return true;
}

/* One packet from the guest. Bad ones are dropped (and answered with RST). */
static void vsock_guest_pkt(struct vsock_dev *v, const struct virtq_chain *ch)
{
	struct vsock_conn *c;
	struct vsock_hdr h;

	if (!vsock_hdr_read(v, ch, &h))
		return;
	if (h.src_cid != v->guest_cid || h.dst_cid != VSOCK_HOST_CID) {
		v->stats.pkts_dropped++;
		vsock_warn(v, WARN_BAD_CID, "packet from cid %llu to cid %llu: dropped",
			   (unsigned long long)h.src_cid, (unsigned long long)h.dst_cid);
		return;
	}
	c = vsock_lookup(v, h.dst_port, h.src_port);
	if (h.len > VSOCK_MAX_PKT_PAYLOAD || h.len > ch->out_len - sizeof(h) ||
	    (h.len && h.op != VSOCK_OP_RW)) {
		v->stats.pkts_dropped++;
		vsock_warn(v, WARN_BAD_LEN, "op %u claims %u payload bytes, chain has %llu: dropped",
			   h.op, h.len, (unsigned long long)(ch->out_len - sizeof(h)));
		goto reset;
	}
	if (h.type != VSOCK_TYPE_STREAM) {
		v->stats.pkts_dropped++;
		vsock_warn(v, WARN_BAD_TYPE, "socket type %u not supported: reset", h.type);
		goto reset;
	}
	if (c) {
		vsock_guest_pkt_conn(v, c, &h, ch);
		return;
	}
	if (h.op == VSOCK_OP_REQUEST)
		vsock_guest_connect(v, &h);
	else if (h.op != VSOCK_OP_RST)
		vsock_queue_rst(v, h.dst_port, h.src_port);
	return;
reset:
	if (c)
		vsock_conn_reset(v, c);
	else if (h.op != VSOCK_OP_RST)
		vsock_queue_rst(v, h.dst_port, h.src_port);
}

static bool vsock_pop(struct vsock_dev *v, uint16_t qi, struct virtq_chain *ch)
{
	return vdev_pop(&v->dev, &v->pend, qi, ch) > 0;
}

static void vsock_push(struct vsock_dev *v, uint16_t qi, uint16_t head, uint32_t written)
{
	vdev_push(&v->dev, &v->pend, qi, head, written);
}

static void vsock_kick_self(struct vsock_dev *v)
{
	uint64_t one = 1;

	if (write(v->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vsock_warn(v, WARN_HOST_IO, "kick eventfd: %s", strerror(errno));
}

static void vsock_tx_process(struct vsock_dev *v)
{
	for (unsigned budget = VSOCK_BUDGET; !vsock_failed(v); budget--) {
		if (!budget) {
			vsock_kick_self(v); /* more later; let other work run */
			return;
		}
		if (!vsock_pop(v, VSOCK_TXQ, v->tx_chain))
			return;
		vsock_guest_pkt(v, v->tx_chain);
		vsock_push(v, VSOCK_TXQ, v->tx_chain->head, 0);
	}
}

/* ---- packets to the guest (rx queue) ---------------------------------------- */

static void vsock_hdr_out(struct vsock_dev *v, struct vsock_hdr *h, uint32_t host_port,
			  uint32_t guest_port, uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = htole64(VSOCK_HOST_CID);
	h->dst_cid = htole64(v->guest_cid);
	h->src_port = htole32(host_port);
	h->dst_port = htole32(guest_port);
	h->type = htole16(VSOCK_TYPE_STREAM);
	h->op = htole16(op);
}

static void vsock_conn_hdr(struct vsock_dev *v, struct vsock_conn *c, struct vsock_hdr *h, uint16_t op)
{
	vsock_hdr_out(v, h, c->host_port, c->guest_port, op);
	h->buf_alloc = htole32(v->lim.buf_alloc);
	h->fwd_cnt = htole32(c->fwd_cnt);
	c->fwd_cnt_sent = c->fwd_cnt;
	c->pend &= ~PEND_CREDIT_UPDATE; /* every header carries the credit */
}

/* Hands the held rx chain to the guest with `payload` bytes after the header. */
static void vsock_rx_send(struct vsock_dev *v, const struct vsock_hdr *h, uint32_t payload)
{
	virtq_chain_write(v->rx_chain, 0, h, sizeof(*h));
	vsock_push(v, VSOCK_RXQ, v->rx_chain->head, (uint32_t)sizeof(*h) + payload);
	v->rx_held = false;
}

static void vsock_rx_control(struct vsock_dev *v, struct vsock_conn *c, uint16_t op, uint32_t flags)
{
	struct vsock_hdr h;

	vsock_conn_hdr(v, c, &h, op);
	h.flags = htole32(flags);
	vsock_rx_send(v, &h, 0);
}

static bool vsock_host_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

/* Reads host bytes into the held chain. Returns true if the chain was used. */
static bool vsock_rx_data(struct vsock_dev *v, struct vsock_conn *c)
{
	const struct virtq_chain *ch = v->rx_chain;
	uint64_t room = ch->in_len - sizeof(struct vsock_hdr);
	uint32_t credit = vsock_peer_credit(c);
	struct msghdr msg = { .msg_iov = v->iov };
	struct vsock_hdr h;
	ssize_t r;

	if (room > credit)
		room = credit;
	if (room > VSOCK_MAX_PKT_PAYLOAD)
		room = VSOCK_MAX_PKT_PAYLOAD;
	msg.msg_iovlen = vsock_iov(ch->seg + ch->n_out, ch->n_in, sizeof(h), room, v->iov);
	do
		r = recvmsg(c->fd, &msg, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		return false;
	}
	if (r <= 0) {
		/* EOF, or the host reset the socket: no more bytes from this side.
		 * Its HUP event may not have been dispatched yet: ask now whether
		 * the host closed both directions or only its sending one. */
		c->readable = false;
		c->host_eof = true;
		if (r < 0 || vsock_host_gone(c->fd))
			c->host_hup = true;
		if (c->host_hup)
			vsock_host_write_dead(c);
		c->shutdown_flags = VSOCK_SHUTDOWN_SEND | (c->host_hup ? VSOCK_SHUTDOWN_RCV : 0);
		c->pend |= PEND_SHUTDOWN;
		return false;
	}
	vsock_conn_hdr(v, c, &h, VSOCK_OP_RW);
	h.len = htole32((uint32_t)r);
	c->tx_cnt += (uint32_t)r;
	v->stats.bytes_to_guest += (uint64_t)r;
	vsock_rx_send(v, &h, (uint32_t)r);
	return true;
}

/* Sends the connection's next owed packet; false if it had nothing to send. */
static bool vsock_rx_conn(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->pend & PEND_REQUEST) {
		c->pend &= ~PEND_REQUEST;
		vsock_rx_control(v, c, VSOCK_OP_REQUEST, 0);
		return true;
	}
	if (c->pend & PEND_RESPONSE) {
		c->pend &= ~PEND_RESPONSE;
		vsock_rx_control(v, c, VSOCK_OP_RESPONSE, 0);
		return true;
	}
	if (c->pend & PEND_CREDIT_REQUEST) {
		c->pend &= ~PEND_CREDIT_REQUEST;
		vsock_rx_control(v, c, VSOCK_OP_CREDIT_REQUEST, 0);
		return true;
	}
	if (c->readable && vsock_can_read_host(c) && vsock_peer_credit(c) && vsock_rx_data(v, c))
		return true;
	if (c->pend & PEND_CREDIT_UPDATE) {
		vsock_rx_control(v, c, VSOCK_OP_CREDIT_UPDATE, 0);
		return true;
	}
	if (c->pend & PEND_SHUTDOWN) {
		c->pend &= ~PEND_SHUTDOWN;
		vsock_rx_control(v, c, VSOCK_OP_SHUTDOWN, c->shutdown_flags);
		if (c->shutdown_flags == (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)) {
			c->state = VSOCK_CLOSING;
			vsock_set_deadline(v, c);
		} else {
			vsock_conn_finish(v, c);
		}
		return true;
	}
	return false;
}

static void vsock_rx_rst(struct vsock_dev *v)
{
	struct vsock_rst *r = &v->rst[v->rst_head];
	struct vsock_hdr h;

	vsock_hdr_out(v, &h, r->host_port, r->guest_port, VSOCK_OP_RST);
	v->rst_head = (v->rst_head + 1) % VSOCK_RST_RING;
	v->rst_count--;
	vsock_rx_send(v, &h, 0);
}

/*
 * Hands back an rx chain we popped but found nothing to put in (the host
 * socket said EAGAIN): it was never pushed, so stepping last_avail back
 * is invisible to the driver. No chain stays held between wakeups, so
 * there is none to lose in a snapshot.
 */
static void vsock_rx_unhold(struct vsock_dev *v)
{
	if (!v->rx_held)
		return;
	v->dev.vq[VSOCK_RXQ].last_avail--;
	v->rx_held = false;
}

/* Gets an rx chain to fill, keeping it popped until used or handed back. */
static bool vsock_rx_chain(struct vsock_dev *v)
{
	if (v->rx_held)
		return true;
	if (!vsock_pop(v, VSOCK_RXQ, v->rx_chain))
		return false;
	if (v->rx_chain->in_len <= sizeof(struct vsock_hdr)) {
		vsock_fail(v, "rx buffer of %llu bytes cannot hold a header and a payload byte",
			   (unsigned long long)v->rx_chain->in_len);
		return false;
	}
	v->rx_held = true;
	return true;
}

static void vsock_rx_work(struct vsock_dev *v)
{
	unsigned budget = VSOCK_BUDGET;
	struct vsock_conn *c;

	while (!vsock_failed(v) && (v->rst_count || !TAILQ_EMPTY(&v->rxq))) {
		if (!budget--) {
			vsock_kick_self(v);
			return;
		}
		if (!vsock_rx_chain(v))
			return;
		if (v->rst_count) {
			vsock_rx_rst(v);
			continue;
		}
		c = TAILQ_FIRST(&v->rxq);
		vsock_rxq_del(v, c);
		vsock_rx_conn(v, c);
		if (c->state != VSOCK_DEAD)
			vsock_conn_sched(v, c);
	}
}

static void vsock_rx_process(struct vsock_dev *v)
{
	vsock_rx_work(v);
	if (!vsock_failed(v))
		vsock_rx_unhold(v);
}

/* ---- host side: listener, handshake, socket events ---------------------------- */

/* "CONNECT <port>\n", port a decimal u32 without sign or padding. */
static int vsock_parse_connect(const char *line, unsigned len, uint32_t *port)
{
	static const char prefix[] = "CONNECT ";
	unsigned long long p = 0;
	unsigned i = sizeof(prefix) - 1;

	if (len <= i + 1 || memcmp(line, prefix, i) != 0 || line[len - 1] != '\n')
		return -EINVAL;
	if (len - 1 - i > 10 || (line[i] == '0' && len - 1 - i > 1))
		return -EINVAL;
	for (; i < len - 1; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -EINVAL;
		p = p * 10 + (unsigned)(line[i] - '0');
	}
	if (p > UINT32_MAX)
		return -EINVAL;
	*port = (uint32_t)p;
	return 0;
}

static uint32_t vsock_alloc_port(struct vsock_dev *v, uint32_t guest_port)
{
	for (;;) {
		uint32_t p = v->next_local_port++;
		if (v->next_local_port < VSOCK_LOCAL_PORT_FIRST)
			v->next_local_port = VSOCK_LOCAL_PORT_FIRST;
		if (!vsock_lookup(v, p, guest_port))
			return p;
	}
}

static void vsock_handshake_fail(struct vsock_dev *v, struct vsock_conn *c, const char *why)
{
	vsock_warn(v, WARN_CONNECT_LINE, "host client closed: %s", why);
	vsock_conn_kill(v, c);
}

/*
 * Reads the CONNECT line without consuming a byte past its newline (the
 * client may pipeline data behind it): peek, then take only the line.
 */
static void vsock_handshake(struct vsock_dev *v, struct vsock_conn *c)
{
	char *nl;
	ssize_t r;
	uint32_t port;

	while (c->readable) {
		r = recv(c->fd, c->line + c->line_len, sizeof(c->line) - c->line_len, MSG_PEEK | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->readable = false;
			return;
		}
		if (r <= 0)
			return vsock_handshake_fail(v, c, "EOF before a CONNECT line");
		nl = memchr(c->line + c->line_len, '\n', (size_t)r);
		if (nl)
			r = nl - (c->line + c->line_len) + 1;
		if (recv(c->fd, c->line + c->line_len, (size_t)r, MSG_DONTWAIT) != r)
			return vsock_handshake_fail(v, c, "read error in the CONNECT line");
		c->line_len += (unsigned)r;
		if (nl)
			break;
		if (c->line_len == sizeof(c->line))
			return vsock_handshake_fail(v, c, "no newline in the first 32 bytes");
	}
	if (!c->line_len || c->line[c->line_len - 1] != '\n')
		return;
	if (vsock_parse_connect(c->line, c->line_len, &port) < 0)
		return vsock_handshake_fail(v, c, "malformed CONNECT line (want \"CONNECT <port>\\n\")");
	c->guest_port = port;
	c->host_port = vsock_alloc_port(v, port);
	c->state = VSOCK_CONNECTING;
	c->pend = PEND_REQUEST;
	vsock_hash_add(v, c);
	vsock_set_deadline(v, c);
	vsock_conn_sched(v, c);
}

static void vsock_accept(struct vsock_dev *v)
{
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vsock_conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				vsock_warn(v, WARN_HOST_IO, "accept on %s: %s", v->uds_path, strerror(errno));
			return;
		}
		if (v->nconns >= v->lim.max_conns) {
			vsock_warn(v, WARN_CONN_LIMIT, "connection limit (%u) reached: refusing host client",
				   v->lim.max_conns);
			close(fd);
			continue;
		}
		c = vsock_conn_new(v, fd, VSOCK_HANDSHAKE);
		if (!c) {
			close(fd);
			continue;
		}
		vsock_set_deadline(v, c);
	}
}

static void vsock_conn_event(struct vsock_dev *v, struct vsock_conn *c, uint32_t ev)
{
	if (c->state == VSOCK_DEAD)
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (ev & (EPOLLHUP | EPOLLERR))
		c->host_hup = true;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->writable = true;
	switch (c->state) {
	case VSOCK_HANDSHAKE:
		vsock_handshake(v, c);
		return;
	case VSOCK_CONNECTING:
		if (c->host_hup)
			vsock_conn_reset(v, c); /* the client gave up waiting */
		return;
	default:
		break;
	}
	if (c->writable)
		vsock_flush(v, c);
	if (c->state != VSOCK_DEAD)
		vsock_conn_sched(v, c);
}

static void vsock_timeouts(struct vsock_dev *v)
{
	uint64_t now = vsock_now_ns(), next = 0;
	struct vsock_conn *c, *tmp;
	uint64_t expirations;

	if (read(v->timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		vsock_warn(v, WARN_HOST_IO, "timerfd: %s", strerror(errno));
	v->timer_armed_ns = 0;
	for (c = TAILQ_FIRST(&v->conns); c; c = tmp) {
		tmp = TAILQ_NEXT(c, all); /* c may move to the dead list */
		if (!c->deadline_ns)
			continue;
		if (c->deadline_ns > now) {
			if (!next || c->deadline_ns < next)
				next = c->deadline_ns;
			continue;
		}
		if (c->state == VSOCK_HANDSHAKE || c->state == VSOCK_CONNECTING ||
		    c->state == VSOCK_CLOSING) {
			vsock_warn(v, WARN_TIMEOUT, "port %u: no answer within %u ms: closed",
				   c->guest_port, v->lim.timeout_ms);
			vsock_conn_reset(v, c);
		} else {
			c->deadline_ns = 0;
		}
	}
	if (next)
		vsock_timer_arm(v, next);
}

static bool vsock_live(struct vsock_dev *v) { return virtio_dev_live(&v->dev) && !vsock_failed(v); }

/* Delivers a pending transport reset if the driver posted an event buffer. */
static void vsock_event_process(struct vsock_dev *v)
{
	struct virtq_chain *ch = v->tx_chain;
	uint32_t id = htole32(VSOCK_EVENT_TRANSPORT_RESET);

	if (!v->event_pending || !vsock_pop(v, VSOCK_EVQ, ch))
		return;
	if (ch->in_len < sizeof(id)) {
		vsock_fail(v, "event buffer of %llu bytes is too small", (unsigned long long)ch->in_len);
		return;
	}
	virtq_chain_write(ch, 0, &id, sizeof(id));
	vsock_push(v, VSOCK_EVQ, ch->head, sizeof(id));
	v->event_pending = false;
	v->reset_settling = virtq_watch_avail(&v->dev.vq[VSOCK_EVQ], &v->reset_mark) == 0;
}

/* Once the guest has handled a reset, lets the REQUESTs held meanwhile go. */
static void vsock_reset_settle(struct vsock_dev *v)
{
	struct vsock_conn *c;
	uint16_t idx;

	if (!v->reset_settling)
		return;
	if (virtq_watch_avail(&v->dev.vq[VSOCK_EVQ], &idx) == 0 && idx == v->reset_mark)
		return;
	v->reset_settling = false;
	TAILQ_FOREACH(c, &v->conns, all)
		vsock_conn_sched(v, c);
}

static void vsock_unlock(struct vsock_dev *v)
{
	vsock_free_dead(v);
	vdev_unlock(&v->dev, &v->pend);
}

static void vsock_process(struct vsock_dev *v)
{
	if (!vsock_live(v))
		return;
	vsock_event_process(v);
	vsock_reset_settle(v);
	vsock_tx_process(v);
	vsock_rx_process(v);
}

static void vsock_dispatch(struct vsock_dev *v, struct epoll_event *e)
{
	uint64_t count;

	switch (e->data.u64) {
	case TAG_LISTEN:
		vsock_accept(v);
		return;
	case TAG_TIMER:
		vsock_timeouts(v);
		return;
	case TAG_KICK:
		if (read(v->kick_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
			vsock_warn(v, WARN_HOST_IO, "kick eventfd: %s", strerror(errno));
		return;
	default:
		vsock_conn_event(v, e->data.ptr, e->events);
	}
}

/* The loop callback: our private epoll set has events. */
static void vsock_on_events(void *opaque, uint32_t events)
{
	struct vsock_dev *v = opaque;
	struct epoll_event ev[64];
	int n;

	pthread_mutex_lock(&v->dev.lock);
	n = epoll_wait(v->epfd, ev, 64, 0);
	for (int i = 0; i < n; i++)
		vsock_dispatch(v, &ev[i]);
	vsock_process(v);
	vsock_unlock(v);
}

/* ---- virtio ops ------------------------------------------------------------- */

static uint64_t vsock_features(struct virtio_dev *d) { return 0; }

static void vsock_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	uint64_t cid = htole64(vsock_of(d)->guest_cid);

	memcpy(data, (uint8_t *)&cid + off, len);
}

static void vsock_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* guest_cid is read-only; the spec says to ignore writes. */
}

static int vsock_activate(struct virtio_dev *d)
{
	/* Host clients may have connected before the driver came up; have the
	 * loop look at them once the rx queue has buffers. */
	vsock_kick_self(vsock_of(d));
	return 0;
}

static void vsock_reset(struct virtio_dev *d)
{
	struct vsock_dev *v = vsock_of(d);

	vsock_kill_all(v);
	vsock_free_dead(v);
	v->rx_held = false;
	v->event_pending = false;
	v->reset_settling = false;
	vdev_pending_clear(&v->pend);
}

static void vsock_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct vsock_dev *v = vsock_of(d);

	if (q >= VSOCK_NUM_QUEUES)
		return;
	pthread_mutex_lock(&d->lock);
	vsock_process(v);
	vsock_unlock(v);
}

/*
 * Connections are never captured: their host ends are sockets of the
 * worker that took the snapshot. A restored (or reset) device starts with
 * none and owes the guest a TRANSPORT_RESET event, which makes the guest
 * drop its side of every connection while its listeners stay.
 */
static int vsock_save(struct virtio_dev *d, struct snap_writer *w)
{
	snap_put_u64(w, vsock_of(d)->guest_cid);
	return 0;
}

static int vsock_restore(struct virtio_dev *d, struct snap_reader *r)
{
	struct vsock_dev *v = vsock_of(d);
	uint64_t cid;

	if (snap_get_u64(r, &cid) < 0)
		return -EBADMSG;
	if (cid != v->guest_cid)
		return snap_reader_fail(r, "virtio-vsock: guest CID %llu; this device has %llu",
					(unsigned long long)cid, (unsigned long long)v->guest_cid);
	vsock_kill_all(v);
	vsock_free_dead(v);
	v->rst_head = v->rst_count = 0;
	v->event_pending = true;
	v->reset_settling = false;
	return 0;
}

static const struct virtio_dev_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = VSOCK_NUM_QUEUES,
	.features = vsock_features,
	.config_size = 8,
	.config_read = vsock_config_read,
	.config_write = vsock_config_write,
	.activate = vsock_activate,
	.reset = vsock_reset,
	.queue_notify = vsock_queue_notify,
	.save = vsock_save,
	.restore = vsock_restore,
};

/* ---- lifetime ----------------------------------------------------------------- */

static int vsock_epoll_add(struct vsock_dev *v, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = tag };

	return epoll_ctl(v->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Is sa a socket file that no process listens on any more? */
static bool vsock_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, rc;

	if (lstat(sa->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	return rc < 0 && errno == ECONNREFUSED;
}

static int vsock_listen(struct vsock_dev *v)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	/* Leave room for the "_<port>" suffix of guest-initiated connections. */
	if (strlen(v->uds_path) + 11 >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, v->uds_path);
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (v->listen_fd < 0)
		return -errno;
	if (bind(v->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno != EADDRINUSE || !vsock_stale(&sa))
			return -errno;
		/* Left over by a worker that died: nobody answers there. */
		unlink(sa.sun_path);
		if (bind(v->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			return -errno;
	}
	v->bound = true;
	if (listen(v->listen_fd, 128) < 0)
		return -errno;
	return 0;
}

static int vsock_open_fds(struct vsock_dev *v)
{
	int rc = vsock_listen(v);

	if (rc < 0)
		return rc;
	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	v->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (v->epfd < 0 || v->timer_fd < 0 || v->kick_fd < 0)
		return -errno;
	if (vsock_epoll_add(v, v->listen_fd, TAG_LISTEN) < 0 ||
	    vsock_epoll_add(v, v->timer_fd, TAG_TIMER) < 0 ||
	    vsock_epoll_add(v, v->kick_fd, TAG_KICK) < 0)
		return -errno;
	return evloop_add(v->loop, v->epfd, EPOLLIN, vsock_on_events, v);
}

static void vsock_close_fds(struct vsock_dev *v)
{
	if (v->epfd >= 0 && v->loop)
		evloop_del(v->loop, v->epfd);
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	if (v->bound)
		unlink(v->uds_path);
	if (v->epfd >= 0)
		close(v->epfd);
	if (v->timer_fd >= 0)
		close(v->timer_fd);
	if (v->kick_fd >= 0)
		close(v->kick_fd);
}

static void vsock_free(struct vsock_dev *v)
{
	vsock_kill_all(v);
	vsock_free_dead(v);
	vsock_close_fds(v);
	free(v->uds_path);
	free(v->tx_chain);
	free(v->rx_chain);
	free(v->iov);
	free(v);
}

static void vsock_limits_init(struct virtio_vsock_limits *lim, const struct virtio_vsock_limits *want)
{
	*lim = (struct virtio_vsock_limits){
		.buf_alloc = VSOCK_DEFAULT_BUF_ALLOC,
		.max_conns = VSOCK_DEFAULT_MAX_CONNS,
		.timeout_ms = VSOCK_DEFAULT_TIMEOUT_MS,
	};
	if (!want)
		return;
	if (want->buf_alloc)
		lim->buf_alloc = want->buf_alloc;
	if (want->max_conns)
		lim->max_conns = want->max_conns;
	if (want->timeout_ms)
		lim->timeout_ms = want->timeout_ms;
}

struct virtio_dev *virtio_vsock_create(const struct guest_mem *mem, struct evloop *loop,
				       uint64_t guest_cid, const char *uds_path,
				       const struct virtio_vsock_limits *limits)
{
	struct vsock_dev *v;
	int rc;

	if (!mem || !loop || !uds_path || guest_cid < 3 || guest_cid > UINT32_MAX - 1) {
		errno = EINVAL;
		return NULL;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->loop = loop;
	v->guest_cid = guest_cid;
	v->listen_fd = v->epfd = v->timer_fd = v->kick_fd = -1;
	v->next_local_port = VSOCK_LOCAL_PORT_FIRST;
	vsock_limits_init(&v->lim, limits);
	TAILQ_INIT(&v->conns);
	TAILQ_INIT(&v->rxq);
	TAILQ_INIT(&v->dead);
	v->uds_path = strdup(uds_path);
	v->tx_chain = malloc(sizeof(*v->tx_chain));
	v->rx_chain = malloc(sizeof(*v->rx_chain));
	v->iov = calloc(VIRTQ_MAX_CHAIN, sizeof(*v->iov));
	if (!v->uds_path || !v->tx_chain || !v->rx_chain || !v->iov) {
		rc = -ENOMEM;
		goto fail;
	}
	virtio_dev_init(&v->dev, &vsock_ops, v, mem, 0, 0, -1);
	rc = vsock_open_fds(v);
	if (rc < 0) {
		virtio_dev_destroy(&v->dev);
		goto fail;
	}
	return &v->dev;
fail:
	vsock_free(v);
	errno = -rc;
	return NULL;
}

void virtio_vsock_destroy(struct virtio_dev *d)
{
	struct vsock_dev *v;

	if (!d)
		return;
	v = vsock_of(d);
	virtio_dev_destroy(&v->dev);
	vsock_free(v);
}

void virtio_vsock_transport_reset(struct virtio_dev *d)
{
	struct vsock_dev *v = vsock_of(d);

	pthread_mutex_lock(&d->lock);
	vsock_kill_all(v);
	v->event_pending = true;
	if (vsock_live(v))
		vsock_event_process(v);
	vsock_unlock(v);
}

void virtio_vsock_get_stats(struct virtio_dev *d, struct virtio_vsock_stats *s)
{
	struct vsock_dev *v = vsock_of(d);
	struct vsock_conn *c;

	pthread_mutex_lock(&d->lock);
	*s = v->stats;
	s->conns = v->nconns;
	s->buffered = 0;
	TAILQ_FOREACH(c, &v->conns, all)
		s->buffered += vsock_buffered(c);
	pthread_mutex_unlock(&d->lock);
}

void virtio_vsock_control(void *dev, const char *args, char *reply, size_t len)
{
	struct virtio_vsock_stats s;

	if (strcmp(args, "reset") == 0) {
		virtio_vsock_transport_reset(dev);
		snprintf(reply, len, "ok");
		return;
	}
	if (strcmp(args, "stats") != 0 && args[0]) {
		snprintf(reply, len, "error usage: vsock [stats|reset]");
		return;
	}
	virtio_vsock_get_stats(dev, &s);
	snprintf(reply, len,
		 "ok conns=%u conns_total=%llu buffered=%llu bytes_to_guest=%llu bytes_from_guest=%llu "
		 "pkts_dropped=%llu credit_violations=%llu rsts_dropped=%llu",
		 s.conns, (unsigned long long)s.conns_total, (unsigned long long)s.buffered,
		 (unsigned long long)s.bytes_to_guest, (unsigned long long)s.bytes_from_guest,
		 (unsigned long long)s.pkts_dropped, (unsigned long long)s.credit_violations,
		 (unsigned long long)s.rsts_dropped);
}
