/*
 * Exec benchmark on a real VM booted through the library (sm_vm_start).
 * Figures, one JSON line each:
 *
 *   exec_rtt_p50, exec_rtt_p99   `true` run to completion (sm_exec_output), µs
 *   host_cpu_per_exec            library process + worker CPU per exec, µs
 *   exits_per_exec               VM exits to user space per exec (control "stats")
 *   execs_per_s_seq              sequential execs per second
 *   execs_per_s_8way             8 threads each running execs, total per second
 *   run_rm_true_wall             `supermachine run --rm IMAGE true` from cold boot, ms
 *
 *   exec_bench IMAGE [--rounds N] [--cli PATH]
 *     (needs /dev/kvm and the guest kernel: SUPERMACHINE_KERNEL_DIR)
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "bench_util.h"
#include "lib/vm.h"

#define CONCURRENCY 8

static void figure(const char *name, double value, const char *unit)
{
	bench_figure("exec", name, value, unit);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

static unsigned long long vm_exits(sm_vm *vm)
{
	char reply[512];
	const char *e;

	if (vm_control(vm, "stats", reply, sizeof(reply), NULL) < 0 || !(e = strstr(reply, "exits=")))
		return 0;
	return strtoull(e + 6, NULL, 10);
}

/* One `true`; its wall time in seconds, or -1. */
static double exec_true(sm_vm *vm)
{
	sm_exec *x = sm_exec_new(vm);
	sm_error *err = NULL;
	sm_outcome o;
	double t0 = bench_now_s(), dt = -1;

	sm_exec_argv(x, (const char *[]){ "true", NULL });
	if (sm_exec_output(x, &o, &err) == 0 && o.status == 0)
		dt = bench_now_s() - t0;
	else
		fprintf(stderr, "exec_bench: exec failed: %s\n", err ? sm_error_string(err) : "status");
	if (err)
		sm_error_free(err);
	else
		sm_outcome_free(&o);
	sm_exec_free(x);
	return dt;
}

static int bench_rtt(sm_vm *vm, unsigned rounds)
{
	double *t = calloc(rounds, sizeof(*t));
	double c0, c1, w0, w1, t0, t1;
	unsigned long long e0, e1;

	if (!t)
		return -1;
	for (unsigned i = 0; i < 10; i++) /* warm the agent's and the page cache's paths */
		exec_true(vm);
	e0 = vm_exits(vm), c0 = self_cpu_s(), w0 = bench_proc_cpu_s(vm->pid), t0 = bench_now_s();
	for (unsigned i = 0; i < rounds; i++)
		if ((t[i] = exec_true(vm)) < 0) {
			free(t);
			return -1;
		}
	t1 = bench_now_s(), e1 = vm_exits(vm), c1 = self_cpu_s(), w1 = bench_proc_cpu_s(vm->pid);
	qsort(t, rounds, sizeof(*t), bench_cmp_double);
	figure("exec_rtt_p50", t[rounds / 2] * 1e6, "us");
	figure("exec_rtt_p99", t[(size_t)((double)rounds * 0.99)] * 1e6, "us");
	figure("host_cpu_per_exec", ((c1 - c0) + (w1 - w0)) * 1e6 / rounds, "us");
	if (e1 >= e0 && e0)
		figure("exits_per_exec", (double)(e1 - e0) / rounds, "exits");
	figure("execs_per_s_seq", rounds / (t1 - t0), "1/s");
	free(t);
	return 0;
}

struct worker_arg {
	sm_vm *vm;
	unsigned rounds;
	int failed;
};

static void *bench_thread(void *p)
{
	struct worker_arg *a = p;

	for (unsigned i = 0; i < a->rounds; i++)
		if (exec_true(a->vm) < 0)
			a->failed = 1;
	return NULL;
}

static int bench_concurrent(sm_vm *vm, unsigned rounds)
{
	struct worker_arg args[CONCURRENCY];
	pthread_t th[CONCURRENCY];
	unsigned per = rounds / CONCURRENCY ? rounds / CONCURRENCY : 1;
	double t0 = bench_now_s();
	int failed = 0;

	for (int i = 0; i < CONCURRENCY; i++) {
		args[i] = (struct worker_arg){ vm, per, 0 };
		pthread_create(&th[i], NULL, bench_thread, &args[i]);
	}
	for (int i = 0; i < CONCURRENCY; i++) {
		pthread_join(th[i], NULL);
		failed |= args[i].failed;
	}
	if (failed)
		return -1;
	figure("execs_per_s_8way", per * CONCURRENCY / (bench_now_s() - t0), "1/s");
	return 0;
}

static int bench_run_rm(const char *cli, const char *image)
{
	double t0 = bench_now_s();
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		execl(cli, cli, "run", "--rm", image, "true", (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "exec_bench: %s run --rm %s true failed\n", cli, image);
		return -1;
	}
	figure("run_rm_true_wall", (bench_now_s() - t0) * 1e3, "ms");
	return 0;
}

int main(int argc, char **argv)
{
	const char *image = NULL, *cli = NULL;
	unsigned rounds = 200;
	sm_error *err = NULL;
	sm_vm *vm;
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--cli") && i + 1 < argc)
			cli = argv[++i];
		else
			image = argv[i];
	}
	if (!image || rounds < 10) {
		fprintf(stderr, "usage: exec_bench IMAGE [--rounds N>=10] [--cli PATH]\n");
		return 2;
	}
	vm = sm_vm_start(image, NULL, &err);
	if (!vm) {
		fprintf(stderr, "exec_bench: %s\n", sm_error_string(err));
		sm_error_free(err);
		return 1;
	}
	if (bench_rtt(vm, rounds) < 0 || bench_concurrent(vm, rounds) < 0)
		rc = 1;
	sm_vm_free(vm);
	if (cli && bench_run_rm(cli, image) < 0)
		rc = 1;
	return rc;
}
