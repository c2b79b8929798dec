/*
 * virtio-balloon over a synthetic driver: inflated pages really leave the
 * host (memfd blocks and RSS drop, measured), private snapshot mappings
 * keep their file intact, bad pfns are ignored, the target and the stats
 * queue work end to end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio/balloon.h"
#include "virtio_driver.h"

#define INFLATEQ 0
#define DEFLATEQ 1
#define STATSQ 2
#define T_WAIT 5000
#define RAM (64ull << 20)
#define BALLOON_BYTES (8ull << 20)
#define NPAGES (BALLOON_BYTES / 4096)

static struct vdrv d;
static struct virtio_dev *dev;

static void up(void)
{
	uint32_t st;

	vdrv_loop_start(&d);
	dev = virtio_balloon_create(&d.mem);
	cr_assert_not_null(dev);
	st = vdrv_attach(&d, dev, (1ull << 1) | (1ull << 2) | (1ull << VIRTIO_F_EVENT_IDX), 3);
	cr_assert(st & VIRTIO_STATUS_DRIVER_OK);
}

static void setup_memfd(void)
{
	vdrv_mem_init(&d, RAM, true);
	up();
}

static void teardown(void)
{
	vdrv_loop_stop(&d);
	vdrv_detach(&d);
	virtio_dev_free(dev);
	vdrv_fini(&d);
}

static struct virtio_balloon_stats bstats(void)
{
	struct virtio_balloon_stats s;

	virtio_balloon_get_stats(dev, &s);
	return s;
}

/* kB of field ("Rss:", "Private_Dirty:") in the smaps entry of the mapping at addr. */
static long smaps_kb(const void *addr, const char *field)
{
	char line[256], want[32];
	FILE *f = fopen("/proc/self/smaps", "r");
	bool in = false;
	long kb = -1;

	cr_assert_not_null(f);
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strncmp(line, want, strlen(want)) == 0) {
			in = true;
			continue;
		}
		if (in && strncmp(line, field, strlen(field)) == 0) {
			kb = strtol(line + strlen(field), NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

/* Queues the pfns of [gpa, gpa+len), 256 per buffer as Linux does; returns the buffer count. */
static unsigned queue_pfns(unsigned q, uint64_t gpa, uint64_t len)
{
	uint32_t pfns[256];
	unsigned bufs = 0;

	for (uint64_t off = 0; off < len;) {
		unsigned n = 0;
		for (; n < 256 && off < len; n++, off += 4096)
			pfns[n] = (uint32_t)((gpa + off) >> 12);
		cr_assert_geq(vdrv_add_outbuf(&d, q, pfns, n * 4), 0);
		bufs++;
	}
	return bufs;
}

static void kick_and_wait(unsigned q, unsigned bufs)
{
	uint32_t ulen;

	vdrv_kick(&d, q);
	for (unsigned i = 0; i < bufs; i++)
		cr_assert_geq(vdrv_wait_used(&d, q, &ulen, NULL, T_WAIT), 0, "pfn buffer %u not returned", i);
}

static void send_pfns(unsigned q, uint64_t gpa, uint64_t len)
{
	kick_and_wait(q, queue_pfns(q, gpa, len));
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

TestSuite(balloon, .init = setup_memfd, .fini = teardown, .timeout = 60);

Test(balloon, offers_stats_and_deflate_on_oom)
{
	cr_assert_eq(vdrv_reg_read(&d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BALLOON);
	cr_assert(d.features & (1ull << 1), "STATS_VQ not offered");
	cr_assert(d.features & (1ull << 2), "DEFLATE_ON_OOM not offered");
}

Test(balloon, inflate_punches_pages_out_of_the_memfd)
{
	uint64_t gpa = vdrv_alloc_pages(&d, BALLOON_BYTES);
	uint8_t *hva = vdrv_ptr(&d, gpa);
	struct stat before, after;
	long rss_before, rss_after;

	unsigned bufs = queue_pfns(INFLATEQ, gpa, BALLOON_BYTES); /* touches its own pages first */

	memset(hva, 0xab, BALLOON_BYTES);
	fstat(d.memfd, &before);
	rss_before = smaps_kb(d.ram, "Rss:");
	kick_and_wait(INFLATEQ, bufs);
	fstat(d.memfd, &after);
	rss_after = smaps_kb(d.ram, "Rss:");
	cr_log_info("memfd %lld -> %lld KiB, mapping RSS %ld -> %ld KiB", (long long)before.st_blocks / 2,
		    (long long)after.st_blocks / 2, rss_before, rss_after);
	cr_assert_geq((before.st_blocks - after.st_blocks) * 512, (long long)BALLOON_BYTES,
		      "memfd still holds the ballooned pages (%lld -> %lld blocks)",
		      (long long)before.st_blocks, (long long)after.st_blocks);
	cr_assert_geq(rss_before - rss_after, (long)(BALLOON_BYTES / 1024));
	cr_assert_eq(bstats().inflated_pages, NPAGES);
	cr_assert_eq(bstats().released_bytes, BALLOON_BYTES);
	cr_assert(all_zero(hva, BALLOON_BYTES), "a released page kept its contents");
}

/* Why not plain MADV_DONTNEED on the shared memfd: it frees nothing. */
Test(balloon, madv_dontneed_alone_would_not_free_memfd_pages)
{
	uint64_t gpa = vdrv_alloc_pages(&d, BALLOON_BYTES);
	uint8_t *hva = vdrv_ptr(&d, gpa);
	struct stat before, after;

	memset(hva, 0xcd, BALLOON_BYTES);
	fstat(d.memfd, &before);
	cr_assert_eq(madvise(hva, BALLOON_BYTES, MADV_DONTNEED), 0);
	fstat(d.memfd, &after);
	cr_assert_eq(after.st_blocks, before.st_blocks);
	cr_assert_eq(hva[0], 0xcd, "the page cache copy is still there");
}

Test(balloon, deflate_counts_and_keeps_memory)
{
	uint64_t gpa = vdrv_alloc_pages(&d, 16 * 4096);

	memset(vdrv_ptr(&d, gpa), 1, 16 * 4096);
	send_pfns(DEFLATEQ, gpa, 16 * 4096);
	cr_assert_eq(bstats().deflated_pages, 16);
	cr_assert_eq(bstats().released_bytes, 0);
	cr_assert_eq(*(uint8_t *)vdrv_ptr(&d, gpa), 1);
}

Test(balloon, pfns_outside_ram_are_ignored)
{
	uint32_t pfns[4] = { 0, 0xffffffff, (uint32_t)((VDRV_RAM_GPA + RAM) >> 12), 0 };
	uint64_t good = vdrv_alloc_pages(&d, 4096);
	uint8_t odd[6];
	uint32_t len;

	pfns[3] = (uint32_t)(good >> 12);
	cr_assert_geq(vdrv_add_outbuf(&d, INFLATEQ, pfns, sizeof(pfns)), 0);
	/* A buffer that is not whole pfns: its whole pfn counts, the tail is ignored. */
	memcpy(odd, &pfns[3], 4);
	cr_assert_geq(vdrv_add_outbuf(&d, INFLATEQ, odd, sizeof(odd)), 0);
	vdrv_kick(&d, INFLATEQ);
	cr_assert_geq(vdrv_wait_used(&d, INFLATEQ, &len, NULL, T_WAIT), 0);
	cr_assert_geq(vdrv_wait_used(&d, INFLATEQ, &len, NULL, T_WAIT), 0);
	cr_assert_eq(bstats().bad_pfns, 3);
	cr_assert_eq(bstats().inflated_pages, 2);
	cr_assert_not(vdrv_needs_reset(&d));
}

Test(balloon, target_change_raises_config_interrupt)
{
	uint32_t gen = vdrv_reg_read(&d, VIRTIO_MMIO_CONFIG_GENERATION), pages = 0, actual = 77;

	vdrv_irqs(&d);
	cr_assert_eq(virtio_balloon_set_target(dev, 1000), 0);
	virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, &pages, 4);
	cr_assert_eq(pages, 1000);
	cr_assert_neq(vdrv_reg_read(&d, VIRTIO_MMIO_CONFIG_GENERATION), gen);
	cr_assert(vdrv_reg_read(&d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_INT_CONFIG);
	cr_assert_gt(vdrv_irqs(&d), 0, "no interrupt reached the guest");
	cr_assert_eq(virtio_balloon_set_target(dev, (uint32_t)(RAM / 4096) + 1), -EINVAL);
	/* The driver reports what it holds; it cannot move the target. */
	virtio_mmio_write(dev, VIRTIO_MMIO_CONFIG + 4, &actual, 4);
	virtio_mmio_write(dev, VIRTIO_MMIO_CONFIG, &actual, 4);
	virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG, &pages, 4);
	cr_assert_eq(pages, 1000);
	cr_assert_eq(bstats().actual_pages, 77);
	cr_assert_eq(bstats().target_pages, 1000);
}

struct stat_entry {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

static bool wait_reports(uint64_t n)
{
	for (int i = 0; i < T_WAIT / 5; i++) {
		if (bstats().guest_reports >= n)
			return true;
		usleep(5000);
	}
	return false;
}

Test(balloon, stats_buffer_round_trip)
{
	struct stat_entry st[3] = { { 4, 123 }, { 5, 456 }, { 999, 1 } };
	uint64_t gpa = vdrv_alloc(&d, sizeof(st));
	struct vdrv_buf b = { .gpa = gpa, .len = sizeof(st) };
	uint32_t len;

	cr_assert_eq(virtio_balloon_request_stats(dev), -EAGAIN, "no buffer lent yet");
	memcpy(vdrv_ptr(&d, gpa), st, sizeof(st));
	cr_assert_geq(vdrv_add(&d, STATSQ, &b, 1), 0);
	vdrv_kick(&d, STATSQ);
	cr_assert(wait_reports(1));
	cr_assert_eq(bstats().guest[BALLOON_S_MEMFREE], 123);
	cr_assert_eq(bstats().guest[BALLOON_S_MEMTOT], 456);
	cr_assert_eq(bstats().guest_valid, (1u << BALLOON_S_MEMFREE) | (1u << BALLOON_S_MEMTOT));
	/* Ask for fresh numbers: the buffer comes back, the guest refills it. */
	cr_assert_eq(virtio_balloon_request_stats(dev), 0);
	cr_assert_geq(vdrv_wait_used(&d, STATSQ, &len, NULL, T_WAIT), 0);
	st[0].val = 789;
	memcpy(vdrv_ptr(&d, gpa), st, sizeof(st));
	cr_assert_geq(vdrv_add(&d, STATSQ, &b, 1), 0);
	vdrv_kick(&d, STATSQ);
	cr_assert(wait_reports(2));
	cr_assert_eq(bstats().guest[BALLOON_S_MEMFREE], 789);
}

Test(balloon, descriptor_outside_ram_fails_device)
{
	uint16_t i = d.q[INFLATEQ].free_head;

	vdrv_set_desc(&d, INFLATEQ, i, 1ull << 40, 4096, 0, 0);
	vdrv_publish(&d, INFLATEQ, i);
	vdrv_reg_write(&d, VIRTIO_MMIO_QUEUE_NOTIFY, INFLATEQ);
	for (int k = 0; k < T_WAIT / 5 && !vdrv_needs_reset(&d); k++)
		usleep(5000);
	cr_assert(vdrv_needs_reset(&d));
}

/* ---- restored VM: RAM is a MAP_PRIVATE mapping of the snapshot's memory file ---- */

static int snapshot_fd;

static void setup_private(void)
{
	char path[] = "/tmp/sm-balloon-XXXXXX";
	uint8_t page[4096];

	snapshot_fd = mkstemp(path);
	cr_assert_geq(snapshot_fd, 0);
	unlink(path);
	memset(page, 0x5a, sizeof(page));
	for (uint64_t off = 0; off < RAM; off += sizeof(page))
		cr_assert_eq(pwrite(snapshot_fd, page, sizeof(page), (off_t)off), (ssize_t)sizeof(page));
	vdrv_mem_init_private(&d, dup(snapshot_fd), RAM);
	up();
}

static void teardown_private(void)
{
	teardown();
	close(snapshot_fd);
}

TestSuite(balloon_restored, .init = setup_private, .fini = teardown_private, .timeout = 60);

Test(balloon_restored, inflate_drops_private_copies_and_spares_the_file)
{
	uint64_t gpa = vdrv_alloc_pages(&d, BALLOON_BYTES);
	uint8_t *hva = vdrv_ptr(&d, gpa);
	uint64_t file_off = gpa - VDRV_RAM_GPA;
	long dirty_before, dirty_after;
	uint8_t page[4096];

	unsigned bufs = queue_pfns(INFLATEQ, gpa, BALLOON_BYTES);

	memset(hva, 0x11, BALLOON_BYTES); /* the clone writes: private copies */
	dirty_before = smaps_kb(d.ram, "Private_Dirty:");
	kick_and_wait(INFLATEQ, bufs);
	dirty_after = smaps_kb(d.ram, "Private_Dirty:");
	cr_log_info("private dirty %ld -> %ld KiB", dirty_before, dirty_after);
	cr_assert_geq(dirty_before - dirty_after, (long)(BALLOON_BYTES / 1024),
		      "private copies not dropped (%ld -> %ld KiB)", dirty_before, dirty_after);
	cr_assert_eq(bstats().release_errors, 0);
	/* The snapshot file is shared by every clone: never punched, never changed. */
	cr_assert_eq(pread(snapshot_fd, page, sizeof(page), (off_t)file_off), (ssize_t)sizeof(page));
	cr_assert_eq(page[0], 0x5a);
	cr_assert_eq(hva[0], 0x5a, "a dropped page reads back as the snapshot's");
}

Test(balloon, control_command)
{
	char reply[512];

	virtio_balloon_control(dev, "1000", reply, sizeof(reply));
	cr_assert_str_eq(reply, "ok target=1000");
	virtio_balloon_control(dev, "", reply, sizeof(reply));
	cr_assert_eq(strncmp(reply, "ok target=1000 actual=0 ", 24), 0, "%s", reply);
	virtio_balloon_control(dev, "stats", reply, sizeof(reply));
	cr_assert_eq(strncmp(reply, "ok target=1000", 14), 0, "%s", reply);
	static const char *bad[] = { "-1", "12x", "99999999999", " 5", "abc" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		virtio_balloon_control(dev, bad[i], reply, sizeof(reply));
		cr_assert_eq(strncmp(reply, "error", 5), 0, "'%s' accepted: %s", bad[i], reply);
	}
	virtio_balloon_control(dev, "4294967295", reply, sizeof(reply));
	cr_assert_eq(strncmp(reply, "error", 5), 0, "a target beyond RAM was accepted");
}

Test(balloon, state_survives_a_save_and_load)
{
	struct stat_entry st[1] = { { 4, 1 } };
	struct virtio_balloon_state s, bad;
	uint32_t len;

	cr_assert_geq(vdrv_add_outbuf(&d, STATSQ, st, sizeof(st)), 0);
	vdrv_kick(&d, STATSQ);
	cr_assert(wait_reports(1));
	cr_assert_eq(virtio_balloon_set_target(dev, 300), 0);
	virtio_balloon_save_state(dev, &s);
	cr_assert_eq(s.num_pages, 300);
	cr_assert(s.stats_held);
	bad = s;
	bad.stats_head = VDRV_QSIZE;
	cr_assert_eq(virtio_balloon_load_state(dev, &bad), -EINVAL);
	bad = s;
	bad.num_pages = (uint32_t)(RAM / 4096) + 1;
	cr_assert_eq(virtio_balloon_load_state(dev, &bad), -EINVAL);
	cr_assert_eq(virtio_balloon_set_target(dev, 0), 0);
	cr_assert_eq(virtio_balloon_load_state(dev, &s), 0);
	cr_assert_eq(bstats().target_pages, 300);
	/* The held stats buffer is still ours to give back. */
	cr_assert_eq(virtio_balloon_request_stats(dev), 0);
	cr_assert_geq(vdrv_wait_used(&d, STATSQ, &len, NULL, T_WAIT), 0);
}

TestSuite(balloon_probe, .timeout = 60);

/* Linux lends its first stats buffer and kicks before DRIVER_OK. */
Test(balloon_probe, stats_buffer_lent_before_driver_ok_is_taken)
{
	struct stat_entry st[1] = { { 5, 4242 } };

	vdrv_mem_init(&d, RAM, true);
	vdrv_loop_start(&d);
	dev = virtio_balloon_create(&d.mem);
	vdrv_attach_begin(&d, dev, (1ull << 1) | (1ull << VIRTIO_F_EVENT_IDX), 3);
	cr_assert_geq(vdrv_add_outbuf(&d, STATSQ, st, sizeof(st)), 0);
	vdrv_kick(&d, STATSQ);
	cr_assert(vdrv_attach_finish(&d) & VIRTIO_STATUS_DRIVER_OK);
	cr_assert(wait_reports(1), "the early stats buffer was never taken");
	cr_assert_eq(bstats().guest[BALLOON_S_MEMTOT], 4242);
	teardown();
}
