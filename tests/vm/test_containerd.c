/*
 * supermachine-runtime under the real hosts that drive it (issue 17,
 * docs/kubernetes.md): a private containerd 1.6 whose runc shim is
 * pointed at the built runtime with ctr's --runc-binary, and a dockerd on
 * it with --add-runtime. Both are started and stopped by
 * tests/fixtures/daemons under this test's temporary directory, which
 * also stops them if the test process dies. The image is the busybox
 * fixture's "base" (tests/fixtures/oci/mkimages) as an OCI archive (ctr)
 * and a docker archive (docker load). Every command runs under
 * timeout(1), so nothing waits for ever.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fixtures/oci_fixture.h"

#define CMD_TIMEOUT_S 300 /* one ctr/docker command: a VM boot under nested KVM takes seconds */
#define STOP_WAIT_S 120
#define IMAGE "test/base:latest"

static char *tmp;                  /* daemons (d/), store, runtime dirs, runtime --root, archives */
static char daemons[4200];         /* the daemons' directory */
static char rt_root[4200];         /* the runtime's --root under the runc shim */
static char vm_runtime[4300];      /* XDG_RUNTIME_DIR/supermachine: one directory per VM */
static char home_env[4300], xdg_env[4300];
static char ctr[4400], docker[4400], rt[8800]; /* the commands, with their address or --root */

static const char *runtime_bin(void)
{
	return SM_TEST_RUNTIME;
}

static void need_kernel(void)
{
	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
}

