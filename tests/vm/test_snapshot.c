/*
 * Snapshots through the library and the CLI (docs/snapshots.md): bake
 * the busybox OCI fixture, restore it many times, and check what a
 * restore must keep (processes, the tmpfs overlay) and must not (clone
 * writes, RNG state, the stale clock, volume contents), a service baked
 * on the listener trigger, reset in place, and bad snapshots refused
 * before any guest code runs.
 *
 * Cold boots are what is slow under nested KVM, so the bakes live in one
 * store shared by every test of this binary (keyed by the runner's pid):
 * the first test to need a snapshot bakes it, later ones find it cached.
 *
 * SUPERMACHINE_SNAPSHOT_RESTORES: restores per vCPU count (default 50, so
 * that CI fits its hour; `make test-long` runs 200); bench/restore has the
 * timings. SUPERMACHINE_SNAPSHOT_THREADS restores at
 * once (default 1: under tests/nested, two multi-vCPU guests at once have
 * wedged the emulated host's kernel, which says nothing about ours).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"
#include "lib/vm.h"

#define DEFAULT_RESTORES 50
#define MAX_RESTORE_THREADS 8
#define EXEC_TIMEOUT_MS 120000 /* a hang guard: a hung exec fails the test, with where it hung */
#define HTTPD_WORKLOAD                                                                                   \
	"busybox mkdir -p /tmp/www && echo hello-snapshot > /tmp/www/index.html && "                     \
	"exec busybox httpd -f -p 8080 -h /tmp/www"
/* Before the capture: a tmpfs file, a background process, and the clock an hour back. */
#define WARM_FILE "echo before-capture > /tmp/before"
#define WARM_SLEEPER "busybox setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleeper.pid"
#define WARM_CLOCK                                                                                       \
	"busybox date -u -s \"$(busybox date -u -d @$(( $(busybox date +%s) - 3600 )) '+%Y-%m-%d %H:%M:%S')\" " \
	">/dev/null && busybox date +%s > /tmp/clock-at-capture"

static char shared[256];   /* store and runtime base shared by this binary's tests */
static char IMAGE[4200];

static void need_kernel(void)
{
	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
}

static void setup(void)
{
	need_kernel();
	snprintf(IMAGE, sizeof(IMAGE), "oci:%s/layout:base", fx_images());
	fx_shared_store("snaptest", IMAGE, shared, sizeof(shared));
}

TestSuite(snapshot, .init = setup, .timeout = 1500);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("snaptest");
}

static const char *es(sm_error *e)
{
	return e ? sm_error_string(e) : "?";
}

