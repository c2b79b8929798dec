/*
 * The worker's event loop: one thread that owns device back ends (queue
 * notifications through ioeventfd, host sockets, timers). vCPU threads
 * never block on it; they only touch device registers.
 */
#ifndef SM_BASE_EVLOOP_H
#define SM_BASE_EVLOOP_H

#include <stdint.h>

struct evloop;

/* events: EPOLLIN/EPOLLOUT/... as returned by epoll_wait */
typedef void (*evloop_cb)(void *opaque, uint32_t events);

struct evloop *evloop_new(void);
void evloop_free(struct evloop *l);

/* Watch fd for events (EPOLLIN, EPOLLOUT, ...); cb runs on the loop thread. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque);
int evloop_mod(struct evloop *l, int fd, uint32_t events);
int evloop_del(struct evloop *l, int fd);

/* Runs callbacks until evloop_stop(); returns 0, or -errno on failure. */
int evloop_run(struct evloop *l);
/* Thread-safe: makes evloop_run() return after the current callback. */
void evloop_stop(struct evloop *l);

#endif