/* "timeout T PREFIX ARGS" through fx_sh, ARGS formatted: the exit status (124 on timeout). */
#define run(prefix, out, err, fmt, ...) \
	fx_sh(out, err, "timeout -k 5 %d %s " fmt, CMD_TIMEOUT_S, prefix, ##__VA_ARGS__)

/* tests/fixtures/daemons WHAT DIR [ARG]: asserts it succeeded. */
static void daemons_do(const char *what, const char *arg)
{
	char prefix[4400], *err = NULL;
	int rc;

	snprintf(prefix, sizeof(prefix), "'%s/tests/fixtures/daemons'", fx_source_root());
	rc = run(prefix, NULL, &err, "%s '%s' '%s'", what, daemons, arg);
	cr_assert_eq(rc, 0, "tests/fixtures/daemons %s failed (%d):\n%s", what, rc, err);
	free(err);
}

/* The fixture's base image as an archive of kind (oci-archive, docker-archive) at tmp/NAME. */
static void archive(const char *kind, const char *name)
{
	char *err = NULL;
	int rc = fx_sh(NULL, &err, "skopeo --insecure-policy copy -q 'oci:%s/layout:base' '%s:%s/%s:" IMAGE "'",
		       fx_images(), kind, tmp, name);

	cr_assert_eq(rc, 0, "skopeo %s: %s", kind, err);
	free(err);
}

/* A private store and VM runtime base, a containerd on tmp/d holding the image. */
static void setup(void)
{
	char *err = NULL, dir[4200];
	int rc;

	need_kernel(); /* here, not in a test: a skipped test runs no .fini */
	signal(SIGPIPE, SIG_IGN);
	tmp = fx_tmpdir();
	snprintf(home_env, sizeof(home_env), "SUPERMACHINE_HOME=%s/store", tmp);
	snprintf(dir, sizeof(dir), "%s/run", tmp);
	cr_assert(mkdir(dir, 0700) == 0);
	snprintf(xdg_env, sizeof(xdg_env), "XDG_RUNTIME_DIR=%s", dir);
	snprintf(vm_runtime, sizeof(vm_runtime), "%s/supermachine", dir);
	putenv(home_env); /* containerd passes its environment to the shims, and they to the runtime */
	putenv(xdg_env);
	snprintf(daemons, sizeof(daemons), "%s/d", tmp);
	snprintf(rt_root, sizeof(rt_root), "%s/rt-root", tmp);
	snprintf(ctr, sizeof(ctr), "ctr --address '%s/containerd.sock'", daemons);
	snprintf(docker, sizeof(docker), "docker -H 'unix://%s/docker.sock'", daemons);
	snprintf(dir, sizeof(dir), "%d", (int)getpid());
	daemons_do("containerd", dir);
	archive("oci-archive", "base.tar");
	rc = run(ctr, NULL, &err, "image import --snapshotter native '%s/base.tar'", tmp);
	cr_assert_eq(rc, 0, "ctr image import: %s", err);
	free(err);
}

static void teardown(void)
{
	if (!tmp)
		return;
	daemons_do("stop", "");
	fx_rmrf(tmp);
	free(tmp);
	tmp = NULL;
}

TestSuite(containerd, .init = setup, .fini = teardown, .timeout = 600);

/* ctr run --rm under the runc shim with BINARY as its runc; out/err captured. */
static int ctr_run(const char *binary, const char *id, char **out, char **err, const char *cmd)
{
	return run(ctr, out, err, "run --rm --snapshotter native --runc-binary '%s' --runc-root '%s' " IMAGE " %s %s",
		   binary, rt_root, id, cmd);
}

/* Nothing left of finished containers: the runtime's state, the VMs, containerd's records. */
static void expect_nothing_left(void)
{
	char dir[4300], *out = NULL;

	snprintf(dir, sizeof(dir), "%s/default", rt_root);
	cr_expect_leq(fx_count_files(dir), 0, "state left under the runtime's --root %s", dir);
	cr_expect_leq(fx_count_vms(vm_runtime), 0, "a VM left in %s", vm_runtime);
	cr_expect_eq(run(ctr, &out, NULL, "container ls -q"), 0);
	cr_expect_str_empty(out, "containers left: %s", out);
	free(out);
}

Test(containerd, run_gives_output_and_status)
{
	char *out = NULL, *err = NULL;
	int rc;

	rc = ctr_run(runtime_bin(), "c1", &out, &err, "sh -c 'echo out $GREETING; echo err >&2; exit 3'");
	cr_expect_eq(rc, 3, "status %d, stderr: %s", rc, err);
	cr_expect_str_eq(out, "out hello\n");
	cr_expect(strstr(err, "err\n"), "stderr: %s", err);
	free(out);
	free(err);
	rc = ctr_run(runtime_bin(), "c2", &out, &err, "true");
	cr_expect_eq(rc, 0, "status %d, stderr: %s", rc, err);
	cr_expect_str_empty(out);
	free(out);
	free(err);
	expect_nothing_left();
}

/* Polls `ctr task ls` until id's task is STOPPED; false after STOP_WAIT_S. */
static bool task_stopped(const char *id)
{
	for (int i = 0; i < STOP_WAIT_S * 2; i++) {
		char *out = NULL;
		bool stopped = run(ctr, &out, NULL, "task ls | awk '$1 == \"%s\" { print $3 }'", id) == 0 &&
			       strcmp(out, "STOPPED\n") == 0;
		free(out);
		if (stopped)
			return true;
		usleep(500000);
	}
	return false;
}

Test(containerd, detached_exec_kill_delete)
{
	char *out = NULL, *err = NULL;
	int rc;

	rc = run(ctr, NULL, &err, "run -d --snapshotter native --runc-binary '%s' --runc-root '%s' " IMAGE " d1 sleep 600",
		 runtime_bin(), rt_root);
	cr_assert_eq(rc, 0, "ctr run -d: %s", err);
	free(err);
	rc = run(ctr, &out, &err, "task exec --exec-id x1 d1 sh -c 'echo in exec $GREETING; cat /etc/motd; exit 4'");
	cr_expect_eq(rc, 4, "exec status %d: %s", rc, err);
	cr_expect_str_eq(out, "in exec hello\nwelcome\n");
	free(out);
	free(err);
	rc = run(ctr, &out, &err, "task ls");
	cr_expect(rc == 0 && strstr(out, "d1") && strstr(out, "RUNNING"), "task ls: %s %s", out, err);
	free(out);
	free(err);
	rc = run(ctr, NULL, &err, "task kill d1");
	cr_expect_eq(rc, 0, "ctr task kill: %s", err);
	free(err);
	cr_expect(task_stopped("d1"), "d1 not stopped %d s after SIGTERM", STOP_WAIT_S);
	rc = run(ctr, NULL, &err, "task delete d1");
	cr_expect_eq(rc, 0, "ctr task delete: %s", err);
	free(err);
	rc = run(ctr, NULL, &err, "container rm d1");
	cr_expect_eq(rc, 0, "ctr container rm: %s", err);
	free(err);
	expect_nothing_left();
}

/* The image's config (env, cwd, user) and files as a process sees them. */
#define PEER_CMD "sh -c 'echo $GREETING $PATH; pwd; id -u; id -g; cat /etc/motd /var/lib/old; echo \"$@\"' sh a 'b c'"

Test(containerd, same_stdout_as_runc)
{
	char *ours = NULL, *runc = NULL, *err = NULL;
	int rc;

	rc = ctr_run("runc", "peer-runc", &runc, &err, PEER_CMD);
	cr_assert_eq(rc, 0, "under runc: %d %s", rc, err);
	free(err);
	cr_assert_str_eq(runc, "hello /bin\n/tmp\n0\n0\nwelcome\nold\na b c\n", "runc itself");
	rc = ctr_run(runtime_bin(), "peer-sm", &ours, &err, PEER_CMD);
	cr_expect_eq(rc, 0, "under supermachine-runtime: %d %s", rc, err);
	cr_expect_str_eq(ours, runc);
	free(err);
	free(ours);
	free(runc);
	expect_nothing_left();
}

Test(containerd, docker_run_and_exec)
{
	char *out = NULL, *err = NULL;
	int rc;

	char add[4300];

	snprintf(add, sizeof(add), "supermachine=%s", runtime_bin());
	daemons_do("dockerd", add);
	archive("docker-archive", "base-docker.tar");
	rc = run(docker, NULL, &err, "load -q -i '%s/base-docker.tar'", tmp);
	cr_assert_eq(rc, 0, "docker load: %s", err);
	free(err);
#define DOCKER_RUN "run --runtime supermachine --network none "
	rc = run(docker, &out, &err, DOCKER_RUN "--rm --entrypoint /bin/sh " IMAGE " -c 'echo out $GREETING; exit 5'");
	cr_expect_eq(rc, 5, "docker run: %d %s", rc, err);
	cr_expect_str_eq(out, "out hello\n");
	free(out);
	free(err);
	rc = run(docker, NULL, &err, DOCKER_RUN "-d --name det --entrypoint /bin/sleep " IMAGE " 600");
	cr_assert_eq(rc, 0, "docker run -d: %s", err);
	free(err);
	rc = run(docker, &out, &err, "exec det sh -c 'echo in exec; pwd; exit 6'");
	cr_expect_eq(rc, 6, "docker exec: %d %s", rc, err);
	cr_expect_str_eq(out, "in exec\n/tmp\n");
	free(out);
	free(err);
	rc = run(docker, NULL, &err, "rm -f det");
	cr_expect_eq(rc, 0, "docker rm -f: %s", err);
	free(err);
	cr_expect_leq(fx_count_vms(vm_runtime), 0, "a VM left in %s", vm_runtime);
#undef DOCKER_RUN
}

/* ---- bad bundles through the runtime binary itself ---- */

static char bundle[4300];

/* Writes the bundle's config.json (NULL: none) with rootfs, and a host directory "share". */
static void bundle_with(const char *config)
{
	char path[4400];
	FILE *f;

	fx_sh(NULL, NULL, "rm -rf '%s'", bundle);
	cr_assert_eq(mkdir(bundle, 0700), 0);
	snprintf(path, sizeof(path), "%s/share", bundle);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/rootfs", bundle);
	cr_assert_eq(fx_sh(NULL, NULL, "cp -a '%s/unpacked/rootfs' '%s'", fx_images(), path), 0);
	if (!config)
		return;
	snprintf(path, sizeof(path), "%s/config.json", bundle);
	f = fopen(path, "w");
	cr_assert(f);
	const char *c = config, *at;
	for (; (at = strstr(c, "@B")); c = at + 2) /* "@B" is the bundle's path */
		fprintf(f, "%.*s%s", (int)(at - c), c, bundle);
	fputs(c, f);
	fclose(f);
}

#define CFG_HEAD "{\"ociVersion\":\"1.0.2\",\"process\":{\"args\":[\"sleep\",\"600\"],\"cwd\":\"/\",\"env\":[\"PATH=/bin\"]},"
#define CFG_OK CFG_HEAD "\"root\":{\"path\":\"rootfs\"}}"

/* "@B" in a config is the bundle's path. */
static const struct {
	const char *config, *want;
} bad_bundles[] = {
	{ NULL, "config.json" },
	{ "{\"ociVersion\": \"1.0.2\", \"root\": ", "bad JSON" },
	{ CFG_HEAD "\"root\":{\"path\":\"nowhere\"}}", "nowhere" },
	{ CFG_HEAD "\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"/a/../../etc\",\"type\":\"bind\","
		   "\"source\":\"@B/share\",\"options\":[\"rbind\"]}]}", "/a/../../etc" },
	{ CFG_HEAD "\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"/data\",\"type\":\"bind\","
		   "\"source\":\"share\",\"options\":[\"rbind\"]}]}", "absolute source" },
	{ CFG_HEAD "\"root\":{\"path\":\"rootfs\"},\"mounts\":[{\"destination\":\"/data\",\"type\":\"bind\","
		   "\"source\":\"@B/no-such-dir\",\"options\":[\"rbind\"]}]}", "no-such-dir" },
};

static void bad_setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	tmp = fx_tmpdir();
	snprintf(home_env, sizeof(home_env), "SUPERMACHINE_HOME=%s/store", tmp);
	snprintf(xdg_env, sizeof(xdg_env), "XDG_RUNTIME_DIR=%s", tmp);
	snprintf(vm_runtime, sizeof(vm_runtime), "%s/supermachine", tmp);
	putenv(home_env);
	putenv(xdg_env);
	snprintf(rt_root, sizeof(rt_root), "%s/rt-root", tmp);
	/* create's supervisor keeps its stdio: the caller gives it files, not fx_sh's pipes */
	snprintf(rt, sizeof(rt), "'%s' --root '%s'", runtime_bin(), rt_root);
	snprintf(bundle, sizeof(bundle), "%s/bundle", tmp);
}

