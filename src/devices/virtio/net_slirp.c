/*
 * virtio-net's libslirp backend (net_backend.h): user-mode networking, the
 * guest at 10.0.2.15 behind slirp's NAT (see net.h for the addressing).
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
 * Locking: slirp is single-threaded; every call into it happens under
 * dev->lock, which every entry point takes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <slirp/libslirp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/net_backend.h"

#define NET_EPOLL_BATCH 64
#define NET_TIMER_RUNS 64

struct net_timer {
	struct net_slirp *s;
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

struct net_slirp {
	struct net_backend be; /* first: the ops get &be */
	struct net_backend_host host;
	struct evloop *loop;
	Slirp *slirp;
	int epfd, timer_fd;

	TAILQ_HEAD(, net_timer) timers;
	int *pollfd;            /* fd of each index slirp got from add_poll */
	unsigned npoll, pollcap;
	struct net_fd *fds;     /* indexed by fd */
	unsigned nfds;
	int *reg;               /* fds registered in epfd */
	unsigned nreg, regcap;
	unsigned gen;
	bool run_soon;          /* work left over: wake up again at once */
};

static struct net_slirp *slirp_of(struct net_backend *be) { return (struct net_slirp *)be; }

#define slirp_warn(s, kind, ...) vdev_warn_once((s)->host.dev, (s)->host.pend, kind, __VA_ARGS__)

static int64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Makes the loop call us again right away, through the timerfd (which
 * net_timer_arm then keeps armed for "now" until we have run). */
static int net_run_soon(struct net_slirp *s)
{
	struct itimerspec its = { .it_value = { .tv_nsec = 1 } };

	s->run_soon = true;
	return timerfd_settime(s->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
}

/* ---- slirp's timers ------------------------------------------------------------ */

static void *net_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct net_slirp *s = opaque;
	struct net_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->s = s;
	t->id = id;
	t->cb_opaque = cb_opaque;
	TAILQ_INSERT_TAIL(&s->timers, t, link);
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
	TAILQ_REMOVE(&t->s->timers, t, link);
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
static void net_timers_run(struct net_slirp *s)
{
	int64_t now_ms = net_now_ns() / 1000000;
	struct net_timer *t;

	for (unsigned runs = 0; runs < NET_TIMER_RUNS; runs++) {
		TAILQ_FOREACH(t, &s->timers, link)
			if (t->armed && t->expire_ms <= now_ms)
				break;
		if (!t)
			return;
		t->armed = false;
		if (t->cb)
			t->cb(t->cb_opaque);
		else
			slirp_handle_timer(s->slirp, t->id, t->cb_opaque);
	}
}

/* Arms the timerfd for the earliest timer or slirp's poll timeout. */
static void net_timer_arm(struct net_slirp *s, uint32_t timeout_ms)
{
	int64_t now = net_now_ns(), when = 0;
	struct itimerspec its = { 0 };
	struct net_timer *t;

	if (s->run_soon)
		when = now;
	else if (timeout_ms != UINT32_MAX)
		when = now + (int64_t)timeout_ms * 1000000;
	TAILQ_FOREACH(t, &s->timers, link) {
		int64_t at = t->expire_ms * 1000000;
		if (t->armed && (!when || at < when))
			when = at;
	}
	if (when && when <= now)
		when = now + 1; /* 0 would disarm */
	its.it_value.tv_sec = when / 1000000000;
	its.it_value.tv_nsec = when % 1000000000;
	timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
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
	struct net_slirp *s = opaque;
	struct net_fd *f;
	uint32_t ev = 0;

	if (fd < 0 || !net_grow((void **)&s->pollfd, &s->pollcap, s->npoll + 1, sizeof(int)) ||
	    !net_grow((void **)&s->fds, &s->nfds, (unsigned)fd + 1, sizeof(struct net_fd)))
		return -1;
	f = &s->fds[fd];
	if (events & SLIRP_POLL_IN)
		ev |= EPOLLIN;
	if (events & SLIRP_POLL_OUT)
		ev |= EPOLLOUT;
	if (events & SLIRP_POLL_PRI)
		ev |= EPOLLPRI;
	if (f->gen != s->gen) {
		f->gen = s->gen;
		f->want = 0;
	}
	f->want |= ev;
	s->pollfd[s->npoll] = fd;
	return (int)s->npoll++;
}

static int net_get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;

	if (idx < 0 || (unsigned)idx >= s->npoll)
		return 0;
	return s->fds[s->pollfd[idx]].revents;
}

