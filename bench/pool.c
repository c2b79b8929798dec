/*
 * Warm pool benchmark (sm_pool, include/supermachine.h). Figures, one
 * JSON line each:
 *
 *   pool_new_8                sm_pool_new with min = max = 8 (8 restores on the pool's threads), ms
 *   acquire_warm_p50, _p99    sm_pool_acquire + sm_pool_release of a warm VM
 *                             (keep_state_on_release, nothing else running), us
 *   acquire_cpu               host CPU (this process) per acquire+release, us
 *   acquire_pool_p50, _p99    the pool's own acquire figures (sm_pool_get_stats) over the same run, us
 *   workers_rss, _pss, _uss   the 8 warm workers (after one exec each) summed, from smaps_rollup, KiB
 *   worker_pss_each, _uss_each  the same per worker, KiB
 *
 *   pool_bench IMAGE [--rounds N]   (bakes IMAGE into the snapshot bench-pool, cached)
 *     (needs /dev/kvm and the guest kernel: SUPERMACHINE_KERNEL_DIR; uses the store at $SUPERMACHINE_HOME)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "bench_sm.h"
#include "bench_util.h"
#include "lib/vm.h" /* a pooled VM's worker pid */

#define POOL_VMS 8

static void figure(const char *name, double value, const char *unit)
{
	bench_figure("pool", name, value, unit);
}

/* Every VM acquired at once (the pool is at max), one exec each, then the workers' memory. */
static int bench_memory(sm_pool *p)
{
	sm_vm *v[POOL_VMS];
	double rss = 0, pss = 0, uss = 0;
	struct bench_mem m;
	sm_error *err = NULL;
	unsigned n = 0;
	int rc = 0;

	for (; n < POOL_VMS; n++) {
		v[n] = sm_pool_acquire(p, &err);
		if (!v[n] || bench_exec_true(v[n], "pool_bench") < 0) {
			fprintf(stderr, "pool_bench: VM %u: %s\n", n, err ? sm_error_string(err) : "exec failed");
			rc = -1;
			break;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		bench_proc_mem(v[i]->pid, &m);
		rss += m.rss, pss += m.pss, uss += m.uss;
	}
	if (n) {
		figure("workers_rss", rss, "KiB");
		figure("workers_pss", pss, "KiB");
		figure("workers_uss", uss, "KiB");
		figure("worker_pss_each", pss / n, "KiB");
		figure("worker_uss_each", uss / n, "KiB");
	}
	for (unsigned i = 0; i < n; i++)
		sm_pool_release(v[i]);
	if (rc < 0 && n < POOL_VMS && v[n])
		sm_pool_release(v[n]);
	sm_error_free(err);
	return rc;
}

static int bench_acquire(sm_pool *p, unsigned rounds)
{
	double *lat = calloc(rounds, sizeof(*lat));
	sm_error *err = NULL;
	sm_pool_stats st;

	if (!lat)
		return -1;
	double cpu0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
	for (unsigned i = 0; i < rounds; i++) {
		double t0 = bench_now_s();
		sm_vm *vm = sm_pool_acquire(p, &err);
		if (!vm) {
			fprintf(stderr, "pool_bench: acquire: %s\n", sm_error_string(err));
			sm_error_free(err);
			free(lat);
			return -1;
		}
		sm_pool_release(vm);
		lat[i] = bench_now_s() - t0;
	}
	double cpu = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	figure("acquire_warm_p50", bench_pct(lat, rounds, 0.5) * 1e6, "us");
	figure("acquire_warm_p99", bench_pct(lat, rounds, 0.99) * 1e6, "us");
	figure("acquire_cpu", cpu / rounds * 1e6, "us");
	sm_pool_get_stats(p, &st);
	figure("acquire_pool_p50", (double)st.acquire_p50_us, "us");
	figure("acquire_pool_p99", (double)st.acquire_p99_us, "us");
	free(lat);
	return 0;
}

/* Host CPU of this process and its reaped children (the workers stopped so far), seconds. */
static double host_cpu_s(void)
{
	struct rusage self, kids;

	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
	       (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) /
		       1e6;
}

/*
 * Acquires that each wait for a restore (min 0, max 1; every VM stopped
 * before its release retires it), the restore taking the pool's spare
 * worker with SUPERMACHINE_SPARE=1: acquire latency and host CPU per
 * restore, and how many restores had a spare (bench/README.md).
 */
static int bench_cold(unsigned rounds)
{
	sm_pool_config cfg = { .min = 0, .max = 1, .acquire_timeout_ms = 600000 };
	double *lat = calloc(rounds, sizeof(*lat)), cpu0;
	sm_error *err = NULL;
	sm_pool_stats st;
	sm_pool *p = lat ? sm_pool_new("bench-pool", &cfg, &err) : NULL;
	int rc = 0;

	if (!p) {
		fprintf(stderr, "pool_bench: cold pool: %s\n", err ? sm_error_string(err) : "out of memory");
		sm_error_free(err);
		free(lat);
		return -1;
	}
	usleep(200000); /* the first spare starts off the acquire path */
	cpu0 = host_cpu_s();
	for (unsigned i = 0; i < rounds && rc == 0; i++) {
		double t0 = bench_now_s();
		sm_vm *vm = sm_pool_acquire(p, &err);
		lat[i] = bench_now_s() - t0;
		if (!vm) {
			fprintf(stderr, "pool_bench: cold acquire: %s\n", sm_error_string(err));
			rc = -1;
			break;
		}
		sm_vm_stop(vm, 0, NULL);
		sm_pool_release(vm);
		usleep(200000); /* the next spare, as a pool between bursts has it */
	}
	sm_pool_get_stats(p, &st);
	sm_pool_free(p);
	if (rc == 0) {
		figure("acquire_cold_p50", bench_pct(lat, rounds, 0.5) * 1e3, "ms");
		figure("acquire_cold_p99", bench_pct(lat, rounds, 0.99) * 1e3, "ms");
		figure("restore_host_cpu_cold", (host_cpu_s() - cpu0) / rounds * 1e3, "ms");
		figure("restores_with_spare", (double)st.spare_restores, "of");
		figure("restores", (double)st.spawned, "");
	}
	sm_error_free(err);
	free(lat);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned rounds = 10000, cold = 20;
	sm_pool_config cfg = { .min = POOL_VMS, .max = POOL_VMS, .keep_state_on_release = true,
			       .acquire_timeout_ms = 600000 };
	sm_error *err = NULL;
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: pool_bench IMAGE [--rounds N] [--cold N]\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2)
		if (!strcmp(argv[i], "--rounds"))
			rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--cold"))
			cold = (unsigned)strtoul(argv[i + 1], NULL, 10);
	if (!rounds)
		rounds = 1;
	if (!cold)
		cold = 1;
	if (sm_bake(argv[1], "bench-pool", &(sm_bake_config){ .vm = &(sm_vm_config){ .vcpus = 1 } }, &err) < 0) {
		fprintf(stderr, "pool_bench: bake: %s\n", sm_error_string(err));
		sm_error_free(err);
		return 1;
	}
	double t0 = bench_now_s();
	sm_pool *p = sm_pool_new("bench-pool", &cfg, &err);
	if (!p) {
		fprintf(stderr, "pool_bench: %s\n", sm_error_string(err));
		sm_error_free(err);
		return 1;
	}
	figure("pool_new_8", (bench_now_s() - t0) * 1e3, "ms");
	if (bench_memory(p) < 0 || bench_acquire(p, rounds) < 0)
		rc = 1;
	sm_pool_free(p);
	if (bench_cold(cold) < 0)
		rc = 1;
	return rc;
}
