/*
 * Snapshot clones never share randomness (issue 19, docs/snapshots.md).
 *
 * For each way a clone comes to be (sm_vm_restore, `supermachine run --rm
 * NAME CMD`, a pool's acquire after a reset, a snapshot baked on
 * after=MS with warmup commands), the first reads of getrandom(),
 * /dev/urandom and /proc/sys/kernel/random/uuid differ across CLONES
 * clones of one snapshot. boot_id differs too when nothing read it before
 * the capture, and is the bake's own in every clone when something did.
 * A workload baked running draws fresh randomness as well: it is frozen
 * from the capture until the clone's CRNG was reseeded, so a random value
 * it wrote in one clone shows up in another only on a line both inherited
 * from the snapshot.
 *
 * tests/vm/guest/entropy_probe.c (sm-rnd) is put in the snapshots by the
 * bake's warmup callback, so the exec that runs it is a clone's first
 * request. The bakes live in one store shared by this binary's tests.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

#define CLONES 20
#define EXEC_TIMEOUT_MS 120000 /* a hang guard */
#define PROBE "/tmp/sm-rnd"
#define WL_FILE "/tmp/wl"
#define WL_LINES 80 /* the workload's last lines a clone reports */
/* Waits for sm-rnd, installed by the warmup callback, then draws randomness every 50 ms. */
#define WL_SCRIPT "while [ ! -x " PROBE " ]; do sleep 0.1; done; exec " PROBE " --loop " WL_FILE " 50"

enum { V_GETRANDOM, V_URANDOM, V_UUID, V_BOOTID, NVAL };
static const char *const val_names[NVAL] = { "getrandom", "urandom", "uuid", "bootid" };

struct sample {
	char v[NVAL][80];
};

static char IMAGE[4200];

static void setup(void)
{
	fx_vm_store("entropytest", IMAGE, sizeof(IMAGE));
}

TestSuite(entropy, .init = setup, .timeout = 1500);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("entropytest");
}

/* Fails the test with err's text when !ok, freeing err first (no leak report on a failure). */
static void assert_ok(bool ok, sm_error **err, const char *what, int i)
{
	char msg[2048];

	if (ok)
		return;
	snprintf(msg, sizeof(msg), "%s (%d): %s", what, i, *err ? sm_error_string(*err) : "see the log");
	sm_error_free(*err);
	*err = NULL;
	cr_assert_fail("%s", msg);
}

static const char *s(const char *p)
{
	return p ? p : "";
}

/* Runs argv in vm: its stdout (malloc'ed) when it exited 0; else NULL, with *err set if the exec failed. */
static char *run_argv(sm_vm *vm, const char *const *argv, sm_error **err)
{
	sm_exec *x = sm_exec_new(vm);
	sm_outcome o = { 0 };
	char *out = NULL;

	sm_exec_argv(x, argv);
	sm_exec_timeout_ms(x, EXEC_TIMEOUT_MS);
	if (sm_exec_output(x, &o, err) == 0) {
		if (o.status == 0)
			out = strdup(s(o.stdout_data));
		else
			cr_log_error("%s: status %d, stderr %s", argv[0], o.status, s(o.stderr_data));
		sm_outcome_free(&o);
	}
	sm_exec_free(x);
	return out;
}

/* ---- the bakes ---------------------------------------------------------------------------- */

