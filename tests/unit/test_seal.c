/*
 * The seal (src/guest/seal.c, docs/protocol.md): from QUIESCE to RESUME
 * the agent serves no exec, file, TCP bridge or workload signal, and the
 * workload's and the execs' cgroups are frozen; RESUME thaws and unseals.
 *
 * The real agent runs on this host with --test-resume: its RESUME only
 * thaws and unseals, since this machine's clock and RNG are not the
 * test's to touch (tests/vm/test_entropy.c covers the reseed in a VM).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/agent.h"
#include "test_agent_fixture.h"

#define SEAL_WAIT "1500" /* the agent's bound on a sealed wait, ms */

static struct agent_fixture fx;

static void start_with(bool musl, const char *const *extra)
{
	const char *argv[16] = { "--test-resume", "--seal-wait-ms", SEAL_WAIT };
	int n = 3;

	for (int i = 0; extra && extra[i] && n < 15; i++)
		argv[n++] = extra[i];
	agent_fixture_start(&fx, agent_fixture_binary(musl), argv);
}

static void start(void)
{
	start_with(false, NULL);
}

/* The shipping static musl /init: its futex and cgroup calls are the ones a VM runs. */
static void start_musl(void)
{
	start_with(true, NULL);
}

static void stop(void)
{
	agent_fixture_stop(&fx);
}

TestSuite(seal, .init = start, .fini = stop, .timeout = 60);

static void quiesce(void)
{
	sm_error *err = NULL;

	cr_assert(agent_quiesce(&fx.target, 0, &err) == 0, "quiesce: %s", sm_error_string(err));
}

static void resume(void)
{
	uint8_t rnd[PROTO_RESUME_ENTROPY] = { 1 };
	struct proto_pong pong;
	sm_error *err = NULL;

	cr_assert(agent_resume(&fx.target, 1, rnd, sizeof(rnd), &pong, &err) == 0, "resume: %s", sm_error_string(err));
}

/* Runs `sh -c script` and returns its stdout (malloc'ed), or NULL with *err. */
static char *sh_out(const char *script, sm_error **err)
{
	sm_exec *x = fixture_sh(&fx.target, script);
	sm_outcome o;
	char *out = NULL;

	if (sm_exec_output(x, &o, err) == 0) {
		out = strdup(o.stdout_data ? o.stdout_data : "");
		sm_outcome_free(&o);
	}
	sm_exec_free(x);
	return out;
}

struct bg_exec {
	pthread_t t;
	const char *script;
	char *out;
	volatile int done;
};

