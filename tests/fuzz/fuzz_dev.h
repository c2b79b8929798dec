/*
 * Shared harness for the device fuzz targets: one device brought up over
 * synthetic guest memory by the test driver (tests/unit/virtio_driver.c),
 * then fed chains decoded from the fuzz input, one record each:
 *
 *   u8  queue | 0x80 (also a device-writable buffer) | 0x40 (use INDIRECT)
 *   u8  split: where to cut the readable bytes into up to three descriptors
 *   u16 len (little endian), then len readable bytes (fewer if the input ends)
 *
 * Each input starts from a freshly reset device, so inputs are independent.
 * Queue notifications are delivered synchronously (no loop thread), which
 * keeps runs deterministic.
 */
#ifndef SM_FUZZ_DEV_H
#define SM_FUZZ_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "../unit/virtio_driver.h"

struct fuzz_dev {
	struct vdrv drv;
	struct virtio_dev *dev;
	uint64_t features;
	unsigned nqueues;
};

/*
 * A harness with 4 MiB of guest RAM and an event loop that is never run
 * (devices only register with it), around the device create() makes; the
 * driver asks for `features` plus EVENT_IDX and INDIRECT_DESC. Aborts on
 * failure: a fuzz target cannot run without its device.
 */
struct fuzz_dev *fuzz_dev_new(struct virtio_dev *(*create)(struct fuzz_dev *f, void *arg), void *arg,
			      uint64_t features, unsigned nqueues);
/* Resets and brings dev up again, then feeds the records in data. */
void fuzz_dev_run(struct fuzz_dev *f, const uint8_t *data, size_t size);

#endif
