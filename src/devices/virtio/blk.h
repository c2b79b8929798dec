/*
 * virtio-blk (virtio 1.1 section 5.2) over a host file or block device:
 * read, write, flush (fdatasync) and GET_ID. A read-only disk advertises
 * VIRTIO_BLK_F_RO and answers writes with VIRTIO_BLK_S_IOERR. Every
 * request's sector range is checked against the disk size. Requests run
 * synchronously on the event loop thread, straight into guest memory.
 */
#ifndef SM_DEVICES_VIRTIO_BLK_H
#define SM_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"

#define VIRTIO_BLK_SECTOR 512
#define VIRTIO_BLK_ID_BYTES 20

/* request types and status values (section 5.2.6) */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

/* feature bits */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9

struct virtio_blk_options {
	const char *path;
	bool read_only;
	const char *id; /* up to 20 bytes; NULL: GET_ID answers UNSUPP */
};

/*
 * Opens the disk (shared lock if read-only, exclusive otherwise, so two
 * VMs never write one image). NULL with errno set: EWOULDBLOCK when another
 * process holds the lock, ENAMETOOLONG for an id over 20 bytes, EINVAL for
 * something that is neither a regular file nor a block device. Freed
 * (and the disk closed) with virtio_dev_free().
 */
struct virtio_dev *virtio_blk_create(const struct guest_mem *mem,
				     const struct virtio_blk_options *opt);

struct virtio_blk_stats {
	uint64_t reads, writes, flushes, get_ids;
	uint64_t bytes_read, bytes_written;
	uint64_t errors;   /* requests answered IOERR (range, read-only, host I/O error) */
	uint64_t unsupported;
};
void virtio_blk_get_stats(struct virtio_dev *d, struct virtio_blk_stats *s);

/* Disk size in 512-byte sectors (the config space's capacity). */
uint64_t virtio_blk_capacity(struct virtio_dev *d);

#endif
