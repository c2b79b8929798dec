/*
 * virtio-balloon (virtio 1.x section 5.5): the host asks the guest to give
 * back memory by raising a target (config num_pages); the guest hands over
 * page frame numbers on the inflate queue and the worker releases their
 * backing so the host really gets the memory back:
 *
 *   fresh boot (memfd, MAP_SHARED)   MADV_REMOVE punches the pages out of
 *                                    the memfd; plain MADV_DONTNEED would
 *                                    only unmap them and leave them in the
 *                                    memfd's page cache
 *   restore (file, MAP_PRIVATE)      MADV_DONTNEED drops our private copies;
 *                                    MADV_REMOVE is refused there, and must
 *                                    never punch the shared snapshot file
 *
 * Deflated pages need nothing: the next guest touch faults in a zero page.
 * Offers VIRTIO_BALLOON_F_STATS_VQ and VIRTIO_BALLOON_F_DEFLATE_ON_OOM.
 */
#ifndef SM_DEVICES_VIRTIO_BALLOON_H
#define SM_DEVICES_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"

#define BALLOON_PAGE_SIZE 4096u

/* Freed with virtio_dev_free(). */
struct virtio_dev *virtio_balloon_create(const struct guest_mem *mem);

/*
 * Asks the guest to hold num_pages 4 KiB pages in its balloon (0 = give
 * everything back). Any thread; raises a config-change interrupt.
 * -EINVAL if that is more than guest RAM.
 */
int virtio_balloon_set_target(struct virtio_dev *d, uint32_t num_pages);

/* Memory statistics tags the guest reports (VIRTIO_BALLOON_S_*). */
enum {
	BALLOON_S_SWAP_IN,
	BALLOON_S_SWAP_OUT,
	BALLOON_S_MAJFLT,
	BALLOON_S_MINFLT,
	BALLOON_S_MEMFREE,
	BALLOON_S_MEMTOT,
	BALLOON_S_AVAIL,
	BALLOON_S_CACHES,
	BALLOON_S_HTLB_PGALLOC,
	BALLOON_S_HTLB_PGFAIL,
	BALLOON_S_NR,
};

struct virtio_balloon_stats {
	uint32_t target_pages;   /* what we asked for */
	uint32_t actual_pages;   /* what the guest says it holds (config "actual") */
	uint64_t inflated_pages; /* pfns received on the inflate queue, ever */
	uint64_t deflated_pages;
	uint64_t released_bytes; /* backing given back to the host */
	uint64_t bad_pfns;       /* pfns outside guest RAM, ignored */
	uint64_t release_errors; /* madvise failures */
	/* Latest guest report (valid bit i set for tag i), and how many arrived. */
	uint32_t guest_valid;
	uint64_t guest[BALLOON_S_NR];
	uint64_t guest_reports;
};
void virtio_balloon_get_stats(struct virtio_dev *d, struct virtio_balloon_stats *s);

/*
 * Asks the guest for a fresh statistics report (returns the buffer it lent
 * us). Returns -EAGAIN if the driver has not lent one (no STATS_VQ, or not
 * up yet). The report shows up in get_stats once the guest answers.
 */
int virtio_balloon_request_stats(struct virtio_dev *d);

/*
 * What a snapshot must carry beyond the transport and queue state: the
 * target and the guest's "actual", and whether we hold the driver's stats
 * buffer (which it will never send again if a restore forgets it).
 */
struct virtio_balloon_state {
	uint32_t num_pages;
	uint32_t actual;
	uint16_t stats_head;
	bool stats_held;
};
void virtio_balloon_save_state(struct virtio_dev *d, struct virtio_balloon_state *s);
/* After the transport restored the queues. -EINVAL (nothing changed) if s
 * does not fit this device: a target beyond RAM, a head outside the queue. */
int virtio_balloon_load_state(struct virtio_dev *d, const struct virtio_balloon_state *s);

/*
 * The worker's control command "balloon" (a control_fn; opaque is the
 * device): "balloon PAGES" sets the target, "balloon" (or "balloon stats")
 * replies with target, actual, what was released, and the guest's latest
 * memory report (asking it for a fresh one for next time).
 */
void virtio_balloon_control(void *dev, const char *args, char *reply, size_t len);

#endif
