/*
 * The warm pool (sm_pool, include/supermachine.h) on a snapshot of the
 * busybox OCI fixture: min VMs pre-spawned, growth to max, acquire
 * timeout, idle eviction, reset (or not) on release, a killed worker
 * replaced, stats, sm_pool_free with VMs still out, and many
 * acquire/exec/release cycles from 8 threads.
 *
 * The bake lives in one store shared by every test of this binary
 * (keyed by the runner's pid), as in test_snapshot.c. Worker processes
 * are counted as this test process's children named supermachine-worker.
 * Times are hang guards, never pass/fail thresholds (nested KVM is slow).
 *
 * SUPERMACHINE_POOL_CYCLES: acquire/exec/release cycles of the 8-thread
 * test (default 1000; a twentieth more, at least 16, run with reset on release).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"
#include "lib/vm.h" /* a pooled VM's worker pid */

#define SNAP "pool"
#define EXEC_TIMEOUT_MS 120000
#define GUARD_S 120.0 /* a hang guard for anything the pool does in the background */
#define DEFAULT_CYCLES 1000
#define THREADS 8

static char shared[256];
static char IMAGE[4200];

static void setup(void)
{
	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	snprintf(IMAGE, sizeof(IMAGE), "oci:%s/layout:base", fx_images());
	fx_shared_store("pooltest", IMAGE, shared, sizeof(shared));
	sm_error *e = NULL;
	int rc = sm_bake(IMAGE, SNAP, &(sm_bake_config){ .vm = &(sm_vm_config){ .vcpus = 1 } }, &e);
	cr_assert(rc >= 0, "bake: %s", e ? sm_error_string(e) : "?");
}

TestSuite(pool, .init = setup, .timeout = 900);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("pooltest");
}

static const char *es(sm_error *e)
{
	return e ? sm_error_string(e) : "?";
}

static const char *s(const char *p)
{
	return p ? p : "";
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static sm_pool *pool_new(sm_pool_config c)
{
	sm_error *err = NULL;
	double t0 = now_s();
	sm_pool *p = sm_pool_new(SNAP, &c, &err);

	cr_assert(p, "sm_pool_new: %s", es(err));
	fprintf(stderr, "pool: new (min %u, max %u) in %.2f s\n", c.min, c.max, now_s() - t0);
	return p;
}

static sm_vm *acquire(sm_pool *p)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_pool_acquire(p, &err);

	cr_assert(vm, "acquire: %s", es(err));
	return vm;
}

/* Runs sh -c cmd; its stdout (malloc'ed) when it exited 0, else NULL with *code (if given) set. */
static char *sh_code(sm_vm *vm, const char *cmd, sm_code *code)
{
	sm_exec *x = sm_exec_new(vm);
	sm_outcome o = { 0 };
	sm_error *err = NULL;
	char *out = NULL;

	if (code)
		*code = SM_OK;
	sm_exec_argv(x, (const char *[]){ "sh", "-c", cmd, NULL });
	sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS);
	if (sm_exec_output(x, &o, &err) < 0) {
		if (code)
			*code = sm_error_code(err);
		else
			cr_log_error("exec '%s': %s", cmd, es(err));
		sm_error_free(err);
	} else if (o.status != 0) {
		cr_log_error("exec '%s': status %d, stderr %s", cmd, o.status, s(o.stderr_data));
	} else {
		out = strdup(s(o.stdout_data));
	}
	sm_outcome_free(&o);
	sm_exec_free(x);
	return out;
}

static char *sh(sm_vm *vm, const char *cmd)
{
	return sh_code(vm, cmd, NULL);
}

/* Live supermachine-worker processes that are our children (zombies excluded). */
static unsigned count_workers(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	unsigned n = 0;

	cr_assert(d);
	while ((de = readdir(d))) {
		char path[300], buf[512];
		int ppid;
		char state;
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		/* "pid (comm) state ppid ...": comm is cut to 15 bytes */
		char *close = strrchr(buf, ')');
		if (!strstr(buf, "(supermachine-wo") || !close || sscanf(close + 1, " %c %d", &state, &ppid) != 2)
			continue;
		if (ppid == getpid() && state != 'Z')
			n++;
	}
	closedir(d);
	return n;
}

