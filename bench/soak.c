/*
 * Soak (issue 16): one snapshot per vCPU count (1, 2, 4) of IMAGE, each
 * restored N times with one `true` run in every clone, the counts taken
 * in turn (round r restores 1, then 2, then 4 vCPUs), so every count sees
 * the same stretch of the run. Figures, one JSON line each:
 *
 *   wK_vcpusV_p50, _p99, _max    window K (rounds K*W .. K*W+W-1): restore -> `true` finished, ms
 *   wK_vcpusV_failures           restores or execs of window K that failed
 *   wK_elapsed                   minutes since the first round, at the window's end
 *   wK_host_rss                  this process's resident memory then, KiB (a leak in the library grows it)
 *   wK_host_fds                  this process's open descriptors then (a leaked socket grows it)
 *   vcpusV_p50, _p99, _max       over the whole run, ms
 *   vcpusV_drift_p50             last window's p50 / first window's p50 (1.0: no drift)
 *   vcpusV_failures              over the whole run (goal: 0)
 *   failures                     every count together
 *
 *   soak_bench IMAGE [--rounds N] [--window W] [--vcpus LIST] [--minutes M]
 *     N restores of each count (default 10000), percentiles every W rounds (default 100), LIST
 *     "1,2,4"; M > 0 stops at the first window end after M minutes.
 *     (needs /dev/kvm and the guest kernel: SUPERMACHINE_KERNEL_DIR; uses the store at $SUPERMACHINE_HOME)
 * Every failure goes to stderr with its round (the first 50 in full).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <supermachine.h>

#include "bench_util.h"

#define MAX_COUNTS 8
#define LOUD_FAILURES 50

static void figure(const char *name, double value, const char *unit)
{
	bench_figure("soak", name, value, unit);
}

/* What the run keeps for one vCPU count. */
struct count {
	unsigned vcpus;
	char snap[64];
	double *all;       /* every round's latency, s; -1 for a failure */
	double *window;    /* this window's */
	double first_p50;  /* of the first window */
	double last_p50;
	unsigned failures, window_failures;
};

struct soak {
	unsigned rounds, window, ncounts;
	double minutes;
	struct count c[MAX_COUNTS];
	unsigned loud;     /* failures told in full so far */
	double t0;
};

static void say_failure(struct soak *s, unsigned round, unsigned vcpus, const char *what, sm_error *err)
{
	if (s->loud++ < LOUD_FAILURES)
		fprintf(stderr, "soak_bench: round %u, %u vCPUs: %s: %s\n", round, vcpus, what,
			err ? sm_error_string(err) : "?");
	else if (s->loud == LOUD_FAILURES + 1)
		fprintf(stderr, "soak_bench: more failures: only counted from here on\n");
}

/* `true` in vm; 0, or -1 with *err (or a status) to tell. */
static int exec_true(sm_vm *vm, sm_error **err, int *status)
{
	sm_exec *x = sm_exec_new(vm);
	sm_outcome o = { 0 };
	int rc;

	sm_exec_argv(x, (const char *[]){ "true", NULL });
	sm_exec_timeout_ms(x, 600000); /* a hang guard: a wedged clone is a failure, not the end of the soak */
	rc = sm_exec_output(x, &o, err);
	*status = o.status;
	if (rc == 0 && o.status != 0)
		rc = -1;
	sm_outcome_free(&o);
	sm_exec_free(x);
	return rc;
}

/* One restore of c's snapshot to a finished `true`: its latency in s, or -1. */
static double restore_once(struct soak *s, struct count *c, unsigned round)
{
	sm_error *err = NULL;
	double t0 = bench_now_s();
	sm_vm *vm = sm_vm_restore(c->snap, NULL, &err);
	int status = 0;

	if (!vm) {
		say_failure(s, round, c->vcpus, "restore", err);
		sm_error_free(err);
		return -1;
	}
	int rc = exec_true(vm, &err, &status);
	double dt = bench_now_s() - t0;
	if (rc < 0) {
		char what[64];
		snprintf(what, sizeof(what), "exec true (status %d)", status);
		say_failure(s, round, c->vcpus, what, err);
	}
	sm_error_free(err);
	sm_vm_free(vm);
	return rc < 0 ? -1 : dt;
}

/* This process's open descriptors. */
static double count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	double n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/* Percentiles of a window (or the run), v reordered; the p50, -1 when every round failed. */
static double report(const char *prefix, double *v, size_t n, unsigned failures)
{
	char name[96];
	double p50 = bench_pct(v, n, 0.5);

	snprintf(name, sizeof(name), "%s_p50", prefix);
	figure(name, p50 * 1e3, "ms");
	snprintf(name, sizeof(name), "%s_p99", prefix);
	figure(name, bench_pct(v, n, 0.99) * 1e3, "ms");
	snprintf(name, sizeof(name), "%s_max", prefix);
	figure(name, bench_pct(v, n, 1.0) * 1e3, "ms");
	snprintf(name, sizeof(name), "%s_failures", prefix);
	figure(name, failures, "");
	return p50;
}

