/*
 * The verifier workload (docs/snapshots.md, the reference README's
 * performance recipe): a real Debian image with gcc, baked with a warmup
 * that compiles and runs a hello world once, restored, and given a C
 * source to compile and run in one exec (stage the file, gcc, then chain
 * the binary). Checks what a verifier relies on: the program's output and
 * status come back, which command ended the exec, and a compile error is
 * a non-zero status with gcc's message on stderr and the chain not run.
 *
 * The image comes from tests/fixtures/verifier/mkimage (debootstrap, so
 * root and the Debian mirror): built natively before the vm suite runs
 * (scripts/test), into $SUPERMACHINE_VERIFIER_FIXTURE, else
 * BUILD_ROOT/tests/verifier-fixture. A missing fixture fails the tests:
 * it is never built here, where the nested harness has no mirror.
 *
 * Like test_snapshot.c, the store (the pulled image, the bake) is shared
 * by every test of this binary, keyed by the runner's pid: the first test
 * bakes, later ones find the snapshot cached.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

#define SNAPSHOT "verifier"
#define MEMORY_MIB 512         /* cc1 alone wants more than the default 256 MiB leaves free */
#define EXEC_TIMEOUT_MS 600000 /* a hang guard: gcc in a nested guest is slow, a hung exec still fails */
/* The warmup: gcc, cc1, as, ld and libc's headers and objects read once, into the captured page cache. */
#define WARMUP                                                                                           \
	"printf '#include <stdio.h>\\nint main(void) { puts(\"warm\"); return 0; }\\n' > /tmp/warm.c && " \
	"gcc -O1 -o /tmp/warm /tmp/warm.c && test \"$(/tmp/warm)\" = warm && rm -f /tmp/warm /tmp/warm.c"

static char shared[256]; /* store and runtime base shared by this binary's tests */
static char IMAGE[4300];

static const char *s(const char *p)
{
	return p ? p : "";
}

static const char *es(sm_error *e)
{
	return e ? sm_error_string(e) : "?";
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The directory mkimage filled; fails (never skips) when it is not there. */
static const char *fixture_dir(void)
{
	static char dir[4096];
	char index[4200];
	const char *env = getenv("SUPERMACHINE_VERIFIER_FIXTURE");

	if (env && *env)
		snprintf(dir, sizeof(dir), "%s", env);
	else
		snprintf(dir, sizeof(dir), "%s/tests/verifier-fixture", fx_build_root());
	snprintf(index, sizeof(index), "%s/layout/index.json", dir);
	cr_assert(access(index, R_OK) == 0,
		  "the verifier image is missing (%s: %s): build it first, as root with the Debian mirror "
		  "reachable, with `tests/fixtures/verifier/mkimage %s` (scripts/test does)",
		  index, strerror(errno), dir);
	return dir;
}

static void setup(void)
{
	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	snprintf(IMAGE, sizeof(IMAGE), "oci:%s/layout:verifier", fixture_dir());
	double t0 = now_s();
	if (fx_shared_store("verifiertest", IMAGE, shared, sizeof(shared)))
		fprintf(stderr, "verifier: pull %.1f s\n", now_s() - t0);
}

TestSuite(verifier, .init = setup, .timeout = 1500);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("verifiertest");
}

static void progress(const char *step, bool done, uint64_t us, void *opaque)
{
	(void)opaque;
	if (done)
		fprintf(stderr, "verifier: bake: %s %.2f s\n", step, (double)us / 1e6);
}

/* Bakes the snapshot, or finds it cached; fails the test on error. */
static void bake(void)
{
	static const char *const warm[] = { "sh", "-c", WARMUP, NULL };
	static const char *const *const warmup[] = { warm, NULL };
	sm_bake_config c = { .vm = &(sm_vm_config){ .memory_mib = MEMORY_MIB, .vcpus = 1 },
			     .warmup = warmup, .warmup_tag = "gcc-hello-1",
			     .progress = progress };
	sm_error *err = NULL;
	char msg[2048];
	double t0 = now_s();
	int rc = sm_bake(IMAGE, SNAPSHOT, &c, &err);

	if (rc < 0) {
		snprintf(msg, sizeof(msg), "bake %s: %s", SNAPSHOT, es(err));
		sm_error_free(err);
		cr_assert_fail("%s", msg);
	}
	fprintf(stderr, "verifier: bake %s in %.1f s\n", rc == 1 ? "cached" : "done", now_s() - t0);
}

static sm_vm *restore(void)
{
	sm_error *err = NULL;
	char msg[2048];
	double t0;
	sm_vm *vm;

	bake();
	t0 = now_s();
	vm = sm_vm_restore(SNAPSHOT, NULL, &err);
	if (!vm) {
		snprintf(msg, sizeof(msg), "restore %s: %s", SNAPSHOT, es(err));
		sm_error_free(err);
		cr_assert_fail("%s", msg);
	}
	fprintf(stderr, "verifier: restore %.2f s\n", now_s() - t0);
	return vm;
}

/*
 * One verifier step: stage src as /tmp/a.c, gcc -O1 -o /tmp/a /tmp/a.c,
 * then (when it compiled) /tmp/a. Fails the test when the exec itself
 * fails; the outcome is the caller's to check and free.
 */
