#include "vmm/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/worker.h"
#include "vmm/vm.h"

struct control_client {
	struct control *ctl;
	int fd;
	int passed_fd;  /* a descriptor sent with its pending line (SCM_RIGHTS), or -1 */
	char buf[CONTROL_LINE_MAX];
	size_t len;
};

struct control_cmd {
	const char *name;
	control_fn fn;
	void *opaque;
};

struct control {
	struct vm *vm;
	int listen_fd;
	char *path;
	struct control_client *clients[CONTROL_MAX_CLIENTS];
	struct control_cmd cmds[CONTROL_MAX_COMMANDS];
	unsigned ncmds;
	int dispatch_fd; /* the line being dispatched's descriptor, until a command takes it; or -1 */
};

static double ms_between(uint64_t from, uint64_t to)
{
	return (double)(to - from) / 1e6;
}

static void cmd_status(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm *vm = opaque;
	uint64_t now = vm_now_ns();

	snprintf(reply, len, "ok %s vcpus=%u memory_mib=%llu uptime_ms=%.3f booted=%s",
		 vm_exiting(vm) ? "stopping" : "running", vm->nvcpus,
		 (unsigned long long)vm->cfg.mem_mib, ms_between(vm->t_process_ns, now),
		 __atomic_load_n(&vm->t_marker_ns, __ATOMIC_ACQUIRE) ? "yes" : "no");
}

static void cmd_stop(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm *vm = opaque;

	snprintf(reply, len, "ok stopping");
	vm_request_exit(vm, VM_EXIT_STOP, "stop requested on the control socket");
}

static void cmd_boot_time(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm *vm = opaque;
	uint64_t marker = __atomic_load_n(&vm->t_marker_ns, __ATOMIC_ACQUIRE);
	uint64_t first = __atomic_load_n(&vm->t_first_run_ns, __ATOMIC_ACQUIRE);

	if (!marker) {
		snprintf(reply, len, "error the guest has not written the boot marker yet");
		return;
	}
	snprintf(reply, len,
		 "ok process_to_init_ms=%.3f kvm_run_to_init_ms=%.3f process_to_kvm_run_ms=%.3f "
		 "init_monotonic_ns=%llu",
		 ms_between(vm->t_process_ns, marker), ms_between(first, marker),
		 ms_between(vm->t_process_ns, first), (unsigned long long)marker);
}

/* Host cost of getting the guest going (a boot's or a restore's setup). */
static void cmd_startup(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm *vm = opaque;
	uint64_t first = __atomic_load_n(&vm->t_first_run_ns, __ATOMIC_ACQUIRE);

	if (!first) {
		snprintf(reply, len, "error no vCPU has run yet");
		return;
	}
	snprintf(reply, len, "ok process_to_kvm_run_ms=%.3f cpu_to_kvm_run_ms=%.3f",
		 ms_between(vm->t_process_ns, first),
		 (double)__atomic_load_n(&vm->cpu_first_run_ns, __ATOMIC_RELAXED) / 1e6);
}

static void cmd_stats(void *opaque, const char *args, char *reply, size_t len)
{
	struct vm *vm = opaque;
	struct vm_stats s;

	vm_stats_read(vm, &s);
	int n = snprintf(reply, len, "ok ");
	vm_stats_format(&s, reply + n, len - (size_t)n);
}

static void cmd_help(void *opaque, const char *args, char *reply, size_t len)
{
	struct control *c = opaque;
	size_t n = (size_t)snprintf(reply, len, "ok commands:");

	for (unsigned i = 0; i < c->ncmds && n < len; i++)
		n += (size_t)snprintf(reply + n, len - n, " %s", c->cmds[i].name);
}

int control_register(struct control *c, const char *name, control_fn fn, void *opaque)
{
	if (c->ncmds == CONTROL_MAX_COMMANDS)
		return -ENOSPC;
	for (unsigned i = 0; i < c->ncmds; i++)
		if (strcmp(c->cmds[i].name, name) == 0)
			return -EEXIST;
	c->cmds[c->ncmds++] = (struct control_cmd){ .name = name, .fn = fn, .opaque = opaque };
	return 0;
}

void control_dispatch(struct control *c, const char *line, char *reply, size_t len)
{
	struct worker_request r;
	int rc = worker_request_parse(line, &r);

	if (rc == -EINVAL) {
		snprintf(reply, len, "error empty request");
		return;
	}
	if (rc < 0) {
		snprintf(reply, len, "error unknown command");
		return;
	}
	for (unsigned i = 0; i < c->ncmds; i++) {
		if (strcmp(c->cmds[i].name, r.name) == 0) {
			c->cmds[i].fn(c->cmds[i].opaque, r.args, reply, len);
			return;
		}
	}
	snprintf(reply, len, "error unknown command '%s' (try help)", r.name);
}

static void client_drop(struct control_client *cl)
{
	struct control *c = cl->ctl;

	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i] == cl)
			c->clients[i] = NULL;
	evloop_del(c->vm->loop, cl->fd);
	close(cl->fd);
	if (cl->passed_fd >= 0)
		close(cl->passed_fd);
	free(cl);
}

