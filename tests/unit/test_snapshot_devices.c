/*
 * Snapshot state of the pieces that need no KVM: the virtio transport and
 * its queues (a request queued before the capture and never consumed is
 * served after the restore; hostile queue state is refused), the UART,
 * the MSR order for KVM_SET_MSRS and the CPUID compatibility check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/snapshot.h"
#include "devices/serial.h"
#include "devices/virtio/blk.h"
#include "virtio_driver.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/snapshot.h"

#define WAIT_MS 10000
#define TAG SNAP_TAG('T', 'E', 'S', 'T')

/* ---- helpers: one section through a real writer and reader -------------------- */

static struct snap_writer *w;

static void section_begin(void)
{
	w = snap_writer_new();
	cr_assert_not_null(w);
	snap_section_begin(w, TAG, 0, 1);
}

/* Ends the section and parses the file; the reader is positioned in it. */
static struct snap_reader *section_read(void)
{
	struct snap_reader *r;
	struct vmm_err err = { { 0 } };
	size_t len;

	snap_section_end(w);
	const uint8_t *buf = snap_writer_encode(w, &len);
	cr_assert_not_null(buf, "writer error %d", snap_writer_error(w));
	cr_assert_eq(snap_reader_parse(&r, "t/state", buf, len, &err), 0, "%s", err.msg);
	snap_writer_free(w);
	w = NULL;
	cr_assert_eq(snap_section_enter(r, TAG, 0), 0);
	return r;
}

