/*
 * Nothing lost in a crash (issue 16):
 *  - a guest appends records to a file on an ext4 volume, fdatasync()ing
 *    each and saying so, while its worker is SIGKILLed at a random moment;
 *    afterwards every record whose sync the guest saw return is in the
 *    host file, in order, and e2fsck finds the ext4 clean or makes it so
 *    by replaying its journal. SUPERMACHINE_CRASH_ROUNDS rounds (default 3 here; the
 *    issue's 50 with SUPERMACHINE_CRASH_ROUNDS=50), SUPERMACHINE_CRASH_SEED to repeat one.
 *  - `supermachine pull --name` SIGKILLed at random points of its bake:
 *    the name is then either missing or a whole snapshot that restores,
 *    and no half-written capture is listed.
 * The guest side is sm-fsprobe's "log" mode (tests/vm/guest/fs_probe.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

#define PROBE "/tmp/sm-fsprobe"

static char IMAGE[4200];

static void setup(void)
{
	fx_vm_store("crashtest", IMAGE, sizeof(IMAGE));
}

TestSuite(crash, .init = setup, .timeout = 2400);

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("crashtest");
}

static unsigned env_uint(const char *name, unsigned def)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : def;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail_with(sm_error *err, const char *what)
{
	char msg[2048];

	snprintf(msg, sizeof(msg), "%s: %s", what, err ? sm_error_string(err) : "?");
	sm_error_free(err);
	cr_assert_fail("%s", msg);
}

static void install_probe(sm_vm *vm)
{
	fx_vm_put_file(vm, SM_FS_PROBE, PROBE, 0755);
}

/* Reads "ack N" lines from fd for about seconds; the last N acknowledged, or first - 1. */
static long read_acks(int fd, double seconds, long first)
{
	char buf[8192];
	size_t len = 0;
	long last = first - 1;
	double end = now_s() + seconds;

	while (now_s() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			long v;
			*nl = 0;
			if (sscanf(line, "ack %ld", &v) == 1)
				last = v;
			line = nl + 1;
		}
		len = strlen(line);
		memmove(buf, line, len + 1);
	}
	return last;
}

/* The records in the volume's /log, checked to run first..; the last one. */
static long check_volume(const char *vol, long acked, unsigned round)
{
	char *out = NULL, *err = NULL;
	long want = 0, v;
	int rc;

	/* 0: clean; 1: errors corrected (a journal replayed); more is damage */
	rc = fx_sh(&out, &err, "e2fsck -fy '%s' 2>&1 || [ $? -eq 1 ]", vol);
	cr_expect_eq(rc, 0, "round %u: e2fsck could not make the volume clean:\n%s", round, out);
	free(out), free(err);
	rc = fx_sh(&out, &err, "e2fsck -fn '%s' >/dev/null 2>&1 && debugfs -R 'cat /log' '%s' 2>/dev/null", vol, vol);
	cr_assert_eq(rc, 0, "round %u: the volume is not clean after e2fsck -fy, or /log is unreadable: %s", round,
		     err);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		if (sscanf(line, "rec %ld", &v) != 1 || v != want) {
			cr_expect_fail("round %u: record %ld is '%s'", round, want, line);
			break;
		}
		want++;
	}
	cr_expect_geq(want - 1, acked, "round %u: the guest saw record %ld synced, the host file ends at %ld", round,
		      acked, want - 1);
	free(out), free(err);
	return want - 1;
}