static int net_epoll_set(struct net_slirp *s, int fd, uint32_t events, bool known)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };
	int op = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (epoll_ctl(s->epfd, op, fd, &ev) == 0)
		return 0;
	/* Closed and reused behind our back (ENOENT), or still there (EEXIST). */
	if (errno == ENOENT || errno == EEXIST)
		return epoll_ctl(s->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
	return -1;
}

/* Makes the epoll set watch what slirp asked for in this round, and no more. */
static void net_epoll_sync(struct net_slirp *s)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < s->npoll; i++) {
		int fd = s->pollfd[i];
		struct net_fd *f = &s->fds[fd];
		/* Re-set even when unchanged, as poll() would: slirp may have
		 * closed the fd without telling us and got the number again for
		 * a new socket, which our epoll set does not hold yet. */
		if (net_epoll_set(s, fd, f->want, f->registered) < 0) {
			slirp_warn(s, WARN_EPOLL, "watching slirp fd %d: %s", fd, strerror(errno));
			continue;
		}
		if (!f->registered && net_grow((void **)&s->reg, &s->regcap, s->nreg + 1, sizeof(int))) {
			s->reg[s->nreg++] = fd;
			f->registered = true;
		}
	}
	for (unsigned i = 0; i < s->nreg; i++) {
		struct net_fd *f = &s->fds[s->reg[i]];
		if (f->gen == s->gen) {
			s->reg[keep++] = s->reg[i];
			continue;
		}
		/* slirp no longer wants it (or closed it: then this fails harmlessly). */
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->reg[i], NULL);
		f->registered = false;
	}
	s->nreg = keep;
}

/* After anything happened: ask slirp what to watch and until when. */
static void net_slirp_refill(struct net_slirp *s)
{
	uint32_t timeout = UINT32_MAX;

	s->gen++;
	s->npoll = 0;
	slirp_pollfds_fill(s->slirp, &timeout, net_add_poll, s);
	net_epoll_sync(s);
	net_timer_arm(s, timeout);
}

/* Collects what the epoll set saw into per-fd revents for slirp. */
static void net_collect(struct net_slirp *s)
{
	struct epoll_event ev[NET_EPOLL_BATCH];
	int got;

	do {
		got = epoll_wait(s->epfd, ev, NET_EPOLL_BATCH, 0);
		for (int i = 0; i < got; i++) {
			int fd = ev[i].data.fd, r = 0;
			uint64_t count;
			if (fd == s->timer_fd) {
				if (read(fd, &count, sizeof(count)) < 0) {
					/* EAGAIN: a re-arm raced the expiry; nothing to do. */
				}
				continue;
			}
			if ((unsigned)fd >= s->nfds)
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
			s->fds[fd].revents |= r;
		}
	} while (got == NET_EPOLL_BATCH);
}

/* The loop callback: a slirp socket or the timerfd is ready. */
static void net_on_events(void *opaque, uint32_t events)
{
	struct net_slirp *s = opaque;

	pthread_mutex_lock(&s->host.dev->lock);
	s->run_soon = false;
	for (unsigned i = 0; i < s->npoll; i++)
		s->fds[s->pollfd[i]].revents = 0;
	net_collect(s);
	slirp_pollfds_poll(s->slirp, 0, net_get_revents, s);
	net_timers_run(s);
	s->host.process(s->host.dev);
	net_slirp_refill(s);
	vdev_unlock(s->host.dev, s->host.pend);
}

/* ---- slirp's other callbacks ------------------------------------------------------ */

/* slirp -> guest. Runs inside slirp calls, so under dev->lock. */
static ssize_t net_slirp_send(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;

	s->host.receive(s->host.dev, buf, len);
	return (ssize_t)len;
}

