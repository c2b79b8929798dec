/*
 * Worker-level snapshot figures (bench/snapshot_vmm runs it): one idle VM
 * (tests/vm/guest/snap_guest.c with smsnap=idle, 1 vCPU, --vsock) is
 * captured through the control socket, then restored SNAP_CLONES times
 * (default 10) with all clones kept running. Figures, one JSON line each:
 *
 *   snapshot_write_ms, snapshot_paused_ms   the `snapshot DIR` reply
 *   memory_file_mib, ram_mib, memory_file_ratio   allocated file size vs RAM
 *   state_file_kib
 *   restore_cpu_ms        p50/max over clones: the worker's CPU time (all
 *                         threads, user+sys) at its first KVM_RUN, i.e.
 *                         exec, restore work and setup (control `startup`)
 *   restore_wall_ms       p50: process start -> first KVM_RUN
 *   clone_rss/pss/uss_mib  mean over the idle clones (smaps_rollup)
 *   clone_guest_private_mib  mean private (copied) guest pages per clone
 *
 * Inside tests/nested the times are for an emulated CPU; CPU time of the
 * restore path and memory are the figures that carry over.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "../tests/vm/worker_proc.h"

#define MAX_CLONES 64
#define BOOT_WAIT 600000
#define IDLE_SETTLE_S 3

static const char *kvm_kind(void)
{
	return getenv("SUPERMACHINE_NESTED") ? "nested" : "native";
}

static void figure(const char *name, double value, const char *unit, const char *extra)
{
	printf("{\"bench\":\"snapshot_vmm\",\"figure\":\"%s\",\"value\":%.3f,\"unit\":\"%s\","
	       "\"kvm\":\"%s\"%s%s}\n",
	       name, value, unit, kvm_kind(), extra ? "," : "", extra ? extra : "");
	fflush(stdout);
}

static double field(const char *reply, const char *key)
{
	const char *p = strstr(reply, key);

	return p ? strtod(p + strlen(key), NULL) : -1;
}

/* KiB of a field of /proc/PID/smaps_rollup, -1 if absent. */
static long rollup_kib(pid_t pid, const char *name)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == ':')
			kib = strtol(line + strlen(name) + 1, NULL, 10);
	fclose(f);
	return kib;
}

/* Private bytes of the guest RAM mapping: the pages the clone copied. */
static long guest_private_kib(pid_t pid, const char *memfile)
{
	char path[64], line[512];
	long kib = 0;
	int in = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		/* A mapping's header line ("start-end perms offset dev inode path"). */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = strstr(line, memfile) != NULL;
			continue;
		}
		if (in && (!strncmp(line, "Private_Dirty:", 14) || !strncmp(line, "Private_Clean:", 14)))
			kib += strtol(line + 14, NULL, 10);
	}
	fclose(f);
	return kib;
}

static bool wait_startup(struct wproc *w, char *reply, size_t len)
{
	for (int i = 0; i < 6000; i++) {
		if (wproc_control(w, "startup", reply, len) && strncmp(reply, "ok", 2) == 0)
			return true;
		if (wproc_wait(w, 0) >= 0)
			return false;
		usleep(10 * 1000);
	}
	return false;
}

