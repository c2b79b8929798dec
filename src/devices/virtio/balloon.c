/*
 * virtio-balloon device (see balloon.h for how pages go back to the host).
 *
 * The inflate and deflate queues carry arrays of le32 page frame numbers
 * (always 4 KiB frames, whatever the guest's page size). Each pfn is
 * checked against guest RAM; runs of contiguous frames are released with
 * one madvise. The stats queue works the other way round: the driver lends
 * us one buffer, we return it when we want a fresh report, and it comes
 * back filled.
 *
 * Locking: every entry point takes dev->lock (reset/activate arrive with
 * it held); interrupts are raised after it is dropped.
 */
#include "devices/virtio/balloon.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/snapshot.h"
#include "devices/virtio/vdev.h"

#define BALLOON_INFLATEQ 0
#define BALLOON_DEFLATEQ 1
#define BALLOON_STATSQ 2
#define BALLOON_NUM_QUEUES 3

#define BALLOON_F_MUST_TELL_HOST 0
#define BALLOON_F_STATS_VQ 1
#define BALLOON_F_DEFLATE_ON_OOM 2

#define BALLOON_PFN_SHIFT 12
/* pfns read from the ring per batch (the guest sends at most 256 per buffer) */
#define BALLOON_PFN_BATCH 256
#define BALLOON_BUDGET 256

struct balloon_config {
	uint32_t num_pages;
	uint32_t actual;
};

struct balloon_stat {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

enum {
	WARN_BAD_PFN,
	WARN_RELEASE,
	WARN_ODD_LEN,
	WARN_STATS,
};

struct balloon_dev {
	struct virtio_dev dev;
	struct balloon_config cfg; /* little-endian, as the guest sees it */
	/* per RAM region: MADV_REMOVE refused (private mapping), use MADV_DONTNEED */
	bool dontneed[GUEST_MEM_MAX_REGIONS];
	bool stats_held;       /* the driver's stats buffer is ours */
	uint16_t stats_head;
	struct virtq_chain *chain;
	struct vdev_pending pend;
	struct virtio_balloon_stats stats;
};

static struct balloon_dev *balloon_of(struct virtio_dev *d) { return d->priv; }

#define balloon_warn(b, kind, ...) vdev_warn_once(&(b)->dev, &(b)->pend, kind, __VA_ARGS__)

/* ---- releasing memory ------------------------------------------------------ */

/*
 * Gives the backing of a run of guest pages back to the host. MADV_REMOVE
 * frees shared memfd pages (the page cache copy too); on a private
 * mapping the kernel refuses it and MADV_DONTNEED drops our private copy.
 */
static void balloon_release(struct balloon_dev *b, unsigned region, uint8_t *hva, uint64_t len)
{
	if (!b->dontneed[region]) {
		if (madvise(hva, len, MADV_REMOVE) == 0) {
			b->stats.released_bytes += len;
			return;
		}
		if (errno != EINVAL && errno != EACCES && errno != EOPNOTSUPP)
			goto fail;
		b->dontneed[region] = true;
	}
	if (madvise(hva, len, MADV_DONTNEED) == 0) {
		b->stats.released_bytes += len;
		return;
	}
fail:
	b->stats.release_errors++;
	balloon_warn(b, WARN_RELEASE, "releasing %llu bytes of guest RAM: %s",
		     (unsigned long long)len, strerror(errno));
}

/* Which RAM region holds the whole 4 KiB frame at gpa, or -1. */
static int balloon_region(const struct guest_mem *m, uint64_t gpa)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && BALLOON_PAGE_SIZE <= r->size - (gpa - r->gpa))
			return (int)i;
	}
	return -1;
}

/* A run of contiguous frames inside one region, waiting to be released. */
struct balloon_run {
	int region;
	uint64_t gpa, len;
};

static void balloon_run_flush(struct balloon_dev *b, struct balloon_run *run)
{
	const struct guest_region *r;

	if (run->len == 0)
		return;
	r = &b->dev.mem->regions[run->region];
	balloon_release(b, (unsigned)run->region, r->hva + (run->gpa - r->gpa), run->len);
	run->len = 0;
}

