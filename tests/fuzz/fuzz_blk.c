/*
 * virtio-blk: fuzzed request chains (header, data, status byte) against a
 * 1 MiB disk held in a memfd, read-write with an ID so every request type
 * reaches its parser.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "fuzz_dev.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_dev *fuzz_blk_create(struct fuzz_dev *f, void *arg)
{
	char path[64];
	int fd = memfd_create("fuzz-blk-disk", 0);

	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct virtio_blk_options o = { .path = path, .id = "fuzz-disk" };
	return virtio_blk_create(&f->drv.mem, &o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_dev *f;

	if (!f)
		f = fuzz_dev_new(fuzz_blk_create, NULL,
				 (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_SEG_MAX), 1);
	fuzz_dev_run(f, data, size);
	return 0;
}
