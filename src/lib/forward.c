/*
 * sm_vm_expose_tcp: a host TCP listener whose connections are each
 * relayed to a guest port over their own agent TCP bridge (vsock), so a
 * service in the guest is reachable without guest networking. One thread
 * accepts; one thread per connection copies both ways with half-closes.
 * Stopping sets an eventfd every thread polls, then waits for all of them.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/error.h"
#include "lib/log.h"
#include "lib/vm.h"

#define FORWARD_BUF 65536

struct sm_forward {
	struct agent_target target; /* a copy: the VM may be freed after the forward stops, not before */
	uint16_t guest_port, host_port;
	int listen_fd;
	int stop_fd;                /* eventfd: readable once stopping */
	pthread_t acceptor;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	unsigned active;            /* relay threads running */
};

struct forward_conn {
	struct sm_forward *f;
	int host_fd, guest_fd;
};

/* Copies what is readable on from to to; false at EOF or error on either side. */
static bool forward_pump(int from, int to, char *buf)
{
	ssize_t n = read(from, buf, FORWARD_BUF);

	if (n <= 0)
		return false;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += w;
	}
	return true;
}

static void *forward_relay(void *arg)
{
	struct forward_conn *c = arg;
	struct sm_forward *f = c->f;
	char *buf = malloc(FORWARD_BUF);
	bool open_in[2] = { true, true }; /* host->guest, guest->host still flowing */

	while (buf && (open_in[0] || open_in[1])) {
		struct pollfd p[3] = {
			{ .fd = open_in[0] ? c->host_fd : -1, .events = POLLIN },
			{ .fd = open_in[1] ? c->guest_fd : -1, .events = POLLIN },
			{ .fd = f->stop_fd, .events = POLLIN },
		};
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		if (p[2].revents)
			break;
		for (int d = 0; d < 2; d++) {
			if (!open_in[d] || !(p[d].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int from = d ? c->guest_fd : c->host_fd, to = d ? c->host_fd : c->guest_fd;
			if (!forward_pump(from, to, buf)) {
				open_in[d] = false;
				shutdown(to, SHUT_WR); /* pass the EOF on; the other way keeps flowing */
			}
		}
	}
	free(buf);
	close(c->host_fd);
	close(c->guest_fd);
	free(c);
	pthread_mutex_lock(&f->lock);
	if (--f->active == 0)
		pthread_cond_broadcast(&f->idle);
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

static void forward_start_relay(struct sm_forward *f, int host_fd)
{
	struct forward_conn *c = malloc(sizeof(*c));
	sm_error *err = NULL;
	pthread_attr_t attr;
	pthread_t th;

	if (!c)
		goto drop;
	c->f = f;
	c->host_fd = host_fd;
	c->guest_fd = agent_connect_tcp(&f->target, f->guest_port, &err);
	if (c->guest_fd < 0) {
		/* the client sees a reset, as when nothing listens; say why once */
		log_warn("forward to guest port %u: %s", f->guest_port, sm_error_string(err));
		sm_error_free(err);
		goto drop;
	}
	pthread_mutex_lock(&f->lock);
	f->active++;
	pthread_mutex_unlock(&f->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, forward_relay, c) != 0) {
		pthread_attr_destroy(&attr);
		close(c->guest_fd);
		pthread_mutex_lock(&f->lock);
		f->active--;
		pthread_mutex_unlock(&f->lock);
		goto drop;
	}
	pthread_attr_destroy(&attr);
	return;
drop:
	free(c);
	close(host_fd);
}

static void *forward_accept(void *arg)
{
	struct sm_forward *f = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = f->listen_fd, .events = POLLIN }, { .fd = f->stop_fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* ECONNABORTED, EMFILE: keep serving the rest */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		forward_start_relay(f, fd);
	}
	return NULL;
}

static int forward_listen(struct sm_forward *f, const char *host_addr, uint16_t host_port, sm_error **err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(host_port) };
	socklen_t salen = sizeof(sa);
	int one = 1;

	if (inet_pton(AF_INET, host_addr, &sa.sin_addr) != 1)
		return sm_error_set(err, SM_E_INVALID, 0, "expose: '%s' is not an IPv4 address", host_addr), -1;
	f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (f->listen_fd < 0)
		return sm_error_set(err, SM_E_IO, errno, "expose: socket"), -1;
	setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return sm_error_set(err, SM_E_IO, errno, "expose: bind %s:%u", host_addr, host_port), -1;
	if (listen(f->listen_fd, 128) < 0 || getsockname(f->listen_fd, (struct sockaddr *)&sa, &salen) < 0)
		return sm_error_set(err, SM_E_IO, errno, "expose: listen on %s:%u", host_addr, host_port), -1;
	f->host_port = ntohs(sa.sin_port);
	return 0;
}

