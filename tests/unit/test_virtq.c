/*
 * The split-virtqueue walker against rings built the way a (hostile)
 * driver would build them, in synthetic guest memory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtq.h"

#define RAM_GPA 0x100000ull
#define RAM_SIZE (1ull << 20)
#define QSIZE 16
#define DESC_GPA (RAM_GPA + 0x0000)
#define AVAIL_GPA (RAM_GPA + 0x1000)
#define USED_GPA (RAM_GPA + 0x2000)
#define DATA_GPA (RAM_GPA + 0x10000)

static struct guest_mem mem;
static struct virtq q;
static struct virtq_chain chain;
static uint8_t *ram;

static void *gp(uint64_t gpa) { return ram + (gpa - RAM_GPA); }

static void setup(void)
{
	ram = aligned_alloc(4096, RAM_SIZE);
	cr_assert_not_null(ram);
	memset(ram, 0, RAM_SIZE);
	mem = (struct guest_mem){ .nregions = 1, .ram_size = RAM_SIZE, .fd = -1 };
	mem.regions[0] = (struct guest_region){ .gpa = RAM_GPA, .size = RAM_SIZE, .hva = ram };
	q = (struct virtq){ .size = QSIZE, .desc_gpa = DESC_GPA, .avail_gpa = AVAIL_GPA,
			    .used_gpa = USED_GPA, .mem = &mem, .indirect = true };
	cr_assert_eq(virtq_validate(&q), 0);
	q.ready = true;
}

static void teardown(void) { free(ram); }

static void desc_at(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = gp(table + 16ull * i);
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc_at(DESC_GPA, i, addr, len, flags, next);
}

static uint16_t *avail_idx(void) { return gp(AVAIL_GPA + 2); }

static void publish(uint16_t head)
{
	uint16_t idx = *avail_idx();
	((uint16_t *)gp(AVAIL_GPA + 4))[idx % QSIZE] = head;
	*avail_idx() = idx + 1;
}

TestSuite(virtq, .init = setup, .fini = teardown);

Test(virtq, empty_ring_pops_nothing)
{
	cr_assert_eq(virtq_has_avail(&q), 0);
	cr_assert_eq(virtq_pop(&q, &chain), 0);
}

Test(virtq, chain_of_out_then_in_segments)
{
	memcpy(gp(DATA_GPA), "hello, ", 7);
	memcpy(gp(DATA_GPA + 0x100), "world", 5);
	desc(3, DATA_GPA, 7, VIRTQ_DESC_F_NEXT, 5);
	desc(5, DATA_GPA + 0x100, 5, VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA_GPA + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
	publish(3);

	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(chain.head, 3);
	cr_assert_eq(chain.n_out, 2);
	cr_assert_eq(chain.n_in, 1);
	cr_assert_eq(chain.out_len, 12);
	cr_assert_eq(chain.in_len, 64);

	char buf[16] = { 0 };
	cr_assert_eq(virtq_chain_read(&chain, 0, buf, sizeof(buf)), 12);
	cr_assert_str_eq(buf, "hello, world");
	cr_assert_eq(virtq_chain_read(&chain, 5, buf, 4), 4);
	cr_assert_eq(memcmp(buf, ", wo", 4), 0);
	cr_assert_eq(virtq_chain_write(&chain, 0, "reply", 5), 5);
	cr_assert_eq(memcmp(gp(DATA_GPA + 0x200), "reply", 5), 0);
	cr_assert_eq(virtq_chain_write(&chain, 60, "overflow", 8), 4, "write past the in-segments");

	cr_assert_eq(virtq_push(&q, chain.head, 5), 0);
	cr_assert_eq(*(uint16_t *)gp(USED_GPA + 2), 1);
	cr_assert_eq(*(uint32_t *)gp(USED_GPA + 4), 3);
	cr_assert_eq(*(uint32_t *)gp(USED_GPA + 8), 5);
	cr_assert_eq(virtq_pop(&q, &chain), 0);
}

Test(virtq, indirect_table)
{
	uint64_t table = DATA_GPA + 0x1000;
	desc_at(table, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	desc_at(table, 1, DATA_GPA + 8, 8, VIRTQ_DESC_F_WRITE, 0);
	desc(0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(chain.n_out, 1);
	cr_assert_eq(chain.n_in, 1);
}

Test(virtq, ring_wraps_around_index_space)
{
	q.last_avail = 0xfffe;
	q.used_idx = 0xfffe;
	*avail_idx() = 0xfffe;
	desc(0, DATA_GPA, 4, 0, 0);
	for (int i = 0; i < 4; i++) {
		publish(0);
		cr_assert_eq(virtq_pop(&q, &chain), 1, "pop %d", i);
		cr_assert_eq(virtq_push(&q, 0, 0), 0);
	}
	cr_assert_eq(q.last_avail, 2);
	cr_assert_eq(*(uint16_t *)gp(USED_GPA + 2), 2);
}

/* Each hostile ring below must be refused, never followed. */
static void expect_bad(const char *what)
{
	cr_assert_eq(virtq_pop(&q, &chain), -EINVAL, "%s was accepted", what);
}

Test(virtq, rejects_head_out_of_range)
{
	publish(QSIZE);
	expect_bad("head index == queue size");
}

