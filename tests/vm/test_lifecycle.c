/*
 * The docker-style lifecycle on the busybox OCI fixture (issue 14):
 * run --name, ps -a, inspect, rm [-f], logs -f, wait, kill, port, stats,
 * cp both ways, run --restart on-failure:N, and the exit statuses docker
 * gives (125, 126, 127) with one clear line for each bad input.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fixtures/oci_fixture.h"

#define WAIT_S 120 /* a boot, a workload, a watcher: nested KVM is slow */

static char *tmp;
static char IMAGE[4200];
static char home_env[4300], runtime_env[4300];

static void setup(void)
{
	char *err = NULL, rt[4200];

	if (!getenv("SUPERMACHINE_KERNEL_DIR"))
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	signal(SIGPIPE, SIG_IGN);
	tmp = fx_tmpdir();
	snprintf(home_env, sizeof(home_env), "SUPERMACHINE_HOME=%s/store", tmp);
	snprintf(rt, sizeof(rt), "%s/run", tmp);
	cr_assert(mkdir(rt, 0700) == 0);
	snprintf(runtime_env, sizeof(runtime_env), "XDG_RUNTIME_DIR=%s", rt);
	putenv(home_env);
	putenv(runtime_env);
	snprintf(IMAGE, sizeof(IMAGE), "oci:%s/layout:base", fx_images());
	cr_assert(fx_sh(NULL, &err, "'%s' pull -q '%s'", fx_cli(), IMAGE) == 0, "pull failed: %s", err);
	free(err);
}

static void teardown(void)
{
	if (tmp) {
		/* kept and detached VMs: kill their workers and watchers before the directory goes */
		fx_sh(NULL, NULL, "'%s' ps -a -q | xargs -r '%s' rm -f", fx_cli(), fx_cli());
		fx_rmrf(tmp);
	}
	free(tmp);
	tmp = NULL;
}

TestSuite(lifecycle, .init = setup, .fini = teardown, .timeout = 1200);

static const char *s(const char *p)
{
	return p ? p : "";
}

static int lines(const char *p)
{
	int n = 0;

	for (; p && *p; p++)
		n += *p == '\n';
	return n;
}

/* One clear line on stderr holding says, and the exit status want. */
static void expect_failure(const char *const *args, int want, const char *says)
{
	char *out = NULL, *err = NULL;
	int rc = fx_cli_run(&out, &err, args);

	cr_expect_eq(rc, want, "%s %s: status %d (want %d): %s", args[0], s(args[1]), rc, want, s(err));
	cr_expect_eq(lines(err), 1, "%s %s: not one line: %s", args[0], s(args[1]), s(err));
	cr_expect(strstr(s(err), says), "%s %s: '%s' not in: %s", args[0], s(args[1]), says, s(err));
	free(out), free(err);
}

/* Polls `ps -a` until the line of name holds want. */
static bool ps_until(const char *name, const char *want)
{
	for (int i = 0; i < WAIT_S * 4; i++) {
		char *out = NULL;
		fx_cli_run(&out, NULL, (const char *[]){ "ps", "-a", NULL });
		const char *line = strstr(s(out), name);
		bool hit = line && strstr(line, want) && strstr(line, want) < line + strcspn(line, "\n");
		free(out);
		if (hit)
			return true;
		usleep(250000);
	}
	return false;
}

