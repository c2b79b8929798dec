/*
 * virtio-blk end to end: the guest writes a pattern to a read-write disk,
 * the VM reboots, the host finds exactly that pattern in the image, and a
 * second VM reads it back with the same hash. A read-only disk is
 * read-only in the guest and its image never changes; disk IDs show up as
 * the guest's serial numbers.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pattern.h"
#include "worker_run.h"

#define RW_BYTES (3 << 20)
#define RW_DISK (4 << 20)
#define RO_DISK (1 << 20)
#define SEED 0x5eed1234

static uint64_t file_hash(const char *path, uint64_t bytes)
{
	int fd = open(path, O_RDONLY);
	uint8_t buf[65536];
	uint64_t h = PATTERN_FNV_OFFSET, done = 0;

	cr_assert_geq(fd, 0);
	while (done < bytes) {
		size_t want = bytes - done < sizeof(buf) ? (size_t)(bytes - done) : sizeof(buf);
		ssize_t n = read(fd, buf, want);
		cr_assert_gt(n, 0);
		h = pattern_hash(h, buf, (size_t)n);
		done += (uint64_t)n;
	}
	close(fd);
	return h;
}

static void make_file(const char *path, uint64_t size, uint8_t fill)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint8_t buf[65536];

	memset(buf, fill, sizeof(buf));
	cr_assert_geq(fd, 0);
	for (uint64_t done = 0; done < size; done += sizeof(buf))
		cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
}

static void run(struct worker_run *w, const char *rw, const char *ro, const char *steps)
{
	char d1[256], d2[256], cmdline[512];
	snprintf(d1, sizeof(d1), "%s,id=data-disk", rw);
	snprintf(d2, sizeof(d2), "%s,ro,id=base", ro);
	snprintf(cmdline, sizeof(cmdline), "quiet smtest=%s", steps);
	const char *args[] = { "--disk", d1, "--disk", d2, "--cmdline", cmdline, NULL };

	wr_start(w, wr_kernel("vmlinux"), args);
	wr_wait(w);
	cr_assert_eq(w->status, 0, "exit %d; stderr:\n%s\nconsole:\n%s", w->status,
		     wr_read_file(w->stderr_path), wr_read_file(w->console));
}

Test(blk, pattern_survives_a_reboot_and_ro_stays_ro)
{
	struct worker_run w1, w2;
	char rw[128], ro[128], steps[256], line[512], val[64];

	wr_init(&w1);
	snprintf(rw, sizeof(rw), "%s/rw.img", w1.dir);
	snprintf(ro, sizeof(ro), "%s/ro.img", w1.dir);
	make_file(rw, RW_DISK, 0);
	make_file(ro, RO_DISK, 0xa5);
	uint64_t ro_before = file_hash(ro, RO_DISK);

	/* the pattern the guest must write, computed here independently */
	static uint8_t expect[RW_BYTES];
	pattern_fill(expect, RW_BYTES, SEED, 0);
	uint64_t want = pattern_hash(PATTERN_FNV_OFFSET, expect, RW_BYTES);

	snprintf(steps, sizeof(steps),
		 "blkwrite:/dev/vda:%u:%u,blkro:/dev/vdb,serial:vda,serial:vdb,reboot", SEED, RW_BYTES);
	run(&w1, rw, ro, steps);
	cr_assert(wr_smtest_line(&w1, "blkwrite", line, sizeof(line)), "console:\n%s",
		  wr_read_file(w1.console));
	cr_assert_not_null(strstr(line, "blkwrite ok"), "%s", line);
	cr_assert(wr_field(line, "hash", val, sizeof(val)));
	cr_assert_eq(strtoull(val, NULL, 16), want, "guest hashed what it wrote differently: %s", line);

	/* the image on the host holds exactly the pattern, and zeros after it */
	int fd = open(rw, O_RDONLY);
	static uint8_t got[RW_DISK];
	cr_assert_eq(read(fd, got, RW_DISK), RW_DISK);
	close(fd);
	cr_assert_eq(memcmp(got, expect, RW_BYTES), 0, "image differs from the pattern");
	for (size_t i = RW_BYTES; i < RW_DISK; i++)
		cr_assert_eq(got[i], 0, "byte %zu past the pattern changed", i);
	cr_assert_eq(file_hash(rw, RW_BYTES), want);

	cr_assert(wr_smtest_line(&w1, "blkro", line, sizeof(line)));
	/* Linux opens a read-only disk for writing, then refuses the write: EPERM */
	cr_assert_not_null(strstr(line, "write_errno=1 "), "EPERM expected: %s", line);
	cr_assert_not_null(strstr(line, "ro=1"), "%s", line);
	cr_assert_eq(file_hash(ro, RO_DISK), ro_before, "read-only image changed");

	cr_assert(wr_smtest_line(&w1, "serial name=vda", line, sizeof(line)));
	cr_assert_not_null(strstr(line, "serial=data-disk"), "%s", line);
	cr_assert(wr_smtest_line(&w1, "serial name=vdb", line, sizeof(line)));
	cr_assert_not_null(strstr(line, "serial=base"), "%s", line);

	/* a new VM reads back what the first one left */
	wr_init(&w2);
	snprintf(steps, sizeof(steps), "blkread:/dev/vda:%u,reboot", RW_BYTES);
	run(&w2, rw, ro, steps);
	cr_assert(wr_smtest_line(&w2, "blkread", line, sizeof(line)), "console:\n%s",
		  wr_read_file(w2.console));
	cr_assert(wr_field(line, "hash", val, sizeof(val)));
	cr_assert_eq(strtoull(val, NULL, 16), file_hash(rw, RW_BYTES), "%s", line);
	cr_assert(wr_field(line, "bytes", val, sizeof(val)));
	cr_assert_eq(atoi(val), RW_BYTES);

	wr_cleanup(&w2);
	wr_cleanup(&w1);
}