static char *read_host_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	long n;

	cr_assert(fp, "%s", path);
	cr_assert(fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) > 0 && fseek(fp, 0, SEEK_SET) == 0);
	buf = malloc((size_t)n);
	cr_assert(buf && fread(buf, 1, (size_t)n, fp) == (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* The warmup callback: sm-rnd in place whole (the workload may be waiting to exec it), then opaque's check. */
static int install_probe(sm_vm *vm, void *opaque, sm_error **err)
{
	size_t len;
	char *bin = read_host_file(SM_ENTROPY_PROBE, &len), *out = NULL;
	int rc = sm_vm_write_file(vm, PROBE ".part", bin, len, 0755, err);

	free(bin);
	if (rc == 0)
		out = run_argv(vm, (const char *[]){ "sh", "-c", "busybox mv " PROBE ".part " PROBE, NULL }, err);
	if (out && opaque) {
		free(out);
		out = run_argv(vm, (const char *[]){ "sh", "-c", opaque, NULL }, err);
	}
	rc = out ? 0 : -1;
	free(out);
	return rc;
}

static void progress(const char *step, bool done, uint64_t us, void *opaque)
{
	if (done)
		fprintf(stderr, "entropy: bake %s: %s %.2f s\n", (const char *)opaque, step, (double)us / 1e6);
}

static void bake(const char *name, sm_bake_config *c)
{
	sm_error *err = NULL;
	int rc;

	c->warmup_fn = install_probe;
	c->progress = progress;
	c->progress_opaque = (void *)name;
	rc = sm_bake(IMAGE, name, c, &err);
	assert_ok(rc >= 0, &err, name, 0);
}

/* Ready at once; nothing reads boot_id before the capture. */
static void bake_plain(void)
{
	sm_bake_config c = { .trigger = SM_BAKE_READY };

	bake("plain", &c);
}

/* after=MS with warmup commands (one reads boot_id) and a workload drawing randomness all along. */
static void bake_service(void)
{
	static const char *const wl[] = { "sh", "-c", WL_SCRIPT, NULL };
	static const char *const w1[] = { "sh", "-c", "cat /proc/sys/kernel/random/boot_id > /tmp/bootid-at-bake", NULL };
	static const char *const w2[] = { "sh", "-c", "busybox head -c 64 /dev/urandom > /dev/null", NULL };
	static const char *const *const warm[] = { w1, w2, NULL };
	sm_bake_config c = { .vm = &(sm_vm_config){ .workload = wl }, .trigger = SM_BAKE_AFTER_MS, .trigger_value = 1000,
			     .warmup = warm,
			     .warmup_opaque = "while [ ! -s " WL_FILE " ]; do sleep 0.1; done" };

	bake("service", &c);
}

/* ---- the samples -------------------------------------------------------------------------- */

/* sm-rnd's output into *sm; false when it is not all there. */
static bool parse(const char *out, struct sample *sm)
{
	char name[16], val[80];
	int got = 0;

	memset(sm, 0, sizeof(*sm));
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (sscanf(p, "%15s %79s", name, val) != 2)
			continue;
		for (int k = 0; k < NVAL; k++)
			if (!strcmp(name, val_names[k]) && !sm->v[k][0]) {
				snprintf(sm->v[k], sizeof(sm->v[k]), "%s", val);
				got++;
			}
	}
	return got == NVAL;
}

static void parse_or_fail(char *out, const char *what, int i, struct sample *sm)
{
	char msg[1024];

	if (parse(s(out), sm))
		return;
	snprintf(msg, sizeof(msg), "%s, clone %d: sm-rnd printed '%s'", what, i, s(out));
	free(out);
	cr_assert_fail("%s", msg);
}

/* Clone i's first request: sm-rnd, starting with source i % 3. */
static void probe(sm_vm *vm, int i, struct sample *sm)
{
	char first[2] = { (char)('0' + i % 3), 0 };
	sm_error *err = NULL;
	char *out = run_argv(vm, (const char *[]){ PROBE, first, "bootid", NULL }, &err);

	assert_ok(out, &err, "sm-rnd in clone", i);
	parse_or_fail(out, "exec", i, sm);
	free(out);
}

/* Values k of n samples are pairwise different; returns how many pairs are not. */
static int expect_distinct(const struct sample *sm, int n, int k, const char *path)
{
	int same = 0;

	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			bool eq = !strcmp(sm[i].v[k], sm[j].v[k]);
			cr_expect(!eq, "%s: clones %d and %d read the same %s: %s", path, i, j, val_names[k],
				  sm[i].v[k]);
			same += eq;
		}
	return same;
}

static void expect_all_distinct(const struct sample *sm, int n, const char *path)
{
	int same = 0;

	for (int k = 0; k < NVAL; k++)
		same += expect_distinct(sm, n, k, path);
	fprintf(stderr, "entropy: %s: %d clones, pairs with a value in common (getrandom, urandom, uuid, boot_id): %d\n",
		path, n, same);
}

static sm_vm *restore(const char *name)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_restore(name, NULL, &err);

	assert_ok(vm, &err, name, 0);
	return vm;
}

/* ---- the paths ---------------------------------------------------------------------------- */

Test(entropy, restore_then_exec)
{
	struct sample sm[CLONES];

	bake_plain();
	for (int i = 0; i < CLONES; i++) {
		sm_vm *vm = restore("plain");
		probe(vm, i, &sm[i]);
		sm_vm_free(vm);
	}
	expect_all_distinct(sm, CLONES, "sm_vm_restore");
}

Test(entropy, cli_run_rm)
{
	struct sample sm[CLONES];

	bake_plain();
	for (int i = 0; i < CLONES; i++) {
		char *out = NULL, *err = NULL;
		int rc = fx_sh(&out, &err, "timeout 300 '%s' run --rm plain " PROBE " %d bootid", fx_cli(), i % 3);

		cr_expect_eq(rc, 0, "run --rm, clone %d: %s", i, s(err));
		free(err);
		parse_or_fail(out, "run --rm", i, &sm[i]);
		free(out);
	}
	expect_all_distinct(sm, CLONES, "supermachine run --rm");
}

