/*
 * Snapshot restore benchmark through the library (docs/snapshots.md).
 * Figures, one JSON line each:
 *
 *   bake_wall                     sm_bake of IMAGE (forced: boot, capture, stop), ms
 *   bake_big_image_wall           the same for IMAGE2 (--bake-image: bench/oci_rootfs's ~150 MB
 *                                 Debian image, pulled from local blobs beforehand), ms
 *   restore_exec_p50, _p99        sm_vm_restore -> first `true` finished, ms
 *   restore_call_p50              sm_vm_restore alone (checks, worker, RESUME answered), ms
 *   restore_host_cpu              host-side restore work per restore: the library's CPU in sm_vm_restore
 *                                 + the worker's CPU up to its first KVM_RUN (its logged line), ms
 *   restore_guest_part            restore_exec p50 minus restore_host_cpu: guest execution and waits, ms
 *   restore_exec_exits_p50        VM exits of the worker from restore to the exec's end (its `stats`)
 *   restore_exec_worker_faults_p50  page faults the worker took by then (guest pages first touched
 *                                 after the restore, and the worker's own start)
 *   restore_8way_failed           restores of the 8-way run that failed (left out of its percentiles)
 *   restore_exec_8way_p50, _p99   the same with 8 restores running at once, ms
 *   restore_first_byte            restore of a service baked on `listener` -> first byte through expose_tcp, ms
 *   idle_clone_pss, _uss          one idle restored worker (smaps_rollup), KiB
 *   clones_pss_each, _uss_each    N idle clones of one snapshot at once, per clone, KiB
 *   clones                        how many of the N clones came up
 *
 *   restore_jailed_host_cpu,      run as root: restore_host_cpu in one run, rounds alternating between
 *   restore_unjailed_host_cpu     a jailed worker (SUPERMACHINE_JAIL=1) and one without (docs/security.md), ms
 *   restore_jail_cpu_overhead     (jailed - unjailed) / unjailed; issue 16 wants at most 20, percent
 *
 *   restore_bench IMAGE [--rounds N] [--clones N]
 *     (needs /dev/kvm and the guest kernel: SUPERMACHINE_KERNEL_DIR; uses the store at $SUPERMACHINE_HOME)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "bench_sm.h"
#include "bench_util.h"
#include "lib/vm.h"

#define CONCURRENCY 8
#define HTTPD "busybox mkdir -p /tmp/www && echo hi > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"

static void figure(const char *name, double value, const char *unit)
{
	bench_figure("restore", name, value, unit);
}

struct one {
	double total, call, host_cpu;
	double exits, faults; /* the worker's, restore to the exec's end; -1 unknown */
};

/* exits=N from the worker's `stats` reply: every KVM_RUN return, restore to now. */
static double worker_exits(const sm_vm *vm)
{
	char reply[512];
	const char *e;

	if (vm_control(vm, "stats", reply, sizeof(reply), NULL) < 0 || !(e = strstr(reply, "exits=")))
		return -1;
	return strtod(e + 6, NULL);
}

/*
 * The worker's own CPU for a restore (open, VM and devices, state load),
 * from the line it logs (src/worker/main.c). Its process CPU would count
 * guest execution too, which under nested KVM is emulated on that thread.
 */
static double worker_restore_cpu_s(const sm_vm *vm)
{
	char path[256], line[512];
	double a = 0, b = 0, c = 0, d = 0, sum = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/worker.log", vm->dir);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "restore: cpu ms:");
		if (p && sscanf(p, "restore: cpu ms: before=%lf open=%lf vm+devices=%lf load=%lf", &a, &b, &c, &d) == 4)
			sum = (a + b + c + d) / 1e3;
		/* a jailed worker's jail comes after, before its first KVM_RUN (src/worker/main.c) */
		p = strstr(line, "jail: cpu ms=");
		if (p && sscanf(p, "jail: cpu ms=%lf", &a) == 1 && sum >= 0)
			sum += a / 1e3;
	}
	if (f)
		fclose(f);
	return sum;
}

