/*
 * virtio-net transmit path: fuzzed virtio-net headers and frames (and rx
 * buffers) into the device and on into slirp. slirp is restricted and
 * kept off the host's loopback so inputs cannot reach real services.
 */
#include <stdlib.h>

#include "devices/virtio/net.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_dev *fuzz_net_get(void)
{
	static struct fuzz_dev *f;
	struct virtio_net_config cfg = { .restricted = true, .no_host_loopback = true };

	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	fuzz_dev_init(f, 4ull << 20);
	f->dev = virtio_net_create(&f->drv.mem, f->drv.loop, &cfg);
	if (!f->dev)
		abort();
	f->features = (1ull << 5) | (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_INDIRECT_DESC);
	f->nqueues = 2;
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_dev_run(fuzz_net_get(), data, size);
	return 0;
}