static void balloon_pfn(struct balloon_dev *b, struct balloon_run *run, uint32_t pfn, bool inflate)
{
	uint64_t gpa = (uint64_t)pfn << BALLOON_PFN_SHIFT;
	int region = balloon_region(b->dev.mem, gpa);

	if (region < 0) {
		b->stats.bad_pfns++;
		balloon_warn(b, WARN_BAD_PFN, "pfn 0x%x is outside guest RAM: ignored", pfn);
		return;
	}
	if (!inflate) {
		b->stats.deflated_pages++;
		return;
	}
	b->stats.inflated_pages++;
	if (run->len && run->region == region && run->gpa + run->len == gpa) {
		run->len += BALLOON_PAGE_SIZE;
		return;
	}
	balloon_run_flush(b, run);
	*run = (struct balloon_run){ .region = region, .gpa = gpa, .len = BALLOON_PAGE_SIZE };
}

/* Parses one buffer of pfns. */
static void balloon_pfns(struct balloon_dev *b, const struct virtq_chain *ch, bool inflate)
{
	uint32_t pfns[BALLOON_PFN_BATCH];
	struct balloon_run run = { .len = 0 };
	uint64_t n = ch->out_len / sizeof(uint32_t);

	if (ch->out_len % sizeof(uint32_t))
		balloon_warn(b, WARN_ODD_LEN, "pfn buffer of %llu bytes is not whole pfns: tail ignored",
			     (unsigned long long)ch->out_len);
	for (uint64_t i = 0; i < n; i += BALLOON_PFN_BATCH) {
		uint64_t k = n - i < BALLOON_PFN_BATCH ? n - i : BALLOON_PFN_BATCH;
		virtq_chain_read(ch, i * sizeof(uint32_t), pfns, k * sizeof(uint32_t));
		for (uint64_t j = 0; j < k; j++)
			balloon_pfn(b, &run, le32toh(pfns[j]), inflate);
	}
	balloon_run_flush(b, &run);
}

/* ---- queues ------------------------------------------------------------------ */

static bool balloon_pop(struct balloon_dev *b, uint16_t qi)
{
	return vdev_pop(&b->dev, &b->pend, qi, b->chain) > 0;
}

static void balloon_push(struct balloon_dev *b, uint16_t qi, uint16_t head)
{
	vdev_push(&b->dev, &b->pend, qi, head, 0);
}

static void balloon_pfn_queue(struct balloon_dev *b, uint16_t qi)
{
	/* Bounded: the avail ring holds at most QueueNum chains, and a guest
	 * adding more as we go is served on its next kick. */
	for (unsigned budget = BALLOON_BUDGET; budget && !vdev_failing(&b->pend); budget--) {
		if (!balloon_pop(b, qi))
			return;
		balloon_pfns(b, b->chain, qi == BALLOON_INFLATEQ);
		balloon_push(b, qi, b->chain->head);
	}
}

static void balloon_stats_parse(struct balloon_dev *b, const struct virtq_chain *ch)
{
	struct balloon_stat st;
	uint32_t valid = 0;

	for (uint64_t off = 0; off + sizeof(st) <= ch->out_len; off += sizeof(st)) {
		virtq_chain_read(ch, off, &st, sizeof(st));
		uint16_t tag = le16toh(st.tag);
		if (tag >= BALLOON_S_NR)
			continue; /* newer tags than we know */
		b->stats.guest[tag] = le64toh(st.val);
		valid |= 1u << tag;
	}
	b->stats.guest_valid = valid;
	b->stats.guest_reports++;
}

/* The driver lent (or returned filled) its stats buffer: keep it until asked. */
static void balloon_stats_queue(struct balloon_dev *b)
{
	if (b->stats_held) {
		/* The driver has one stats buffer and it is ours: a kick now is
		 * spurious, and anything else it queued waits in the ring. */
		balloon_warn(b, WARN_STATS, "stats queue kicked while we hold its buffer");
		return;
	}
	if (!balloon_pop(b, BALLOON_STATSQ))
		return;
	balloon_stats_parse(b, b->chain);
	b->stats_head = b->chain->head;
	b->stats_held = true;
	/* We stop at one buffer, not at an empty ring: ask for the kick that
	 * announces the refilled buffer (EVENT_IDX), which vdev_pop only does
	 * when it finds the ring empty. */
	virtq_set_avail_event(&b->dev.vq[BALLOON_STATSQ]);
}

/* ---- virtio ops ------------------------------------------------------------------ */

static uint64_t balloon_features(struct virtio_dev *d)
{
	return (1ull << BALLOON_F_STATS_VQ) | (1ull << BALLOON_F_DEFLATE_ON_OOM);
}

