#include "fuzz_dev.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_SEGS 3
#define FUZZ_IN_MAX 8192

struct fuzz_dev *fuzz_dev_new(struct virtio_dev *(*create)(struct fuzz_dev *f, void *arg), void *arg,
			      uint64_t features, unsigned nqueues)
{
	struct fuzz_dev *f = calloc(1, sizeof(*f));

	if (!f)
		abort();
	vdrv_mem_init(&f->drv, 4ull << 20, false);
	f->drv.lenient = true;
	f->drv.loop = evloop_new();
	if (!f->drv.loop)
		abort();
	f->dev = create(f, arg);
	if (!f->dev)
		abort();
	f->features = features | (1ull << VIRTIO_F_EVENT_IDX) | (1ull << VIRTIO_F_INDIRECT_DESC);
	f->nqueues = nqueues;
	return f;
}

static uint64_t fuzz_room(const struct fuzz_dev *f)
{
	return VDRV_RAM_GPA + f->drv.ram_size - f->drv.brk;
}

/* An indirect table holding the chain, referenced from one ring descriptor. */
static int fuzz_add_indirect(struct fuzz_dev *f, unsigned q, const struct vdrv_buf *b, unsigned n)
{
	uint64_t table = vdrv_alloc(&f->drv, 16ull * n);
	uint8_t *t = vdrv_ptr(&f->drv, table);
	struct vdrv_buf ind = { .gpa = table, .len = 16 * n };
	int head;

	for (unsigned i = 0; i < n; i++) {
		uint16_t flags = (uint16_t)((b[i].write ? 2 : 0) | (i + 1 < n ? 1 : 0));
		uint16_t next = (uint16_t)(i + 1);
		memcpy(t + 16 * i, &b[i].gpa, 8);
		memcpy(t + 16 * i + 8, &b[i].len, 4);
		memcpy(t + 16 * i + 12, &flags, 2);
		memcpy(t + 16 * i + 14, &next, 2);
	}
	head = vdrv_add(&f->drv, q, &ind, 1);
	if (head >= 0)
		vdrv_set_desc(&f->drv, q, (uint16_t)head, table, 16 * n, 4 /* INDIRECT */, 0);
	return head;
}

/* Builds one chain from a record; returns bytes of input consumed, 0 to stop. */
static size_t fuzz_record(struct fuzz_dev *f, const uint8_t *p, size_t left)
{
	struct vdrv_buf b[FUZZ_MAX_SEGS + 1];
	unsigned q, n = 0;
	size_t len, cut[2];
	uint64_t gpa;
	int head;

	if (left < 4)
		return 0;
	q = (p[0] & 7) % f->nqueues;
	len = (size_t)(p[2] | p[3] << 8);
	if (len > left - 4)
		len = left - 4;
	if (fuzz_room(f) < len + FUZZ_IN_MAX + 4096)
		return 0;
	gpa = vdrv_alloc(&f->drv, len + 1);
	memcpy(vdrv_ptr(&f->drv, gpa), p + 4, len);
	cut[0] = len ? (p[1] & 15) * len / 15 : 0;
	cut[1] = len ? (p[1] >> 4) * len / 15 : 0;
	if (cut[1] < cut[0])
		cut[1] = cut[0];
	if (cut[0])
		b[n++] = (struct vdrv_buf){ .gpa = gpa, .len = (uint32_t)cut[0] };
	if (cut[1] > cut[0])
		b[n++] = (struct vdrv_buf){ .gpa = gpa + cut[0], .len = (uint32_t)(cut[1] - cut[0]) };
	if (len > cut[1])
		b[n++] = (struct vdrv_buf){ .gpa = gpa + cut[1], .len = (uint32_t)(len - cut[1]) };
	if (p[0] & 0x80) {
		uint32_t in = 16u + (uint32_t)p[1] * 31u;
		b[n++] = (struct vdrv_buf){ .gpa = vdrv_alloc(&f->drv, in), .len = in, .write = true };
	}
	if (n == 0)
		b[n++] = (struct vdrv_buf){ .gpa = gpa, .len = 0 };
	head = (p[0] & 0x40) && (f->drv.features & (1ull << VIRTIO_F_INDIRECT_DESC))
		       ? fuzz_add_indirect(f, q, b, n)
		       : vdrv_add(&f->drv, q, b, n);
	if (head < 0)
		return 0;
	f->dev->ops->queue_notify(f->dev, (uint16_t)q);
	return 4 + len;
}

void fuzz_dev_run(struct fuzz_dev *f, const uint8_t *data, size_t size)
{
	vdrv_free_all(&f->drv);
	vdrv_attach(&f->drv, f->dev, f->features, f->nqueues);
	for (size_t off = 0; off < size && !vdrv_needs_reset(&f->drv);) {
		size_t used = fuzz_record(f, data + off, size - off);
		if (!used)
			break;
		off += used;
		for (unsigned q = 0; q < f->nqueues; q++)
			for (unsigned k = 0; k < VDRV_QSIZE && vdrv_used(&f->drv, q, NULL, NULL) >= 0; k++)
				;
	}
}