/* One VM, reset on every release: each acquire after the first gets a reset clone. */
Test(entropy, pool_acquire_after_reset)
{
	sm_pool_config pc = { .min = 1, .max = 1, .acquire_timeout_ms = EXEC_TIMEOUT_MS };
	struct sample sm[CLONES + 1];
	sm_error *err = NULL;
	sm_pool *p;

	bake_plain();
	p = sm_pool_new("plain", &pc, &err);
	assert_ok(p, &err, "pool", 0);
	for (int i = 0; i <= CLONES; i++) {
		sm_vm *vm = sm_pool_acquire(p, &err);
		assert_ok(vm, &err, "acquire", i);
		probe(vm, i, &sm[i]);
		sm_pool_release(vm);
	}
	sm_pool_free(p);
	expect_all_distinct(sm, CLONES + 1, "sm_pool_acquire after reset");
}

/* ---- a service baked on after=MS -------------------------------------------------------- */

struct wl_line {
	long long mono;
	char rnd[40];
};

struct wl_clone {
	struct wl_line line[WL_LINES];
	int n;
};

/* The workload's last lines, once it wrote two more after this exec began: those are the clone's own. */
static void workload_lines(sm_vm *vm, int i, struct wl_clone *w)
{
	static const char *const cmd[] = {
		"sh", "-c",
		"n=$(busybox wc -l < " WL_FILE "); "
		"while [ $(busybox wc -l < " WL_FILE ") -lt $((n + 2)) ]; do sleep 0.05; done; "
		"busybox tail -n 80 " WL_FILE, NULL
	};
	sm_error *err = NULL;
	char *out = run_argv(vm, cmd, &err);

	assert_ok(out, &err, "the workload's lines in clone", i);
	w->n = 0;
	for (char *p = out; *p && w->n < WL_LINES; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
		if (sscanf(p, "%lld %39s", &w->line[w->n].mono, w->line[w->n].rnd) == 2)
			w->n++;
	free(out);
	cr_assert(w->n >= 2, "clone %d: %d workload lines", i, w->n);
}

/*
 * A random value in two clones' lines is there only because both inherited
 * the line from the snapshot, so the whole line matches. Were the workload
 * to run in a clone before the reseed, it would write lines with the
 * clone's own clock and the snapshot's next random values.
 */
static void expect_workload_fresh(const struct wl_clone *w, int n)
{
	int early = 0;

	for (int i = 0; i < n; i++) {
		int own = 0;
		for (int a = 0; a < w[i].n; a++) {
			bool shared_line = false;
			for (int j = 0; j < n; j++) {
				if (j == i)
					continue;
				for (int b = 0; b < w[j].n; b++) {
					if (strcmp(w[i].line[a].rnd, w[j].line[b].rnd))
						continue;
					shared_line = true;
					early += w[i].line[a].mono != w[j].line[b].mono;
					cr_expect_eq(w[i].line[a].mono, w[j].line[b].mono,
						     "clones %d and %d: the workload drew %s at different times (%lld, %lld ns)"
						     ": it ran before the clone's CRNG was reseeded",
						     i, j, w[i].line[a].rnd, w[i].line[a].mono, w[j].line[b].mono);
				}
			}
			own += !shared_line;
		}
		cr_expect_geq(own, 1, "clone %d: no line of the workload's own", i);
	}
	fprintf(stderr, "entropy: workload draws shared by clones at different times: %d\n", early);
}

Test(entropy, after_ms_warmup_and_workload)
{
	static struct wl_clone w[CLONES];
	struct sample sm[CLONES];
	char baked[80] = "";
	int same = 0;

	bake_service();
	for (int i = 0; i < CLONES; i++) {
		sm_vm *vm = restore("service");
		sm_error *err = NULL;
		char *out;

		probe(vm, i, &sm[i]);
		out = run_argv(vm, (const char *[]){ "cat", "/tmp/bootid-at-bake", NULL }, &err);
		assert_ok(out, &err, "boot_id at the bake, in clone", i);
		snprintf(baked, sizeof(baked), "%.*s", (int)strcspn(out, "\n"), out);
		free(out);
		/* read before the capture: the snapshot's, in every clone (docs/snapshots.md) */
		cr_expect_str_eq(sm[i].v[V_BOOTID], baked, "clone %d", i);
		workload_lines(vm, i, &w[i]);
		sm_vm_free(vm);
	}
	for (int k = V_GETRANDOM; k <= V_UUID; k++)
		same += expect_distinct(sm, CLONES, k, "after=MS + warmup");
	fprintf(stderr, "entropy: after=MS + warmup: %d clones, pairs with a value in common (getrandom, urandom, "
		"uuid): %d; boot_id, read at the bake: %s\n", CLONES, same, baked);
	expect_workload_fresh(w, CLONES);
}