static void net_slirp_guest_error(const char *msg, void *opaque)
{
	struct net_slirp *s = opaque;

	slirp_warn(s, WARN_GUEST, "slirp: %s", msg);
}

static int64_t net_slirp_clock(void *opaque) { return net_now_ns(); }

static void net_slirp_register(int fd, void *opaque) {}

/* slirp is about to close fd: drop it now, before its number can be reused. */
static void net_slirp_unregister(int fd, void *opaque)
{
	struct net_slirp *s = opaque;

	if (fd < 0 || (unsigned)fd >= s->nfds || !s->fds[fd].registered)
		return;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
	s->fds[fd].registered = false;
	for (unsigned i = 0; i < s->nreg; i++) {
		if (s->reg[i] == fd) {
			s->reg[i] = s->reg[--s->nreg];
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

/* ---- the backend ops ------------------------------------------------------------- */

static void net_slirp_input(struct net_backend *be, const uint8_t *frame, size_t len)
{
	slirp_input(slirp_of(be)->slirp, frame, (int)len);
}

static void net_slirp_refill_be(struct net_backend *be) { net_slirp_refill(slirp_of(be)); }

static int net_slirp_run_soon(struct net_backend *be) { return net_run_soon(slirp_of(be)); }

static int net_slirp_hostfwd_add(struct net_backend *be, bool udp, struct in_addr host,
				 uint16_t host_port, struct in_addr guest, uint16_t guest_port)
{
	return slirp_add_hostfwd(slirp_of(be)->slirp, udp, host, host_port, guest, guest_port) < 0 ?
		       -EADDRINUSE : 0;
}

static int net_slirp_hostfwd_remove(struct net_backend *be, bool udp, struct in_addr host,
				    uint16_t host_port)
{
	return slirp_remove_hostfwd(slirp_of(be)->slirp, udp, host, host_port) < 0 ? -ENOENT : 0;
}

static void net_slirp_destroy(struct net_backend *be)
{
	struct net_slirp *s = slirp_of(be);
	struct net_timer *t;

	if (s->epfd >= 0 && s->loop)
		evloop_del(s->loop, s->epfd);
	if (s->slirp)
		slirp_cleanup(s->slirp);
	while ((t = TAILQ_FIRST(&s->timers)))
		net_timer_free(t, s);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	free(s->pollfd);
	free(s->fds);
	free(s->reg);
	free(s);
}

static const struct net_backend_ops net_slirp_ops = {
	.send = net_slirp_input,
	.refill = net_slirp_refill_be,
	.run_soon = net_slirp_run_soon,
	.hostfwd_add = net_slirp_hostfwd_add,
	.hostfwd_remove = net_slirp_hostfwd_remove,
	.destroy = net_slirp_destroy,
};

/* ---- lifetime ------------------------------------------------------------------------ */

static Slirp *net_slirp_start(struct net_slirp *s, const struct virtio_net_config *cfg)
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
	return slirp_new(&sc, &net_slirp_cb, s);
}

static int net_slirp_open(struct net_slirp *s, const struct virtio_net_config *cfg)
{
	struct epoll_event ev = { .events = EPOLLIN };

	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->epfd < 0 || s->timer_fd < 0)
		return -errno;
	ev.data.fd = s->timer_fd;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timer_fd, &ev) < 0)
		return -errno;
	s->slirp = net_slirp_start(s, cfg);
	if (!s->slirp)
		return -ENOMEM;
	net_slirp_refill(s);
	return evloop_add(s->loop, s->epfd, EPOLLIN, net_on_events, s);
}

struct net_backend *net_slirp_new(const struct net_backend_host *host, struct evloop *loop,
				  const struct virtio_net_config *cfg, int *err)
{
	struct net_slirp *s = calloc(1, sizeof(*s));
	int rc;

	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	s->be.ops = &net_slirp_ops;
	s->host = *host;
	s->loop = loop;
	s->epfd = s->timer_fd = -1;
	TAILQ_INIT(&s->timers);
	rc = net_slirp_open(s, cfg);
	if (rc < 0) {
		net_slirp_destroy(&s->be);
		*err = rc;
		return NULL;
	}
	return &s->be;
}