static void *bg_run(void *arg)
{
	struct bg_exec *b = arg;
	sm_error *err = NULL;

	b->out = sh_out(b->script, &err);
	sm_error_free(err);
	__atomic_store_n(&b->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void expect_sealed_error(int rc, sm_error **err, const char *what)
{
	cr_expect(rc < 0, "%s was served while sealed", what);
	cr_expect_eq(sm_error_code(*err), SM_E_TIMEOUT, "%s: %s", what, sm_error_string(*err));
	cr_expect(strstr(sm_error_string(*err), "quiesced for a snapshot and not resumed"), "%s: %s", what,
		  sm_error_string(*err));
	sm_error_free(*err);
	*err = NULL;
}

Test(seal, requests_wait_for_resume_others_are_served)
{
	struct bg_exec b = { .script = "echo ran" };
	struct proto_pong pong;
	sm_error *err = NULL;
	uint64_t beats;
	uint16_t port;
	bool found;

	quiesce();
	cr_assert(pthread_create(&b.t, NULL, bg_run, &b) == 0);
	/* what the bake's triggers and the host's checks use still answers */
	cr_expect(agent_ping(&fx.target, &pong, &err) == 0, "ping: %s", sm_error_string(err));
	cr_expect(agent_heartbeat(&fx.target, &beats, &err) == 0, "heartbeat: %s", sm_error_string(err));
	cr_expect(agent_probe_listen(&fx.target, 1, &found, &port, &err) == 0, "probe: %s", sm_error_string(err));
	quiesce(); /* a second QUIESCE (a bake sends two) is no error */
	usleep(400 * 1000);
	cr_expect(!__atomic_load_n(&b.done, __ATOMIC_SEQ_CST), "an exec ran while the agent was sealed");
	resume();
	pthread_join(b.t, NULL);
	cr_expect_str_eq(b.out ? b.out : "(failed)", "ran\n");
	free(b.out);
}

Test(seal, unresumed_seal_fails_requests_clearly, .init = start_musl)
{
	sm_error *err = NULL;
	char *out;

	quiesce();
	expect_sealed_error(agent_write_file(&fx.target, "/tmp/sm-seal-never", "x", 1, 0644, &err), &err,
			    "write file");
	cr_expect(access("/tmp/sm-seal-never", F_OK) < 0, "the file was written while sealed");
	out = sh_out("echo ran", &err);
	expect_sealed_error(out ? 0 : -1, &err, "exec");
	free(out);
	expect_sealed_error(agent_signal_workload(&fx.target, SIGTERM, &err), &err, "workload signal");
	resume();
	out = sh_out("echo ran", &err);
	cr_expect_str_eq(out ? out : sm_error_string(err), "ran\n");
	free(out);
}

/* Sends HELLO and an exec of `sh -c script`, then hangs up without waiting for anything. */
static void exec_and_hang_up(const char *script)
{
	const char *argv[] = { "sh", "-c", script, NULL };
	const char **cmds[] = { argv };
	struct proto_exec e = { .cwd = "", .user = "", .ncmds = 1, .cmds = cmds };
	struct agent_conn c;
	sm_error *err = NULL;

	cr_assert(agent_open(&c, &fx.target, false, &err) == 0, "%s", sm_error_string(err));
	cr_assert(proto_encode_exec(&c.out, &e) == 0);
	cr_assert(agent_send(&c, 0, &err) == 0, "%s", sm_error_string(err));
	usleep(200 * 1000); /* the agent has read the request and waits on the seal */
	agent_close(&c);
}

/* As in a clone whose vsock reset ended the connection of a request that waited on the seal. */
Test(seal, request_whose_host_left_is_dropped)
{
	char marker[128], script[256], *log;

	snprintf(marker, sizeof(marker), "/tmp/sm-seal-ghost-%d", (int)getpid());
	snprintf(script, sizeof(script), "touch %s", marker);
	unlink(marker);
	quiesce();
	exec_and_hang_up(script);
	resume();
	usleep(500 * 1000);
	cr_expect(access(marker, F_OK) < 0, "an exec whose host had gone ran after the resume");
	unlink(marker);
	log = agent_fixture_log(&fx);
	cr_expect(strstr(log, "the host went away while the VM was sealed"), "%s", log);
	free(log);
}

/* A directory that is no cgroup: each exec runs outside one, as when making its cgroup fails in a VM. */
Test(seal, quiesce_refused_after_an_uncontained_exec)
{
	char dir[128], *out;
	sm_error *err = NULL;

	agent_fixture_stop(&fx);
	snprintf(dir, sizeof(dir), "/tmp/sm-seal-nocg-%d", (int)getpid());
	cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST);
	start_with(false, (const char *[]){ "--cgroup", dir, NULL });
	out = sh_out("echo ran", &err);
	cr_expect_str_eq(out ? out : sm_error_string(err), "ran\n");
	free(out);
	cr_expect(agent_quiesce(&fx.target, 0, &err) < 0, "sealed although an exec could not be frozen");
	cr_expect(strstr(sm_error_string(err), "runs outside a cgroup"), "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	/* the failed seal left nothing sealed */
	out = sh_out("echo still", &err);
	cr_expect_str_eq(out ? out : sm_error_string(err), "still\n");
	free(out);
	rmdir(dir);
}

/* ---- with cgroup2: the freeze itself ------------------------------------------------------ */

static char cg_dir[256], wl_file[128], bg_file[128];

static void start_cgroup(void)
{
	char cfg[128], wl[256];

	agent_fixture_cgroup2(cg_dir, sizeof(cg_dir));
	if (!cg_dir[0])
		cr_skip_test("no writable cgroup2 hierarchy here");
	snprintf(cfg, sizeof(cfg), "/tmp/sm-seal-config-%d", (int)getpid());
	snprintf(wl_file, sizeof(wl_file), "/tmp/sm-seal-workload-%d", (int)getpid());
	snprintf(bg_file, sizeof(bg_file), "/tmp/sm-seal-background-%d", (int)getpid());
	snprintf(wl, sizeof(wl), "while :; do echo w >> %s; sleep 0.05; done", wl_file);
	agent_fixture_config(cfg, (const char *[]){ "sh", "-c", wl }, 3);
	start_with(false, (const char *[]){ "--config", cfg, "--cgroup", cg_dir, NULL });
	unlink(cfg);
}

/* The agent is gone with what it ran; its cgroups are empty, or soon. */
static void stop_cgroup(void)
{
	DIR *d;
	struct dirent *e;
	char path[600];

	agent_fixture_stop(&fx);
	unlink(wl_file);
	unlink(bg_file);
	if (!cg_dir[0] || !(d = opendir(cg_dir)))
		return;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", cg_dir, e->d_name);
		for (int i = 0; i < 500 && rmdir(path) < 0 && errno == EBUSY; i++)
			usleep(10000);
	}
	closedir(d);
	cr_expect(rmdir(cg_dir) == 0, "rmdir %s: %s", cg_dir, strerror(errno));
}

TestSuite(seal_cgroup, .init = start_cgroup, .fini = stop_cgroup, .timeout = 60);

static off_t size_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Waits up to 10 s for path to grow past size. */
static bool grows(const char *path, off_t size)
{
	for (int i = 0; i < 1000; i++) {
		if (size_of(path) > size)
			return true;
		usleep(10000);
	}
	return false;
}

/* How many child cgroups of cg_dir cgroup.events calls frozen (want) */
static int count_frozen(bool want)
{
	DIR *d = opendir(cg_dir);
	struct dirent *e;
	char path[600], buf[256];
	int n = 0;

	cr_assert(d);
	while ((e = readdir(d))) {
		FILE *fp;
		size_t len;

		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/cgroup.events", cg_dir, e->d_name);
		fp = fopen(path, "r");
		len = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
		buf[len] = 0;
		if (fp)
			fclose(fp);
		n += !!strstr(buf, want ? "frozen 1" : "frozen 0");
	}
	closedir(d);
	return n;
}

Test(seal_cgroup, workload_and_exec_frozen_until_resume)
{
	char script[256], *out;
	sm_error *err = NULL;
	off_t wl, bg;

	/* an exec that leaves a process running in its cgroup */
	snprintf(script, sizeof(script),
		 "(while :; do echo b >> %s; sleep 0.05; done) </dev/null >/dev/null 2>&1 & echo started", bg_file);
	out = sh_out(script, &err);
	cr_assert_str_eq(out ? out : sm_error_string(err), "started\n");
	free(out);
	cr_assert(grows(wl_file, 0) && grows(bg_file, 0), "the workload or the background process does not run");

	quiesce();
	cr_expect_eq(count_frozen(true), 2, "the workload's and the exec's cgroups are not both frozen");
	wl = size_of(wl_file);
	bg = size_of(bg_file);
	usleep(500 * 1000);
	cr_expect_eq(size_of(wl_file), wl, "the workload ran while sealed");
	cr_expect_eq(size_of(bg_file), bg, "the exec's process ran while sealed");

	resume();
	cr_expect_eq(count_frozen(false), 2, "a cgroup is still frozen after the resume");
	cr_expect(grows(wl_file, wl), "the workload did not run again after the resume");
	cr_expect(grows(bg_file, bg), "the exec's process did not run again after the resume");
}
