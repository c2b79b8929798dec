/*
 * virtio-vsock packet parsing: fuzzed tx packets (headers, lengths, ops,
 * credit values, chain shapes) and rx/event buffers. Host listeners exist
 * on ports 1 and 2 so guest REQUESTs can open real connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/virtio/vsock.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_vsock {
	struct fuzz_dev f;
	int listeners[2];
};

static int fuzz_listen(const char *uds, unsigned port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", uds, port);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
		abort();
	return fd;
}

static struct fuzz_vsock *fuzz_vsock_get(void)
{
	static struct fuzz_vsock *fv;
	char dir[] = "/tmp/sm-fuzz-vsock-XXXXXX", uds[64];

	if (fv)
		return fv;
	fv = calloc(1, sizeof(*fv));
	if (!fv || !mkdtemp(dir))
		abort();
	snprintf(uds, sizeof(uds), "%s/v", dir);
	fuzz_dev_init(&fv->f, 4ull << 20);
	fv->f.dev = virtio_vsock_create(&fv->f.drv.mem, fv->f.drv.loop, 3, uds, NULL);
	if (!fv->f.dev)
		abort();
	fv->f.features = (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_INDIRECT_DESC);
	fv->f.nqueues = 3;
	fv->listeners[0] = fuzz_listen(uds, 1);
	fv->listeners[1] = fuzz_listen(uds, 2);
	return fv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_vsock *fv = fuzz_vsock_get();
	int fd;

	fuzz_dev_run(&fv->f, data, size);
	/* Connections opened by this input die with the next reset; drop the
	 * host ends so the listeners' backlogs never fill. */
	for (int i = 0; i < 2; i++)
		while ((fd = accept(fv->listeners[i], NULL, NULL)) >= 0)
			close(fd);
	return 0;
}