static bool pid_gone(pid_t pid)
{
	char path[64], buf[512];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	char *close = strrchr(buf, ')');
	return close && close[1] == ' ' && close[2] == 'Z';
}

/* Waits (hang guard) until pid has exited: the pool reaps on its own threads. */
static void wait_gone(pid_t pid)
{
	double t0 = now_s();

	while (!pid_gone(pid)) {
		cr_assert(now_s() - t0 < GUARD_S, "worker %d still runs", (int)pid);
		usleep(20000);
	}
}

static sm_pool_stats stats(sm_pool *p)
{
	sm_pool_stats st;

	sm_pool_get_stats(p, &st);
	return st;
}

/* Waits (hang guard GUARD_S) until the pool is quiet: nothing starting or resetting. */
static sm_pool_stats settle(sm_pool *p)
{
	double t0 = now_s();
	sm_pool_stats st;

	for (;;) {
		st = stats(p);
		if (!st.starting)
			return st;
		cr_assert(now_s() - t0 < GUARD_S, "the pool never settled: %u starting", st.starting);
		usleep(50000);
	}
}

static void log_stats(const char *what, const sm_pool_stats *st)
{
	fprintf(stderr,
		"pool: %s: idle %u busy %u starting %u spawned %llu evicted %llu died %llu waits %llu acquires %llu "
		"timeouts %llu acquire p50 %llu us p99 %llu us max %llu us\n",
		what, st->idle, st->busy, st->starting, (unsigned long long)st->spawned,
		(unsigned long long)st->evicted, (unsigned long long)st->died, (unsigned long long)st->waits,
		(unsigned long long)st->acquires, (unsigned long long)st->acquire_timeouts,
		(unsigned long long)st->acquire_p50_us, (unsigned long long)st->acquire_p99_us,
		(unsigned long long)st->acquire_max_us);
}

Test(pool, min_prespawned_and_freed)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 2, .max = 4 });
	sm_pool_stats st = stats(p);

	log_stats("after new", &st);
	cr_expect_eq(st.idle, 2);
	cr_expect_eq(st.busy, 0);
	cr_expect_eq(st.spawned, 2);
	cr_expect_eq(count_workers(), 2, "worker processes right after sm_pool_new");
	sm_vm *vm = acquire(p);
	char *out = sh(vm, "echo ok");
	cr_expect_str_eq(s(out), "ok\n");
	free(out);
	sm_pool_release(vm);
	sm_pool_free(p);
	cr_expect_eq(count_workers(), 0, "workers left after sm_pool_free");
}

Test(pool, bad_snapshot_fails_new_naming_it)
{
	sm_error *err = NULL;
	sm_pool *p = sm_pool_new("no-such-snapshot", &(sm_pool_config){ .min = 1 }, &err);

	cr_expect(!p);
	cr_expect(err && strstr(es(err), "no-such-snapshot"), "%s", es(err));
	sm_error_free(err);
	sm_pool_free(p);
}

struct grab {
	sm_pool *pool;
	sm_vm *vm;
	pthread_barrier_t *hold;
	char *out;
};

static void *grab_thread(void *opaque)
{
	struct grab *g = opaque;
	sm_error *err = NULL;

	g->vm = sm_pool_acquire(g->pool, &err);
	if (!g->vm) {
		cr_log_error("acquire: %s", es(err));
		sm_error_free(err);
	} else {
		g->out = sh(g->vm, "echo $$; busybox hostname");
	}
	pthread_barrier_wait(g->hold); /* every VM is busy at once */
	return NULL;
}

