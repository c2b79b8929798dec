/*
 * The CLI's network default and run options in real VMs (issue 14):
 * network on unless --net none, the bare --net and --no-net as before, a
 * snapshot's own setting winning over the default, --entrypoint and
 * --env-file; then, on the Debian verifier image (tests/fixtures/verifier),
 * DNS through slirp's proxy, apt-get update + install and pip download
 * against loopback mirrors (tests/fixtures/mirror/mkmirror) the test
 * serves on the host's 127.0.0.1, which the guest reaches at 10.0.2.2.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fixtures/oci_fixture.h"

#define MIRROR_NAME "mirror.supermachine.test"

static char IMAGE[4200];

/* The CLI with args (NULL-terminated); its status, stdout and stderr. */
static int cli(char **out, char **err, const char *const *args)
{
	const char *argv[40];
	int n = 0;

	argv[n++] = fx_cli();
	for (; *args && n < 39; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return fx_run((char *const *)argv, NULL, out, err);
}

static const char *s(const char *p) { return p ? p : ""; }

static void busybox_store(void)
{
	fx_vm_store("clinet", IMAGE, sizeof(IMAGE));
}

TestSuite(cli_net, .init = busybox_store, .timeout = 1200);

Test(cli_net, network_on_by_default)
{
	char *out = NULL, *err = NULL;
	int rc = cli(&out, &err, (const char *[]){ "run", IMAGE, "sh", "-c", "ls /sys/class/net; cat /etc/resolv.conf", NULL });

	cr_expect_eq(rc, 0, "%s", s(err));
	cr_expect(strstr(s(out), "eth0") && strstr(s(out), "nameserver 10.0.2.3"), "%s", s(out));
	free(out), free(err);
}

/* --net none, --network none and --no-net: no NIC; a bare --net before IMAGE still means NAT. */
Test(cli_net, net_none_and_the_old_flags)
{
	static const char *const off[][2] = { { "--net", "none" }, { "--network", "none" }, { "--no-net", NULL } };
	char *out = NULL, *err = NULL;

	for (size_t i = 0; i < 3; i++) {
		const char *args[8] = { "run", off[i][0] };
		size_t n = 2;
		if (off[i][1])
			args[n++] = off[i][1];
		args[n++] = IMAGE, args[n++] = "ls", args[n++] = "/sys/class/net";
		cr_expect_eq(cli(&out, &err, args), 0, "%s: %s", off[i][0], s(err));
		cr_expect(!strstr(s(out), "eth0"), "%s %s: %s", off[i][0], s(off[i][1]), s(out));
		free(out), free(err);
	}
	cr_expect_eq(cli(&out, &err, (const char *[]){ "run", "--net", IMAGE, "ls", "/sys/class/net", NULL }), 0);
	cr_expect(strstr(s(out), "eth0"), "bare --net: %s", s(out));
	free(out), free(err);
}

/* A snapshot baked without a network restores under the CLI's default (its own setting wins); --net asks too much. */
Test(cli_net, snapshot_keeps_its_own_setting)
{
	char *out = NULL, *err = NULL;

	cr_assert_eq(cli(&out, &err, (const char *[]){ "pull", "-q", IMAGE, "--name", "nonet", "--net", "none", NULL }),
		     0, "%s", s(err));
	free(out), free(err);
	cr_expect_eq(cli(&out, &err, (const char *[]){ "run", "nonet", "ls", "/sys/class/net", NULL }), 0, "%s", s(err));
	cr_expect(!strstr(s(out), "eth0"), "%s", s(out));
	free(out), free(err);
	cr_expect_eq(cli(&out, &err, (const char *[]){ "run", "--net", "nat", "nonet", "true", NULL }), 125);
	cr_expect(strstr(s(err), "without a network"), "%s", s(err));
	free(out), free(err);
}

Test(cli_net, entrypoint_and_env_file)
{
	char *out = NULL, *err = NULL, *dir = fx_tmpdir(), path[4300];
	FILE *f;

	cr_expect_eq(cli(&out, &err, (const char *[]){ "run", "--entrypoint", "/bin/echo", IMAGE, "a", "b", NULL }), 0,
		     "%s", s(err));
	cr_expect_str_eq(s(out), "a b\n");
	free(out), free(err);
	snprintf(path, sizeof(path), "%s/env.list", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fputs("# comment\nFROM_FILE=one two\nBOTH=file\n", f);
	fclose(f);
	cr_expect_eq(cli(&out, &err, (const char *[]){ "run", "-e", "BOTH=flag", "--env-file", path, "--entrypoint", "sh",
						      IMAGE, "-c", "echo \"$FROM_FILE|$BOTH\"", NULL }),
		     0, "%s", s(err));
	cr_expect_str_eq(s(out), "one two|flag\n", "-e wins over --env-file");
	free(out), free(err);
	cr_expect_eq(cli(&out, &err, (const char *[]){ "run", "--env-file", "/nonexistent/env", IMAGE, "true", NULL }),
		     125);
	cr_expect_str_eq(s(err), "supermachine: run: --env-file /nonexistent/env: No such file or directory\n");
	free(out), free(err);
	fx_rmrf(dir);
	free(dir);
}

/* ---- the Debian image: DNS, apt and pip against loopback mirrors ---- */

static char DEBIAN[4200], shared[4200];

struct bg {
	pid_t pid;
	char portfile[4300];
};

/* Starts `mkmirror ARGS...` in the background and waits for it to write its port. */
static int bg_start(struct bg *b, const char *dir, const char *const *args)
{
	char mk[4300];
	const char *argv[8] = { "python3", mk };
	size_t n = 2;

	snprintf(mk, sizeof(mk), "%s/tests/fixtures/mirror/mkmirror", fx_source_root());
	snprintf(b->portfile, sizeof(b->portfile), "%s/port-%s", dir, args[0] + 2);
	for (; *args && n < 6; args++)
		argv[n++] = *args;
	argv[n++] = b->portfile;
	argv[n] = NULL;
	b->pid = fork();
	cr_assert(b->pid >= 0);
	if (b->pid == 0) {
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		FILE *f = fopen(b->portfile, "r");
		int port = 0;
		if (f && fscanf(f, "%d", &port) == 1 && port > 0) {
			fclose(f);
			return port;
		}
		if (f)
			fclose(f);
		usleep(100000);
	}
	cr_assert_fail("mkmirror %s did not start", args[0]);
	return -1;
}

static void bg_stop(struct bg *b)
{
	if (b->pid > 0) {
		kill(b->pid, SIGTERM);
		waitpid(b->pid, NULL, 0);
	}
}

static void debian_store(void)
{
	const char *env = getenv("SUPERMACHINE_VERIFIER_FIXTURE");
	char dir[4096], index[4200];

	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	snprintf(dir, sizeof(dir), "%s", env && *env ? env : "");
	if (!dir[0])
		snprintf(dir, sizeof(dir), "%s/tests/verifier-fixture", fx_build_root());
	snprintf(index, sizeof(index), "%s/layout/index.json", dir);
	cr_assert(access(index, R_OK) == 0, "the verifier image is missing (%s): tests/fixtures/verifier/mkimage %s",
		  index, dir);
	snprintf(DEBIAN, sizeof(DEBIAN), "oci:%s/layout:verifier", dir);
	fx_shared_store("clinetdeb", DEBIAN, shared, sizeof(shared));
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	fx_shared_store_remove("clinet");
	fx_shared_store_remove("clinetdeb");
}

TestSuite(cli_net_debian, .init = debian_store, .timeout = 1500);

/*
 * Run as the guest's root: apt-get update from the loopback repository
 * only (nothing from the image's sources.list), install its package, and
 * pip download from the loopback index. host is how the guest names the
 * host: 10.0.2.2, or a name DNS gives it.
 */
static void apt_and_pip(const char *host, int port)
{
	char script[2048], *out = NULL, *err = NULL;

	snprintf(script, sizeof(script),
		 "set -e; echo 'deb [trusted=yes] http://%s:%d/apt ./' > /tmp/sm.list; "
		 "A='-o Dir::Etc::SourceList=/tmp/sm.list -o Dir::Etc::SourceParts=/nonexistent "
		 "-o APT::Sandbox::User=root -o Acquire::Retries=3'; "
		 "apt-get $A -q update; apt-get $A -q download smtest-hello; ls smtest-hello_1.0_all.deb; "
		 "apt-get $A -q -y install smtest-hello; cat /usr/share/smtest/hello; "
		 "python3 -m pip download -q --no-deps --trusted-host %s --index-url http://%s:%d/simple smtest-hello -d /tmp/wheels; "
		 "ls /tmp/wheels",
		 host, port, host, host, port);
	int rc = cli(&out, &err, (const char *[]){ "run", "--memory", "512", "-w", "/tmp", DEBIAN, "sh", "-c", script,
						   NULL });
	cr_expect_eq(rc, 0, "stdout: %s\nstderr: %s", s(out), s(err));
	cr_expect(strstr(s(out), "smtest-hello_1.0_all.deb"), "apt-get download: %s", s(out));
	cr_expect(strstr(s(out), "hello from the loopback mirror"), "apt-get install: %s", s(out));
	cr_expect(strstr(s(out), "smtest_hello-1.0-py3-none-any.whl"), "pip download: %s", s(out));
	free(out), free(err);
}

static int mirror_up(char **dir, struct bg *http)
{
	char *err = NULL, mk[4300];

	*dir = fx_tmpdir();
	snprintf(mk, sizeof(mk), "%s/tests/fixtures/mirror/mkmirror", fx_source_root());
	cr_assert(fx_sh(NULL, &err, "python3 '%s' '%s/m'", mk, *dir) == 0, "mkmirror: %s", s(err));
	free(err);
	char served[4400];
	snprintf(served, sizeof(served), "%s/m", *dir);
	return bg_start(http, *dir, (const char *[]){ "--serve", served, NULL });
}

Test(cli_net_debian, apt_and_pip_from_loopback_mirrors)
{
	struct bg http = { 0 };
	char *dir;
	int port = mirror_up(&dir, &http);

	apt_and_pip("10.0.2.2", port);
	bg_stop(&http);
	fx_rmrf(dir);
	free(dir);
}

/*
 * DNS: slirp's proxy (10.0.2.3) forwards to the host's resolver. Only in
 * tests/nested, whose host has no network and a resolv.conf of its own:
 * there a responder on 127.0.0.1:53 is the host's resolver, and the guest
 * resolves MIRROR_NAME through it and then fetches from that name.
 */
Test(cli_net_debian, dns_through_slirp_then_apt_by_name)
{
	struct bg http = { 0 }, dns = { 0 };
	char *dir, *out = NULL, *err = NULL;
	int port;

	if (!getenv("SUPERMACHINE_NESTED") || strcmp(getenv("SUPERMACHINE_NESTED"), "1"))
		cr_skip_test("DNS needs a resolver the test controls: only under tests/nested (SUPERMACHINE_NESTED=1)");
	port = mirror_up(&dir, &http);
	bg_start(&dns, dir, (const char *[]){ "--dns", MIRROR_NAME, "10.0.2.2", NULL });
	cr_assert(fx_sh(NULL, NULL, "cp /etc/resolv.conf '%s/resolv.saved' && echo 'nameserver 127.0.0.1' > /etc/resolv.conf",
			dir) == 0);
	int rc = cli(&out, &err, (const char *[]){ "run", DEBIAN, "getent", "hosts", MIRROR_NAME, NULL });
	cr_expect_eq(rc, 0, "%s", s(err));
	cr_expect(strstr(s(out), "10.0.2.2") && strstr(s(out), MIRROR_NAME), "%s", s(out));
	free(out), free(err);
	apt_and_pip(MIRROR_NAME, port);
	fx_sh(NULL, NULL, "cp '%s/resolv.saved' /etc/resolv.conf", dir);
	bg_stop(&dns);
	bg_stop(&http);
	fx_rmrf(dir);
	free(dir);
}
