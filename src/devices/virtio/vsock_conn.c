/* virtio-vsock: the connection table, timers, connection lifetime, credit and
 * the guest -> host byte path (see vsock.c for the design). */
#include "devices/virtio/vsock_internal.h"

/* ---- connection table ---------------------------------------------------- */

static unsigned vsock_hash(uint32_t host_port, uint32_t guest_port)
{
	uint64_t k = ((uint64_t)host_port << 32) | guest_port;

	return (unsigned)((k * 0x9E3779B97F4A7C15ull) >> (64 - VSOCK_HASH_BITS));
}

struct vsock_conn *vsock_lookup(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port)
{
	struct vsock_conn *c;

	LIST_FOREACH(c, &v->table[vsock_hash(host_port, guest_port)], hash)
		if (c->host_port == host_port && c->guest_port == guest_port)
			return c;
	return NULL;
}

void vsock_hash_add(struct vsock_dev *v, struct vsock_conn *c)
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

void vsock_timer_arm(struct vsock_dev *v, uint64_t when_ns)
{
	struct itimerspec its = { 0 };

	if (when_ns && v->timer_armed_ns && v->timer_armed_ns <= when_ns)
		return;
	its.it_value.tv_sec = (time_t)(when_ns / 1000000000ull);
	its.it_value.tv_nsec = (long)(when_ns % 1000000000ull);
	if (timerfd_settime(v->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		v->timer_armed_ns = when_ns;
}

void vsock_set_deadline(struct vsock_dev *v, struct vsock_conn *c)
{
	c->deadline_ns = vsock_now_ns() + (uint64_t)v->lim.timeout_ms * 1000000ull;
	vsock_timer_arm(v, c->deadline_ns);
}

/* ---- connection lifetime ------------------------------------------------- */

void vsock_queue_rst(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port)
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

void vsock_rxq_del(struct vsock_dev *v, struct vsock_conn *c)
{
	if (!c->in_rxq)
		return;
	TAILQ_REMOVE(&v->rxq, c, rxq);
	c->in_rxq = false;
}

/* Forget the connection now; its memory goes when the current batch ends. */
void vsock_conn_kill(struct vsock_dev *v, struct vsock_conn *c)
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
void vsock_conn_reset(struct vsock_dev *v, struct vsock_conn *c)
{
	if (c->hashed)
		vsock_queue_rst(v, c->host_port, c->guest_port);
	vsock_conn_kill(v, c);
}

void vsock_free_dead(struct vsock_dev *v)
{
	struct vsock_conn *c;

	while ((c = TAILQ_FIRST(&v->dead))) {
		TAILQ_REMOVE(&v->dead, c, all);
		free(c->buf);
		free(c);
	}
}

void vsock_kill_all(struct vsock_dev *v)
{
	struct vsock_conn *c;

	while ((c = TAILQ_FIRST(&v->conns)))
		vsock_conn_kill(v, c);
	v->rst_count = 0;
}

struct vsock_conn *vsock_conn_new(struct vsock_dev *v, int fd, enum vsock_state state)
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

uint32_t vsock_buffered(const struct vsock_conn *c) { return c->rx_cnt - c->fwd_cnt; }

/*
 * Bytes the guest lets us send. Its buf_alloc and fwd_cnt are untrusted: a
 * fwd_cnt ahead of what we sent, or a shrunken buf_alloc, gives no credit
 * (that connection stalls) rather than a wrapped-around huge one.
 */
uint32_t vsock_peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	if (in_flight > c->peer_buf_alloc)
		return 0;
	return c->peer_buf_alloc - in_flight;
}

void vsock_take_credit(struct vsock_conn *c, const struct vsock_hdr *h)
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

bool vsock_can_read_host(const struct vsock_conn *c)
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

void vsock_conn_sched(struct vsock_dev *v, struct vsock_conn *c)
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
unsigned vsock_iov(const struct virtq_seg *seg, unsigned nseg, uint64_t off, uint64_t len,
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
void vsock_host_write_dead(struct vsock_conn *c)
{
	c->host_wr_dead = true;
	c->fwd_cnt = c->rx_cnt;
	free(c->buf);
	c->buf = NULL;
	c->buf_head = 0;
}

void vsock_conn_finish(struct vsock_dev *v, struct vsock_conn *c);

/* Pushes the ring to the host socket as far as it goes. */
void vsock_flush(struct vsock_dev *v, struct vsock_conn *c)
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

void vsock_guest_rw(struct vsock_dev *v, struct vsock_conn *c, const struct vsock_hdr *h,
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
void vsock_conn_release(struct vsock_dev *v, struct vsock_conn *c)
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
void vsock_conn_finish(struct vsock_dev *v, struct vsock_conn *c)
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