Test(pool, grows_to_max_under_load)
{
	enum { N = 3 };
	sm_pool *p = pool_new((sm_pool_config){ .min = 0, .max = N, .keep_state_on_release = true });
	pthread_barrier_t hold;
	pthread_t t[N];
	struct grab g[N];

	cr_expect_eq(stats(p).idle, 0);
	cr_expect_eq(count_workers(), 0, "min 0 spawned a worker");
	pthread_barrier_init(&hold, NULL, N + 1);
	for (int i = 0; i < N; i++) {
		g[i] = (struct grab){ .pool = p, .hold = &hold };
		cr_assert(pthread_create(&t[i], NULL, grab_thread, &g[i]) == 0);
	}
	pthread_barrier_wait(&hold);
	sm_pool_stats st = stats(p);
	log_stats("all held", &st);
	cr_expect_eq(st.busy, N);
	cr_expect_eq(st.spawned, N);
	cr_expect_eq(count_workers(), N);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		cr_expect(g[i].vm && g[i].out, "thread %d got no VM or no output", i);
		for (int j = 0; j < i; j++)
			cr_expect(g[i].vm != g[j].vm, "two threads got the same VM");
	}
	for (int i = 0; i < N; i++) {
		free(g[i].out);
		sm_pool_release(g[i].vm);
	}
	st = settle(p);
	cr_expect_eq(st.idle, N);
	cr_expect_eq(st.busy, 0);
	/* warm now: N more acquires spawn nothing */
	sm_vm *vms[N];
	for (int i = 0; i < N; i++)
		vms[i] = acquire(p);
	cr_expect_eq(stats(p).spawned, N);
	for (int i = 0; i < N; i++)
		sm_pool_release(vms[i]);
	pthread_barrier_destroy(&hold);
	sm_pool_free(p);
	cr_expect_eq(count_workers(), 0);
}

Test(pool, acquire_times_out_when_all_busy)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 1, .max = 1, .acquire_timeout_ms = 500 });
	sm_vm *vm = acquire(p);
	sm_error *err = NULL;
	double t0 = now_s();
	sm_vm *second = sm_pool_acquire(p, &err);
	double dt = now_s() - t0;

	cr_expect(!second, "a second VM from a pool of max 1");
	cr_expect(err && sm_error_code(err) == SM_E_BUSY, "want busy: %s", es(err));
	cr_expect(err && strstr(es(err), "all 1 VMs busy for") && strstr(es(err), SNAP), "message: %s", es(err));
	cr_expect(dt >= 0.45, "gave up after %.3f s, before the 500 ms timeout", dt);
	fprintf(stderr, "pool: busy after %.3f s: %s\n", dt, es(err));
	sm_error_free(err);
	sm_pool_stats st = stats(p);
	cr_expect_eq(st.acquire_timeouts, 1);
	cr_expect_eq(st.waits, 1);
	cr_expect_eq(st.acquires, 1);
	sm_pool_release(vm);
	sm_pool_release(second);
	sm_pool_free(p);
}

Test(pool, idle_vms_evicted_after_timeout)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 0, .max = 2, .idle_timeout_ms = 1000,
					       .keep_state_on_release = true });
	sm_vm *a = acquire(p), *b = acquire(p);
	pid_t pa = a->pid, pb = b->pid;

	cr_expect_eq(count_workers(), 2);
	sm_pool_release(a);
	sm_pool_release(b);
	double t0 = now_s();
	sm_pool_stats st;
	for (;;) {
		st = stats(p);
		if (st.idle == 0 && st.evicted == 2 && pid_gone(pa) && pid_gone(pb))
			break;
		cr_assert(now_s() - t0 < GUARD_S, "not evicted: idle %u evicted %llu", st.idle,
			  (unsigned long long)st.evicted);
		usleep(100000);
	}
	fprintf(stderr, "pool: evicted after %.2f s (idle timeout 1 s)\n", now_s() - t0);
	cr_expect(now_s() - t0 >= 0.9, "evicted before the idle timeout");
	cr_expect_eq(count_workers(), 0);
	/* and it grows again on demand */
	sm_vm *c = acquire(p);
	char *out = sh(c, "echo back");
	cr_expect_str_eq(s(out), "back\n");
	free(out);
	sm_pool_release(c);
	sm_pool_free(p);
}