/* Fails the test with err's text when !ok, freeing err first (no leak reports on failure). */
static void assert_ok(bool ok, sm_error **err, const char *what)
{
	char msg[2048];

	if (ok)
		return;
	snprintf(msg, sizeof(msg), "%s: %s", what, es(*err));
	sm_error_free(*err);
	*err = NULL;
	cr_assert_fail("%s", msg);
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

/* Runs sh -c cmd in vm; stdout (malloc'ed) or NULL when it did not exit 0. */
static char *sh(sm_vm *vm, const char *cmd)
{
	sm_exec *x = sm_exec_new(vm);
	sm_outcome o = { 0 };
	sm_error *err = NULL;
	char *out = NULL;

	sm_exec_argv(x, (const char *[]){ "sh", "-c", cmd, NULL });
	sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS);
	fprintf(stderr, "snapshot: exec %s\n", cmd);
	if (sm_exec_output(x, &o, &err) < 0) {
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

static void progress(const char *step, bool done, uint64_t us, void *opaque)
{
	if (done)
		fprintf(stderr, "snapshot: bake %s: %s %.2f s\n", (const char *)opaque, step, (double)us / 1e6);
}

/* Bakes (or finds cached) name with a warmup; fails the test on error. */
static void bake(const char *name, unsigned vcpus, const char *const *const *warmup, const sm_volume *vols,
		 size_t nvols, const char *const *workload, sm_bake_trigger trig, uint32_t value)
{
	sm_bake_config c = { .vm = &(sm_vm_config){ .vcpus = vcpus, .volumes = vols, .nvolumes = nvols, .workload = workload },
			     .trigger = trig, .trigger_value = value, .warmup = warmup,
			     .progress = progress, .progress_opaque = (void *)name };
	sm_error *err = NULL;
	double t0 = now_s();
	int rc = sm_bake(IMAGE, name, &c, &err);

	assert_ok(rc >= 0, &err, name);
	fprintf(stderr, "snapshot: bake %s: %s in %.2f s\n", name, rc == 1 ? "cached" : "baked", now_s() - t0);
}

static const char *const warm_file[] = { "sh", "-c", WARM_FILE, NULL };
static const char *const warm_sleeper[] = { "sh", "-c", WARM_SLEEPER, NULL };
static const char *const warm_clock[] = { "sh", "-c", WARM_CLOCK, NULL };
static const char *const *const main_warmup[] = { warm_file, warm_sleeper, warm_clock, NULL };

static void bake_main(void)
{
	bake("main", 1, main_warmup, NULL, 0, NULL, SM_BAKE_READY, 0);
}

static sm_vm *restore(const char *name)
{
	sm_error *err = NULL;

	fprintf(stderr, "snapshot: restore %s\n", name);
	sm_vm *vm = sm_vm_restore(name, NULL, &err);

	assert_ok(vm != NULL, &err, name);
	return vm;
}

static unsigned restores_wanted(void)
{
	const char *v = getenv("SUPERMACHINE_SNAPSHOT_RESTORES");
	long n = v ? strtol(v, NULL, 10) : DEFAULT_RESTORES;

	return n > 0 && n < 100000 ? (unsigned)n : DEFAULT_RESTORES;
}

struct restore_job {
	const char *name;
	unsigned vcpus, first, end;
	double sum, worst;
	char fail[1024];
};

/* No Criterion asserts off the test's thread: a failure is kept in j->fail. */
static void *restore_loop(void *arg)
{
	struct restore_job *j = arg;
	char want[32];

	snprintf(want, sizeof(want), "ok\n%u\n", j->vcpus);
	for (unsigned i = j->first; i < j->end && !j->fail[0]; i++) {
		sm_error *err = NULL;
		double t0 = now_s();
		sm_vm *vm = sm_vm_restore(j->name, NULL, &err);

		if (!vm) {
			snprintf(j->fail, sizeof(j->fail), "restore %u of %s: %s", i, j->name, es(err));
			sm_error_free(err);
			break;
		}
		char *out = sh(vm, "echo ok; busybox nproc");
		double dt = now_s() - t0;
		if (!out || strcmp(out, want))
			snprintf(j->fail, sizeof(j->fail), "restore %u of %s: exec gave '%s' (console: %s)", i,
				 j->name, s(out), sm_vm_console_path(vm));
		free(out);
		sm_vm_free(vm);
		j->sum += dt;
		j->worst = dt > j->worst ? dt : j->worst;
	}
	return NULL;
}

/* N restores of one snapshot, each to a successful exec (1 vCPU: the main snapshot). */
static void restores(const char *name, unsigned vcpus)
{
	static const char *const t[] = { "true", NULL };
	static const char *const *const warm[] = { t, NULL };
	struct restore_job job[MAX_RESTORE_THREADS] = { 0 };
	pthread_t th[MAX_RESTORE_THREADS];
	const char *tv = getenv("SUPERMACHINE_SNAPSHOT_THREADS");
	unsigned nt = tv ? (unsigned)strtoul(tv, NULL, 10) : 1;
	unsigned n = restores_wanted();
	double sum = 0, worst = 0, t0;

	if (vcpus == 1)
		bake_main();
	else
		bake(name, vcpus, warm, NULL, 0, NULL, SM_BAKE_READY, 0);
	if (nt < 1 || nt > MAX_RESTORE_THREADS)
		nt = 1;
	t0 = now_s();
	for (unsigned k = 0; k < nt; k++) {
		job[k] = (struct restore_job){ .name = name, .vcpus = vcpus, .first = n * k / nt,
					       .end = n * (k + 1) / nt };
		cr_assert_eq(pthread_create(&th[k], NULL, restore_loop, &job[k]), 0);
	}
	for (unsigned k = 0; k < nt; k++)
		pthread_join(th[k], NULL);
	for (unsigned k = 0; k < nt; k++) {
		cr_assert_eq(job[k].fail[0], 0, "%s", job[k].fail);
		sum += job[k].sum;
		worst = job[k].worst > worst ? job[k].worst : worst;
	}
	fprintf(stderr, "snapshot: %u restores, %u vCPUs, %u at a time: %.1f s in all, mean %.3f s, worst %.3f s "
		"per restore+exec\n", n, vcpus, nt, now_s() - t0, sum / n, worst);
}

Test(snapshot, restores_1_vcpu) { restores("main", 1); }
Test(snapshot, restores_2_vcpus) { restores("r2", 2); }
Test(snapshot, restores_4_vcpus) { restores("r4", 4); }

Test(snapshot, state_kept_clones_independent_clock_and_entropy)
{
	bake_main();
	sm_vm *a = restore("main"), *b = restore("main");
	char *out;

	/* the tmpfs overlay and a process from before the capture */
	out = sh(a, "cat /tmp/before");
	cr_expect_str_eq(s(out), "before-capture\n");
	free(out);
	out = sh(a, "kill -0 $(cat /tmp/sleeper.pid) && echo alive");
	cr_expect_str_eq(s(out), "alive\n", "the process started before the capture is gone");
	free(out);

	/* a write in clone A is not in clone B */
	out = sh(a, "echo from-a > /tmp/after && cat /tmp/after");
	cr_expect_str_eq(s(out), "from-a\n");
	free(out);
	out = sh(b, "test -e /tmp/after && echo present || echo absent");
	cr_expect_str_eq(s(out), "absent\n");
	free(out);

	/* RNG: the two clones must not share their output */
	char *ra = sh(a, "busybox od -An -tx1 -N64 /dev/urandom | busybox tr -d ' \\n'");
	char *rb = sh(b, "busybox od -An -tx1 -N64 /dev/urandom | busybox tr -d ' \\n'");
	cr_expect(ra && rb && strlen(ra) == 128 && strcmp(ra, rb) != 0, "urandom: '%s' vs '%s'", s(ra), s(rb));
	free(ra), free(rb);

	/* the clock: an hour back at capture, right after restore */
	time_t before = time(NULL);
	out = sh(a, "busybox date +%s; cat /tmp/clock-at-capture");
	time_t after = time(NULL);
	long guest = 0, at_capture = 0;
	cr_assert(out && sscanf(out, "%ld\n%ld", &guest, &at_capture) == 2, "date: '%s'", s(out));
	cr_expect(guest >= before - 1 && guest <= after + 1, "guest clock %ld, host %ld..%ld", guest,
		  (long)before, (long)after);
	cr_expect(before - at_capture >= 3500, "the clock was not set back before the capture (%ld vs %ld)",
		  at_capture, (long)before);
	free(out);
	sm_vm_free(a);
	sm_vm_free(b);
}

/* The guest's balloon reaches want pages (polled through the worker's control socket). */
static bool balloon_reaches(sm_vm *vm, unsigned want, char *reply, size_t len)
{
	for (int i = 0; i < 480; i++) {
		const char *a;
		if (vm_control(vm, "balloon", reply, len, NULL) == 0 && (a = strstr(reply, " actual=")) &&
		    strtoul(a + 8, NULL, 10) == want)
			return true;
		usleep(250 * 1000);
	}
	return false;
}

static int warm_write(sm_vm *vm, void *opaque, sm_error **err)
{
	return sm_vm_write_file(vm, "/tmp/from-callback", opaque, strlen(opaque), 0644, err);
}

static int warm_refuse(sm_vm *vm, void *opaque, sm_error **err)
{
	(void)vm;
	(void)opaque;
	(void)err;
	return -1;
}

/* Also the warmup callback: its file is in the snapshot; its failure fails the bake. */
Test(snapshot, balloon_target_applied_after_restore_and_reset)
{
	sm_bake_config c = { .balloon_target_mib = 64, .progress = progress, .progress_opaque = "balloon",
			     .warmup_fn = warm_write, .warmup_opaque = "written-in-warmup" };
	sm_error *err = NULL;
	char reply[512];

	c.balloon_target_mib = 256;
	cr_assert(sm_bake(IMAGE, "never", &c, &err) < 0, "a balloon as large as RAM was accepted");
	cr_expect(strstr(es(err), "balloon target 256 MiB"), "%s", es(err));
	sm_error_free(err);
	err = NULL;
	c.balloon_target_mib = 64;
	assert_ok(sm_bake(IMAGE, "balloon", &c, &err) >= 0, &err, "balloon");
	sm_vm *vm = restore("balloon");
	char *out = sh(vm, "cat /tmp/from-callback");
	cr_expect_str_eq(s(out), "written-in-warmup");
	free(out);
	cr_assert(balloon_reaches(vm, 64 * 256, reply, sizeof(reply)), "restore: %s", reply);
	cr_expect(strstr(reply, "target=16384 "), "%s", reply);
	cr_assert(sm_vm_reset(vm, &err) == 0, "reset: %s", es(err));
	cr_assert(balloon_reaches(vm, 64 * 256, reply, sizeof(reply)), "after reset: %s", reply);
	sm_vm_free(vm);

	c = (sm_bake_config){ .warmup_fn = warm_refuse };
	cr_assert(sm_bake(IMAGE, "refused", &c, &err) < 0, "a failing warmup callback did not fail the bake");
	cr_expect(strstr(es(err), "warmup callback"), "%s", es(err));
	cr_expect(!sm_snapshot_exists("refused"), "a failed bake left a snapshot");
	sm_error_free(err);
}

Test(snapshot, image_open_start_acquire)
{
	sm_error *err = NULL;
	char *out;

	cr_assert_null(sm_image_open("no-such-snapshot", &err));
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", es(err));
	sm_error_free(err);
	err = NULL;
	bake_main();
	sm_image *img = sm_image_open("main", &err);
	assert_ok(img != NULL, &err, "open main");
	cr_expect(strstr(sm_image_path(img), "/snapshots/main"), "%s", sm_image_path(img));
	sm_vm *vm = sm_image_start(img, NULL, &err);
	assert_ok(vm != NULL, &err, "start");
	out = sh(vm, "cat /tmp/before");
	cr_expect_str_eq(s(out), "before-capture\n");
	free(out);
	sm_vm_free(vm);
	/* The image's own pool: made by the first acquire, reused by the next. */
	for (int i = 0; i < 2; i++) {
		vm = sm_image_acquire(img, &err);
		assert_ok(vm != NULL, &err, "acquire");
		out = sh(vm, "echo pooled");
		cr_expect_str_eq(s(out), "pooled\n");
		free(out);
		sm_pool_release(vm);
	}
	sm_image_free(img);
}

Test(snapshot, reset_in_place)
{
	sm_error *err = NULL;
	char *out;

	bake_main();
	sm_vm *vm = restore("main");
	out = sh(vm, "echo scratch > /tmp/scratch && cat /tmp/before");
	cr_expect_str_eq(s(out), "before-capture\n");
	free(out);
	cr_assert(sm_vm_reset(vm, &err) == 0, "reset: %s", es(err));
	out = sh(vm, "test -e /tmp/scratch && echo kept || echo gone; cat /tmp/before");
	cr_expect_str_eq(s(out), "gone\nbefore-capture\n");
	free(out);
	sm_vm_free(vm);
}

Test(snapshot, service_baked_on_listener_serves_right_after_restore)
{
	static const char *const workload[] = { "sh", "-c", HTTPD_WORKLOAD, NULL };
	sm_error *err = NULL;

	bake("web", 1, NULL, NULL, 0, workload, SM_BAKE_LISTENER, 8080);
	double t0 = now_s();
	sm_vm *vm = restore("web");
	sm_forward *f = sm_vm_expose_tcp(vm, "127.0.0.1", 0, 8080, &err);
	cr_assert(f, "expose: %s", es(err));
	char *page = fx_http_get(sm_forward_port(f)); /* no retry: it listened at the capture */
	double dt = now_s() - t0;
	cr_expect(page && strstr(page, "hello-snapshot"), "no page right after restore: '%s'", s(page));
	fprintf(stderr, "snapshot: restore -> expose_tcp -> first page: %.3f s\n", dt);
	free(page);
	sm_forward_stop(f);
	sm_vm_free(vm);
}

Test(snapshot, volumes_are_not_captured)
{
	char vol[300], spec[400], *out = NULL, *errs = NULL;
	sm_volume v = { .guest_path = "/data", .size_bytes = 64 << 20 };
	sm_vm_config cfg = { .volumes = &v, .nvolumes = 1 };
	static const char *const w[] = { "sh", "-c", "echo at-bake > /data/bake && sync", NULL };
	static const char *const *const warm[] = { w, NULL };
	sm_error *err = NULL;

	snprintf(vol, sizeof(vol), "%s/vol.ext4", shared);
	v.host_path = vol;
	bake("vol", 1, warm, &v, 1, NULL, SM_BAKE_READY, 0);

	/* a restore without the volume is refused, naming it */
	cr_expect(sm_vm_restore("vol", NULL, &err) == NULL);
	cr_expect(err && sm_error_code(err) == SM_E_INVALID && strstr(es(err), "/data"), "%s", es(err));
	sm_error_free(err), err = NULL;

	sm_vm *vm = sm_vm_restore("vol", &cfg, &err);
	cr_assert(vm, "restore with the volume: %s", es(err));
	out = sh(vm, "cat /data/bake && echo after-restore > /data/late && sync");
	cr_expect_str_eq(s(out), "at-bake\n");
	free(out);
	cr_expect(sm_vm_stop(vm, 0, &err) == 0, "stop: %s", es(err));
	sm_vm_free(vm);

	/* what the clone wrote went to the host's file, not to the snapshot */
	int rc = fx_sh(&out, &errs, "debugfs -R 'cat /late' '%s'", vol);
	cr_expect(rc == 0 && strstr(s(out), "after-restore"), "host file lacks the clone's write: %s %s", s(out),
		  s(errs));
	free(out), free(errs);
	snprintf(spec, sizeof(spec), "du -k '%s/store/snapshots/vol'", shared);
	rc = fx_sh(&out, NULL, "%s", spec);
	cr_expect(rc == 0);
	fprintf(stderr, "snapshot: disk use of a snapshot with a volume (KiB): %s", s(out));
	free(out);
}

/* A copy of snapshot main's files in dir (a snapshot of its own, at a path). */
static void copy_main(const char *dir)
{
	int rc = fx_sh(NULL, NULL, "rm -rf '%s' && cp -a '%s/store/snapshots/main' '%s'", dir, shared, dir);
	cr_assert(rc == 0);
}

static void expect_refused(const char *dir, sm_code code, const char *needle)
{
	char runtime[300];
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_restore(dir, NULL, &err);

	cr_expect(vm == NULL, "restored a bad snapshot (%s)", needle);
	cr_expect(err && sm_error_code(err) == code && strstr(es(err), needle), "want %s '%s', got %s: %s",
		  sm_code_name(code), needle, err ? sm_code_name(sm_error_code(err)) : "-", es(err));
	sm_error_free(err);
	sm_vm_free(vm);
	snprintf(runtime, sizeof(runtime), "%s/run/supermachine", shared);
	cr_expect_eq(fx_count_vms(runtime), 0, "a VM was left behind");
}

Test(snapshot, bad_snapshots_are_refused_before_guest_code)
{
	char dir[300], rootfs[4096] = "";
	char *out = NULL;

	bake_main();
	snprintf(dir, sizeof(dir), "%s/bad", shared);

	copy_main(dir);
	cr_assert(fx_sh(NULL, NULL, "rm '%s/metadata.json'", dir) == 0);
	expect_refused(dir, SM_E_SNAPSHOT, "metadata.json is missing");
	cr_expect(!sm_snapshot_exists(dir));

	copy_main(dir);
	cr_assert(fx_sh(NULL, NULL, "truncate -s -4096 '%s/memory'", dir) == 0);
	expect_refused(dir, SM_E_SNAPSHOT, "truncated");

	copy_main(dir);
	cr_assert(fx_sh(NULL, NULL, "sed -i 's/\"version\": 1/\"version\": 99/' '%s/metadata.json'", dir) == 0);
	expect_refused(dir, SM_E_SNAPSHOT, "version 99");

	copy_main(dir);
	cr_assert(fx_sh(NULL, NULL, "printf garbage | dd of='%s/state' bs=1 seek=100 conv=notrunc 2>/dev/null", dir) ==
		  0);
	expect_refused(dir, SM_E_VM_DIED, "state");

	/* the rootfs changed under the snapshot; put back, it is accepted again */
	copy_main(dir);
	cr_assert(fx_sh(&out, NULL,
			"python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"rootfs\"][\"path\"])' "
			"'%s/metadata.json'", dir) == 0);
	snprintf(rootfs, sizeof(rootfs), "%.*s", (int)strcspn(s(out), "\n"), s(out));
	free(out);
	cr_assert(rootfs[0] == '/', "no rootfs path in the metadata");
	cr_assert(fx_sh(NULL, NULL, "printf x >> '%s'", rootfs) == 0);
	expect_refused(dir, SM_E_SNAPSHOT, "changed since the snapshot was taken");
	cr_assert(fx_sh(NULL, NULL, "truncate -s -1 '%s'", rootfs) == 0);
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_restore(dir, NULL, &err);
	cr_expect(vm, "the restored rootfs is refused: %s", es(err));
	sm_vm_free(vm);
	fx_rmrf(dir);
}

/* The CLI: pull --name bakes, run restores, snapshot captures a detached VM, images lists, rm removes. */
Test(snapshot, cli_pull_name_run_snapshot_images_rm)
{
	char *out = NULL, *err = NULL, *id;
	int rc;

	rc = fx_sh(&out, &err, "timeout 300 '%s' pull '%s' --name cli --warmup 'echo warm > /tmp/w'", fx_cli(), IMAGE);
	cr_assert_eq(rc, 0, "pull --name: %s", s(err));
	cr_expect(strstr(s(out), "\ncli\n"), "pull --name printed '%s'", s(out));
	cr_expect(strstr(s(err), "bake cli: capture done in"), "no progress lines: %s", s(err));
	free(out), free(err);

	rc = fx_sh(&out, &err, "timeout 300 '%s' pull '%s' --name cli --warmup 'echo warm > /tmp/w'", fx_cli(), IMAGE);
	cr_expect_eq(rc, 0, "%s", s(err));
	cr_expect(strstr(s(err), "up-to-date"), "a second identical bake was not cached: %s", s(err));
	free(out), free(err);

	rc = fx_sh(&out, &err, "timeout 300 '%s' run --rm cli cat /tmp/w", fx_cli());
	cr_expect_eq(rc, 0, "run: %s", s(err));
	cr_expect_str_eq(s(out), "warm\n");
	free(out), free(err);

	rc = fx_sh(&out, &err, "timeout 300 '%s' run -d cli", fx_cli());
	cr_assert_eq(rc, 0, "run -d: %s", s(err));
	id = strndup(s(out), strcspn(s(out), "\n"));
	free(out), free(err);
	rc = fx_sh(&out, &err, "timeout 300 '%s' exec %s sh -c 'echo second > /tmp/w2' && timeout 300 '%s' snapshot %s cli2", fx_cli(), id,
		   fx_cli(), id);
	cr_expect_eq(rc, 0, "snapshot: %s", s(err));
	free(out), free(err);
	rc = fx_sh(&out, &err, "timeout 300 '%s' exec %s cat /tmp/w2", fx_cli(), id);
	cr_expect_eq(rc, 0, "the VM did not keep running after its capture: %s", s(err));
	free(out), free(err);
	rc = fx_sh(&out, &err, "timeout 300 '%s' snapshot %s cli2", fx_cli(), id);
	cr_expect_neq(rc, 0, "a second capture over cli2 succeeded");
	cr_expect(strstr(s(err), "already exists"), "%s", s(err));
	free(out), free(err);
	rc = fx_sh(&out, &err, "timeout 300 '%s' stop %s", fx_cli(), id);
	cr_expect_eq(rc, 0);
	free(out), free(err), free(id);

	rc = fx_sh(&out, &err, "timeout 300 '%s' run --rm cli2 cat /tmp/w /tmp/w2", fx_cli());
	cr_expect_eq(rc, 0, "run cli2: %s", s(err));
	cr_expect_str_eq(s(out), "warm\nsecond\n");
	free(out), free(err);

	rc = fx_sh(&out, &err, "timeout 300 '%s' images", fx_cli());
	cr_expect(rc == 0 && strstr(s(out), "SNAPSHOT") && strstr(s(out), "cli2"), "images: %s", s(out));
	free(out), free(err);

	rc = fx_sh(&out, &err, "timeout 300 '%s' rm cli cli2", fx_cli());
	cr_expect(rc == 0 && strstr(s(out), "removed snapshot cli2"), "rm: %s %s", s(out), s(err));
	free(out), free(err);
	rc = fx_sh(&out, &err, "timeout 300 '%s' images --snapshots --json", fx_cli());
	cr_expect(rc == 0 && !strstr(s(out), "cli"), "still listed after rm: %s %s", s(out), s(err));
	free(out), free(err);

	rc = fx_sh(&out, &err, "timeout 300 '%s' run --rm no-such-snapshot-or-image true", fx_cli());
	cr_expect_eq(rc, 125);
	free(out), free(err);
}

/* The heartbeat and after=MS triggers capture no earlier than they say. */
Test(snapshot, heartbeat_and_after_triggers)
{
	static const char *const beats[] = {
		"sh", "-c",
		"i=0; while [ $i -lt 50 ]; do i=$((i+1)); echo $i > /tmp/beats; "
		"echo -n . > /run/supermachine/heartbeat; sleep 1; done; exec sleep 100000", NULL
	};
	static const char *const waits[] = {
		"sh", "-c", "busybox cut -d' ' -f1 /proc/uptime > /tmp/started; exec sleep 100000", NULL
	};
	char *out;

	bake("beats", 1, NULL, NULL, 0, beats, SM_BAKE_HEARTBEAT, 3);
	sm_vm *vm = restore("beats");
	out = sh(vm, "cat /tmp/beats");
	cr_expect(out && atoi(out) >= 3, "captured after %s heartbeats, want 3", s(out));
	free(out);
	sm_vm_free(vm);

	bake("after", 1, NULL, NULL, 0, waits, SM_BAKE_AFTER_MS, 3000);
	vm = restore("after");
	/* the guest's monotonic clock runs on from the capture: uptime now - workload start >= 3 s */
	out = sh(vm, "echo $(busybox cut -d' ' -f1 /proc/uptime) $(cat /tmp/started)");
	double now = 0, started = 0;
	cr_assert(out && sscanf(out, "%lf %lf", &now, &started) == 2, "uptime: '%s'", s(out));
	cr_expect(now - started >= 3.0, "captured %.2f s after the workload started, want >= 3", now - started);
	free(out);
	sm_vm_free(vm);
}