static void balloon_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	memcpy(data, (uint8_t *)&balloon_of(d)->cfg + off, len);
}

static void balloon_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	struct balloon_dev *b = balloon_of(d);
	uint32_t start = offsetof(struct balloon_config, actual);

	/* Only "actual" is the driver's to write; num_pages is ours. */
	if (off < start)
		return;
	memcpy((uint8_t *)&b->cfg + off, data, len);
	b->stats.actual_pages = le32toh(b->cfg.actual);
}

/*
 * Linux lends its first stats buffer and kicks before it sets DRIVER_OK,
 * when we still ignore kicks: take it now, or it waits in the ring forever.
 */
static int balloon_activate(struct virtio_dev *d)
{
	struct balloon_dev *b = balloon_of(d);
	int rc = 0;

	if (d->drv_features & (1ull << BALLOON_F_STATS_VQ))
		balloon_stats_queue(b);
	if (vdev_failing(&b->pend)) {
		balloon_warn(b, WARN_STATS, "%s", b->pend.fail_reason);
		rc = -EINVAL;
	}
	vdev_pending_clear(&b->pend);
	return rc;
}

static void balloon_reset(struct virtio_dev *d)
{
	struct balloon_dev *b = balloon_of(d);

	/* The target is the host's and survives a driver reset; the guest's
	 * balloon does not. */
	b->cfg.actual = 0;
	b->stats.actual_pages = 0;
	b->stats_held = false;
	vdev_pending_clear(&b->pend);
}

static void balloon_queue_notify(struct virtio_dev *d, uint16_t q)
{
	struct balloon_dev *b = balloon_of(d);

	pthread_mutex_lock(&d->lock);
	if (!virtio_dev_live(d) || q >= BALLOON_NUM_QUEUES) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (q == BALLOON_STATSQ)
		balloon_stats_queue(b);
	else
		balloon_pfn_queue(b, q);
	vdev_unlock(&b->dev, &b->pend);
}

/* The target, the guest's "actual" and the lent stats buffer (balloon.h). */
static int balloon_save(struct virtio_dev *d, struct snap_writer *w)
{
	struct virtio_balloon_state st;

	virtio_balloon_save_state(d, &st);
	snap_put_u32(w, st.num_pages);
	snap_put_u32(w, st.actual);
	snap_put_u16(w, st.stats_head);
	snap_put_u8(w, st.stats_held);
	return 0;
}

static int balloon_restore(struct virtio_dev *d, struct snap_reader *r)
{
	struct virtio_balloon_state st;
	uint8_t held;

	if (snap_get_u32(r, &st.num_pages) < 0 || snap_get_u32(r, &st.actual) < 0 ||
	    snap_get_u16(r, &st.stats_head) < 0 || snap_get_u8(r, &held) < 0)
		return -EBADMSG;
	st.stats_held = held != 0;
	if (held > 1 || virtio_balloon_load_state(d, &st) < 0)
		return snap_reader_fail(r, "virtio-balloon: target %u, actual %u pages or stats buffer "
					"%u do not fit this VM", st.num_pages, st.actual, st.stats_head);
	return 0;
}

static void balloon_destroy(struct virtio_dev *d)
{
	free(balloon_of(d)->chain);
}

static void balloon_stats(struct virtio_dev *d, struct virtio_dev_stats *out)
{
	struct virtio_balloon_stats s;

	virtio_balloon_get_stats(d, &s);
	*out = (struct virtio_dev_stats){ {
		{ "target", s.target_pages }, { "actual", s.actual_pages },
		{ "inflated", s.inflated_pages }, { "deflated", s.deflated_pages },
		{ "released_bytes", s.released_bytes }, { "bad_pfns", s.bad_pfns },
		{ "guest_reports", s.guest_reports }, { "guest_free_bytes", s.guest[BALLOON_S_MEMFREE] },
		{ "guest_total_bytes", s.guest[BALLOON_S_MEMTOT] },
		{ "guest_avail_bytes", s.guest[BALLOON_S_AVAIL] },
	} };
}

static const struct virtio_dev_ops balloon_ops = {
	.name = "balloon",
	.device_id = VIRTIO_ID_BALLOON,
	.num_queues = BALLOON_NUM_QUEUES,
	.features = balloon_features,
	.config_size = sizeof(struct balloon_config),
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.activate = balloon_activate,
	.reset = balloon_reset,
	.queue_notify = balloon_queue_notify,
	.save = balloon_save,
	.restore = balloon_restore,
	.state_version = 1,
	.destroy = balloon_destroy,
	.stats = balloon_stats,
};