int main(int argc, char **argv)
{
	static const char *const extra[] = { "--vsock", NULL };
	static struct wproc clones[MAX_CLONES];
	char dir[] = "/tmp/sm-bench-snap-XXXXXX", req[128], reply[512], line[256], memfile[160];
	double cpu[MAX_CLONES], wall[MAX_CLONES];
	int n = getenv("SNAP_CLONES") ? atoi(getenv("SNAP_CLONES")) : 10;
	struct wproc orig;
	struct stat st;

	if (n < 1 || n > MAX_CLONES)
		n = 10;
	if (!mkdtemp(dir))
		return 1;
	if (!wproc_start(&orig, SM_SNAP_GUEST_INITRAMFS, "quiet smsnap=idle", 256, extra)) {
		fprintf(stderr, "snapshot_vmm: no kernel (SUPERMACHINE_KERNEL_DIR)\n");
		return 1;
	}
	if (!wproc_wait_line(&orig, "SMTEST snap ready", line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(&orig);
		return 1;
	}
	/* The same figure for the boot, as the peer of restore_cpu_ms. */
	if (wproc_control(&orig, "startup", reply, sizeof(reply)) && strncmp(reply, "ok", 2) == 0)
		figure("boot_cpu_to_first_run_ms", field(reply, "cpu_to_kvm_run_ms="), "ms", NULL);
	sleep(IDLE_SETTLE_S);
	snprintf(req, sizeof(req), "snapshot %s", dir);
	if (!wproc_control(&orig, req, reply, sizeof(reply)) || strncmp(reply, "ok", 2) != 0) {
		fprintf(stderr, "snapshot_vmm: %s\n", reply);
		wproc_dump(&orig);
		return 1;
	}
	wproc_stop(&orig);
	double ram = field(reply, "ram_bytes=") / (1 << 20);
	double file = field(reply, "memory_bytes=") / (1 << 20);
	figure("snapshot_write_ms", field(reply, "total_ms="), "ms", NULL);
	figure("snapshot_paused_ms", field(reply, "paused_ms="), "ms", NULL);
	figure("state_file_kib", field(reply, "state_bytes=") / 1024, "KiB", NULL);
	figure("memory_file_mib", file, "MiB", NULL);
	figure("ram_mib", ram, "MiB", NULL);
	figure("memory_file_ratio", file / ram, "ratio", NULL);

	snprintf(memfile, sizeof(memfile), "%s/memory", dir);
	for (int i = 0; i < n; i++) {
		if (!wproc_restore(&clones[i], dir, extra) ||
		    !wait_startup(&clones[i], reply, sizeof(reply))) {
			fprintf(stderr, "snapshot_vmm: clone %d did not start\n", i);
			wproc_dump(&clones[i]);
			return 1;
		}
		cpu[i] = field(reply, "cpu_to_kvm_run_ms=");
		wall[i] = field(reply, "process_to_kvm_run_ms=");
	}
	/* The worker's own breakdown of the first clone's restore, for the reader. */
	FILE *lf = fopen(clones[0].log, "r");
	while (lf && fgets(line, sizeof(line), lf))
		if (strstr(line, "restore: cpu ms:"))
			fprintf(stderr, "snapshot_vmm: clone 0 %s", line);
	if (lf)
		fclose(lf);
	sleep(IDLE_SETTLE_S);
	double rss = 0, pss = 0, uss = 0, priv = 0;
	for (int i = 0; i < n; i++) {
		pid_t p = clones[i].pid;
		rss += (double)rollup_kib(p, "Rss");
		pss += (double)rollup_kib(p, "Pss");
		uss += (double)(rollup_kib(p, "Private_Clean") + rollup_kib(p, "Private_Dirty"));
		priv += (double)guest_private_kib(p, memfile);
	}
	char ctx[64];
	snprintf(ctx, sizeof(ctx), "\"clones\":%d", n);
	qsort(cpu, (size_t)n, sizeof(double), bench_cmp_double);
	qsort(wall, (size_t)n, sizeof(double), bench_cmp_double);
	figure("restore_cpu_ms_p50", cpu[n / 2], "ms", ctx);
	figure("restore_cpu_ms_max", cpu[n - 1], "ms", ctx);
	figure("restore_wall_ms_p50", wall[n / 2], "ms", ctx);
	figure("clone_rss_mib", rss / n / 1024, "MiB", ctx);
	figure("clone_pss_mib", pss / n / 1024, "MiB", ctx);
	figure("clone_uss_mib", uss / n / 1024, "MiB", ctx);
	figure("clone_guest_private_mib", priv / n / 1024, "MiB", ctx);
	for (int i = 0; i < n; i++)
		wproc_stop(&clones[i]);
	if (stat(memfile, &st) == 0) {
		unlink(memfile);
		snprintf(memfile, sizeof(memfile), "%s/state", dir);
		unlink(memfile);
	}
	rmdir(dir);
	(void)argc;
	(void)argv;
	return 0;
}