Test(lifecycle, name_ps_inspect_rm_and_a_name_taken)
{
	char *out = NULL, *err = NULL;
	int rc;

	/* foreground, no --rm: the command's status, and the VM kept, stopped */
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--name", "one", IMAGE, "sh", "-c", "echo to-console; exit 3", NULL });
	cr_expect_eq(rc, 3, "run: status %d: %s", rc, s(err));
	free(out), free(err);
	cr_expect(ps_until("one", "Exited (3)"), "ps -a does not show one as Exited (3)");
	rc = fx_cli_run(&out, &err, (const char *[]){ "ps", NULL });
	cr_expect(!strstr(s(out), "one"), "ps without -a lists an ended VM: %s", s(out));
	free(out), free(err);

	rc = fx_cli_run(&out, &err, (const char *[]){ "inspect", "one", NULL });
	cr_expect_eq(rc, 0, "inspect: %s", s(err));
	cr_expect(strstr(s(out), "\"name\": \"one\"") && strstr(s(out), "\"exit_code\": 3") &&
		  strstr(s(out), "\"running\": false") && strstr(s(out), "\"memory_mib\": 256"), "inspect: %s", s(out));
	free(out), free(err);
	/* an image still inspects as one */
	rc = fx_cli_run(&out, &err, (const char *[]){ "inspect", IMAGE, NULL });
	cr_expect_eq(rc, 0, "inspect of the image: %s", s(err));
	free(out), free(err);

	expect_failure((const char *[]){ "run", "--name", "one", IMAGE, "true", NULL }, 125, "already in use");
	expect_failure((const char *[]){ "run", "--bogus", IMAGE, NULL }, 125, "bogus");
	expect_failure((const char *[]){ "inspect", "nosuchvm", NULL }, 1, "no such VM or image: nosuchvm");
	expect_failure((const char *[]){ "logs", "nosuchvm", NULL }, 1, "no such VM: nosuchvm");
	expect_failure((const char *[]){ "stop", "nosuchvm", NULL }, 1, "no such VM: nosuchvm");
	expect_failure((const char *[]){ "wait", "nosuchvm", NULL }, 1, "no such VM: nosuchvm");
	expect_failure((const char *[]){ "ps", "--bogus", NULL }, 125, "bogus");

	rc = fx_cli_run(&out, &err, (const char *[]){ "logs", "one", NULL });
	cr_expect(rc == 0 && strstr(s(out), "to-console") == NULL, "a foreground command's output is not the console");
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "rm", "one", NULL });
	cr_expect_eq(rc, 0, "rm: %s", s(err));
	free(out), free(err);
	expect_failure((const char *[]){ "rm", "one", NULL }, 1, "no such VM, snapshot or image: one");
	/* the name is free again */
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", "--name", "one", IMAGE, "true", NULL });
	cr_expect_eq(rc, 0, "the name of a removed VM: %s", s(err));
	free(out), free(err);
	char rt[4300];
	snprintf(rt, sizeof(rt), "%s/run/supermachine", tmp);
	cr_expect_eq(fx_count_vms(rt), 0, "--rm left a VM behind");
}

Test(lifecycle, exit_codes_as_docker)
{
	char *out = NULL, *err = NULL;
	int rc;

	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", IMAGE, "/no/such/command", NULL });
	cr_expect_eq(rc, 127, "not found: %d: %s", rc, s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", IMAGE, "/etc/motd", NULL });
	cr_expect_eq(rc, 126, "not executable: %d: %s", rc, s(err));
	free(out), free(err);
	expect_failure((const char *[]){ "run", "--rm", "--pull", "never", "no-such-image-here", NULL }, 125,
		       "no-such-image-here");
	expect_failure((const char *[]){ "run", "--rm", "--pull", "sometimes", IMAGE, NULL }, 125,
		       "--pull 'sometimes': want missing, always or never");
	/* an image the store lacks is pulled first, as docker run does (the base image by another name) */
	char other[4300];
	cr_assert_eq(fx_sh(NULL, NULL, "cp -r '%s/layout' '%s/copy'", fx_images(), tmp), 0);
	snprintf(other, sizeof(other), "oci:%s/copy:base", tmp);
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "--rm", other, "echo", "pulled", NULL });
	cr_expect_eq(rc, 0, "run of an image not yet pulled: %d: %s", rc, s(err));
	cr_expect_str_eq(s(out), "pulled\n");
	cr_expect(strstr(s(err), "Unable to find image"), "run said nothing of the pull: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "-d", "--name", "xc", IMAGE, "sleep", "600", NULL });
	cr_assert_eq(rc, 0, "run -d: %s", s(err));
	free(out), free(err);
	expect_failure((const char *[]){ "exec", "xc", "/no/such/command", NULL }, 127, "/no/such/command");
	expect_failure((const char *[]){ "exec", "nosuchvm", "true", NULL }, 125, "no such VM: nosuchvm");
	rc = fx_cli_run(&out, &err, (const char *[]){ "rm", "-f", "xc", NULL });
	cr_expect_eq(rc, 0, "rm -f: %s", s(err));
	free(out), free(err);
}

