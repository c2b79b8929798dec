/* virtio-vsock: packets from the guest (tx queue) and to it (rx queue). */
#include "devices/virtio/vsock_internal.h"

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
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->connect_prefix, h->dst_port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		vsock_warn(v, WARN_PATH, "socket path for port %u too long: refusing", h->dst_port);
		goto refuse;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		vsock_warn(v, WARN_NO_FDS, "socket for a guest connection to port %u: %s: refusing", h->dst_port,
			   strerror(errno));
		goto refuse;
	}
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

bool vsock_pop(struct vsock_dev *v, uint16_t qi, struct virtq_chain *ch)
{
	return vdev_pop(&v->dev, &v->pend, qi, ch) > 0;
}

void vsock_push(struct vsock_dev *v, uint16_t qi, uint16_t head, uint32_t written)
{
	vdev_push(&v->dev, &v->pend, qi, head, written);
}

void vsock_kick_self(struct vsock_dev *v)
{
	uint64_t one = 1;

	if (write(v->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vsock_warn(v, WARN_HOST_IO, "kick eventfd: %s", strerror(errno));
}

void vsock_tx_process(struct vsock_dev *v)
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

void vsock_rx_process(struct vsock_dev *v)
{
	vsock_rx_work(v);
	if (!vsock_failed(v))
		vsock_rx_unhold(v);
}