/* ---- API ---------------------------------------------------------------------------- */

struct virtio_dev *virtio_balloon_create(const struct guest_mem *mem)
{
	struct balloon_dev *b;

	if (!mem) {
		errno = EINVAL;
		return NULL;
	}
	b = vdev_alloc(sizeof(*b), &balloon_ops, mem);
	if (!b)
		return NULL;
	b->chain = malloc(sizeof(*b->chain));
	if (!b->chain) {
		virtio_dev_free(&b->dev);
		errno = ENOMEM;
		return NULL;
	}
	return &b->dev;
}

int virtio_balloon_set_target(struct virtio_dev *d, uint32_t num_pages)
{
	struct balloon_dev *b = balloon_of(d);

	if ((uint64_t)num_pages * BALLOON_PAGE_SIZE > d->mem->ram_size)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	if (le32toh(b->cfg.num_pages) != num_pages) {
		b->cfg.num_pages = htole32(num_pages);
		b->stats.target_pages = num_pages;
		b->pend.config_changed = virtio_dev_live(d);
	}
	vdev_unlock(&b->dev, &b->pend);
	return 0;
}

int virtio_balloon_request_stats(struct virtio_dev *d)
{
	struct balloon_dev *b = balloon_of(d);
	int rc = -EAGAIN;

	pthread_mutex_lock(&d->lock);
	if (b->stats_held && virtio_dev_live(d)) {
		b->stats_held = false;
		balloon_push(b, BALLOON_STATSQ, b->stats_head);
		rc = 0;
	}
	vdev_unlock(&b->dev, &b->pend);
	return rc;
}

void virtio_balloon_get_stats(struct virtio_dev *d, struct virtio_balloon_stats *s)
{
	pthread_mutex_lock(&d->lock);
	*s = balloon_of(d)->stats;
	pthread_mutex_unlock(&d->lock);
}

void virtio_balloon_save_state(struct virtio_dev *d, struct virtio_balloon_state *s)
{
	struct balloon_dev *b = balloon_of(d);

	pthread_mutex_lock(&d->lock);
	*s = (struct virtio_balloon_state){
		.num_pages = le32toh(b->cfg.num_pages),
		.actual = le32toh(b->cfg.actual),
		.stats_head = b->stats_head,
		.stats_held = b->stats_held,
	};
	pthread_mutex_unlock(&d->lock);
}

int virtio_balloon_load_state(struct virtio_dev *d, const struct virtio_balloon_state *s)
{
	struct balloon_dev *b = balloon_of(d);
	const struct virtq *q = &d->vq[BALLOON_STATSQ];
	uint64_t pages = d->mem->ram_size / BALLOON_PAGE_SIZE;
	int rc = -EINVAL;

	pthread_mutex_lock(&d->lock);
	if (s->num_pages > pages || s->actual > pages || (s->stats_held && (!q->ready || s->stats_head >= q->size)))
		goto out;
	b->cfg.num_pages = htole32(s->num_pages);
	b->cfg.actual = htole32(s->actual);
	b->stats.target_pages = s->num_pages;
	b->stats.actual_pages = s->actual;
	b->stats_head = s->stats_head;
	b->stats_held = s->stats_held;
	rc = 0;
out:
	pthread_mutex_unlock(&d->lock);
	return rc;
}

static int balloon_parse_pages(const char *args, uint32_t *pages)
{
	char *end;
	unsigned long long v;

	if (args[0] < '0' || args[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(args, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return -EINVAL;
	*pages = (uint32_t)v;
	return 0;
}

void virtio_balloon_control(void *dev, const char *args, char *reply, size_t len)
{
	uint32_t pages;
	int rc;

	if (args[0] && strcmp(args, "stats") != 0) {
		if (balloon_parse_pages(args, &pages) < 0) {
			snprintf(reply, len, "error usage: balloon [PAGES|stats] (PAGES of 4 KiB)");
			return;
		}
		rc = virtio_balloon_set_target(dev, pages);
		if (rc < 0)
			snprintf(reply, len, "error %u pages is more than guest RAM", pages);
		else
			snprintf(reply, len, "ok target=%u", pages);
		return;
	}
	/* The counters as they stand; the guest's fresh report shows up next time. */
	vdev_stats_reply(dev, reply, len);
	virtio_balloon_request_stats(dev);
}
