/*
 * virtio-rng / entropy device (virtio 1.1 section 5.4): fills whatever
 * buffers the guest posts with bytes from the host's getrandom().
 */
#ifndef SM_DEVICES_VIRTIO_RNG_H
#define SM_DEVICES_VIRTIO_RNG_H

#include <stdint.h>

#include "devices/virtio/virtio.h"

/* Freed with virtio_dev_free(). */
struct virtio_dev *virtio_rng_create(const struct guest_mem *mem);
/* Bytes handed to the guest so far. */
uint64_t virtio_rng_bytes(struct virtio_dev *d);

#endif
