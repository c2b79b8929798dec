/*
 * Performance gates (suite performance): figures that do not depend on
 * how fast the machine is, each failing when it passes a bound written
 * beside it. Times are never gated here (nested KVM makes them say little;
 * bench/ reports them): these count VM exits per operation and the
 * worker's private memory.
 *
 *   exits_per_exec           VM exits to user space per exec of `true` in a booted VM
 *   exits_per_restore        VM exits of a restored worker up to its first exec's end
 *   boot_memory              the worker's anonymous memory after a boot and one exec
 *   restore_memory           a restored worker's Private_Dirty and Pss after one exec
 *
 * Each figure goes to stderr as "perf: NAME VALUE (bound BOUND)" so a run
 * shows how close it came. The figures are read the way the benchmarks
 * read them (bench/bench_util.c for memory, the control socket's "stats"
 * for exits, as bench/exec does).
 *
 * How the bounds were chosen: from the figures bench/README.md lists
 * ("Figures so far", inside tests/nested), with about three times the
 * measured value as headroom, so only a real regression (a device that
 * starts to exit per byte, a leak per exec, a restore that copies all of
 * RAM) trips them, never the noise of one run. A sanitizer build (the
 * build-test the vm suite runs in) carries ASan's shadow memory and
 * quarantine in every worker: the memory bounds for it are separate and
 * wider. Tighten a bound only after measuring in both builds.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <supermachine.h>

#include "../../bench/bench_util.h"
#include "../fixtures/oci_fixture.h"
#include "base/guest_mem.h" /* GUEST_MEM_ENV */
#include "lib/vm.h" /* the worker's pid and its control socket */
#include "proto/worker.h"

#define SNAP "perf"
#define EXEC_TIMEOUT_MS 120000 /* a hang guard, not a gate */
#define WARM_EXECS 10          /* before counting: the agent's and page cache's first paths */
#define EXECS 100
#define RESTORES 5

/* bench/README.md: 12.1 exits per exec of `true`. */
#define MAX_EXITS_PER_EXEC 40.0
/* bench/README.md: 56 exits per restore + first exec (p50 of 200); the median of RESTORES here. */
#define MAX_EXITS_PER_RESTORE 200.0

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/*
 * Memory, KiB. bench/README.md: a booted worker holds 2.8 MiB beyond the
 * guest's RAM; an idle restored clone after one exec 3.6 MiB USS and 3.7
 * MiB PSS. Without sanitizers: 16 MiB for the booted worker's own memory,
 * 16 MiB Private_Dirty and 32 MiB Pss for a clone. With ASan each worker
 * also holds shadow pages for its heap and up to its quarantine of freed
 * blocks (tens of MiB in a short run): 256 MiB each, a gate against
 * runaway growth only.
 */
#define MAX_BOOT_ANON_KIB (SANITIZED ? 256 * 1024 : 16 * 1024)
#define MAX_RESTORE_PRIVATE_DIRTY_KIB (SANITIZED ? 256 * 1024 : 16 * 1024)
#define MAX_RESTORE_PSS_KIB (SANITIZED ? 288 * 1024 : 32 * 1024)

static char IMAGE[4200];

static void setup(void)
{
	fx_vm_store("perftest", IMAGE, sizeof(IMAGE));
}

TestSuite(perf, .init = setup, .timeout = 600);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("perftest");
}

/* Fails the test with err's text when !ok, freeing err first (no leak report on a failure). */
static void assert_ok(bool ok, sm_error **err, const char *what)
{
	char msg[2048];

	if (ok)
		return;
	snprintf(msg, sizeof(msg), "%s: %s", what, *err ? sm_error_string(*err) : "?");
	sm_error_free(*err);
	*err = NULL;
	cr_assert_fail("%s", msg);
}

/* One `true` in vm, to completion; fails the test unless it exited 0. */
static void exec_true(sm_vm *vm)
{
	sm_exec *x = sm_exec_new(vm);
	sm_error *err = NULL;
	sm_outcome o = { 0 };

	sm_exec_argv(x, (const char *[]){ "true", NULL });
	sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS);
	int rc = sm_exec_output(x, &o, &err);
	int status = o.status;
	sm_outcome_free(&o);
	sm_exec_free(x);
	assert_ok(rc == 0, &err, "exec true");
	cr_assert_eq(status, 0, "true exited %d", status);
}