static void window_end(struct soak *s, unsigned k, size_t n)
{
	char name[64];
	struct bench_mem m;

	for (unsigned i = 0; i < s->ncounts; i++) {
		struct count *c = &s->c[i];
		snprintf(name, sizeof(name), "w%u_vcpus%u", k, c->vcpus);
		double p50 = report(name, c->window, n, c->window_failures);
		if (k == 0)
			c->first_p50 = p50;
		c->last_p50 = p50;
		c->window_failures = 0;
	}
	bench_proc_mem(getpid(), &m);
	snprintf(name, sizeof(name), "w%u_elapsed", k);
	figure(name, (bench_now_s() - s->t0) / 60, "min");
	snprintf(name, sizeof(name), "w%u_host_rss", k);
	figure(name, m.rss, "KiB");
	snprintf(name, sizeof(name), "w%u_host_fds", k);
	figure(name, count_fds(), "");
}

/* Every round, windows reported as they end; the rounds run. */
static unsigned run(struct soak *s)
{
	unsigned r = 0, k = 0;
	size_t w = 0;

	s->t0 = bench_now_s();
	for (; r < s->rounds; r++) {
		for (unsigned i = 0; i < s->ncounts; i++) {
			struct count *c = &s->c[i];
			double dt = restore_once(s, c, r);
			c->all[r] = c->window[w] = dt;
			if (dt < 0)
				c->failures++, c->window_failures++;
		}
		if (++w < s->window && r + 1 < s->rounds)
			continue;
		window_end(s, k++, w);
		w = 0;
		if (s->minutes > 0 && bench_now_s() - s->t0 >= s->minutes * 60)
			return r + 1;
	}
	return r;
}

static void summary(struct soak *s, unsigned rounds)
{
	char name[64];
	unsigned failures = 0;

	for (unsigned i = 0; i < s->ncounts; i++) {
		struct count *c = &s->c[i];
		snprintf(name, sizeof(name), "vcpus%u", c->vcpus);
		report(name, c->all, rounds, c->failures);
		snprintf(name, sizeof(name), "vcpus%u_drift_p50", c->vcpus);
		figure(name, c->first_p50 > 0 && c->last_p50 > 0 ? c->last_p50 / c->first_p50 : -1, "ratio");
		failures += c->failures;
	}
	figure("failures", failures, "");
	figure("rounds", rounds, "");
}

/* "1,2,4" into s's counts; -1 for a bad list. */
static int parse_vcpus(struct soak *s, const char *list)
{
	char *end;

	s->ncounts = 0;
	for (const char *p = list; *p; p = *end ? end + 1 : end) {
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || v == 0 || v > 64 || (*end && *end != ',') || s->ncounts == MAX_COUNTS)
			return -1;
		s->c[s->ncounts++].vcpus = (unsigned)v;
	}
	return s->ncounts ? 0 : -1;
}

static int parse_args(struct soak *s, int argc, char **argv)
{
	*s = (struct soak){ .rounds = 10000, .window = 100 };
	if (parse_vcpus(s, "1,2,4") < 0)
		return -1;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--rounds"))
			s->rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--window"))
			s->window = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--minutes"))
			s->minutes = strtod(argv[i + 1], NULL);
		else if (strcmp(argv[i], "--vcpus") || parse_vcpus(s, argv[i + 1]) < 0)
			return -1;
	}
	return argc % 2 == 0 && s->rounds && s->window ? 0 : -1;
}

/* Bakes IMAGE once per count (cached in the store) and allocates the latency arrays. */
static int prepare(struct soak *s, const char *image)
{
	for (unsigned i = 0; i < s->ncounts; i++) {
		struct count *c = &s->c[i];
		sm_vm_config vm = { .size = sizeof(vm), .vcpus = c->vcpus };
		sm_bake_config cfg = { .size = sizeof(cfg), .vm = &vm };
		sm_error *err = NULL;

		snprintf(c->snap, sizeof(c->snap), "bench-soak-%u", c->vcpus);
		if (sm_bake(image, c->snap, &cfg, &err) < 0) {
			fprintf(stderr, "soak_bench: bake %s with %u vCPUs: %s\n", image, c->vcpus, sm_error_string(err));
			sm_error_free(err);
			return -1;
		}
		c->all = calloc(s->rounds, sizeof(double));
		c->window = calloc(s->window, sizeof(double));
		if (!c->all || !c->window)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct soak s;
	int rc = 1;

	if (argc < 2 || parse_args(&s, argc, argv) < 0) {
		fprintf(stderr, "usage: soak_bench IMAGE [--rounds N] [--window W] [--vcpus 1,2,4] [--minutes M]\n");
		return 2;
	}
	if (prepare(&s, argv[1]) == 0) {
		summary(&s, run(&s));
		rc = 0;
	}
	for (unsigned i = 0; i < s.ncounts; i++)
		free(s.c[i].all), free(s.c[i].window);
	return rc;
}
