#include "base/evloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct evloop_handler {
	int fd;
	evloop_cb cb;
	void *opaque;
	bool dead;
	struct evloop_handler *next;
};

struct evloop {
	int epfd;
	int stop_fd;
	bool stop;
	/*
	 * Handlers can be added or removed from any thread while the loop
	 * thread dispatches. A removed handler goes to the graveyard and is
	 * freed only by the loop thread after the batch in flight, so a pointer
	 * epoll_wait already returned stays valid until it is skipped.
	 */
	pthread_mutex_t lock;
	struct evloop_handler *live;
	struct evloop_handler *graveyard;
};

#define EVLOOP_BATCH 32

struct evloop *evloop_new(void)
{
	struct evloop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->stop_fd < 0)
		goto fail;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->stop_fd, &ev) < 0)
		goto fail;
	pthread_mutex_init(&l->lock, NULL);
	return l;
fail:
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	free(l);
	return NULL;
}

static void handler_list_free(struct evloop_handler *h)
{
	while (h) {
		struct evloop_handler *next = h->next;
		free(h);
		h = next;
	}
}

void evloop_free(struct evloop *l)
{
	if (!l)
		return;
	handler_list_free(l->live);
	handler_list_free(l->graveyard);
	close(l->epfd);
	close(l->stop_fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static struct evloop_handler *handler_find(struct evloop *l, int fd, struct evloop_handler ***link)
{
	for (struct evloop_handler **p = &l->live; *p; p = &(*p)->next) {
		if ((*p)->fd == fd) {
			if (link)
				*link = p;
			return *p;
		}
	}
	return NULL;
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
	struct evloop_handler *h = calloc(1, sizeof(*h));
	int rc = 0;

	if (!h)
		return -ENOMEM;
	h->fd = fd;
	h->cb = cb;
	h->opaque = opaque;
	pthread_mutex_lock(&l->lock);
	if (handler_find(l, fd, NULL)) {
		rc = -EEXIST;
		goto out;
	}
	struct epoll_event ev = { .events = events, .data.ptr = h };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		rc = -errno;
		goto out;
	}
	h->next = l->live;
	l->live = h;
	h = NULL;
out:
	pthread_mutex_unlock(&l->lock);
	free(h);
	return rc;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	struct evloop_handler *h = handler_find(l, fd, NULL);
	if (!h) {
		rc = -ENOENT;
	} else {
		struct epoll_event ev = { .events = events, .data.ptr = h };
		if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
			rc = -errno;
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

int evloop_del(struct evloop *l, int fd)
{
	struct evloop_handler **link;
	int rc = 0;

	pthread_mutex_lock(&l->lock);
	struct evloop_handler *h = handler_find(l, fd, &link);
	if (!h) {
		rc = -ENOENT;
		goto out;
	}
	if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
		rc = -errno;
	*link = h->next;
	__atomic_store_n(&h->dead, true, __ATOMIC_RELEASE);
	h->next = l->graveyard;
	l->graveyard = h;
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static void evloop_reap(struct evloop *l)
{
	pthread_mutex_lock(&l->lock);
	struct evloop_handler *dead = l->graveyard;
	l->graveyard = NULL;
	pthread_mutex_unlock(&l->lock);
	handler_list_free(dead);
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[EVLOOP_BATCH];
	int rc = 0;

	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(l->epfd, evs, EVLOOP_BATCH, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct evloop_handler *h = evs[i].data.ptr;
			if (!h || __atomic_load_n(&h->dead, __ATOMIC_ACQUIRE))
				continue;
			h->cb(h->opaque, evs[i].events);
			if (__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE))
				break;
		}
		evloop_reap(l);
	}
	/* Ready for another run (a paused VM resumes on the same loop). */
	uint64_t v;
	while (read(l->stop_fd, &v, sizeof(v)) == sizeof(v))
		;
	__atomic_store_n(&l->stop, false, __ATOMIC_RELEASE);
	return rc;
}

void evloop_stop(struct evloop *l)
{
	uint64_t one = 1;

	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	if (write(l->stop_fd, &one, sizeof(one)) < 0) {
		/* The counter is already non-zero: the loop wakes up anyway. */
	}
}
