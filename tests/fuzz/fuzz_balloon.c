/*
 * virtio-balloon: fuzzed pfn arrays on the inflate and deflate queues and
 * stats reports. Guest RAM is anonymous memory here, so a pfn that hits
 * the rings themselves zeroes them, as a hostile guest could.
 */
#include <stdlib.h>

#include "devices/virtio/balloon.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_dev *fuzz_balloon_get(void)
{
	static struct fuzz_dev *f;

	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	fuzz_dev_init(f, 4ull << 20);
	f->dev = virtio_balloon_create(&f->drv.mem);
	if (!f->dev)
		abort();
	f->features = (1ull << 1) | (1ull << 2) | (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_INDIRECT_DESC);
	f->nqueues = 3;
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_dev *f = fuzz_balloon_get();

	fuzz_dev_run(f, data, size);
	if (size && (data[0] & 1))
		virtio_balloon_request_stats(f->dev);
	return 0;
}