Test(crash, synced_volume_writes_survive_a_killed_worker)
{
	unsigned rounds = env_uint("SUPERMACHINE_CRASH_ROUNDS", 3), seed = env_uint("SUPERMACHINE_CRASH_SEED", (unsigned)time(NULL));
	char *dir = fx_tmpdir(), vol[4300], first_arg[32];
	sm_volume v = { .host_path = vol, .guest_path = "/data", .size_bytes = 64u << 20 };
	sm_vm_config cfg = { .size = sizeof(cfg), .volumes = &v, .nvolumes = 1 };
	long next = 0, acked_total = 0;

	snprintf(vol, sizeof(vol), "%s/vol.ext4", dir);
	srand(seed);
	cr_log_info("crash: %u rounds, SUPERMACHINE_CRASH_SEED=%u", rounds, seed);
	for (unsigned i = 0; i < rounds; i++) {
		sm_error *err = NULL;
		sm_vm *vm = sm_vm_start(IMAGE, &cfg, &err);
		if (!vm)
			fail_with(err, "start with the volume");
		install_probe(vm);
		snprintf(first_arg, sizeof(first_arg), "%ld", next);
		sm_exec *x = sm_exec_new(vm);
		sm_exec_argv(x, (const char *[]){ PROBE, "log", "/data/log", first_arg, NULL });
		sm_child *c = sm_exec_spawn(x, &err);
		if (!c)
			fail_with(err, "spawn the writer");
		double run = 0.3 + 2.7 * (double)rand() / RAND_MAX;
		long acked = read_acks(sm_child_stdout(c), run, next);
		/* the worker dies mid-write: no flush, no unmount */
		cr_assert(syscall(SYS_pidfd_send_signal, sm_vm_pidfd(vm), SIGKILL, NULL, 0) == 0, "kill: %s",
			  strerror(errno));
		sm_child_free(c);
		sm_exec_free(x);
		sm_vm_free(vm);
		acked_total += acked - next + 1;
		next = check_volume(vol, acked, i) + 1;
	}
	cr_log_info("crash: %ld synced records over %u kills, none lost", acked_total, rounds);
	cr_expect_gt(acked_total, 0, "the guest never got a record synced");
	fx_rmrf(dir);
	free(dir);
}

/* `supermachine ARGS...` with the test's store; its status. */
static int cli(char **out, const char *const *args)
{
	const char *argv[16] = { fx_cli() };
	int n = 1;

	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return fx_run((char *const *)argv, NULL, out, NULL);
}

static pid_t bake_start(void)
{
	pid_t pid = fork();

	cr_assert(pid >= 0);
	if (pid == 0) {
		freopen("/dev/null", "w", stdout);
		freopen("/dev/null", "w", stderr);
		execl(fx_cli(), "supermachine", "pull", "-q", "--net", "none", "--name", "crashsnap", "--force", IMAGE,
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int bake_wait(pid_t pid)
{
	int st;

	cr_assert(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(crash, a_killed_bake_leaves_a_whole_snapshot_or_none)
{
	unsigned rounds = env_uint("SUPERMACHINE_CRASH_BAKE_ROUNDS", 3), seed = env_uint("SUPERMACHINE_CRASH_SEED", (unsigned)time(NULL));
	double t0 = now_s(), full;
	char *out = NULL;

	cr_assert_eq(bake_wait(bake_start()), 0, "a bake without kills failed");
	full = now_s() - t0;
	cr_assert_eq(cli(&out, (const char *[]){ "rm", "crashsnap", NULL }), 0);
	free(out);
	srand(seed);
	cr_log_info("crash: a bake takes %.1f s; %u kills, SUPERMACHINE_CRASH_SEED=%u", full, rounds, seed);
	for (unsigned i = 0; i < rounds; i++) {
		pid_t pid = bake_start();
		usleep((useconds_t)(full * 1e6 * (0.2 + 0.8 * (double)rand() / RAND_MAX)));
		kill(pid, SIGKILL);
		bake_wait(pid);
		sleep(1); /* the killed bake's worker dies with it (the launcher's death signal) */
		cr_assert_eq(cli(&out, (const char *[]){ "images", "--snapshots", "--json", NULL }), 0, "images after a killed bake");
		cr_expect_null(strstr(out, ".partial-"), "round %u: a half-written capture is listed: %s", i, out);
		bool listed = strstr(out, "\"crashsnap\"") != NULL;
		free(out);
		if (listed) {
			/* whole, or it would not have its name: it restores */
			cr_expect_eq(cli(&out, (const char *[]){ "run", "--rm", "crashsnap", "true", NULL }), 0,
				     "round %u: the snapshot a killed bake left does not restore", i);
			free(out);
			cr_assert_eq(cli(&out, (const char *[]){ "rm", "crashsnap", NULL }), 0);
			free(out);
		}
	}
}
