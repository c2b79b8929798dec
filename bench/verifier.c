/*
 * The verifier loop of the reference README's performance recipe, in C,
 * over a pool (sm_pool_*): each cycle acquires a VM, stages a C source,
 * compiles it with gcc, chains the binary, collects and checks the
 * outcome, and releases the VM. WORKERS threads run cycles from one
 * shared count over a pool of max WORKERS (min WORKERS too: the VMs are
 * restored before the clock starts, so the figures are the warm loop's).
 * Each mode runs once: `reset` (the default: a released VM goes back to
 * the snapshot) and `keep` (keep_state_on_release).
 *
 * Figures, one JSON line each, NAME_MODE_wWORKERS (e.g. cycles_per_s_keep_w8):
 *
 *   cycles_per_s            checked cycles per second of wall time
 *   cycle_p50, cycle_p99    one cycle, acquire to release returned, ms
 *   acquire_p50, _p99       sm_pool_get_stats over the loop's acquires, us
 *   host_cpu_per_cycle      this process's CPU + the workers' CPU outside the guest, per cycle, ms
 *   lib_cpu_per_cycle       this process's part of it (the library and the pool's threads), ms
 *   guest_cpu_per_cycle     the workers' CPU spent running the guest (gcc itself), ms
 *   failed                  cycles whose acquire, exec or check failed
 *
 *   verifier_bench SNAPSHOT [CYCLES [WORKERS [reset|keep|both]]]
 *     (a snapshot of the verifier image baked with gcc warm, see bench/verifier;
 *      needs /dev/kvm and SUPERMACHINE_KERNEL_DIR; defaults 40 cycles, 1 worker, both)
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <supermachine.h>

#include "bench_util.h"
#include "lib/vm.h"

#define MAX_WORKERS 64
#define EXEC_TIMEOUT_MS 600000 /* a hang guard; nested guests are slow */

static const char *const cc_argv[] = { "gcc", "-O1", "-o", "/tmp/a", "/tmp/a.c", NULL };
static const char *const run_argv[] = { "/tmp/a", NULL };

struct loop {
	sm_pool *pool;
	unsigned cycles;
	atomic_uint next;   /* the next cycle number to run */
	atomic_uint failed;
	double *lat;        /* per cycle, seconds; -1 when it failed */
};

/* CPU of this process's children (the pool's workers): total user+system and guest time, seconds. */
static void children_cpu(double *total, double *guest)
{
	pid_t self = getpid();
	DIR *d = opendir("/proc");
	struct dirent *de;
	long tck = sysconf(_SC_CLK_TCK);

	*total = *guest = 0;
	while (d && (de = readdir(d))) {
		char path[300], buf[2048];
		unsigned long long ut, st, gt;
		int ppid;
		FILE *f;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
		const char *p = strrchr(buf, ')');
		/* after "pid (comm)": 3 state, 4 ppid, 14 utime, 15 stime, 43 guest_time (inside utime) */
		if (!p || sscanf(p + 2,
				 "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
				 "%*u %*u %*d %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*u %*d %*d %*u %*u "
				 "%*u %llu",
				 &ppid, &ut, &st, &gt) != 4 || ppid != self)
			continue;
		*total += (double)(ut + st) / (double)tck;
		*guest += (double)gt / (double)tck;
	}
	if (d)
		closedir(d);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* One cycle's program: its answer depends on the cycle, so a stale binary cannot pass. */
static void make_source(unsigned i, char *src, size_t srclen, char *want, size_t wantlen)
{
	snprintf(src, srclen,
		 "#include <stdio.h>\n"
		 "int main(void)\n"
		 "{\n"
		 "\tunsigned long x = %uul;\n"
		 "\tprintf(\"cycle %u: %%lu\\n\", x * x + 1);\n"
		 "\treturn 0;\n"
		 "}\n",
		 i, i);
	snprintf(want, wantlen, "cycle %u: %lu\n", i, (unsigned long)i * i + 1);
}

/*
 * The end of a dead VM's worker log and console, read before the release
 * that removes its runtime directory: why a worker died is only there.
 */
static void dump_tail(const sm_vm *vm, const char *file)
{
	char path[256], line[512];
	long size;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", vm->dir, file);
	f = fopen(path, "re");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > 2048 ? size - 2048 : 0, SEEK_SET);
	fprintf(stderr, "verifier_bench: --- end of %s ---\n", path);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

/* Acquire, stage, compile, chain, collect, check, release; 0 when the outcome was right. */
static int cycle(struct loop *l, unsigned i)
{
	char src[512], want[64];
	sm_error *err = NULL;
	sm_outcome o = { 0 };
	sm_exec *x = NULL;
	int rc = -1;

	sm_vm *vm = sm_pool_acquire(l->pool, &err);
	if (!vm)
		goto out;
	make_source(i, src, sizeof(src), want, sizeof(want));
	x = sm_exec_new(vm);
	if (!x || sm_exec_stage_file(x, "/tmp/a.c", src, strlen(src)) < 0 || sm_exec_argv(x, cc_argv) < 0 ||
	    sm_exec_chain(x, run_argv) < 0 || sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS) < 0)
		goto out;
	if (sm_exec_output(x, &o, &err) < 0) {
		dump_tail(vm, "worker.log");
		dump_tail(vm, "console.log");
		goto out;
	}
	if (o.status != 0 || o.chain_index != 1 || !o.stdout_data || strcmp(o.stdout_data, want) != 0) {
		fprintf(stderr, "verifier_bench: cycle %u: status %d, chain_index %u, stdout '%s', stderr '%s'\n", i,
			o.status, o.chain_index, o.stdout_data ? o.stdout_data : "",
			o.stderr_data ? o.stderr_data : "");
		goto out;
	}
	rc = 0;
out:
	if (err)
		fprintf(stderr, "verifier_bench: cycle %u: %s\n", i, sm_error_string(err));
	sm_error_free(err);
	sm_outcome_free(&o);
	sm_exec_free(x);
	sm_pool_release(vm);
	return rc;
}

