/*
 * virtio-blk over a real temporary file, driven through the transport by
 * the test driver with the device running on an event loop thread: good
 * requests, requests a driver should never send, and broken chains.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio/blk.h"
#include "virtio_driver.h"

#define DISK_SECTORS 64
#define WAIT_MS 10000

static struct vdrv v;
static struct virtio_dev *dev;
static char path[64];

static void make_disk(uint64_t bytes)
{
	strcpy(path, "/tmp/sm-blk-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	uint8_t *data = malloc(bytes);
	for (uint64_t i = 0; i < bytes; i++)
		data[i] = (uint8_t)(i / 512 + i % 7);
	cr_assert_eq(write(fd, data, bytes), (ssize_t)bytes);
	free(data);
	close(fd);
}

static void start(bool ro, const char *id)
{
	struct virtio_blk_options o = { .path = path, .read_only = ro, .id = id };

	vdrv_mem_init(&v, 4 << 20, true);
	vdrv_loop_start(&v);
	dev = virtio_blk_create(&v.mem, &o);
	cr_assert_not_null(dev, "virtio_blk_create: %s", strerror(errno));
	uint32_t st = vdrv_attach(&v, dev, ~0ULL, 1);
	cr_assert(st & VIRTIO_STATUS_DRIVER_OK, "status %#x", st);
}

static void setup(void)
{
	make_disk(DISK_SECTORS * 512);
}

static void teardown(void)
{
	vdrv_loop_stop(&v);
	vdrv_detach(&v);
	virtio_dev_free(dev);
	dev = NULL;
	vdrv_fini(&v);
	unlink(path);
}

TestSuite(blk, .init = setup, .fini = teardown);

struct req {
	uint64_t hdr, data, status;
	uint32_t data_len;
};

/*
 * header (readable), data (readable for OUT, writable otherwise; filled
 * from `fill` if not NULL), status byte.
 */
static int submit_data(struct req *r, uint32_t type, uint64_t sector, uint32_t data_len,
		       bool data_out, const void *fill)
{
	uint32_t hdr[4] = { type, 0, (uint32_t)sector, (uint32_t)(sector >> 32) };
	struct vdrv_buf b[3];
	unsigned n = 0;

	r->hdr = vdrv_alloc(&v, 16);
	memcpy(vdrv_ptr(&v, r->hdr), hdr, 16);
	b[n++] = (struct vdrv_buf){ .gpa = r->hdr, .len = 16 };
	r->data_len = data_len;
	if (data_len) {
		r->data = vdrv_alloc(&v, data_len);
		if (fill)
			memcpy(vdrv_ptr(&v, r->data), fill, data_len);
		b[n++] = (struct vdrv_buf){ .gpa = r->data, .len = data_len, .write = !data_out };
	}
	r->status = vdrv_alloc(&v, 1);
	*(uint8_t *)vdrv_ptr(&v, r->status) = 0xee;
	b[n++] = (struct vdrv_buf){ .gpa = r->status, .len = 1, .write = true };
	int head = vdrv_add(&v, 0, b, n);
	cr_assert_geq(head, 0);
	vdrv_kick(&v, 0);
	return head;
}

static int submit(struct req *r, uint32_t type, uint64_t sector, uint32_t data_len, bool data_out)
{
	return submit_data(r, type, sector, data_len, data_out, NULL);
}

/* Waits for the request; returns its status byte, *used the used length. */
static uint8_t complete(struct req *r, int head, uint32_t *used)
{
	uint32_t len;
	int got = vdrv_wait_used(&v, 0, &len, NULL, WAIT_MS);
	cr_assert_eq(got, head, "used head %d, expected %d", got, head);
	if (used)
		*used = len;
	return *(uint8_t *)vdrv_ptr(&v, r->status);
}

