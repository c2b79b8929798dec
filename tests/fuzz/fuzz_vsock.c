/*
 * virtio-vsock packet parsing: fuzzed tx packets (headers, lengths, ops,
 * credit values, chain shapes) and rx/event buffers. Host listeners exist
 * on ports 1 and 2 so guest REQUESTs can open real connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/vsock.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_listen(const char *uds, unsigned port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", uds, port);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
		abort();
	return fd;
}

static char fuzz_dir[] = "/tmp/sm-fuzz-vsock-XXXXXX";

static void fuzz_vsock_cleanup(void)
{
	char path[64];

	for (unsigned p = 1; p <= 2; p++) {
		snprintf(path, sizeof(path), "%s/v_%u", fuzz_dir, p);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/v", fuzz_dir);
	unlink(path);
	rmdir(fuzz_dir);
}

static struct virtio_dev *fuzz_vsock_create(struct fuzz_dev *f, void *arg)
{
	int *listeners = arg;
	char uds[64];

	if (!mkdtemp(fuzz_dir))
		abort();
	atexit(fuzz_vsock_cleanup);
	snprintf(uds, sizeof(uds), "%s/v", fuzz_dir);
	listeners[0] = fuzz_listen(uds, 1);
	listeners[1] = fuzz_listen(uds, 2);
	return virtio_vsock_create(&f->drv.mem, f->drv.loop, 3, uds, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_dev *f;
	static int listeners[2];
	int fd;

	if (!f)
		f = fuzz_dev_new(fuzz_vsock_create, listeners, 0, 3);
	fuzz_dev_run(f, data, size);
	/* Connections opened by this input die with the next reset; drop the
	 * host ends so the listeners' backlogs never fill. */
	for (int i = 0; i < 2; i++)
		while ((fd = accept(listeners[i], NULL, NULL)) >= 0)
			close(fd);
	return 0;
}
