/*
 * virtio-balloon: fuzzed pfn arrays on the inflate and deflate queues and
 * stats reports. Guest RAM is anonymous memory here, so a pfn that hits
 * the rings themselves zeroes them, as a hostile guest could.
 */
#include "devices/virtio/balloon.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_dev *fuzz_balloon_create(struct fuzz_dev *f, void *arg)
{
	return virtio_balloon_create(&f->drv.mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_dev *f;

	if (!f)
		f = fuzz_dev_new(fuzz_balloon_create, NULL, (1ull << 1) | (1ull << 2) /* STATS_VQ, DEFLATE_ON_OOM */, 3);
	fuzz_dev_run(f, data, size);
	if (size && (data[0] & 1))
		virtio_balloon_request_stats(f->dev);
	return 0;
}
