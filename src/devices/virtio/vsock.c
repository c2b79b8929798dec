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
#include "devices/virtio/vsock_internal.h"

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

static void vsock_destroy(struct virtio_dev *d);

static void vsock_stats(struct virtio_dev *d, struct virtio_dev_stats *out)
{
	struct virtio_vsock_stats s;

	virtio_vsock_get_stats(d, &s);
	*out = (struct virtio_dev_stats){ {
		{ "conns", s.conns }, { "conns_total", s.conns_total }, { "buffered", s.buffered },
		{ "bytes_to_guest", s.bytes_to_guest }, { "bytes_from_guest", s.bytes_from_guest },
		{ "pkts_dropped", s.pkts_dropped }, { "credit_violations", s.credit_violations },
		{ "rsts_dropped", s.rsts_dropped },
	} };
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
	.state_version = 1,
	.destroy = vsock_destroy,
	.stats = vsock_stats,
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
	/* Held only to be given up when the worker runs out of descriptors (vsock_accept). */
	v->spare_fd = fcntl(v->kick_fd, F_DUPFD_CLOEXEC, 0);
	if (v->spare_fd < 0)
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
	if (v->spare_fd >= 0)
		close(v->spare_fd);
	if (v->connect_dir >= 0)
		close(v->connect_dir);
}

static void vsock_destroy(struct virtio_dev *d)
{
	struct vsock_dev *v = vsock_of(d);

	vsock_kill_all(v);
	vsock_free_dead(v);
	vsock_close_fds(v);
	if (v->connect_prefix != v->uds_path)
		free(v->connect_prefix);
	free(v->uds_path);
	free(v->tx_chain);
	free(v->rx_chain);
	free(v->iov);
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
	v = vdev_alloc(sizeof(*v), &vsock_ops, mem);
	if (!v)
		return NULL;
	v->loop = loop;
	v->guest_cid = guest_cid;
	v->listen_fd = v->epfd = v->timer_fd = v->kick_fd = v->spare_fd = v->connect_dir = -1;
	v->next_local_port = VSOCK_LOCAL_PORT_FIRST;
	vsock_limits_init(&v->lim, limits);
	TAILQ_INIT(&v->conns);
	TAILQ_INIT(&v->rxq);
	TAILQ_INIT(&v->dead);
	v->uds_path = v->connect_prefix = strdup(uds_path);
	v->tx_chain = malloc(sizeof(*v->tx_chain));
	v->rx_chain = malloc(sizeof(*v->rx_chain));
	v->iov = calloc(VIRTQ_MAX_CHAIN, sizeof(*v->iov));
	if (!v->uds_path || !v->tx_chain || !v->rx_chain || !v->iov) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = vsock_open_fds(v);
	if (rc < 0)
		goto fail;
	return &v->dev;
fail:
	virtio_dev_free(&v->dev);
	errno = -rc;
	return NULL;
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

int virtio_vsock_connect_via(struct virtio_dev *d)
{
	struct vsock_dev *v = vsock_of(d);
	char dir[PATH_MAX], *prefix, *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", v->uds_path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	fd = open(slash ? dir : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (asprintf(&prefix, "/proc/self/fd/%d/%s", fd, slash ? strrchr(v->uds_path, '/') + 1 : v->uds_path) < 0) {
		close(fd);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	if (v->connect_dir >= 0)
		close(v->connect_dir);
	if (v->connect_prefix != v->uds_path)
		free(v->connect_prefix);
	v->connect_dir = fd;
	v->connect_prefix = prefix;
	pthread_mutex_unlock(&d->lock);
	return 0;
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
	if (strcmp(args, "reset") == 0) {
		virtio_vsock_transport_reset(dev);
		snprintf(reply, len, "ok");
		return;
	}
	if (strcmp(args, "stats") != 0 && args[0]) {
		snprintf(reply, len, "error usage: vsock [stats|reset]");
		return;
	}
	vdev_stats_reply(dev, reply, len);
}