static void cp_both_ways(void)
{
	char host[4300], spec[4400], *out = NULL, *err = NULL;
	int rc;

	snprintf(host, sizeof(host), "%s/in", tmp);
	cr_assert(fx_sh(NULL, NULL, "mkdir -p '%s/d/sub' && echo file-in > '%s/f' && echo deep > '%s/d/sub/x'", host,
			host, host) == 0);
	snprintf(spec, sizeof(spec), "%s/f", host);
	rc = fx_cli_run(&out, &err, (const char *[]){ "cp", spec, "svc:/tmp", NULL });
	cr_expect_eq(rc, 0, "cp file in: %s", s(err));
	free(out), free(err);
	snprintf(spec, sizeof(spec), "%s/d", host);
	rc = fx_cli_run(&out, &err, (const char *[]){ "cp", spec, "svc:/tmp/d2", NULL });
	cr_expect_eq(rc, 0, "cp dir in: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "exec", "svc", "sh", "-c", "cat /tmp/f /tmp/d2/sub/x", NULL });
	cr_expect_str_eq(s(out), "file-in\ndeep\n", "%s", s(err));
	free(out), free(err);

	snprintf(host, sizeof(host), "%s/out", tmp);
	cr_assert(mkdir(host, 0700) == 0);
	rc = fx_cli_run(&out, &err, (const char *[]){ "cp", "svc:/etc/motd", host, NULL });
	cr_expect_eq(rc, 0, "cp file out: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "cp", "svc:/tmp/d2", host, NULL });
	cr_expect_eq(rc, 0, "cp dir out: %s", s(err));
	free(out), free(err);
	rc = fx_sh(&out, NULL, "cat '%s/motd' '%s/d2/sub/x'", host, host);
	cr_expect(rc == 0 && !strcmp(s(out), "welcome\ndeep\n"), "copied out: %s", s(out));
	free(out);
	snprintf(spec, sizeof(spec), "%s/in/f", tmp);
	expect_failure((const char *[]){ "cp", spec, "svc:/../../etc/evil", NULL }, 1, "leaves the VM's root");
	expect_failure((const char *[]){ "cp", spec, "nosuchvm:/tmp", NULL }, 1, "no such VM: nosuchvm");
}

Test(lifecycle, detached_port_stats_cp_kill_wait_rm)
{
	char want[96], *out = NULL, *err = NULL, *page;
	unsigned port = 0;
	int rc;

	/* host port 0: any; `port` tells which, as docker's -p 0 */
	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "-d", "--name", "svc", "-p", "127.0.0.1:0:8080", IMAGE, "sh",
						      "-c", "echo served > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp",
						      NULL });
	cr_assert_eq(rc, 0, "run -d: %s", s(err));
	free(out), free(err);
	cr_expect(ps_until("svc", "Up "), "ps does not show svc up");
	cr_expect(ps_until("svc", "->8080/tcp"), "ps does not show the published port");

	rc = fx_cli_run(&out, &err, (const char *[]){ "port", "svc", NULL });
	cr_expect(rc == 0 && sscanf(s(out), "8080/tcp -> 127.0.0.1:%u\n", &port) == 1 && port > 0, "port: %s %s", s(out),
		  s(err));
	free(out), free(err);
	for (int i = 0; i < WAIT_S * 2 && !(page = fx_http_get(port)); i++)
		usleep(500000);
	cr_expect(page && strstr(page, "served"), "no page through the port `port` named");
	free(page);
	rc = fx_cli_run(&out, &err, (const char *[]){ "port", "svc", "8080/tcp", NULL });
	snprintf(want, sizeof(want), "127.0.0.1:%u\n", port);
	cr_expect(rc == 0 && !strcmp(s(out), want), "port 8080: %s %s", s(out), s(err));
	free(out), free(err);
	expect_failure((const char *[]){ "port", "svc", "81", NULL }, 1, "no public port '81/tcp'");

	rc = fx_cli_run(&out, &err, (const char *[]){ "stats", "--no-stream", "svc", NULL });
	cr_expect(rc == 0 && strstr(s(out), "svc") && strstr(s(out), "MiB / 256MiB"), "stats: %s %s", s(out), s(err));
	free(out), free(err);

	cp_both_ways();

	expect_failure((const char *[]){ "rm", "svc", NULL }, 1, "is running");
	rc = fx_cli_run(&out, &err, (const char *[]){ "kill", "svc", NULL });
	cr_expect_eq(rc, 0, "kill: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "wait", "svc", NULL });
	cr_expect(rc == 137 && !strcmp(s(out), "137\n"), "wait after SIGKILL: %d %s %s", rc, s(out), s(err));
	free(out), free(err);
	cr_expect(ps_until("svc", "Exited (137)"), "ps -a does not show svc as Exited (137)");
	rc = fx_cli_run(&out, &err, (const char *[]){ "rm", "svc", NULL });
	cr_expect_eq(rc, 0, "rm: %s", s(err));
	free(out), free(err);
}

Test(lifecycle, logs_follow_restart_on_failure_and_rm_force)
{
	char *out = NULL, *err = NULL;
	int rc;


	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "-d", "--name", "ticker", IMAGE, "sh", "-c",
					       "for i in 1 2 3; do echo tick-$i; sleep 1; done", NULL });
	cr_assert_eq(rc, 0, "run -d: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "logs", "-f", "ticker", NULL });
	cr_expect(rc == 0 && strstr(s(out), "tick-3"), "logs -f ended before the VM: %s %s", s(out), s(err));
	free(out), free(err);

	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh",
					       "-c", "sleep 1; exit 5", NULL });
	cr_assert_eq(rc, 0, "run --restart: %s", s(err));
	free(out), free(err);
	cr_expect(ps_until("flaky", "(restarts: 2)") && ps_until("flaky", "Exited (5)"),
		  "not restarted twice, then left ended");
	rc = fx_cli_run(&out, &err, (const char *[]){ "inspect", "flaky", NULL });
	cr_expect(strstr(s(out), "\"restarts\": 2") && strstr(s(out), "\"restart\": \"on-failure:2\""), "%s", s(out));
	free(out), free(err);
	expect_failure((const char *[]){ "run", "--rm", "-d", "--restart", "on-failure", IMAGE, NULL }, 125,
		       "conflicting options");

	rc = fx_cli_run(&out, &err, (const char *[]){ "run", "-d", "--name", "long", "--stop-timeout", "1", IMAGE, "sleep",
					       "600", NULL });
	cr_assert_eq(rc, 0, "run -d: %s", s(err));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "inspect", "long", NULL });
	cr_expect(strstr(s(out), "\"stop_timeout_ms\": 1000"), "%s", s(out));
	free(out), free(err);
	rc = fx_cli_run(&out, &err, (const char *[]){ "rm", "-f", "long", "ticker", "flaky", NULL });
	cr_expect_eq(rc, 0, "rm -f: %s", s(err));
	free(out), free(err);
	/* rm -f returns once they are gone; their watchers may still be ending: give them a moment */
	for (int i = 0; i < 20; i++) {
		rc = fx_cli_run(&out, &err, (const char *[]){ "ps", "-a", "-q", NULL });
		if (!*s(out))
			break;
		free(out), free(err);
		out = err = NULL;
		usleep(250000);
	}
	cr_expect_str_eq(s(out), "", "left after rm -f");
	free(out), free(err);
}
