/*
 * libFuzzer target: the worker's control socket (src/vmm/control.c) as a
 * client sees it: bytes sent in chunks over a real unix socket to the
 * listener, split into lines by the worker's own framing (partial lines
 * across reads, "\r\n", the too-long line), parsed and dispatched to the
 * built-in commands and the balloon's (which parses page counts). The
 * worker side runs its event loop on a thread of its own, as in the
 * worker; the VM is a struct vm without KVM (no vCPUs), which is all the
 * built-in commands read.
 *
 * Input: u8 chunk size - 1 (at least 1 byte per send), then the bytes.
 * Every reply must be one line starting "ok" or "error", at most one per
 * line sent (plus the too-long refusal), and the worker must close the
 * connection once the client has.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/balloon.h"
#include "fuzz_dev.h"
#include "fuzz_host.h"
#include "vmm/control.h"
#include "vmm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_worker {
	struct vm *vm;
	struct control *ctl;
	struct fuzz_dev *balloon;
	char *dir;
	struct sockaddr_un addr;
};

static struct fuzz_worker w;

static void dir_remove(void)
{
	unlink(w.addr.sun_path);
	rmdir(w.dir);
}

static struct virtio_dev *fuzz_balloon_create(struct fuzz_dev *f, void *arg)
{
	return virtio_balloon_create(&f->drv.mem);
}

/* The loop thread: "stop" ends a run (vm_request_exit); the worker would
 * exit, here the VM is made running again and the loop goes on. */
static void *loop_thread(void *arg)
{
	struct vm *vm = arg;

	for (;;) {
		if (evloop_run(vm->loop) < 0)
			abort();
		pthread_mutex_lock(&vm->state_lock);
		vm->exiting = false;
		pthread_mutex_unlock(&vm->state_lock);
	}
	return NULL;
}

static void worker_setup(void)
{
	struct vmm_err err = { { 0 } };
	pthread_t t;

	w.dir = fuzz_tmpdir("fuzz-control");
	w.addr.sun_family = AF_UNIX;
	snprintf(w.addr.sun_path, sizeof(w.addr.sun_path), "%s/control.sock", w.dir);
	if (!(w.vm = calloc(1, sizeof(*w.vm))) || !(w.vm->loop = evloop_new()))
		abort();
	pthread_mutex_init(&w.vm->state_lock, NULL);
	pthread_cond_init(&w.vm->state_cond, NULL);
	w.vm->cfg.mem_mib = 4;
	w.vm->t_process_ns = vm_now_ns();
	w.balloon = fuzz_dev_new(fuzz_balloon_create, NULL, 0, 2);
	if (!(w.ctl = control_open(w.vm, w.addr.sun_path, &err)) ||
	    control_register(w.ctl, "balloon", virtio_balloon_control, w.balloon->dev) < 0 ||
	    pthread_create(&t, NULL, loop_thread, w.vm) != 0)
		abort();
	atexit(dir_remove);
}

/* Sends the input in chunks; the worker may hang up first (a line too long). */
static void client_send(int fd, const uint8_t *p, size_t n, size_t chunk)
{
	for (size_t off = 0; off < n;) {
		size_t k = n - off < chunk ? n - off : chunk;
		ssize_t sent = send(fd, p + off, k, MSG_NOSIGNAL);
		if (sent < 0 && errno == EINTR) /* libFuzzer's -timeout alarm */
			continue;
		if (sent <= 0)
			return;
		off += (size_t)sent;
	}
}

static void replies_check(int fd, const uint8_t *p, size_t n)
{
	size_t lines = 1, got = 0, len = 0;
	char buf[4096], line[CONTROL_LINE_MAX + 2];
	ssize_t r;

	for (size_t i = 0; i < n; i++)
		lines += p[i] == '\n';
	while ((r = recv(fd, buf, sizeof(buf), 0)) > 0 || (r < 0 && errno == EINTR)) {
		for (ssize_t i = 0; i < r; i++) {
			if (len == sizeof(line))
				abort(); /* a reply longer than a line */
			line[len++] = buf[i];
			if (buf[i] != '\n')
				continue;
			if (strncmp(line, "ok", 2) && strncmp(line, "error", 5))
				abort();
			if (++got > lines)
				abort();
			len = 0;
		}
	}
	/* A worker that hangs up on unread input resets the connection. */
	if ((r < 0 && errno != ECONNRESET) || (r == 0 && len))
		abort(); /* a reply without its newline */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd;

	if (size < 1)
		return 0;
	if (!w.vm)
		worker_setup();
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&w.addr, sizeof(w.addr)) < 0)
		abort();
	client_send(fd, data + 1, size - 1, (size_t)data[0] + 1);
	shutdown(fd, SHUT_WR);
	replies_check(fd, data + 1, size - 1);
	close(fd);
	return 0;
}
