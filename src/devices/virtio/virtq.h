/*
 * Split virtqueues (virtio 1.x, section 2.7): the device side.
 *
 * Everything in the rings is written by the guest and may change under us
 * at any time, so each field is read once into a local and checked before
 * use. A malformed chain makes virtq_pop() return -EINVAL; the device then
 * calls virtio_dev_fail() (DEVICE_NEEDS_RESET) and stops using the queue.
 */
#ifndef SM_DEVICES_VIRTQ_H
#define SM_DEVICES_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "base/guest_mem.h"

/* Largest queue size we offer (QueueNumMax) and the longest chain we walk. */
#define VIRTQ_MAX_SIZE 1024
#define VIRTQ_MAX_CHAIN 1024

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

struct virtq {
	/* set by the driver through the transport */
	uint16_t size; /* QueueNum: a power of 2, <= VIRTQ_MAX_SIZE */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* negotiated features that change ring behaviour */
	bool event_idx;   /* VIRTIO_RING_F_EVENT_IDX */
	bool indirect;    /* VIRTIO_RING_F_INDIRECT_DESC */
	/* device-side state; part of the snapshot */
	uint16_t last_avail; /* next avail ring entry to consume */
	uint16_t used_idx;   /* our copy of used->idx */
	uint16_t signalled_used; /* used_idx when we last interrupted (event_idx) */
	bool signalled_valid;
	const struct guest_mem *mem;
};

/* One buffer of a chain, already translated and bounds-checked. */
struct virtq_seg {
	uint8_t *hva;
	uint32_t len;
};

/*
 * A popped chain: the device-readable ("out") segments come first, then
 * the device-writable ("in") ones, as the spec requires.
 */
struct virtq_chain {
	uint16_t head;
	uint16_t n_out, n_in;
	uint64_t out_len, in_len; /* sums of the segment lengths */
	struct virtq_seg seg[VIRTQ_MAX_CHAIN]; /* seg[0..n_out) out, then n_in in */
};

/*
 * Checks the ring addresses and size against guest memory; called when the
 * driver sets QueueReady. Returns 0 or -EINVAL.
 */
int virtq_validate(const struct virtq *q);

/* Is there an available chain we have not consumed? -EINVAL on a bad avail->idx. */
int virtq_has_avail(struct virtq *q);

/*
 * Takes the next available chain into *c. Returns 1 when it got one, 0 when
 * the ring is empty, -EINVAL when the chain is malformed (out-of-range
 * address or index, a loop, too long, a readable segment after a writable
 * one, a nested or misaligned indirect table, avail->idx moved by more than
 * the queue size).
 */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/* Returns a chain to the driver with `written` bytes put in its in-segments. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/*
 * After one or more virtq_push(): must the driver be interrupted? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX.
 */
bool virtq_should_signal(struct virtq *q);

/* With EVENT_IDX: ask for a notification once the driver adds past last_avail. */
void virtq_set_avail_event(struct virtq *q);

/*
 * The driver's avail->idx into *idx, and (with EVENT_IDX) a request for a
 * kick as soon as it adds past it, however many chains are still unused.
 * 0 or -EINVAL.
 */
int virtq_watch_avail(struct virtq *q, uint16_t *idx);

/* Helpers over a chain's segments, bounded by the chain itself. */
/* Copies up to len bytes starting at byte `off` of the out-segments; returns bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len);
/* Copies up to len bytes into the in-segments starting at byte `off`; returns bytes copied. */
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len);

#endif