/* Writes a file, releases, acquires again (max 1: the same worker) and looks for it. */
static void release_state(bool keep, const char *want)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 1, .max = 1, .keep_state_on_release = keep });
	sm_vm *vm = acquire(p);
	pid_t pid = vm->pid;
	char *out = sh(vm, "echo mine > /tmp/user-file && echo written");

	cr_expect_str_eq(s(out), "written\n");
	free(out);
	sm_pool_release(vm);
	vm = acquire(p);
	cr_expect_eq(vm->pid, pid, "not the same worker");
	out = sh(vm, "test -e /tmp/user-file && echo kept || echo gone");
	cr_expect_str_eq(s(out), want);
	free(out);
	sm_pool_stats st = stats(p);
	log_stats(keep ? "keep state" : "reset", &st);
	cr_expect_eq(st.spawned, 1);
	sm_pool_release(vm);
	sm_pool_free(p);
}

Test(pool, reset_on_release_by_default)
{
	release_state(false, "gone\n");
}

Test(pool, keep_state_on_release)
{
	release_state(true, "kept\n");
}

/* Waits until the pool has an idle VM whose worker is not pid; returns it acquired. */
static sm_vm *acquire_replacement(sm_pool *p, pid_t old)
{
	double t0 = now_s();

	while (stats(p).idle == 0) {
		cr_assert(now_s() - t0 < GUARD_S, "no replacement was spawned");
		usleep(50000);
	}
	fprintf(stderr, "pool: replacement ready after %.2f s\n", now_s() - t0);
	sm_vm *vm = acquire(p);
	cr_expect_neq(vm->pid, old);
	char *out = sh(vm, "echo replaced");
	cr_expect_str_eq(s(out), "replaced\n");
	free(out);
	return vm;
}

Test(pool, killed_worker_is_replaced)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 1, .max = 2, .keep_state_on_release = true });
	sm_vm *vm = acquire(p);
	pid_t pid = vm->pid;
	sm_code code;

	/* killed while held: its owner hears of it on the next call (once the kill has landed) */
	cr_assert(kill(pid, SIGKILL) == 0);
	wait_gone(pid);
	char *out = sh_code(vm, "echo alive", &code);
	cr_expect(!out, "exec on a killed worker succeeded");
	cr_expect_eq(code, SM_E_VM_DIED, "want vm-died, got %s", sm_code_name(code));
	free(out);
	sm_error *err = NULL;
	cr_expect(sm_vm_write_file(vm, "/tmp/x", "x", 1, 0644, &err) < 0 && sm_error_code(err) == SM_E_VM_DIED,
		  "write_file: %s", es(err));
	sm_error_free(err);
	sm_pool_release(vm);
	cr_expect_eq(stats(p).died, 1);
	wait_gone(pid);
	vm = acquire_replacement(p, pid);
	pid = vm->pid;
	sm_pool_release(vm);

	/* killed while idle: the pool notices on its own and replaces it (min 1) */
	cr_assert(kill(pid, SIGKILL) == 0);
	double t0 = now_s();
	while (stats(p).died < 2) {
		cr_assert(now_s() - t0 < GUARD_S, "the idle worker's death went unnoticed");
		usleep(50000);
	}
	vm = acquire_replacement(p, pid);
	sm_pool_stats st = stats(p);
	log_stats("after two kills", &st);
	cr_expect_eq(st.died, 2);
	cr_expect_eq(st.spawned, 3);
	sm_pool_release(vm);
	sm_pool_free(p);
	cr_expect_eq(count_workers(), 0);
}

