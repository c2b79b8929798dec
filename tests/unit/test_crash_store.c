/*
 * Nothing a crash leaves in the store is trusted later (issue 16, "nothing
 * lost in a crash"): `supermachine pull` is SIGKILLed at random points of
 * its run, over SUPERMACHINE_CRASH_ROUNDS rounds (default 20; the seed is printed and
 * SUPERMACHINE_CRASH_SEED repeats a run), from an OCI layout and from the local
 * docker-registry. After every kill the store must hold only whole
 * things: each blob hashes to its name, index.json is JSON naming blobs
 * that are there, each root filesystem passes e2fsck, `images` works, and
 * a pull afterwards completes and boots nothing half-made.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

TestSuite(crash_store, .timeout = 600);

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts `supermachine pull -q src` with SUPERMACHINE_HOME=home; its pid. */
static pid_t pull_start(const char *home, const char *src)
{
	char env[4300];
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		snprintf(env, sizeof(env), "SUPERMACHINE_HOME=%s", home);
		putenv(env);
		freopen("/dev/null", "w", stdout);
		freopen("/dev/null", "w", stderr);
		execl(fx_cli(), "supermachine", "pull", "-q", src, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int pull_wait(pid_t pid)
{
	int st;

	cr_assert(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Every blob's bytes hash to its name. */
static void check_blobs(const char *home, unsigned round)
{
	char dir[4300], *out = NULL, *err = NULL;
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/blobs/sha256", home);
	d = opendir(dir);
	if (!d)
		return; /* killed before the first blob: nothing to trust */
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int rc = fx_sh(&out, &err, "sha256sum < '%s/%s'", dir, e->d_name);
		cr_assert(rc == 0, "sha256sum: %s", err);
		cr_expect(strncmp(out, e->d_name, 64) == 0, "round %u: blob %s holds bytes hashing to %.64s", round,
			  e->d_name, out);
		free(out), free(err);
		out = err = NULL;
	}
	closedir(d);
}

/* index.json, when there is one, is JSON; and each root filesystem in the store is a clean ext4. */
static void check_index_and_rootfs(const char *home, unsigned round)
{
	char path[4300], *out = NULL, *err = NULL;
	json_error_t jerr;
	struct dirent *e;
	json_t *j;
	DIR *d;

	snprintf(path, sizeof(path), "%s/index.json", home);
	if (fx_exists(path)) {
		j = json_load_file(path, 0, &jerr);
		cr_expect(j, "round %u: index.json is not JSON: %s", round, jerr.text);
		json_decref(j);
	}
	snprintf(path, sizeof(path), "%s/rootfs", home);
	d = opendir(path);
	while (d && (e = readdir(d))) {
		if (!strstr(e->d_name, ".ext4") || strchr(e->d_name, '.') != strrchr(e->d_name, '.'))
			continue; /* only installed images: NAME.ext4 */
		int rc = fx_sh(&out, &err, "e2fsck -fn '%s/%s' >/dev/null 2>&1 || /sbin/e2fsck -fn '%s/%s'", path,
			       e->d_name, path, e->d_name);
		cr_expect(rc == 0, "round %u: rootfs %s is not a clean ext4: %s%s", round, e->d_name, out, err);
		free(out), free(err);
		out = err = NULL;
	}
	if (d)
		closedir(d);
	/* a run after the crash reads the store without error */
	char env[4400];
	snprintf(env, sizeof(env), "SUPERMACHINE_HOME='%s'", home);
	cr_expect(fx_sh(&out, &err, "%s '%s' images --json", env, fx_cli()) == 0, "round %u: images after a kill: %s",
		  round, err);
	free(out), free(err);
}

static void crash_rounds(const char *src, const char *what)
{
	const char *r = getenv("SUPERMACHINE_CRASH_ROUNDS"), *s = getenv("SUPERMACHINE_CRASH_SEED");
	unsigned rounds = r ? (unsigned)atoi(r) : 20, seed = s ? (unsigned)atoi(s) : (unsigned)time(NULL);
	char *home = fx_tmpdir(), *out = NULL, *err = NULL, env[4400];
	double t0, full;
	unsigned killed = 0;

	/* how long a whole pull takes here: the kills land anywhere in it */
	t0 = now_s();
	cr_assert_eq(pull_wait(pull_start(home, src)), 0, "%s: a pull without kills failed", what);
	full = now_s() - t0;
	fx_rmrf(home);
	cr_log_info("%s: a whole pull takes %.3f s; %u rounds, SUPERMACHINE_CRASH_SEED=%u", what, full, rounds, seed);
	srand(seed);
	for (unsigned i = 0; i < rounds; i++) {
		pid_t pid = pull_start(home, src);
		usleep((useconds_t)(full * 1e6 * (double)rand() / RAND_MAX));
		kill(pid, SIGKILL);
		bool was_killed = pull_wait(pid) == 128 + SIGKILL;
		killed += was_killed;
		check_blobs(home, i);
		check_index_and_rootfs(home, i);
		if (!was_killed)
			fx_rmrf(home); /* it finished: start the next round from nothing, so it writes again */
	}
	/* and the store still works: the next pull completes on top of whatever was left */
	cr_expect_eq(pull_wait(pull_start(home, src)), 0, "%s: a pull after %u kills failed (SUPERMACHINE_CRASH_SEED=%u)", what,
		     killed, seed);
	snprintf(env, sizeof(env), "SUPERMACHINE_HOME='%s'", home);
	cr_expect(fx_sh(&out, &err, "%s '%s' inspect '%s'", env, fx_cli(), src) == 0, "inspect after the kills: %s",
		  err);
	free(out), free(err);
	check_blobs(home, rounds);
	check_index_and_rootfs(home, rounds);
	cr_log_info("%s: %u of %u pulls were killed mid-way", what, killed, rounds);
	fx_rmrf(home);
	free(home);
}

Test(crash_store, pull_killed_from_a_layout)
{
	char src[4300];

	snprintf(src, sizeof(src), "oci:%s/layout:busybox", fx_images());
	crash_rounds(src, "layout");
}

Test(crash_store, pull_killed_from_a_registry)
{
	struct fx_server reg, aux = { 0 };
	char src[4300];

	fx_registry_start(FX_PLAIN, &reg, &aux);
	snprintf(src, sizeof(src), "127.0.0.1:%d/test/busybox", reg.port);
	crash_rounds(src, "registry");
	fx_server_stop(&reg);
	if (aux.pid > 0)
		fx_server_stop(&aux);
}

/* A half-written capture (NAME.partial-XXXXXX, what a bake killed mid-capture leaves). */
static void make_partial(const char *home, const char *name, time_t age_s)
{
	char dir[4300], file[4400];
	struct timespec t[2] = { { .tv_sec = time(NULL) - age_s }, { .tv_sec = time(NULL) - age_s } };
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/snapshots", home);
	mkdir(dir, 0700);
	snprintf(dir, sizeof(dir), "%s/snapshots/%s", home, name);
	cr_assert(mkdir(dir, 0700) == 0);
	snprintf(file, sizeof(file), "%s/memory", dir);
	f = fopen(file, "w");
	cr_assert(f);
	for (int i = 0; i < 64; i++)
		fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", f);
	fclose(f);
	cr_assert(utimensat(AT_FDCWD, file, t, 0) == 0 && utimensat(AT_FDCWD, dir, t, 0) == 0);
}

Test(crash_store, a_killed_capture_is_no_snapshot_and_prune_collects_it)
{
	char *home = fx_tmpdir(), env[4400], path[4400];
	sm_prune_report r = SM_PRUNE_REPORT_INIT;
	sm_snapshot_list *l;
	sm_error *err = NULL;

	snprintf(env, sizeof(env), "SUPERMACHINE_HOME=%s", home);
	putenv(env);
	make_partial(home, "web.partial-Ab12Cd", 3600);
	make_partial(home, "db.partial-Ef34Gh", 0);
	l = sm_snapshot_list_load(&err);
	cr_assert(l, "%s", err ? sm_error_string(err) : "");
	cr_expect_eq(sm_snapshot_list_count(l), 0, "a half-written capture is listed as a snapshot");
	sm_snapshot_list_free(l);
	cr_expect_null(sm_vm_restore("web.partial-Ab12Cd", NULL, &err), "a half-written capture restores");
	cr_expect(err && sm_error_code(err) == SM_E_INVALID, "%s", err ? sm_error_string(err) : "no error");
	sm_error_free(err);
	err = NULL;
	cr_assert(sm_store_prune(&r, &err) == 0, "%s", err ? sm_error_string(err) : "");
	snprintf(path, sizeof(path), "%s/snapshots/web.partial-Ab12Cd", home);
	cr_expect_not(fx_exists(path), "prune left the stale capture");
	snprintf(path, sizeof(path), "%s/snapshots/db.partial-Ef34Gh", home);
	cr_expect(fx_exists(path), "prune took a capture that may still be writing");
	cr_expect_geq(r.store_bytes, 4096, "freed %llu bytes", (unsigned long long)r.store_bytes);
	fx_rmrf(home);
	free(home);
}