static uint8_t do_req(uint32_t type, uint64_t sector, uint32_t len, bool out, struct req *r,
		      uint32_t *used)
{
	int head = submit(r, type, sector, len, out);
	return complete(r, head, used);
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

Test(blk, config_and_features)
{
	start(false, NULL);
	uint64_t cap;
	virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, &cap, 8);
	cr_assert_eq(cap, DISK_SECTORS);
	cr_assert_eq(virtio_blk_capacity(dev), DISK_SECTORS);
	cr_assert(v.features & (1ULL << VIRTIO_BLK_F_FLUSH));
	cr_assert_not(v.features & (1ULL << VIRTIO_BLK_F_RO));
	uint32_t blk_size;
	virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG + 20, &blk_size, 4);
	cr_assert_eq(blk_size, 512);
}

Test(blk, write_then_read_back)
{
	struct req r;
	uint32_t used;
	uint8_t buf[2048];

	start(false, NULL);
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	int head = submit_data(&r, VIRTIO_BLK_T_OUT, 3, sizeof(buf), true, buf);
	cr_assert_eq(complete(&r, head, &used), VIRTIO_BLK_S_OK);
	cr_assert_eq(used, 1, "a write returns only the status byte");
	uint8_t back[2048];
	file_read(3 * 512, back, sizeof(back));
	cr_assert_eq(memcmp(back, buf, sizeof(buf)), 0, "the file holds what the guest wrote");

	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, 3, sizeof(buf), false, &r, &used), VIRTIO_BLK_S_OK);
	cr_assert_eq(used, sizeof(buf) + 1);
	cr_assert_eq(memcmp(vdrv_ptr(&v, r.data), buf, sizeof(buf)), 0);
	cr_assert_eq(do_req(VIRTIO_BLK_T_FLUSH, 0, 0, false, &r, NULL), VIRTIO_BLK_S_OK);

	struct virtio_blk_stats s;
	virtio_blk_get_stats(dev, &s);
	cr_assert_eq(s.writes, 1);
	cr_assert_eq(s.reads, 1);
	cr_assert_eq(s.flushes, 1);
	cr_assert_eq(s.bytes_written, sizeof(buf));
}

Test(blk, read_at_the_last_sector_and_beyond)
{
	struct req r;
	uint8_t expect[512];

	start(false, NULL);
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 512, false, &r, NULL), VIRTIO_BLK_S_OK);
	file_read((DISK_SECTORS - 1) * 512, expect, 512);
	cr_assert_eq(memcmp(vdrv_ptr(&v, r.data), expect, 512), 0);
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, DISK_SECTORS, 512, false, &r, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 1024, false, &r, NULL),
		     VIRTIO_BLK_S_IOERR, "crosses the end");
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, UINT64_MAX, 512, false, &r, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, (UINT64_MAX / 512) + 1, 512, false, &r, NULL),
		     VIRTIO_BLK_S_IOERR, "sector * 512 overflows");
	cr_assert_eq(do_req(VIRTIO_BLK_T_OUT, DISK_SECTORS, 512, true, &r, NULL), VIRTIO_BLK_S_IOERR);
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, 0, 100, false, &r, NULL), VIRTIO_BLK_S_IOERR,
		     "not a whole sector");
	cr_assert_eq(do_req(99, 0, 512, false, &r, NULL), VIRTIO_BLK_S_UNSUPP);
	cr_assert_not(vdrv_needs_reset(&v), "bad requests are answered, not fatal");
	struct virtio_blk_stats s;
	virtio_blk_get_stats(dev, &s);
	cr_assert_eq(s.errors, 6);
	cr_assert_eq(s.unsupported, 1);
}

Test(blk, read_only_disk_refuses_writes)
{
	struct req r;
	uint8_t before[512], after[512];

	start(true, NULL);
	cr_assert(v.features & (1ULL << VIRTIO_BLK_F_RO));
	file_read(0, before, 512);
	cr_assert_eq(do_req(VIRTIO_BLK_T_OUT, 0, 512, true, &r, NULL), VIRTIO_BLK_S_IOERR);
	file_read(0, after, 512);
	cr_assert_eq(memcmp(before, after, 512), 0);
	cr_assert_eq(do_req(VIRTIO_BLK_T_IN, 0, 512, false, &r, NULL), VIRTIO_BLK_S_OK);
	cr_assert_eq(do_req(VIRTIO_BLK_T_FLUSH, 0, 0, false, &r, NULL), VIRTIO_BLK_S_OK);
}

