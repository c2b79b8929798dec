/* virtio-vsock: the host side: the unix-socket listener, the "CONNECT <port>"
 * handshake and socket events. */
#include "devices/virtio/vsock_internal.h"

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

/*
 * Out of descriptors: the listener is edge-triggered, so a client left in
 * the backlog would wait until some later client woke us, for ever if
 * none came. Give up the spare descriptor for long enough to accept it
 * and close it: the client sees EOF at once. True when one was refused.
 */
static bool vsock_shed(struct vsock_dev *v, int why)
{
	int fd;

	vsock_warn(v, WARN_NO_FDS, "accept on %s: %s: refusing host clients until descriptors free up",
		   v->uds_path, strerror(why));
	if (v->spare_fd < 0)
		return false;
	close(v->spare_fd);
	fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		close(fd);
	v->spare_fd = fcntl(v->kick_fd, F_DUPFD_CLOEXEC, 0);
	return fd >= 0;
}

static void vsock_accept(struct vsock_dev *v)
{
	for (;;) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vsock_conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && vsock_shed(v, errno))
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

bool vsock_live(struct vsock_dev *v) { return virtio_dev_live(&v->dev) && !vsock_failed(v); }

/* Delivers a pending transport reset if the driver posted an event buffer. */
void vsock_event_process(struct vsock_dev *v)
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
void vsock_reset_settle(struct vsock_dev *v)
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

void vsock_unlock(struct vsock_dev *v)
{
	vsock_free_dead(v);
	vdev_unlock(&v->dev, &v->pend);
}

void vsock_process(struct vsock_dev *v)
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
void vsock_on_events(void *opaque, uint32_t events)
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