/* One restore to a finished `true`. */
static int restore_once(const char *snap, struct one *r)
{
	sm_error *err = NULL;
	/* the process's CPU: the launcher thread's fork or clone3 into a jail's namespaces counts too */
	double c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = bench_now_s();
	sm_vm *vm = sm_vm_restore(snap, NULL, &err);

	if (!vm) {
		fprintf(stderr, "restore_bench: restore: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	r->call = bench_now_s() - t0;
	double w = worker_restore_cpu_s(vm);
	/* host-side restore work: this process's CPU in sm_vm_restore + the worker's up to its first KVM_RUN */
	r->host_cpu = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0 + (w >= 0 ? w : bench_proc_cpu_s(vm->pid));
	int rc = bench_exec_true(vm, "restore_bench");
	r->total = bench_now_s() - t0;
	r->exits = worker_exits(vm);
	r->faults = (double)bench_proc_faults(vm->pid);
	sm_vm_free(vm);
	return rc;
}

static int bench_sequential(const char *snap, unsigned rounds)
{
	double *tot = calloc(rounds, sizeof(double)), *call = calloc(rounds, sizeof(double)), cpu = 0;
	double *exits = calloc(rounds, sizeof(double)), *faults = calloc(rounds, sizeof(double));
	struct one r;

	for (unsigned i = 0; i < rounds; i++) {
		if (restore_once(snap, &r) < 0)
			return -1;
		tot[i] = r.total, call[i] = r.call, cpu += r.host_cpu;
		exits[i] = r.exits, faults[i] = r.faults;
	}
	/* The guest's part in counts, which do not depend on how fast the CPU is. */
	figure("restore_exec_exits_p50", bench_pct(exits, rounds, 0.5), "exits");
	figure("restore_exec_worker_faults_p50", bench_pct(faults, rounds, 0.5), "faults");
	free(exits), free(faults);
	double p50 = bench_pct(tot, rounds, 0.5);
	figure("restore_exec_p50", p50 * 1e3, "ms");
	figure("restore_exec_p99", bench_pct(tot, rounds, 0.99) * 1e3, "ms");
	figure("restore_call_p50", bench_pct(call, rounds, 0.5) * 1e3, "ms");
	figure("restore_host_cpu", cpu / rounds * 1e3, "ms");
	figure("restore_guest_part", (p50 - cpu / rounds) * 1e3, "ms");
	free(tot), free(call);
	return 0;
}

struct worker {
	pthread_t t;
	const char *snap;
	unsigned rounds;
	double *tot;
	int rc;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct one r;

	for (unsigned i = 0; i < w->rounds; i++) {
		if (restore_once(w->snap, &r) < 0) {
			w->rc++; /* counted, and the round left out of the percentiles */
			w->tot[i] = -1;
			continue;
		}
		w->tot[i] = r.total;
	}
	return NULL;
}

static int bench_parallel(const char *snap, unsigned rounds)
{
	struct worker w[CONCURRENCY];
	unsigned per = rounds / CONCURRENCY ? rounds / CONCURRENCY : 1, n = 0;
	double *all = calloc(per * CONCURRENCY, sizeof(double));
	int rc = 0;

	for (int i = 0; i < CONCURRENCY; i++) {
		w[i] = (struct worker){ .snap = snap, .rounds = per, .tot = all + i * per };
		pthread_create(&w[i].t, NULL, worker_run, &w[i]);
	}
	for (int i = 0; i < CONCURRENCY; i++) {
		pthread_join(w[i].t, NULL);
		rc += w[i].rc;
	}
	for (unsigned i = 0; i < per * CONCURRENCY; i++)
		if (all[i] >= 0)
			all[n++] = all[i];
	if (n) {
		figure("restore_exec_8way_p50", bench_pct(all, n, 0.5) * 1e3, "ms");
		figure("restore_exec_8way_p99", bench_pct(all, n, 0.99) * 1e3, "ms");
	}
	figure("restore_8way_failed", rc, "count");
	free(all);
	return rc ? -1 : 0;
}

static int bench_first_byte(const char *image)
{
	const char *workload[] = { "sh", "-c", HTTPD, NULL };
	sm_bake_config bc = { .vm = &(sm_vm_config){ .workload = workload }, .trigger = SM_BAKE_LISTENER, .trigger_value = 8080 };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	sm_error *err = NULL;
	char c;

	if (sm_bake(image, "bench-web", &bc, &err) < 0) {
		fprintf(stderr, "restore_bench: bake web: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	double t0 = bench_now_s();
	sm_vm *vm = sm_vm_restore("bench-web", NULL, &err);
	sm_forward *f = vm ? sm_vm_expose_tcp(vm, NULL, 0, 8080, &err) : NULL;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons(f ? sm_forward_port(f) : 0);
	if (!f || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, "GET / HTTP/1.0\r\n\r\n", 18) != 18 || read(fd, &c, 1) != 1) {
		fprintf(stderr, "restore_bench: first byte: %s\n", err ? sm_error_string(err) : "no answer");
	} else {
		figure("restore_first_byte", (bench_now_s() - t0) * 1e3, "ms");
	}
	close(fd);
	sm_error_free(err);
	sm_forward_stop(f);
	sm_vm_free(vm);
	return 0;
}

static int bench_memory(const char *snap, unsigned clones)
{
	sm_vm **v = calloc(clones, sizeof(*v));
	double tp = 0, tu = 0;
	struct bench_mem m;
	sm_error *err = NULL;
	unsigned n = 0;

	for (; n < clones; n++) {
		v[n] = sm_vm_restore(snap, NULL, &err);
		if (!v[n] || bench_exec_true(v[n], "restore_bench") < 0)
			break;
	}
	sleep(1);
	if (n) {
		bench_proc_mem(v[0]->pid, &m);
		figure("idle_clone_pss", m.pss, "KiB");
		figure("idle_clone_uss", m.uss, "KiB");
	}
	for (unsigned i = 0; i < n; i++) {
		bench_proc_mem(v[i]->pid, &m);
		tp += m.pss, tu += m.uss;
	}
	if (n) {
		figure("clones_pss_each", tp / n, "KiB");
		figure("clones_uss_each", tu / n, "KiB");
	}
	figure("clones", n, "count");
	if (n < clones)
		fprintf(stderr, "restore_bench: only %u of %u clones: %s\n", n, clones, err ? sm_error_string(err) : "");
	for (unsigned i = 0; i < clones; i++)
		sm_vm_free(v[i]);
	sm_error_free(err);
	free(v);
	return n == clones ? 0 : -1;
}

/* Jailed against not in the same run, rounds alternating (root only: else there is no jail). */
static int bench_jail(const char *snap, unsigned rounds)
{
	double cpu[2] = { 0, 0 };
	struct one r;

	if (geteuid() != 0)
		return 0;
	for (unsigned i = 0; i < 2 * rounds; i++) {
		bool jailed = i % 2;
		if (jailed)
			setenv("SUPERMACHINE_JAIL", "1", 1);
		else
			unsetenv("SUPERMACHINE_JAIL");
		int rc = restore_once(snap, &r);
		unsetenv("SUPERMACHINE_JAIL");
		if (rc < 0)
			return -1;
		cpu[jailed] += r.host_cpu;
	}
	figure("restore_unjailed_host_cpu", cpu[0] / rounds * 1e3, "ms");
	figure("restore_jailed_host_cpu", cpu[1] / rounds * 1e3, "ms");
	figure("restore_jail_cpu_overhead", (cpu[1] - cpu[0]) / cpu[0] * 100, "%");
	return 0;
}

int main(int argc, char **argv)
{
	unsigned rounds = 50, clones = 20;
	sm_bake_config bc = { .force = true };
	sm_error *err = NULL;
	const char *big = NULL;

	if (argc < 2) {
		fprintf(stderr, "usage: restore_bench IMAGE [--rounds N] [--clones N] [--bake-image IMAGE2]\n");
		return 2;
	}
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--rounds"))
			rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--clones"))
			clones = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--bake-image"))
			big = argv[i + 1];
	}
	if (!rounds)
		rounds = 1;
	double t0 = bench_now_s();
	if (sm_bake(argv[1], "bench", &bc, &err) < 0) {
		fprintf(stderr, "restore_bench: bake: %s\n", sm_error_string(err));
		return 1;
	}
	figure("bake_wall", (bench_now_s() - t0) * 1e3, "ms");
	if (big) {
		t0 = bench_now_s();
		if (sm_bake(big, "bench-big", &bc, &err) < 0) {
			fprintf(stderr, "restore_bench: bake %s: %s\n", big, sm_error_string(err));
			return 1;
		}
		figure("bake_big_image_wall", (bench_now_s() - t0) * 1e3, "ms");
	}
	int rc = bench_sequential("bench", rounds);
	rc |= bench_jail("bench", rounds);
	rc |= bench_parallel("bench", rounds);
	rc |= bench_first_byte(argv[1]);
	rc |= bench_memory("bench", clones);
	return rc ? 1 : 0;
}