Test(virtq, rejects_next_out_of_range)
{
	desc(0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 200);
	publish(0);
	expect_bad("next index out of range");
}

Test(virtq, rejects_loop)
{
	desc(0, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 4, VIRTQ_DESC_F_NEXT, 0);
	publish(0);
	expect_bad("a 2-descriptor loop");
}

Test(virtq, rejects_self_loop_in_indirect_table)
{
	uint64_t table = DATA_GPA + 0x1000;
	desc_at(table, 0, DATA_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	expect_bad("an indirect descriptor pointing at itself");
}

Test(virtq, rejects_buffer_outside_ram)
{
	desc(0, RAM_GPA + RAM_SIZE - 4, 8, 0, 0);
	publish(0);
	expect_bad("a buffer crossing the end of RAM");
}

Test(virtq, rejects_buffer_below_ram)
{
	desc(0, 0x1000, 8, 0, 0);
	publish(0);
	expect_bad("a buffer below RAM");
}

Test(virtq, rejects_wrapping_address)
{
	desc(0, UINT64_MAX - 2, 16, 0, 0);
	publish(0);
	expect_bad("a buffer that wraps the address space");
}

Test(virtq, rejects_readable_after_writable)
{
	desc(0, DATA_GPA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 4, 0, 0);
	publish(0);
	expect_bad("a readable segment after a writable one");
}

Test(virtq, rejects_indirect_without_feature)
{
	q.indirect = false;
	desc(0, DATA_GPA + 0x1000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	expect_bad("an indirect descriptor without INDIRECT_DESC");
}

Test(virtq, rejects_nested_indirect)
{
	uint64_t table = DATA_GPA + 0x1000;
	desc_at(table, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	expect_bad("an indirect table inside an indirect table");
}

Test(virtq, rejects_bad_indirect_length)
{
	desc(0, DATA_GPA + 0x1000, 24, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	expect_bad("an indirect table whose length is not a multiple of 16");
}

Test(virtq, rejects_indirect_table_outside_ram)
{
	desc(0, RAM_GPA + RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(0);
	expect_bad("an indirect table crossing the end of RAM");
}

Test(virtq, rejects_avail_index_jump)
{
	*avail_idx() = QSIZE + 1;
	cr_assert_eq(virtq_has_avail(&q), -EINVAL);
	expect_bad("avail->idx more than a queue ahead");
}

Test(virtq, zero_length_segment_is_skipped)
{
	desc(0, 0xdeadbeef000ull, 0, VIRTQ_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 4, 0, 0);
	publish(0);
	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(chain.n_out, 1);
}

Test(virtq, not_ready_queue_is_inert)
{
	q.ready = false;
	desc(0, DATA_GPA, 4, 0, 0);
	publish(0);
	cr_assert_eq(virtq_pop(&q, &chain), -EINVAL);
	cr_assert_eq(virtq_push(&q, 0, 0), -EINVAL);
	cr_assert_not(virtq_should_signal(&q));
}

Test(virtq, push_rejects_bad_head)
{
	cr_assert_eq(virtq_push(&q, QSIZE, 0), -EINVAL);
}

Test(virtq, validate_rejects_bad_layouts)
{
	struct virtq bad = q;
	bad.size = 12;
	cr_assert_eq(virtq_validate(&bad), -EINVAL, "size not a power of two");
	bad = q;
	bad.size = 2 * VIRTQ_MAX_SIZE;
	cr_assert_eq(virtq_validate(&bad), -EINVAL, "size over the maximum");
	bad = q;
	bad.desc_gpa += 8;
	cr_assert_eq(virtq_validate(&bad), -EINVAL, "misaligned descriptor table");
	bad = q;
	bad.used_gpa = RAM_GPA + RAM_SIZE - 8;
	cr_assert_eq(virtq_validate(&bad), -EINVAL, "used ring past the end of RAM");
}

Test(virtq, interrupt_suppression_flag)
{
	desc(0, DATA_GPA, 4, 0, 0);
	publish(0);
	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(virtq_push(&q, 0, 0), 0);
	cr_assert(virtq_should_signal(&q));
	*(uint16_t *)gp(AVAIL_GPA) = 1; /* VRING_AVAIL_F_NO_INTERRUPT */
	cr_assert_not(virtq_should_signal(&q));
}

Test(virtq, event_idx_signals_only_when_crossing_used_event)
{
	uint16_t *used_event = gp(AVAIL_GPA + 4 + 2 * QSIZE);

	q.event_idx = true;
	desc(0, DATA_GPA, 4, 0, 0);
	*used_event = 1; /* interrupt me once the 2nd buffer is used */
	for (int i = 0; i < 3; i++)
		publish(0);

	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(virtq_push(&q, 0, 0), 0);
	cr_assert(virtq_should_signal(&q), "first signal is always sent");
	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(virtq_push(&q, 0, 0), 0);
	cr_assert(virtq_should_signal(&q), "used idx crossed used_event=1");
	cr_assert_eq(virtq_pop(&q, &chain), 1);
	cr_assert_eq(virtq_push(&q, 0, 0), 0);
	cr_assert_not(virtq_should_signal(&q), "used_event not crossed again");

	virtq_set_avail_event(&q);
	cr_assert_eq(*(uint16_t *)gp(USED_GPA + 4 + 8 * QSIZE), 3);
}