/* The worker's count of VM exits to user space so far (control "stats", field exits). */
static uint64_t vm_exits(sm_vm *vm)
{
	char reply[WORKER_CTL_LINE_MAX];
	sm_error *err = NULL;
	uint64_t exits = 0;

	assert_ok(vm_control(vm, "stats", reply, sizeof(reply), &err) == 0, &err, "control stats");
	cr_assert_eq(worker_reply_u64(reply, "exits", &exits), 0, "no exits=N in the stats reply '%s'", reply);
	return exits;
}

/* Logs a figure and fails the test when it is past its bound. */
static void gate(const char *name, double value, double bound, const char *unit)
{
	fprintf(stderr, "perf: %s %.1f %s (bound %.1f)\n", name, value, unit, bound);
	cr_expect_leq(value, bound, "%s is %.1f %s, past its bound %.1f (tests/vm/test_perf.c says how it was chosen)",
		      name, value, unit, bound);
}

static sm_vm *boot(void)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_start(IMAGE, NULL, &err);

	assert_ok(vm != NULL, &err, "start");
	return vm;
}

Test(perf, exits_per_exec)
{
	sm_vm *vm = boot();

	for (int i = 0; i < WARM_EXECS; i++)
		exec_true(vm);
	uint64_t e0 = vm_exits(vm);
	cr_assert_gt(e0, 0, "a booted VM reports no exits: the counter is broken");
	for (int i = 0; i < EXECS; i++)
		exec_true(vm);
	uint64_t e1 = vm_exits(vm);
	cr_assert_geq(e1, e0);
	gate("exits_per_exec", (double)(e1 - e0) / EXECS, MAX_EXITS_PER_EXEC, "exits");
	sm_vm_free(vm);
}

Test(perf, boot_memory)
{
	struct bench_mem m;

	/* Anonymous guest RAM (anon-thp) would count in Pss_Anon: this gate is
	 * of the worker's own memory, so guest RAM is the memfd here
	 * (Criterion runs each test in a process of its own). */
	setenv(GUEST_MEM_ENV, "memfd", 1);
	sm_vm *vm = boot();

	exec_true(vm);
	bench_proc_mem(vm->pid, &m);
	/* Guest RAM is a memfd only this worker maps: smaps counts it as
	 * private, so Private_Dirty would be the guest's. Pss_Anon is the
	 * worker's own (heap, stacks, slirp, the sanitizer's shadow). */
	cr_assert_gt(m.rss, 0, "no smaps_rollup for worker %d", (int)vm->pid);
	cr_assert_geq(m.pss_anon, 0, "this kernel's smaps_rollup has no Pss_Anon (Linux 5.8 and later)");
	gate("boot_anon_kib", m.pss_anon, MAX_BOOT_ANON_KIB, "KiB");
	sm_vm_free(vm);
}

static void bake(void)
{
	sm_error *err = NULL;

	assert_ok(sm_bake(IMAGE, SNAP, NULL, &err) >= 0, &err, "bake");
}

/* Restores SNAP and runs one `true`; the clone, still running. */
static sm_vm *restore_and_exec(void)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_restore(SNAP, NULL, &err);

	assert_ok(vm != NULL, &err, "restore");
	exec_true(vm);
	return vm;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return v[n / 2];
}

Test(perf, exits_per_restore)
{
	double exits[RESTORES];

	bake();
	for (int i = 0; i < RESTORES; i++) {
		sm_vm *vm = restore_and_exec();
		/* a fresh worker: its counter started at the restore */
		exits[i] = (double)vm_exits(vm);
		cr_assert_gt(exits[i], 0, "a restored VM reports no exits: the counter is broken");
		sm_vm_free(vm);
	}
	gate("exits_per_restore", median(exits, RESTORES), MAX_EXITS_PER_RESTORE, "exits");
}

Test(perf, restore_memory)
{
	double dirty[RESTORES], pss[RESTORES];

	bake();
	for (int i = 0; i < RESTORES; i++) {
		struct bench_mem m;
		sm_vm *vm = restore_and_exec();

		/* The RAM mapping is private (copy-on-write of the memory file):
		 * Private_Dirty is what this clone copied plus the worker's own
		 * memory; Pss adds its share of the file's page cache. */
		bench_proc_mem(vm->pid, &m);
		cr_assert_gt(m.rss, 0, "no smaps_rollup for worker %d", (int)vm->pid);
		dirty[i] = m.private_dirty;
		pss[i] = m.pss;
		sm_vm_free(vm);
	}
	gate("restore_private_dirty_kib", median(dirty, RESTORES), MAX_RESTORE_PRIVATE_DIRTY_KIB, "KiB");
	gate("restore_pss_kib", median(pss, RESTORES), MAX_RESTORE_PSS_KIB, "KiB");
}