struct forward_port {
	const char *addr;
	uint16_t host, guest;
};

static int forward_add_port(struct vm_meta *m, void *arg)
{
	const struct forward_port *p = arg;

	if (m->nports == VM_MAX_PORTS)
		return -1;
	snprintf(m->ports[m->nports].addr, sizeof(m->ports[0].addr), "%s", p->addr);
	m->ports[m->nports].host = p->host;
	m->ports[m->nports++].guest = p->guest;
	return 0;
}

/* The VM's metadata lists what it publishes, for `ps` and `port` (the first VM_MAX_PORTS). */
static void forward_record(const struct sm_vm *vm, const char *addr, uint16_t host, uint16_t guest)
{
	struct forward_port p = { addr, host, guest };

	if (vm->dir[0])
		vm_meta_update(vm, forward_add_port, &p, NULL);
}

sm_forward *sm_vm_expose_tcp(sm_vm *vm, const char *host_addr, uint16_t host_port, uint16_t guest_port,
			     sm_error **err)
{
	struct sm_forward *f = calloc(1, sizeof(*f));

	if (!f)
		return sm_error_set(err, SM_E_NOMEM, 0, "expose"), NULL;
	f->listen_fd = f->stop_fd = -1;
	f->target = vm->target;
	f->guest_port = guest_port;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->idle, NULL);
	if (!sm_vm_running(vm)) {
		sm_error_set(err, SM_E_VM_DIED, 0, "expose: VM %s is not running", vm->id);
		goto fail;
	}
	if (guest_port == 0) {
		sm_error_set(err, SM_E_INVALID, 0, "expose: guest port 0");
		goto fail;
	}
	if (forward_listen(f, host_addr ? host_addr : "127.0.0.1", host_port, err) < 0)
		goto fail;
	f->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (f->stop_fd < 0) {
		sm_error_set(err, SM_E_IO, errno, "expose: eventfd");
		goto fail;
	}
	if (pthread_create(&f->acceptor, NULL, forward_accept, f) != 0) {
		sm_error_set(err, SM_E_IO, 0, "expose: cannot start the forwarding thread");
		goto fail;
	}
	forward_record(vm, host_addr ? host_addr : "127.0.0.1", sm_forward_port(f), guest_port);
	return f;
fail:
	if (f->listen_fd >= 0)
		close(f->listen_fd);
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->idle);
	free(f);
	return NULL;
}

uint16_t sm_forward_port(const sm_forward *f)
{
	return f->host_port;
}

void sm_forward_stop(sm_forward *f)
{
	uint64_t one = 1;

	if (!f)
		return;
	if (write(f->stop_fd, &one, sizeof(one)) != sizeof(one))
		abort(); /* an eventfd write of 1 cannot fail short of a bug; threads would never stop */
	pthread_join(f->acceptor, NULL);
	pthread_mutex_lock(&f->lock);
	while (f->active)
		pthread_cond_wait(&f->idle, &f->lock);
	pthread_mutex_unlock(&f->lock);
	close(f->listen_fd);
	close(f->stop_fd);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->idle);
	free(f);
}
