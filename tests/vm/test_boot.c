/*
 * Booting the project's kernel to the test init: the guest sees as many
 * CPUs (with APIC IDs 0..n-1) and as much RAM as it was given, with RAM
 * below and above the 32-bit hole; the boot marker is recorded; virtio-rng
 * feeds the guest's hwrng; both vmlinux and bzImage boot.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "worker_run.h"

struct boot_case {
	const char *kernel;
	unsigned vcpus;
	unsigned mem_mib;
};

static void check_info(struct worker_run *w, const struct boot_case *c)
{
	char line[512], val[128];

	cr_assert(wr_smtest_line(w, "info", line, sizeof(line)), "no info line; console:\n%s",
		  wr_read_file(w->console));
	cr_assert(wr_field(line, "cpus", val, sizeof(val)));
	cr_assert_eq(atoi(val), (int)c->vcpus, "%s", line);
	char want[128] = "";
	for (unsigned i = 0; i < c->vcpus; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%u", i ? "," : "", i);
	cr_assert(wr_field(line, "apicids", val, sizeof(val)));
	cr_assert_str_eq(val, want, "%s", line);
	cr_assert(wr_field(line, "ram_kib", val, sizeof(val)));
	/* All of it but the legacy hole (0x9fc00-0x100000) and page 0 the kernel keeps. */
	long long kib = atoll(val), given = (long long)c->mem_mib * 1024;
	cr_assert_leq(kib, given, "%s", line);
	cr_assert_geq(kib, given - 1024, "%s", line);
}

static void boot_with(struct worker_run *w, const struct boot_case *c, const char *steps,
		      const char *const *more)
{
	char vcpus[16], mem[16], cmdline[256];
	char line[512];
	const char *args[48] = { "--vcpus", vcpus, "--memory", mem, "--cmdline", cmdline };
	int n = 6;

	snprintf(vcpus, sizeof(vcpus), "%u", c->vcpus);
	snprintf(mem, sizeof(mem), "%u", c->mem_mib);
	snprintf(cmdline, sizeof(cmdline), "quiet smtest=%s", steps);
	for (int i = 0; more && more[i] && n < 47; i++)
		args[n++] = more[i];
	args[n] = NULL;
	wr_start(w, wr_kernel(c->kernel), args);
	wr_wait(w);
	char *err = wr_read_file(w->stderr_path);
	cr_assert_eq(w->status, 0, "exit %d (signal %d); stderr:\n%s\nconsole:\n%s", w->status,
		     w->signal, err, wr_read_file(w->console));
	cr_assert_not_null(strstr(err, "vm ended: reboot"), "%s", err);
	cr_assert_not_null(strstr(err, "guest /init reached after"), "boot marker: %s", err);
	cr_assert(wr_smtest_line(w, "start", line, sizeof(line)));
	cr_assert_not_null(strstr(line, "marker=0"), "%s", line);
	check_info(w, c);
	if (strstr(steps, "rng")) {
		cr_assert(wr_smtest_line(w, "rng", line, sizeof(line)));
		cr_assert_not_null(strstr(line, "current=virtio_rng"), "%s", line);
		cr_assert_not_null(strstr(line, "bytes=64"), "%s", line);
	}
	free(err);
}

static void boot(const struct boot_case *c, const char *steps)
{
	struct worker_run w;

	wr_init(&w);
	boot_with(&w, c, steps, NULL);
	wr_cleanup(&w);
}

Test(boot, one_vcpu_smallest_memory)
{
	boot(&(struct boot_case){ "vmlinux", 1, 64 }, "info");
}

Test(boot, two_vcpus_and_rng)
{
	boot(&(struct boot_case){ "vmlinux", 2, 256 }, "info,rng");
}

Test(boot, four_vcpus_ram_above_4g)
{
	/* 4.5 GiB: 3 GiB below the hole and 1.5 GiB above 4 GiB. */
	boot(&(struct boot_case){ "vmlinux", 4, 4608 }, "info");
}

Test(boot, bzimage)
{
	boot(&(struct boot_case){ "bzImage", 1, 128 }, "info");
}

/*
 * Every device the worker can attach at once: the guest probes each
 * virtio-mmio window from the command line, in order (rng, 8 disks, net,
 * vsock, balloon), with the sandbox that allows their sockets.
 */
Test(boot, every_device_kind_and_eight_disks)
{
	struct worker_run w;
	char disks[8][160], vsock[128], line[512];
	const char *more[24];
	int n = 0;

	wr_init(&w);
	for (int i = 0; i < 8; i++) {
		snprintf(disks[i], sizeof(disks[i]), "%s/d%d.img", w.dir, i);
		FILE *f = fopen(disks[i], "w");
		cr_assert_not_null(f);
		cr_assert_eq(ftruncate(fileno(f), 1 << 20), 0);
		fclose(f);
		more[n++] = "--disk";
		more[n++] = disks[i];
	}
	snprintf(vsock, sizeof(vsock), "%s/vsock.sock", w.dir);
	more[n++] = "--net";
	more[n++] = "--vsock";
	more[n++] = vsock;
	more[n++] = "--balloon";
	more[n] = NULL;
	boot_with(&w, &(struct boot_case){ "vmlinux", 2, 256 }, "info,virtio", more);
	cr_assert(wr_smtest_line(&w, "virtio", line, sizeof(line)));
	cr_assert_str_eq(line, "SMTEST virtio ids=4,2,2,2,2,2,2,2,2,1,19,5");
	wr_cleanup(&w);
}
