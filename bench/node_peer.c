/*
 * The C side of bench/node: the calls bench/node.mjs makes through
 * @supermachine/core, made here on the C API in the same loops, so the
 * difference per call is the binding's. Figures, one JSON line each
 * (bench "node"), all ending in _c:
 *
 *   node_peer_bench calls ROUNDS   (no VM: any store, $SUPERMACHINE_HOME)
 *     version_c            sm_version(), us/call (the binding: sm.version(), sync)
 *     snapshots_c          sm_snapshot_list_load + _free, us/call (sm.snapshots(), async)
 *     open_missing_c       sm_image_open of a snapshot that does not exist, the
 *                          error freed, us/call (sm.Image.fromSnapshot rejected, async)
 *
 *   node_peer_bench vm SNAPSHOT ROUNDS CYCLES   (needs /dev/kvm: a pool over SNAPSHOT,
 *                          min = max = 1, keep_state_on_release, as bench/node.mjs opens it)
 *     pool_stats_c         sm_pool_get_stats, us/call (pool.stats(), sync)
 *     vm_running_c         sm_vm_running on an acquired VM, us/call (vm.running, sync)
 *     exec_true_c          one exec of `true` on it, us/call (vm.exec(['true']), async)
 *     cycles_per_s_c       acquire + exec `true` + release, per second of wall time
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <supermachine.h>

#include "bench_sm.h"
#include "bench_util.h"

/* A name no store holds: its lookup fails with SM_E_NOT_FOUND (bench/node.mjs uses the same). */
#define MISSING_SNAPSHOT "bench-node-missing-snapshot"

static void figure(const char *name, double value, const char *unit)
{
	bench_figure("node", name, value, unit);
}

/* A warmup of a tenth, then rounds calls of fn(arg) timed: us per call; -1 when one failed. */
static double time_calls(unsigned rounds, int (*fn)(void *), void *arg)
{
	for (unsigned i = 0; i < rounds / 10; i++)
		if (fn(arg) < 0)
			return -1;
	double t0 = bench_now_s();
	for (unsigned i = 0; i < rounds; i++)
		if (fn(arg) < 0)
			return -1;
	return (bench_now_s() - t0) / rounds * 1e6;
}

static int call_version(void *unused)
{
	(void)unused;
	/* through a volatile pointer so the loop is not folded away */
	const char *volatile v = sm_version();

	return v ? 0 : -1;
}

static int call_snapshots(void *unused)
{
	sm_error *err = NULL;
	sm_snapshot_list *l = sm_snapshot_list_load(&err);

	(void)unused;
	if (!l) {
		fprintf(stderr, "node_peer_bench: snapshots: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	sm_snapshot_list_free(l);
	return 0;
}

static int call_open_missing(void *unused)
{
	sm_error *err = NULL;
	sm_image *img = sm_image_open(MISSING_SNAPSHOT, &err);
	int rc = !img && sm_error_code(err) == SM_E_NOT_FOUND ? 0 : -1;

	(void)unused;
	if (rc < 0)
		fprintf(stderr, "node_peer_bench: open of %s: %s\n", MISSING_SNAPSHOT,
			img ? "it exists" : sm_error_string(err));
	sm_image_free(img);
	sm_error_free(err);
	return rc;
}

static int report(const char *name, double us)
{
	if (us < 0)
		return -1;
	figure(name, us, "us");
	return 0;
}

static int bench_calls(unsigned rounds)
{
	int rc = 0;

	rc |= report("version_c", time_calls(rounds * 10, call_version, NULL));
	rc |= report("snapshots_c", time_calls(rounds, call_snapshots, NULL));
	rc |= report("open_missing_c", time_calls(rounds, call_open_missing, NULL));
	return rc;
}

static int call_pool_stats(void *p)
{
	sm_pool_stats s;

	sm_pool_get_stats(p, &s);
	return s.busy == 1 ? 0 : -1;
}

static int call_vm_running(void *vm)
{
	return sm_vm_running(vm) ? 0 : -1;
}

static int call_exec_true(void *vm)
{
	return bench_exec_true(vm, "node_peer_bench");
}

/* The sync calls and the exec on one acquired VM. */
static int bench_vm_calls(sm_pool *p, unsigned rounds, unsigned execs)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_pool_acquire(p, &err);
	int rc = 0;

	if (!vm) {
		fprintf(stderr, "node_peer_bench: acquire: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	rc |= report("pool_stats_c", time_calls(rounds * 10, call_pool_stats, p));
	rc |= report("vm_running_c", time_calls(rounds, call_vm_running, vm));
	rc |= report("exec_true_c", time_calls(execs, call_exec_true, vm));
	sm_pool_release(vm);
	return rc;
}

/* acquire + exec `true` + release */
static int cycle(void *p)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_pool_acquire(p, &err);
	int rc;

	if (!vm) {
		fprintf(stderr, "node_peer_bench: acquire: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	rc = bench_exec_true(vm, "node_peer_bench");
	sm_pool_release(vm);
	return rc;
}

static int bench_vm(const char *snapshot, unsigned rounds, unsigned cycles)
{
	sm_pool_config pc = { .min = 1, .max = 1, .keep_state_on_release = true, .acquire_timeout_ms = 600000 };
	sm_error *err = NULL;
	sm_pool *p = sm_pool_new(snapshot, &pc, &err);
	int rc;

	if (!p) {
		fprintf(stderr, "node_peer_bench: pool over %s: %s\n", snapshot, sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	rc = bench_vm_calls(p, rounds, cycles);
	double us = rc < 0 ? -1 : time_calls(cycles, cycle, p);
	if (us > 0)
		figure("cycles_per_s_c", 1e6 / us, "cycles/s");
	sm_pool_free(p);
	return rc < 0 || us < 0 ? -1 : 0;
}

static unsigned arg_uint(const char *s, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > 100000000) {
		fprintf(stderr, "node_peer_bench: %s wants 1..100000000, not '%s'\n", what, s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	sm_set_log(sm_log_stderr, NULL, SM_LOG_WARN);
	if (argc == 3 && !strcmp(argv[1], "calls"))
		return bench_calls(arg_uint(argv[2], "ROUNDS")) < 0 ? 1 : 0;
	if (argc == 5 && !strcmp(argv[1], "vm"))
		return bench_vm(argv[2], arg_uint(argv[3], "ROUNDS"), arg_uint(argv[4], "CYCLES")) < 0 ? 1 : 0;
	fprintf(stderr, "usage: node_peer_bench calls ROUNDS\n"
			"       node_peer_bench vm SNAPSHOT ROUNDS CYCLES\n");
	return 2;
}