static bool client_reply(struct control_client *cl, const char *reply)
{
	char out[CONTROL_LINE_MAX + 2];
	int n = snprintf(out, sizeof(out), "%s\n", reply);

	if (n < 0 || (size_t)n >= sizeof(out)) {
		n = (int)sizeof(out) - 1;
		out[n - 1] = '\n';
	}
	/* Replies are short; a client that does not read them is dropped. */
	return send(cl->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n;
}

int control_take_fd(struct control *c)
{
	int fd = c->dispatch_fd;

	c->dispatch_fd = -1;
	return fd;
}

/* One line, with the descriptor that came with it; one its command did not take is closed. */
static void client_dispatch(struct control_client *cl, const char *line, char *reply, size_t len)
{
	struct control *c = cl->ctl;

	c->dispatch_fd = cl->passed_fd;
	cl->passed_fd = -1;
	control_dispatch(c, line, reply, len);
	if (c->dispatch_fd >= 0)
		close(c->dispatch_fd);
	c->dispatch_fd = -1;
}

/* Serves every complete line in the buffer. Returns false if the client must go. */
static bool client_lines(struct control_client *cl)
{
	char *start = cl->buf;
	char *nl;

	while ((nl = memchr(start, '\n', cl->len - (size_t)(start - cl->buf)))) {
		char reply[CONTROL_LINE_MAX];
		*nl = 0;
		if (nl > start && nl[-1] == '\r')
			nl[-1] = 0;
		client_dispatch(cl, start, reply, sizeof(reply));
		if (!client_reply(cl, reply))
			return false;
		start = nl + 1;
	}
	size_t rest = cl->len - (size_t)(start - cl->buf);
	memmove(cl->buf, start, rest);
	cl->len = rest;
	if (cl->len == sizeof(cl->buf)) {
		client_reply(cl, "error request line too long");
		return false;
	}
	return true;
}

/*
 * The descriptors in m: the last becomes the pending line's (one sent
 * earlier and not yet used is closed, as are the others). A client
 * can make us hold one descriptor at most.
 */
static void client_keep_fds(struct control_client *cl, struct msghdr *m)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR(m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(fd));
			if (cl->passed_fd >= 0)
				close(cl->passed_fd);
			cl->passed_fd = fd;
		}
	}
}

static ssize_t client_recv(struct control_client *cl)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(CONTROL_MAX_PASSED_FDS * sizeof(int))];
	} ctl;
	struct iovec iov = { cl->buf + cl->len, sizeof(cl->buf) - cl->len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl) };
	ssize_t n = recvmsg(cl->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n >= 0)
		client_keep_fds(cl, &m);
	return n;
}

static void client_readable(void *opaque, uint32_t events)
{
	struct control_client *cl = opaque;
	ssize_t n = client_recv(cl);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		client_drop(cl);
		return;
	}
	cl->len += (size_t)n;
	if (!client_lines(cl))
		client_drop(cl);
}

static void control_accept(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	unsigned slot = CONTROL_MAX_CLIENTS;

	if (fd < 0)
		return;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (!c->clients[i]) {
			slot = i;
			break;
		}
	struct control_client *cl = slot < CONTROL_MAX_CLIENTS ? calloc(1, sizeof(*cl)) : NULL;
	if (!cl) {
		send(fd, "error too many clients\n", 23, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		return;
	}
	cl->ctl = c;
	cl->fd = fd;
	cl->passed_fd = -1;
	if (evloop_add(c->vm->loop, fd, EPOLLIN, client_readable, cl) < 0) {
		close(fd);
		free(cl);
		return;
	}
	c->clients[slot] = cl;
}

/* A socket file nobody answers on is left over from a dead worker. */
static int control_unlink_stale(const char *path, const struct sockaddr_un *addr,
				struct vmm_err *err)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : vmm_err_set(err, -errno, "control socket %s: %s", path,
							 strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return vmm_err_set(err, -EEXIST, "control socket %s: exists and is not a socket", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmm_err_set(err, -errno, "socket: %s", strerror(errno));
	int rc = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	close(fd);
	if (rc == 0)
		return vmm_err_set(err, -EADDRINUSE, "control socket %s: another process is serving it",
				   path);
	unlink(path);
	return 0;
}

static int control_listen(struct control *c, const char *path, struct vmm_err *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(addr.sun_path))
		return vmm_err_set(err, -ENAMETOOLONG, "control socket %s: path longer than %zu bytes",
				   path, sizeof(addr.sun_path) - 1);
	strcpy(addr.sun_path, path);
	int rc = control_unlink_stale(path, &addr, err);
	if (rc < 0)
		return rc;
	c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->listen_fd < 0)
		return vmm_err_set(err, -errno, "socket: %s", strerror(errno));
	if (bind(c->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(c->listen_fd, CONTROL_MAX_CLIENTS) < 0)
		return vmm_err_set(err, -errno, "control socket %s: %s", path, strerror(errno));
	c->path = strdup(path);
	if (!c->path)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	rc = evloop_add(c->vm->loop, c->listen_fd, EPOLLIN, control_accept, c);
	if (rc < 0)
		return vmm_err_set(err, rc, "control socket: %s", strerror(-rc));
	return 0;
}

struct control *control_open(struct vm *vm, const char *path, struct vmm_err *err)
{
	struct control *c = calloc(1, sizeof(*c));

	if (!c) {
		vmm_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	c->vm = vm;
	c->listen_fd = -1;
	c->dispatch_fd = -1;
	control_register(c, "status", cmd_status, vm);
	control_register(c, "stop", cmd_stop, vm);
	control_register(c, "boot-time", cmd_boot_time, vm);
	control_register(c, "stats", cmd_stats, vm);
	control_register(c, "startup", cmd_startup, vm);
	control_register(c, "help", cmd_help, c);
	if (path && control_listen(c, path, err) < 0) {
		control_close(c);
		return NULL;
	}
	return c;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i])
			client_drop(c->clients[i]);
	if (c->listen_fd >= 0) {
		evloop_del(c->vm->loop, c->listen_fd);
		close(c->listen_fd);
	}
	if (c->path)
		unlink(c->path);
	free(c->path);
	free(c);
}
