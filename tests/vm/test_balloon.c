/*
 * virtio-balloon against a real Linux guest (tests/vm/guest/balloon_guest.c):
 * the guest touches most of its RAM and frees it; raising the balloon
 * target makes its driver inflate, and the worker's resident memory drops;
 * lowering it deflates.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker_proc.h"

#define BOOT_WAIT 600000 /* hang guard: nested KVM under TCG, maybe beside other VMs */
#define MEM_MIB 256
#define TOUCH_MIB 192
#define BALLOON_MIB 128

/* Polls "balloon" until actual reaches want (pages); the last reply in reply. */
static bool wait_actual(struct wproc *w, unsigned want, char *reply, size_t len)
{
	for (int i = 0; i < 1200; i++) {
		const char *a;
		if (wproc_control(w, "balloon", reply, len) && (a = strstr(reply, " actual=")) &&
		    strtoul(a + 8, NULL, 10) == want)
			return true;
		usleep(250 * 1000);
	}
	return false;
}

Test(vm_balloon, inflating_drops_worker_rss, .timeout = 900)
{
	static const char *const extra[] = { "--balloon", NULL };
	char line[256], reply[512], req[32];
	unsigned pages = BALLOON_MIB * 256;
	long rss_before, rss_after, shmem_before, shmem_after;
	struct wproc w;

	if (!wproc_start(&w, SM_BALLOON_GUEST_INITRAMFS, "quiet smballoon=192", MEM_MIB, extra))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	if (!wproc_wait_line(&w, "SMTEST balloon start", line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(&w);
		cr_assert_fail("the guest never started");
	}
	if (!wproc_wait_line(&w, "SMTEST balloon touched=", line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(&w);
		cr_assert_fail("the guest never finished touching its memory");
	}
	rss_before = wproc_status_kib(&w, "VmRSS:");
	shmem_before = wproc_status_kib(&w, "RssShmem:");
	snprintf(req, sizeof(req), "balloon %u", pages);
	cr_assert(wproc_control(&w, req, reply, sizeof(reply)));
	cr_assert_str_eq(reply, "ok target=32768");
	if (!wait_actual(&w, pages, reply, sizeof(reply))) {
		wproc_dump(&w);
		cr_assert_fail("the guest never inflated to the target: %s", reply);
	}
	rss_after = wproc_status_kib(&w, "VmRSS:");
	shmem_after = wproc_status_kib(&w, "RssShmem:");
	cr_log_info("worker RSS %ld -> %ld KiB (guest RAM in it %ld -> %ld KiB) after ballooning %d MiB: %s",
		    rss_before, rss_after, shmem_before, shmem_after, BALLOON_MIB, reply);
	/* The guest chooses which free pages to give; most were touched, so
	 * most of the balloon must come off the worker's RSS. */
	cr_assert_geq(rss_before - rss_after, BALLOON_MIB * 1024 / 2,
		      "RSS fell only %ld KiB for a %d MiB balloon", rss_before - rss_after, BALLOON_MIB);
	/* Each "balloon" query asks the guest for a fresh report, which comes later. */
	for (int i = 0; i < 240 && strstr(reply, " guest_reports=0 "); i++) {
		usleep(250 * 1000);
		cr_assert(wproc_control(&w, "balloon", reply, sizeof(reply)));
	}
	cr_assert_null(strstr(reply, " guest_reports=0 "), "no stats report from the guest in 60 s: %s", reply);

	/* Give it all back. */
	cr_assert(wproc_control(&w, "balloon 0", reply, sizeof(reply)));
	if (!wait_actual(&w, 0, reply, sizeof(reply))) {
		wproc_dump(&w);
		cr_assert_fail("the guest never deflated: %s", reply);
	}
	wproc_stop(&w);
}