Test(blk, get_id)
{
	struct req r;
	uint32_t used;

	start(false, "rootfs-1");
	cr_assert_eq(do_req(VIRTIO_BLK_T_GET_ID, 0, 20, false, &r, &used), VIRTIO_BLK_S_OK);
	cr_assert_eq(memcmp(vdrv_ptr(&v, r.data), "rootfs-1\0\0\0\0", 12), 0);
	cr_assert_eq(used, 21);
	cr_assert_eq(do_req(VIRTIO_BLK_T_GET_ID, 0, 4, false, &r, &used), VIRTIO_BLK_S_OK);
	cr_assert_eq(used, 5, "a short buffer gets a truncated ID");
	cr_assert_eq(memcmp(vdrv_ptr(&v, r.data), "root", 4), 0);
}

Test(blk, get_id_unset_is_unsupported)
{
	struct req r;

	start(false, NULL);
	cr_assert_eq(do_req(VIRTIO_BLK_T_GET_ID, 0, 20, false, &r, NULL), VIRTIO_BLK_S_UNSUPP);
}

Test(blk, header_split_over_descriptors_and_scattered_data)
{
	uint8_t expect[1024];

	start(false, NULL);
	uint32_t h[4] = { VIRTIO_BLK_T_IN, 0, 10, 0 };
	uint64_t h1 = vdrv_alloc(&v, 5), h2 = vdrv_alloc(&v, 11);
	memcpy(vdrv_ptr(&v, h1), h, 5);
	memcpy(vdrv_ptr(&v, h2), (uint8_t *)h + 5, 11);
	uint64_t d1 = vdrv_alloc(&v, 100), d2 = vdrv_alloc(&v, 924), st = vdrv_alloc(&v, 8);
	struct vdrv_buf b[5] = {
		{ .gpa = h1, .len = 5 },
		{ .gpa = h2, .len = 11 },
		{ .gpa = d1, .len = 100, .write = true },
		{ .gpa = d2, .len = 924, .write = true },
		{ .gpa = st, .len = 1, .write = true },
	};
	int head = vdrv_add(&v, 0, b, 5);
	vdrv_kick(&v, 0);
	struct req r = { .status = st };
	uint32_t used;
	cr_assert_eq(complete(&r, head, &used), VIRTIO_BLK_S_OK);
	cr_assert_eq(used, 1025);
	file_read(10 * 512, expect, sizeof(expect));
	cr_assert_eq(memcmp(vdrv_ptr(&v, d1), expect, 100), 0);
	cr_assert_eq(memcmp(vdrv_ptr(&v, d2), expect + 100, 924), 0);
}

Test(blk, status_byte_shares_the_last_data_buffer)
{
	start(false, NULL);
	uint32_t h[4] = { VIRTIO_BLK_T_IN, 0, 1, 0 };
	uint64_t hdr = vdrv_alloc(&v, 16), data = vdrv_alloc(&v, 513);
	memcpy(vdrv_ptr(&v, hdr), h, 16);
	struct vdrv_buf b[2] = { { .gpa = hdr, .len = 16 }, { .gpa = data, .len = 513, .write = true } };
	int head = vdrv_add(&v, 0, b, 2);
	vdrv_kick(&v, 0);
	struct req r = { .status = data + 512 };
	cr_assert_eq(complete(&r, head, NULL), VIRTIO_BLK_S_OK);
	uint8_t expect[512];
	file_read(512, expect, 512);
	cr_assert_eq(memcmp(vdrv_ptr(&v, data), expect, 512), 0);
}

static void expect_failed(void)
{
	/* The device fails asynchronously on the loop thread. */
	for (int i = 0; i < 1000 && !vdrv_needs_reset(&v); i++)
		usleep(1000);
	cr_assert(vdrv_needs_reset(&v));
	uint32_t len;
	cr_assert_lt(vdrv_used(&v, 0, &len, NULL), 0, "nothing completed");
}