static void bad_teardown(void)
{
	fx_rmrf(tmp);
	free(tmp);
	tmp = NULL;
}

TestSuite(runtime_bad, .init = bad_setup, .fini = bad_teardown, .timeout = 600);

static void reuse_setup(void)
{
	need_kernel();
	bad_setup();
}

TestSuite(runtime_reuse, .init = reuse_setup, .fini = bad_teardown, .timeout = 600);

/* Each is refused by create with a message naming what is wrong, and leaves nothing under --root. */
Test(runtime_bad, bundles)
{
	for (size_t i = 0; i < sizeof(bad_bundles) / sizeof(bad_bundles[0]); i++) {
		char *err = NULL;
		int rc;

		bundle_with(bad_bundles[i].config);
		rc = run(rt, NULL, &err, "create --bundle '%s' --pid-file '%s/pid' bad%zu", bundle, tmp, i);
		cr_expect_eq(rc, 1, "case %zu: status %d: %s", i, rc, err);
		cr_expect(strstr(err, bad_bundles[i].want), "case %zu: want '%s' in: %s", i, bad_bundles[i].want, err);
		cr_expect_leq(fx_count_files(rt_root), 0, "case %zu left state under --root", i);
		free(err);
	}
}

/* A second create of a live container's ID fails and leaves the first one whole. */
Test(runtime_reuse, id_of_a_live_container)
{
	char *out = NULL, *err = NULL;
	int rc;

	bundle_with(CFG_OK);
	rc = run(rt, NULL, &err, "create --bundle '%s' --pid-file '%s/pid' c1 </dev/null >/dev/null 2>'%s/create.err'",
		     bundle, tmp, tmp);
	cr_assert_eq(rc, 0, "create: %d (see %s/create.err)", rc, tmp);
	free(err);
	rc = run(rt, NULL, &err, "create --bundle '%s' c1 </dev/null", bundle);
	cr_expect_eq(rc, 1, "the same ID again: %d", rc);
	cr_expect(strstr(err, "already exists"), "%s", err);
	free(err);
	rc = run(rt, &out, &err, "state c1");
	cr_expect(rc == 0 && strstr(out, "\"created\""), "the first is untouched: %d %s %s", rc, out, err);
	free(out);
	free(err);
	rc = run(rt, NULL, &err, "delete --force c1");
	cr_expect_eq(rc, 0, "delete --force: %s", err);
	free(err);
	cr_expect_leq(fx_count_files(rt_root), 0, "state left under --root");
	cr_expect_leq(fx_count_vms(vm_runtime), 0, "a VM left in %s", vm_runtime);
}