static void *worker_main(void *arg)
{
	struct loop *l = arg;
	unsigned i;

	while ((i = atomic_fetch_add(&l->next, 1)) < l->cycles) {
		double t0 = bench_now_s();
		if (cycle(l, i) < 0) {
			atomic_fetch_add(&l->failed, 1);
			l->lat[i] = -1;
			continue;
		}
		l->lat[i] = bench_now_s() - t0;
	}
	return NULL;
}

static void figure(const char *name, const char *mode, unsigned workers, double value, const char *unit)
{
	char full[128];

	snprintf(full, sizeof(full), "%s_%s_w%u", name, mode, workers);
	bench_figure("verifier", full, value, unit);
}

/* Threads running the loop until cycles are done; wall and CPU of the loop alone. */
static int run_loop(struct loop *l, unsigned workers, double *wall, double *lib_cpu, double *child_cpu,
		    double *guest_cpu)
{
	pthread_t t[MAX_WORKERS];
	double c0, g0, c1, g1, s0 = self_cpu_s(), t0 = bench_now_s();
	unsigned started = 0;

	children_cpu(&c0, &g0);
	for (; started < workers; started++)
		if (pthread_create(&t[started], NULL, worker_main, l) != 0)
			break;
	for (unsigned i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	*wall = bench_now_s() - t0;
	*lib_cpu = self_cpu_s() - s0;
	children_cpu(&c1, &g1);
	*child_cpu = c1 - c0;
	*guest_cpu = g1 - g0;
	return started == workers ? 0 : -1;
}

static int bench_mode(const char *snap, unsigned cycles, unsigned workers, bool keep)
{
	const char *mode = keep ? "keep" : "reset";
	sm_pool_config pc = { .min = workers, .max = workers, .keep_state_on_release = keep };
	struct loop l = { .cycles = cycles };
	double wall, lib, child, guest;
	sm_pool_stats st;
	sm_error *err = NULL;

	l.lat = calloc(cycles, sizeof(double));
	if (!l.lat)
		return -1;
	double t0 = bench_now_s();
	l.pool = sm_pool_new(snap, &pc, &err);
	if (!l.pool) {
		fprintf(stderr, "verifier_bench: pool over %s: %s\n", snap, sm_error_string(err));
		sm_error_free(err);
		free(l.lat);
		return -1;
	}
	fprintf(stderr, "verifier_bench: %s, %u workers: pool of %u ready in %.2f s\n", mode, workers, workers,
		bench_now_s() - t0);
	int rc = run_loop(&l, workers, &wall, &lib, &child, &guest);
	sm_pool_get_stats(l.pool, &st);
	unsigned failed = atomic_load(&l.failed), ok = cycles - failed;

	figure("cycles_per_s", mode, workers, ok / wall, "cycles/s");
	figure("cycle_p50", mode, workers, bench_pct(l.lat, cycles, 0.5) * 1e3, "ms");
	figure("cycle_p99", mode, workers, bench_pct(l.lat, cycles, 0.99) * 1e3, "ms");
	figure("acquire_p50", mode, workers, (double)st.acquire_p50_us, "us");
	figure("acquire_p99", mode, workers, (double)st.acquire_p99_us, "us");
	figure("host_cpu_per_cycle", mode, workers, (lib + child - guest) / cycles * 1e3, "ms");
	figure("lib_cpu_per_cycle", mode, workers, lib / cycles * 1e3, "ms");
	figure("guest_cpu_per_cycle", mode, workers, guest / cycles * 1e3, "ms");
	figure("failed", mode, workers, failed, "count");
	fprintf(stderr, "verifier_bench: %s, %u workers: %u cycles in %.2f s; pool spawned %llu, died %llu, waits %llu\n",
		mode, workers, cycles, wall, (unsigned long long)st.spawned, (unsigned long long)st.died,
		(unsigned long long)st.waits);
	sm_pool_free(l.pool);
	free(l.lat);
	return rc < 0 || failed ? -1 : 0;
}

static unsigned arg_uint(const char *s, unsigned lo, unsigned hi, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "verifier_bench: %s wants %u..%u, not '%s'\n", what, lo, hi, s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	unsigned cycles = 40, workers = 1;
	const char *modes = "both";
	int rc = 0;

	if (argc < 2 || argc > 5) {
		fprintf(stderr, "usage: verifier_bench SNAPSHOT [CYCLES [WORKERS [reset|keep|both]]]\n");
		return 2;
	}
	if (argc > 2)
		cycles = arg_uint(argv[2], 1, 1000000, "CYCLES");
	if (argc > 3)
		workers = arg_uint(argv[3], 1, MAX_WORKERS, "WORKERS");
	if (argc > 4)
		modes = argv[4];
	if (strcmp(modes, "reset") && strcmp(modes, "keep") && strcmp(modes, "both")) {
		fprintf(stderr, "verifier_bench: mode is reset, keep or both, not '%s'\n", modes);
		return 2;
	}
	sm_set_log(sm_log_stderr, NULL, SM_LOG_WARN);
	if (strcmp(modes, "keep"))
		rc |= bench_mode(argv[1], cycles, workers, false);
	if (strcmp(modes, "reset"))
		rc |= bench_mode(argv[1], cycles, workers, true);
	return rc ? 1 : 0;
}