Test(pool, stats_are_consistent)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 1, .max = 3 });
	sm_vm *a = acquire(p), *b = acquire(p);
	sm_pool_stats st = settle(p);

	log_stats("two held", &st);
	cr_expect_eq(st.busy, 2);
	cr_expect_eq(st.acquires, 2);
	cr_expect_eq(st.idle + st.busy + st.starting, count_workers());
	cr_expect_eq(st.spawned, count_workers());
	sm_pool_release(a);
	sm_pool_release(b); /* both reset on a pool thread */
	st = settle(p);
	log_stats("released, reset", &st);
	cr_expect_eq(st.busy, 0);
	cr_expect_eq(st.idle, 2);
	cr_expect_eq(st.idle + st.busy + st.starting, count_workers());
	a = acquire(p);
	st = stats(p);
	cr_expect_eq(st.acquires, 3);
	cr_expect_eq(st.spawned, 2, "a warm acquire restored a VM");
	cr_expect(st.acquire_p50_us <= st.acquire_p99_us && st.acquire_p99_us <= st.acquire_max_us && st.acquire_max_us > 0,
		  "latency p50 %llu p99 %llu max %llu", (unsigned long long)st.acquire_p50_us,
		  (unsigned long long)st.acquire_p99_us, (unsigned long long)st.acquire_max_us);
	sm_pool_release(a);
	sm_pool_free(p);
}

/*
 * The process that owns a pool is killed: its workers notice (they die
 * with the pool thread that spawned them) and none is left behind.
 */
Test(pool, workers_exit_when_the_owner_is_killed)
{
	int fds[2];
	pid_t w[2] = { 0, 0 };

	cr_assert(pipe(fds) == 0);
	pid_t owner = fork();
	cr_assert(owner >= 0);
	if (owner == 0) {
		sm_error *err = NULL;
		sm_pool *p = sm_pool_new(SNAP, &(sm_pool_config){ .min = 2, .max = 2 }, &err);
		sm_vm *a = p ? sm_pool_acquire(p, &err) : NULL, *b = a ? sm_pool_acquire(p, &err) : NULL;

		if (!b) {
			fprintf(stderr, "pool owner: %s\n", es(err));
			_exit(1);
		}
		pid_t pids[2] = { a->pid, b->pid };
		if (write(fds[1], pids, sizeof(pids)) != (ssize_t)sizeof(pids))
			_exit(1);
		pause();
		_exit(0);
	}
	close(fds[1]);
	ssize_t n = read(fds[0], w, sizeof(w));
	close(fds[0]);
	if (n != (ssize_t)sizeof(w)) {
		kill(owner, SIGKILL);
		waitpid(owner, NULL, 0);
		cr_assert_fail("the pool's owner did not get two VMs (see its error above)");
	}
	cr_assert(!pid_gone(w[0]) && !pid_gone(w[1]), "workers %d, %d not running", (int)w[0], (int)w[1]);
	cr_assert(kill(owner, SIGKILL) == 0);
	cr_assert(waitpid(owner, NULL, 0) == owner);
	double t0 = now_s();
	wait_gone(w[0]);
	wait_gone(w[1]);
	fprintf(stderr, "pool: both workers gone %.2f s after their owner was killed\n", now_s() - t0);
}

static char logged[2048];
static pthread_mutex_t logged_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_capture(sm_log_level level, const char *msg, void *opaque)
{
	(void)opaque;
	if (level != SM_LOG_WARN)
		return;
	pthread_mutex_lock(&logged_lock);
	snprintf(logged + strlen(logged), sizeof(logged) - strlen(logged), "%s\n", msg);
	pthread_mutex_unlock(&logged_lock);
}

Test(pool, free_with_a_vm_still_acquired)
{
	sm_pool *p = pool_new((sm_pool_config){ .min = 1, .max = 2 });
	sm_vm *vm = acquire(p);
	pid_t pid = vm->pid;
	char id[64];
	sm_code code;

	snprintf(id, sizeof(id), "%s", sm_vm_id(vm));
	sm_set_log(log_capture, NULL, SM_LOG_WARN);
	sm_pool_free(p);
	sm_set_log(NULL, NULL, SM_LOG_WARN);
	cr_expect(strstr(logged, id) && strstr(logged, "still acquired"), "warning: '%s'", logged);
	cr_expect(pid_gone(pid), "the acquired VM's worker still runs after sm_pool_free");
	char *out = sh_code(vm, "echo alive", &code);
	cr_expect(!out);
	cr_expect_eq(code, SM_E_VM_DIED, "want vm-died, got %s", sm_code_name(code));
	free(out);
	sm_pool_release(vm); /* frees it and, the last reference, the pool (ASan watches) */
	cr_expect_eq(count_workers(), 0);
}