Test(blk, chain_without_status_byte_fails_the_device)
{
	start(false, NULL);
	uint32_t h[4] = { VIRTIO_BLK_T_IN, 0, 0, 0 };
	int head = vdrv_add_outbuf(&v, 0, h, 16);
	cr_assert_geq(head, 0);
	vdrv_kick(&v, 0);
	expect_failed();
}

Test(blk, short_header_fails_the_device)
{
	start(false, NULL);
	uint64_t hdr = vdrv_alloc(&v, 8), st = vdrv_alloc(&v, 1);
	struct vdrv_buf b[2] = { { .gpa = hdr, .len = 8 }, { .gpa = st, .len = 1, .write = true } };
	vdrv_add(&v, 0, b, 2);
	vdrv_kick(&v, 0);
	expect_failed();
}

Test(blk, buffer_outside_ram_fails_the_device)
{
	start(false, NULL);
	uint64_t hdr = vdrv_alloc(&v, 16), st = vdrv_alloc(&v, 1);
	uint32_t h[4] = { VIRTIO_BLK_T_IN, 0, 0, 0 };
	memcpy(vdrv_ptr(&v, hdr), h, 16);
	struct vdrv_buf b[3] = {
		{ .gpa = hdr, .len = 16 },
		{ .gpa = VDRV_RAM_GPA + (4 << 20) - 256, .len = 512, .write = true },
		{ .gpa = st, .len = 1, .write = true },
	};
	vdrv_add(&v, 0, b, 3);
	vdrv_kick(&v, 0);
	expect_failed();
	/* and a reset brings it back */
	uint32_t st2 = vdrv_attach(&v, dev, ~0ULL, 1);
	cr_assert(st2 & VIRTIO_STATUS_DRIVER_OK);
	cr_assert_not(vdrv_needs_reset(&v));
}

Test(blk, many_requests_in_flight)
{
	struct req r[64];

	start(false, NULL);
	for (int i = 0; i < 64; i++)
		submit(&r[i], VIRTIO_BLK_T_IN, (uint64_t)i, 512, false);
	for (int i = 0; i < 64; i++) {
		uint32_t len;
		int got = vdrv_wait_used(&v, 0, &len, NULL, WAIT_MS);
		cr_assert_geq(got, 0, "request %d never completed", i);
		cr_assert_eq(len, 513);
	}
	for (int i = 0; i < 64; i++) {
		uint8_t expect[512];
		file_read((uint64_t)i * 512, expect, 512);
		cr_assert_eq(*(uint8_t *)vdrv_ptr(&v, r[i].status), 0);
		cr_assert_eq(memcmp(vdrv_ptr(&v, r[i].data), expect, 512), 0, "request %d", i);
	}
}

Test(blk, open_errors)
{
	struct virtio_blk_options o = { .path = "/nonexistent/disk.img" };
	cr_assert_null(virtio_blk_create(&v.mem, &o));
	cr_assert_eq(errno, ENOENT);
	o = (struct virtio_blk_options){ .path = path, .id = "123456789012345678901" };
	cr_assert_null(virtio_blk_create(&v.mem, &o));
	cr_assert_eq(errno, ENAMETOOLONG);
	o = (struct virtio_blk_options){ .path = "/tmp" };
	cr_assert_null(virtio_blk_create(&v.mem, &o));

	/* two VMs cannot write one image; readers may share it */
	o = (struct virtio_blk_options){ .path = path };
	struct virtio_dev *a = virtio_blk_create(&v.mem, &o);
	cr_assert_not_null(a);
	cr_assert_null(virtio_blk_create(&v.mem, &o));
	cr_assert_eq(errno, EWOULDBLOCK);
	virtio_dev_free(a);
	o.read_only = true;
	a = virtio_blk_create(&v.mem, &o);
	struct virtio_dev *b = virtio_blk_create(&v.mem, &o);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	virtio_dev_free(a);
	virtio_dev_free(b);
}