static void reader_error_has(struct snap_reader *r, const char *want)
{
	struct vmm_err err = { { 0 } };

	cr_assert_lt(snap_reader_error(r, &err), 0, "no error recorded");
	cr_assert_not_null(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
	cr_assert_not_null(strstr(err.msg, "t/state: section TEST 0: "), "%s", err.msg);
}

/* ---- virtio transport and queues -------------------------------------------------- */

static struct vdrv v;
static struct virtio_dev *dev;
static char disk[64];

static void blk_setup(void)
{
	struct virtio_blk_options o = { .path = disk };
	char block[512];

	strcpy(disk, "/tmp/sm-snapdev-XXXXXX");
	int fd = mkstemp(disk);
	cr_assert_geq(fd, 0);
	memset(block, 0x5a, sizeof(block));
	for (int i = 0; i < 64; i++)
		cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	close(fd);
	vdrv_mem_init(&v, 4 << 20, true);
	vdrv_loop_start(&v);
	dev = virtio_blk_create(&v.mem, &o);
	cr_assert_not_null(dev);
	cr_assert(vdrv_attach(&v, dev, ~0ULL, 1) & VIRTIO_STATUS_DRIVER_OK);
}

static void blk_teardown(void)
{
	vdrv_loop_stop(&v);
	vdrv_detach(&v);
	virtio_dev_free(dev);
	vdrv_fini(&v);
	unlink(disk);
	snap_writer_free(w);
	w = NULL;
}

/* A read of sector 1 queued (avail) but not kicked: the device never saw it. */
static int queue_read(uint64_t *data, uint64_t *status)
{
	uint32_t hdr[4] = { VIRTIO_BLK_T_IN, 0, 1, 0 };
	uint64_t h = vdrv_alloc(&v, 16);

	*data = vdrv_alloc(&v, 512);
	*status = vdrv_alloc(&v, 1);
	memcpy(vdrv_ptr(&v, h), hdr, 16);
	*(uint8_t *)vdrv_ptr(&v, *status) = 0xee;
	struct vdrv_buf b[3] = {
		{ .gpa = h, .len = 16 },
		{ .gpa = *data, .len = 512, .write = true },
		{ .gpa = *status, .len = 1, .write = true },
	};
	return vdrv_add(&v, 0, b, 3);
}

TestSuite(snapshot_virtio, .init = blk_setup, .fini = blk_teardown);

Test(snapshot_virtio, request_queued_before_capture_is_served_after_restore)
{
	uint64_t data, status;
	uint32_t len;
	int head = queue_read(&data, &status);

	section_begin();
	virtio_dev_save(dev, w);
	struct snap_reader *r = section_read();
	/* What a reset in place finds: a device the driver since reset. */
	vdrv_reg_write(&v, VIRTIO_MMIO_STATUS, 0);
	cr_assert_eq(vdrv_status(&v), 0);
	cr_assert_eq(virtio_dev_restore(dev, r), 0);
	cr_assert_eq(snap_section_leave(r), 0);
	cr_assert(vdrv_status(&v) & VIRTIO_STATUS_DRIVER_OK, "status %#x", vdrv_status(&v));
	cr_assert_eq(vdrv_used(&v, 0, &len, NULL), -1, "served before restored()");
	virtio_dev_restored(dev);
	cr_assert_eq(vdrv_wait_used(&v, 0, &len, NULL, WAIT_MS), head);
	cr_assert_eq(len, 513);
	cr_assert_eq(*(uint8_t *)vdrv_ptr(&v, status), VIRTIO_BLK_S_OK);
	cr_assert_eq(((uint8_t *)vdrv_ptr(&v, data))[0], 0x5a);
	snap_reader_free(r);
}

Test(snapshot_virtio, indexes_survive)
{
	uint64_t data, status;
	uint32_t len;

	/* Two requests served: used_idx 2, then capture and restore. */
	for (int i = 0; i < 2; i++) {
		int head = queue_read(&data, &status);
		vdrv_kick(&v, 0);
		cr_assert_eq(vdrv_wait_used(&v, 0, &len, NULL, WAIT_MS), head);
	}
	section_begin();
	virtio_dev_save(dev, w);
	struct snap_reader *r = section_read();
	cr_assert_eq(virtio_dev_restore(dev, r), 0);
	cr_assert_eq(dev->vq[0].last_avail, 2);
	cr_assert_eq(dev->vq[0].used_idx, 2);
	/* The third request lands in used slot 2, not 0. */
	int head = queue_read(&data, &status);
	vdrv_kick(&v, 0);
	cr_assert_eq(vdrv_wait_used(&v, 0, &len, NULL, WAIT_MS), head);
	snap_reader_free(r);
}

/* The transport fields as docs/snapshot-format.md lays them out, with one queue. */
struct fake {
	uint32_t id, version, status;
	uint64_t features;
	uint16_t nq, size;
	uint64_t desc, avail, used;
	uint16_t last_avail, used_idx;
	uint8_t ready;
	uint64_t capacity; /* blk's own data */
	uint8_t ro;
};

static struct fake fake_of(void)
{
	const struct virtq *q = &dev->vq[0];

	return (struct fake){
		.id = VIRTIO_ID_BLOCK, .version = dev->ops->state_version, .status = dev->status, .features = dev->drv_features, .nq = 1,
		.size = q->size, .desc = q->desc_gpa, .avail = q->avail_gpa, .used = q->used_gpa,
		.ready = 1, .capacity = 64,
	};
}

static void fake_put(const struct fake *f)
{
	snap_put_u32(w, f->id);
	snap_put_u32(w, f->version);
	snap_put_u32(w, f->status);
	snap_put_u32(w, 0);
	snap_put_u32(w, 0);
	snap_put_u64(w, f->features);
	snap_put_u32(w, 0);
	snap_put_u32(w, 0);
	snap_put_u32(w, 0);
	snap_put_u16(w, f->nq);
	snap_put_u16(w, f->size);
	snap_put_u8(w, f->ready);
	snap_put_u64(w, f->desc);
	snap_put_u64(w, f->avail);
	snap_put_u64(w, f->used);
	snap_put_u16(w, f->last_avail);
	snap_put_u16(w, f->used_idx);
	snap_put_u16(w, 0);
	snap_put_u8(w, 0);
	snap_put_u64(w, f->capacity);
	snap_put_u8(w, f->ro);
}

static void expect_refused(const struct fake *f, const char *want)
{
	section_begin();
	fake_put(f);
	struct snap_reader *r = section_read();
	cr_assert_eq(virtio_dev_restore(dev, r), -EINVAL, "accepted; wanted '%s'", want);
	reader_error_has(r, want);
	/* A refused restore leaves a reset device, not half a state. */
	cr_assert_eq(dev->status, 0);
	cr_assert_not(dev->vq[0].ready);
	snap_reader_free(r);
}

Test(snapshot_virtio, the_layout_is_the_documented_one)
{
	struct fake f = fake_of();

	section_begin();
	fake_put(&f);
	struct snap_reader *r = section_read();
	cr_assert_eq(virtio_dev_restore(dev, r), 0);
	cr_assert_eq(snap_section_leave(r), 0);
	snap_reader_free(r);
}

Test(snapshot_virtio, hostile_state_is_refused)
{
	/* Taken once: each refusal leaves the device reset. */
	const struct fake base = fake_of();
	struct fake f;

	f = base, f.id = VIRTIO_ID_NET;
	expect_refused(&f, "holds virtio device 1 with 1 queues; slot has virtio-blk");
	f = base, f.nq = 2;
	expect_refused(&f, "with 2 queues");
	f = base, f.size = 3;
	expect_refused(&f, "queue 0: size 3");
	f = base, f.size = 2048;
	expect_refused(&f, "malformed (size 2048)");
	f = base, f.used = (64ull << 20);
	expect_refused(&f, "do not fit guest RAM");
	f = base, f.desc = f.desc + 8;
	expect_refused(&f, "do not fit guest RAM");
	f = base, f.last_avail = 1000;
	expect_refused(&f, "chains in flight");
	f = base, f.status |= 0x20;
	expect_refused(&f, "status");
	f = base, f.features |= 1ull << 40;
	expect_refused(&f, "driver features");
	f = base, f.status = VIRTIO_STATUS_ACKNOWLEDGE;
	expect_refused(&f, "do not fit"); /* a ready queue without FEATURES_OK */
	f = base, f.ready = 2;
	expect_refused(&f, "malformed");
}

Test(snapshot_virtio, another_state_version_is_refused)
{
	struct fake f = fake_of();

	cr_assert_eq(f.version, 1);
	f.version = 2;
	expect_refused(&f, "virtio-blk: state version 2; this device saves version 1");
	f.version = 0;
	expect_refused(&f, "virtio-blk: state version 0; this device saves version 1");
}

Test(snapshot_virtio, another_disk_is_refused)
{
	const struct fake base = fake_of();
	struct fake f;

	f = base, f.capacity = 65;
	expect_refused(&f, "the disk has 64 sectors; at the capture it had 65");
	f = base, f.ro = 1;
	expect_refused(&f, "the disk is writable; at the capture it was read-only");
}

/* ---- UART ------------------------------------------------------------------------- */

struct sink {
	bool level;
	int edges;
};

static void irq(void *o, bool level)
{
	struct sink *s = o;

	if (level && !s->level)
		s->edges++;
	s->level = level;
}

static const struct serial_ops sink_ops = { .irq = irq };

static uint8_t reg(struct serial *s, unsigned off)
{
	uint8_t b;

	serial_read(s, off, &b, 1);
	return b;
}

Test(snapshot_serial, registers_and_fifo_round_trip)
{
	struct serial a, b;
	struct sink sa = { 0 }, sb = { 0 };
	uint8_t x;

	serial_init(&a, &sink_ops, &sa);
	serial_init(&b, &sink_ops, &sb);
	x = 0x83, serial_write(&a, 3, &x, 1); /* DLAB: set divisor 0x0001 */
	x = 0x01, serial_write(&a, 0, &x, 1);
	x = 0x03, serial_write(&a, 3, &x, 1);
	x = 0x01, serial_write(&a, 1, &x, 1); /* IER: receive interrupt */
	x = 0x42, serial_write(&a, 7, &x, 1);
	serial_input(&a, (const uint8_t *)"abc", 3);
	(void)reg(&a, 0); /* 'a' consumed: the FIFO wraps from offset 1 */
	cr_assert(sa.level);

	section_begin();
	serial_save(&a, w);
	struct snap_reader *r = section_read();
	cr_assert_eq(serial_restore(&b, r), 0);
	cr_assert_eq(snap_section_leave(r), 0);
	snap_reader_free(r);
	cr_assert(sb.level, "the restored line is not raised");
	cr_assert_eq(reg(&b, 7), 0x42);
	cr_assert_eq(reg(&b, 1), 0x01);
	cr_assert_eq(reg(&b, 3), 0x03);
	cr_assert_eq(reg(&b, 0), 'b');
	cr_assert_eq(reg(&b, 0), 'c');
	cr_assert_eq(reg(&b, 5) & 1, 0, "data ready with an empty FIFO");
	x = 0x83, serial_write(&b, 3, &x, 1);
	cr_assert_eq(reg(&b, 0), 0x01, "divisor lost");
	serial_destroy(&a);
	serial_destroy(&b);
}

Test(snapshot_serial, hostile_state_is_refused)
{
	struct serial s;
	struct sink k = { 0 };
	const uint8_t regs[10] = { 0 };

	serial_init(&s, &sink_ops, &k);
	section_begin();
	snap_put_bytes(w, regs, sizeof(regs));
	snap_put_u8(w, SERIAL_RX_FIFO + 1);
	struct snap_reader *r = section_read();
	cr_assert_lt(serial_restore(&s, r), 0);
	reader_error_has(r, "receive FIFO (65 bytes) invalid");
	snap_reader_free(r);

	section_begin();
	snap_put_bytes(w, regs, sizeof(regs));
	snap_put_u8(w, 5); /* says 5 bytes, holds 2 */
	snap_put_u16(w, 0x4141);
	r = section_read();
	cr_assert_lt(serial_restore(&s, r), 0);
	reader_error_has(r, "truncated");
	snap_reader_free(r);
	serial_destroy(&s);
}

/* A file whose saved line level contradicts its registers: the line goes
 * where the registers say, or KVM's line and ours disagree and the UART's
 * interrupts stop (found by fuzz-serial). */
static void restore_level(uint8_t ier, uint8_t saved_level, bool kvm_level, bool want)
{
	struct serial s;
	struct sink k = { .level = kvm_level };
	const uint8_t regs[10] = { ier, 0x03, 0x08, 0xb0, 0, 0x0c, 0, 0, 0, saved_level };

	serial_init(&s, &sink_ops, &k);
	section_begin();
	snap_put_bytes(w, regs, sizeof(regs));
	snap_put_u8(w, 1);
	snap_put_u8(w, 'x');
	struct snap_reader *r = section_read();
	cr_assert_eq(serial_restore(&s, r), 0);
	snap_reader_free(r);
	cr_assert_eq(k.level, want, "IER %#x, saved level %u: line %d", ier, saved_level, k.level);
	/* and the next cause is an edge again */
	uint8_t x = 0x0f;
	serial_write(&s, 1, &x, 1);
	cr_assert(k.level);
	serial_destroy(&s);
}

Test(snapshot_serial, line_follows_the_registers_not_the_saved_level)
{
	restore_level(0x01, 0, false, true); /* receive interrupt pending, saved as low */
	restore_level(0x00, 1, true, false); /* nothing enabled, saved as raised */
	restore_level(0x01, 1, false, true);
	restore_level(0x00, 0, false, false);
}

/* ---- x86: MSR order, CPUID check ---------------------------------------------------- */

Test(snapshot_x86, tsc_first_deadline_last_rest_in_order)
{
	uint32_t idx[] = { 0x174, 0x6e0, 0xc0000080, 0x10, 0x1a0 };
	const uint32_t want[] = { 0x10, 0x174, 0xc0000080, 0x1a0, 0x6e0 };

	x86_msr_order(idx, 5);
	cr_assert_arr_eq(idx, want, sizeof(want));

	uint32_t none[] = { 3, 2, 1 };
	const uint32_t same[] = { 3, 2, 1 };
	x86_msr_order(none, 3);
	cr_assert_arr_eq(none, same, sizeof(same));
}

static struct kvm_cpuid2 *cpuid_new(const char *vendor, uint32_t leaf7_ebx, uint32_t leaf1_ecx)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 3 * sizeof(struct kvm_cpuid_entry2));

	c->nent = 3;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 7 };
	memcpy(&c->entries[0].ebx, vendor, 4);
	memcpy(&c->entries[0].edx, vendor + 4, 4);
	memcpy(&c->entries[0].ecx, vendor + 8, 4);
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = leaf1_ecx };
	c->entries[2] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0, .ebx = leaf7_ebx,
						   .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX };
	return c;
}

Test(snapshot_x86, cpuid_check)
{
	char why[160];
	struct kvm_cpuid2 *host = cpuid_new("GenuineIntel", 0x0f, 0x1);
	struct kvm_cpuid2 *same = cpuid_new("GenuineIntel", 0x05, 0x1 | (1u << 31) | (1u << 27));
	struct kvm_cpuid2 *more = cpuid_new("GenuineIntel", 0x1f, 0x1);
	struct kvm_cpuid2 *amd = cpuid_new("AuthenticAMD", 0x01, 0x1);

	/* A subset, plus the hypervisor and OSXSAVE bits that are not features. */
	cr_assert_eq(x86_cpuid_check(same, host, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(x86_cpuid_check(more, host, why, sizeof(why)), -EINVAL);
	cr_assert_str_eq(why, "leaf 0x7.0 ebx bits 0x10 are not offered here");
	cr_assert_eq(x86_cpuid_check(amd, host, why, sizeof(why)), -EINVAL);
	cr_assert_not_null(strstr(why, "vendor"));
	free(host);
	free(same);
	free(more);
	free(amd);
}