struct cycler {
	sm_pool *pool;
	atomic_uint *next;
	unsigned total;
	bool check_reset;
	unsigned done, failed;
};

static bool cycle_once(struct cycler *c, unsigned n)
{
	char cmd[128], want[32];
	sm_error *err = NULL;
	sm_vm *vm = sm_pool_acquire(c->pool, &err);
	bool ok;

	if (!vm) {
		cr_log_error("cycle %u: acquire: %s", n, es(err));
		sm_error_free(err);
		return false;
	}
	/* with reset on release, no file of an earlier user may be there */
	if (c->check_reset)
		snprintf(cmd, sizeof(cmd), "test -e /tmp/mark && echo dirty; echo %u > /tmp/mark; echo %u", n, n);
	else
		snprintf(cmd, sizeof(cmd), "echo %u", n);
	snprintf(want, sizeof(want), "%u\n", n);
	char *out = sh(vm, cmd);
	ok = out && !strcmp(out, want);
	if (!ok)
		cr_log_error("cycle %u: got '%s', want '%s'", n, s(out), want);
	free(out);
	sm_pool_release(vm);
	return ok;
}

static void *cycle_thread(void *opaque)
{
	struct cycler *c = opaque;
	unsigned n;

	while ((n = atomic_fetch_add(c->next, 1)) < c->total) {
		if (cycle_once(c, n))
			c->done++;
		else
			c->failed++;
	}
	return NULL;
}

static void cycles(unsigned total, sm_pool_config cfg, bool check_reset)
{
	sm_pool *p = pool_new(cfg);
	atomic_uint next = 0;
	struct cycler c[THREADS];
	pthread_t t[THREADS];
	unsigned done = 0, failed = 0;
	double t0 = now_s();

	for (int i = 0; i < THREADS; i++) {
		c[i] = (struct cycler){ .pool = p, .next = &next, .total = total, .check_reset = check_reset };
		cr_assert(pthread_create(&t[i], NULL, cycle_thread, &c[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		done += c[i].done;
		failed += c[i].failed;
	}
	double dt = now_s() - t0;
	sm_pool_stats st = settle(p);
	log_stats(check_reset ? "cycles with reset" : "cycles", &st);
	fprintf(stderr, "pool: %u cycles (%s) on %d threads, max %u: %.1f s, %.1f cycles/s\n", total,
		check_reset ? "reset" : "keep state", THREADS, cfg.max, dt, total / dt);
	cr_expect_eq(failed, 0);
	cr_expect_eq(done, total);
	cr_expect_eq(st.acquires, total);
	cr_expect_eq(st.busy, 0);
	cr_expect(st.spawned <= cfg.max && st.died == 0, "spawned %llu died %llu", (unsigned long long)st.spawned,
		  (unsigned long long)st.died);
	cr_expect_eq(st.idle + st.starting, count_workers());
	sm_pool_free(p);
	cr_expect_eq(count_workers(), 0);
}

static unsigned cycles_wanted(void)
{
	const char *v = getenv("SUPERMACHINE_POOL_CYCLES");
	long n = v ? strtol(v, NULL, 10) : DEFAULT_CYCLES;

	return n > 0 && n < 10000000 ? (unsigned)n : DEFAULT_CYCLES;
}

Test(pool, many_cycles_from_8_threads)
{
	unsigned n = cycles_wanted();

	cycles(n, (sm_pool_config){ .min = 4, .max = 6, .keep_state_on_release = true }, false);
	cycles(n / 20 > 16 ? n / 20 : 16, (sm_pool_config){ .min = 2, .max = 4 }, true);
}
