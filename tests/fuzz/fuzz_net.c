/*
 * virtio-net transmit path: fuzzed virtio-net headers and frames (and rx
 * buffers) into the device and on into slirp. slirp is restricted and
 * kept off the host's loopback so inputs cannot reach real services.
 */
#include "devices/virtio/net.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_dev *fuzz_net_create(struct fuzz_dev *f, void *arg)
{
	struct virtio_net_config cfg = { .restricted = true, .no_host_loopback = true };

	return virtio_net_create(&f->drv.mem, f->drv.loop, &cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_dev *f;

	if (!f)
		f = fuzz_dev_new(fuzz_net_create, NULL, 1ull << 5 /* MAC */, 2);
	fuzz_dev_run(f, data, size);
	return 0;
}