static void compile_and_run(sm_vm *vm, const char *src, sm_outcome *out)
{
	static const char *const cc[] = { "gcc", "-O1", "-o", "/tmp/a", "/tmp/a.c", NULL };
	static const char *const run[] = { "/tmp/a", NULL };
	sm_exec *x = sm_exec_new(vm);
	sm_error *err = NULL;
	char msg[2048];
	double t0 = now_s();

	cr_assert(x);
	cr_assert(sm_exec_stage_file(x, "/tmp/a.c", src, strlen(src)) == 0);
	cr_assert(sm_exec_argv(x, cc) == 0 && sm_exec_chain(x, run) == 0);
	cr_assert(sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS) == 0);
	memset(out, 0, sizeof(*out));
	int rc = sm_exec_output(x, out, &err);
	sm_exec_free(x);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "exec gcc && /tmp/a: %s", es(err));
		sm_error_free(err);
		cr_assert_fail("%s", msg);
	}
	fprintf(stderr, "verifier: stage+compile+run %.2f s (guest %.2f s, status %d, chain_index %u, peak rss %llu KiB)\n",
		now_s() - t0, (double)out->duration_us / 1e6, out->status, out->chain_index,
		(unsigned long long)out->peak_rss_kib);
}

/* The program computes its answer, so a stale or wrong binary cannot print it by accident. */
static const char hello_src[] = "#include <stdio.h>\n"
				"int main(void)\n"
				"{\n"
				"\tunsigned long sum = 0;\n"
				"\tfor (unsigned i = 1; i <= 100; i++)\n"
				"\t\tsum += i;\n"
				"\tprintf(\"hello, verifier: %lu\\n\", sum);\n"
				"\tfprintf(stderr, \"to stderr\\n\");\n"
				"\treturn 0;\n"
				"}\n";

Test(verifier, compiles_and_runs_a_staged_source)
{
	sm_vm *vm = restore();
	sm_outcome o;

	compile_and_run(vm, hello_src, &o);
	cr_expect_eq(o.status, 0, "status %d, stderr: %s", o.status, s(o.stderr_data));
	cr_expect_eq(o.signal, 0);
	cr_expect(!o.timed_out);
	cr_expect_eq(o.chain_index, 1, "the chained binary did not run (chain_index %u)", o.chain_index);
	cr_expect_str_eq(s(o.stdout_data), "hello, verifier: 5050\n");
	cr_expect_str_eq(s(o.stderr_data), "to stderr\n", "gcc or the program said more than expected");
	cr_expect_gt(o.peak_rss_kib, 1024, "peak RSS %llu KiB: cc1 was not measured",
		     (unsigned long long)o.peak_rss_kib);
	sm_outcome_free(&o);

	/* Again in the same VM: the first binary is overwritten, the new one's status comes back. */
	compile_and_run(vm, "int main(void) { return 42; }\n", &o);
	cr_expect_eq(o.status, 42, "status %d, stderr: %s", o.status, s(o.stderr_data));
	cr_expect_eq(o.chain_index, 1);
	cr_expect_eq(o.stdout_len, 0, "stdout: %s", s(o.stdout_data));
	sm_outcome_free(&o);
	sm_vm_free(vm);
}

Test(verifier, compile_error_is_a_status_with_gcc_message_on_stderr)
{
	sm_vm *vm = restore();
	sm_outcome o;

	compile_and_run(vm, "int main(void) { return undeclared_name; }\n", &o);
	cr_expect_neq(o.status, 0, "a source that cannot compile exited 0");
	cr_expect_eq(o.signal, 0);
	cr_expect_eq(o.chain_index, 0, "the exec did not end at gcc (chain_index %u): the binary ran", o.chain_index);
	cr_expect(strstr(s(o.stderr_data), "/tmp/a.c:1:") && strstr(s(o.stderr_data), "error:") &&
			  strstr(s(o.stderr_data), "undeclared_name"),
		  "gcc's message is not on stderr: '%s'", s(o.stderr_data));
	cr_expect_eq(o.stdout_len, 0, "stdout: %s", s(o.stdout_data));
	sm_outcome_free(&o);
	sm_vm_free(vm);
}

/* What the bake left: the warmup ran (the page cache holds gcc) and cleaned up after itself. */
Test(verifier, restored_clone_is_the_baked_image)
{
	sm_vm *vm = restore();
	sm_exec *x = sm_exec_new(vm);
	sm_error *err = NULL;
	sm_outcome o = { 0 };

	sm_exec_argv(x, (const char *[]){ "sh", "-c",
					   ". /etc/os-release && echo $VERSION_CODENAME && "
					   "gcc -dumpversion && test ! -e /tmp/warm.c && echo clean", NULL });
	sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS);
	int rc = sm_exec_output(x, &o, &err);
	sm_exec_free(x);
	if (rc < 0) {
		char msg[2048];
		snprintf(msg, sizeof(msg), "exec: %s", es(err));
		sm_error_free(err);
		cr_assert_fail("%s", msg);
	}
	cr_expect_eq(o.status, 0, "stderr: %s", s(o.stderr_data));
	cr_expect(!strncmp(s(o.stdout_data), "bookworm\n12", 11) && strstr(s(o.stdout_data), "\nclean\n"),
		  "stdout: '%s'", s(o.stdout_data));
	sm_outcome_free(&o);
	sm_vm_free(vm);
}
