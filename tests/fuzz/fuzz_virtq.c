/*
 * The split-virtqueue walker over fuzzed rings. The input's first four
 * bytes pick the queue size, features, ring placement and where the device
 * starts in the avail ring; the rest is the guest memory holding the
 * descriptor table, the avail ring and the buffers. Every segment virtq_pop
 * hands out must lie inside that memory; ASan catches any access outside.
 */
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_GPA 0x100000ull
#define FUZZ_MEM 0x10000ull
#define FUZZ_POPS 64

static void fuzz_check_chain(const struct virtq_chain *c, const uint8_t *ram)
{
	uint8_t buf[4096];

	if (c->n_out + c->n_in > VIRTQ_MAX_CHAIN)
		abort();
	for (unsigned i = 0; i < (unsigned)c->n_out + c->n_in; i++) {
		if (c->seg[i].hva < ram || c->seg[i].hva + c->seg[i].len > ram + FUZZ_MEM)
			abort(); /* a segment outside guest memory */
	}
	for (uint64_t off = 0; off < c->out_len; off += sizeof(buf))
		virtq_chain_read(c, off, buf, sizeof(buf));
	memset(buf, 0xa5, sizeof(buf));
	for (uint64_t off = 0; off < c->in_len; off += sizeof(buf))
		virtq_chain_write(c, off, buf, sizeof(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem mem = { .nregions = 1, .ram_size = FUZZ_MEM, .fd = -1 };
	struct virtq_chain *c;
	struct virtq q = { 0 };
	uint8_t *ram;

	if (size < 4)
		return 0;
	ram = calloc(1, FUZZ_MEM);
	c = malloc(sizeof(*c));
	if (!ram || !c)
		abort();
	memcpy(ram, data + 4, size - 4 < FUZZ_MEM ? size - 4 : FUZZ_MEM);
	mem.regions[0] = (struct guest_region){ .gpa = FUZZ_GPA, .size = FUZZ_MEM, .hva = ram };
	q.mem = &mem;
	q.size = (uint16_t)(1u << (data[0] % 10));
	q.indirect = data[1] & 1;
	q.event_idx = data[1] & 2;
	q.desc_gpa = FUZZ_GPA + 16ull * (data[2] & 7);
	q.avail_gpa = q.desc_gpa + 16ull * q.size;
	q.used_gpa = FUZZ_GPA + FUZZ_MEM / 2 + 4ull * (data[2] >> 5);
	q.last_avail = data[3];
	q.used_idx = data[3];
	if (virtq_validate(&q) == 0) {
		q.ready = true;
		for (int i = 0; i < FUZZ_POPS; i++) {
			int rc = virtq_pop(&q, c);
			if (rc <= 0)
				break;
			fuzz_check_chain(c, ram);
			virtq_push(&q, c->head, (uint32_t)c->in_len);
			virtq_should_signal(&q);
		}
		virtq_set_avail_event(&q);
	}
	free(c);
	free(ram);
	return 0;
}
