/*
 * The exec table of issue 5, run through the real host client
 * (src/lib/exec.c) against the real agent (src/guest, --agent-only on a
 * unix socket): no KVM, nothing mocked. tests/vm/test_exec.c runs the
 * same cases inside a VM.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/exec.h"
#include "test_agent_fixture.h"
#include "../fixtures/privs.h"

static struct agent_fixture fx;

static void start(void)
{
	agent_fixture_start(&fx, agent_fixture_binary(false), NULL);
}

/* The shipping binary: static musl /init, the same sources without sanitizers. */
static void start_musl(void)
{
	agent_fixture_start(&fx, agent_fixture_binary(true), NULL);
}

static void stop(void)
{
	agent_fixture_stop(&fx);
}

TestSuite(exec, .init = start, .fini = stop, .timeout = 60);
TestSuite(exec_musl, .init = start_musl, .fini = stop, .timeout = 60);

/* A case run against both builds of the agent. */
#define BOTH(name)                                  \
	static void case_##name(void);              \
	Test(exec, name) { case_##name(); }         \
	Test(exec_musl, name) { case_##name(); }    \
	static void case_##name(void)

static sm_exec *cmd(const char *const argv[])
{
	sm_exec *x = exec_new(&fx.target);
	cr_assert(x);
	cr_assert(sm_exec_argv(x, argv) == 0);
	return x;
}

static sm_exec *sh(const char *script)
{
	return fixture_sh(&fx.target, script);
}

/* Runs x to the end; the test fails on an API error. */
static void run(sm_exec *x, sm_outcome *out)
{
	sm_error *err = NULL;

	cr_assert(sm_exec_output(x, out, &err) == 0, "exec failed: %s", sm_error_string(err));
	sm_exec_free(x);
}

static void run_err(sm_exec *x, sm_code code, const char *needle)
{
	sm_error *err = NULL;
	sm_outcome out;

	cr_assert(sm_exec_output(x, &out, &err) < 0, "exec should have failed");
	cr_expect_eq(sm_error_code(err), code, "code %s, want %s: %s", sm_code_name(sm_error_code(err)),
		     sm_code_name(code), sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), needle), "'%s' not in '%s'", needle, sm_error_string(err));
	sm_error_free(err);
	sm_exec_free(x);
}

static const char *str(const char *s)
{
	return s ? s : "";
}

BOTH(exit_codes)
{
	static const int codes[] = { 0, 1, 255 };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char script[32];
		sm_outcome out;

		snprintf(script, sizeof(script), "exit %d", codes[i]);
		run(sh(script), &out);
		cr_expect_eq(out.status, codes[i]);
		cr_expect_eq(out.signal, 0);
		cr_expect(!out.timed_out);
		sm_outcome_free(&out);
	}
}

BOTH(death_by_signal)
{
	sm_outcome out;

	run(sh("kill -TERM $$; sleep 5"), &out);
	cr_expect_eq(out.status, -1);
	cr_expect_eq(out.signal, SIGTERM);
	cr_expect(!out.timed_out);
	sm_outcome_free(&out);
}

BOTH(stdout_and_stderr_apart)
{
	sm_outcome out;

	run(sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2"), &out);
	cr_expect_str_eq(str(out.stdout_data), "out1\nout2\n");
	cr_expect_str_eq(str(out.stderr_data), "err1\nerr2\n");
	cr_expect_eq(out.stdout_len, 10);
	cr_expect(out.duration_us > 0);
	cr_expect(out.peak_rss_kib > 0);
	sm_outcome_free(&out);
}

BOTH(command_not_found)
{
	sm_outcome out;

	run(cmd((const char *[]){ "no-such-command-xyz", "arg", NULL }), &out);
	cr_expect_eq(out.status, 127);
	cr_expect(strstr(str(out.stderr_data), "no-such-command-xyz"), "stderr: %s", str(out.stderr_data));
	cr_expect(strstr(str(out.stderr_data), "No such file"), "stderr: %s", str(out.stderr_data));
	sm_outcome_free(&out);
}

Test(exec, not_executable)
{
	char path[128];
	sm_outcome out;
	sm_exec *x;

	/* Staged without the x bit: exists, cannot run, like a shell's 126. */
	snprintf(path, sizeof(path), "%s/plain", fx.dir);
	x = cmd((const char *[]){ path, NULL });
	sm_exec_stage_file_mode(x, path, "#!/bin/sh\necho no\n", 18, 0644);
	run(x, &out);
	cr_expect_eq(out.status, 126);
	cr_expect(strstr(str(out.stderr_data), "Permission denied"), "stderr: %s", str(out.stderr_data));
	sm_outcome_free(&out);
}

BOTH(staged_file_and_chain)
{
	char script[128], data[128];
	sm_exec *x;
	sm_outcome out;

	snprintf(script, sizeof(script), "%s/run.sh", fx.dir);
	snprintf(data, sizeof(data), "%s/data.txt", fx.dir);
	x = cmd((const char *[]){ "cat", data, NULL });
	sm_exec_stage_file(x, data, "staged data\n", 12);
	sm_exec_stage_file_mode(x, script, "#!/bin/sh\necho script ran with $1\n", 34, 0755);
	sm_exec_chain(x, (const char *[]){ script, "arg1", NULL });
	sm_exec_chain(x, (const char *[]){ "false", NULL });
	sm_exec_chain(x, (const char *[]){ "echo", "never", NULL });
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "staged data\nscript ran with arg1\n");
	cr_expect_eq(out.status, 1);
	cr_expect_eq(out.chain_index, 2, "chain stopped at %u", out.chain_index);
	sm_outcome_free(&out);
}

Test(exec, chain_all_succeed)
{
	sm_exec *x = cmd((const char *[]){ "echo", "a", NULL });
	sm_outcome out;

	sm_exec_chain(x, (const char *[]){ "echo", "b", NULL });
	sm_exec_chain(x, (const char *[]){ "sh", "-c", "echo c; exit 3", NULL });
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "a\nb\nc\n");
	cr_expect_eq(out.status, 3);
	cr_expect_eq(out.chain_index, 2);
	sm_outcome_free(&out);
}

BOTH(env_and_cwd)
{
	sm_exec *x = sh("echo \"$FOO|$EMPTY|$HOME\"; pwd; echo \"$PATH\"");
	sm_outcome out;

	sm_exec_env(x, "FOO", "bar baz");
	sm_exec_env(x, "EMPTY", "");
	sm_exec_cwd(x, fx.dir);
	run(x, &out);
	char want[512];
	snprintf(want, sizeof(want), "bar baz||/root\n%s\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
		 fx.dir);
	cr_expect_str_eq(str(out.stdout_data), want);
	sm_outcome_free(&out);
}

Test(exec, env_overrides_image_path)
{
	sm_exec *x = sh("echo $PATH");
	sm_outcome out;

	sm_exec_env(x, "PATH", "/bin:/usr/bin");
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "/bin:/usr/bin\n");
	sm_outcome_free(&out);
}

static void skip_unless_root(void)
{
	const char *blocked;

	if (geteuid() != 0)
		cr_skip_test("switching users needs root");
	if ((blocked = fx_nobody_blocked("/bin/sh")))
		cr_skip_test("%s", blocked);
}

static void expect_user(const char *user, const char *script, const char *want)
{
	sm_exec *x = sh(script);
	sm_outcome out;

	skip_unless_root();
	sm_exec_user(x, user);
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), want, "as %s", user);
	sm_outcome_free(&out);
}

BOTH(user_by_name)
{
	expect_user("nobody", "id -u; id -g; echo $HOME", "65534\n65534\n/nonexistent\n");
}

Test(exec, user_uid_gid)
{
	expect_user("1234:5678", "id -u; id -g; id -G", "1234\n5678\n5678\n");
}

Test(exec, user_name_and_group)
{
	expect_user("daemon:nogroup", "id -un; id -gn", "daemon\nnogroup\n");
}

Test(exec, staged_file_owned_by_user)
{
	char path[128], script[512];
	sm_exec *x;
	sm_outcome out;

	skip_unless_root();
	snprintf(path, sizeof(path), "%s/owned", fx.dir);
	snprintf(script, sizeof(script), "stat -c '%%u %%a' %s; echo more >> %s", path, path);
	x = sh(script);
	sm_exec_user(x, "nobody");
	chmod(fx.dir, 0777);
	sm_exec_stage_file_mode(x, path, "x", 1, 0600);
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "65534 600\n");
	cr_expect_eq(out.status, 0, "stderr: %s", str(out.stderr_data));
	sm_outcome_free(&out);
}

BOTH(unknown_user_is_an_error)
{
	sm_exec *x = sh("true");

	sm_exec_user(x, "no-such-user-xyz");
	run_err(x, SM_E_NOT_FOUND, "unknown user 'no-such-user-xyz'");
}

Test(exec, missing_cwd_is_an_error)
{
	sm_exec *x = sh("true");

	sm_exec_cwd(x, "/no/such/dir");
	run_err(x, SM_E_NOT_FOUND, "working directory /no/such/dir does not exist");
}

Test(exec, bad_arguments_are_reported)
{
	sm_exec *x = sh("true");

	cr_expect(sm_exec_cwd(x, "relative") < 0);
	run_err(x, SM_E_INVALID, "must be absolute");
	x = exec_new(&fx.target);
	run_err(x, SM_E_INVALID, "sm_exec_argv");
	x = sh("true");
	cr_expect(sm_exec_env(x, "A=B", "c") < 0);
	run_err(x, SM_E_INVALID, "environment key");
}

Test(exec, staging_error_is_clear)
{
	sm_exec *x = sh("echo should not run");

	sm_exec_stage_file(x, "/no/such/dir/file", "x", 1);
	run_err(x, SM_E_NOT_FOUND, "the parent directory does not exist");
}

Test(exec, stdin_collected)
{
	sm_exec *x = cmd((const char *[]){ "cat", NULL });
	sm_outcome out;

	sm_exec_stdin(x, "hello\nworld\n", 12);
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "hello\nworld\n");
	sm_outcome_free(&out);
}

Test(exec, no_stdin_is_eof)
{
	sm_outcome out;

	run(cmd((const char *[]){ "wc", "-c", NULL }), &out);
	cr_expect_str_eq(str(out.stdout_data), "0\n");
	sm_outcome_free(&out);
}

Test(exec, output_limit_truncates)
{
	sm_exec *x = sh("head -c 5000000 /dev/zero; echo done >&2");
	sm_outcome out;

	sm_exec_output_limit(x, 1 << 20);
	run(x, &out);
	cr_expect_eq(out.status, 0);
	cr_expect_eq(out.stdout_len, 1 << 20);
	cr_expect(out.stdout_truncated);
	cr_expect(!out.stderr_truncated);
	cr_expect_str_eq(str(out.stderr_data), "done\n");
	sm_outcome_free(&out);
}

BOTH(tty_window_size)
{
	sm_exec *x = sh("stty size; test -t 0 && test -t 1 && echo tty; echo $TERM; echo err >&2");
	sm_outcome out;

	sm_exec_tty(x, true);
	sm_exec_winsize(x, 33, 101);
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "33 101\r\ntty\r\nxterm\r\nerr\r\n");
	cr_expect_eq(out.stderr_len, 0);
	cr_expect_eq(out.status, 0);
	sm_outcome_free(&out);
}

Test(exec, tty_is_controlling_terminal)
{
	sm_exec *x = sh("exec 3</dev/tty && echo has-ctty; ps -o tty= -p $$ | grep -q pts && echo pts");
	sm_outcome out;

	sm_exec_tty(x, true);
	run(x, &out);
	cr_expect_str_eq(str(out.stdout_data), "has-ctty\r\npts\r\n");
	sm_outcome_free(&out);
}

static void kill_leftovers(void)
{
	pid_t pids[64];
	int n = agent_fixture_descendants(&fx, pids, 64);

	for (int i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
}

/* Processes under the agent: its sessions and whatever they run. */
static int count_descendants(void)
{
	pid_t pids[64];
	return agent_fixture_descendants(&fx, pids, 64);
}

static void timeout_kills_tree(const char *script)
{
	sm_exec *x = sh(script);
	sm_outcome out;

	sm_exec_timeout_ms(x, 500);
	run(x, &out);
	cr_expect(out.timed_out);
	cr_expect_eq(out.signal, SIGKILL);
	cr_expect_eq(out.status, -1);
	/* Nothing of that exec is left: the session has exited, and everything below it is gone. */
	for (int i = 0; i < 200 && count_descendants(); i++)
		usleep(10000);
	cr_expect_eq(count_descendants(), 0, "processes of a timed-out exec survived");
	kill_leftovers();
	sm_outcome_free(&out);
}

Test(exec, timeout_kills_process_tree)
{
	timeout_kills_tree("sleep 100 & sleep 100");
}

BOTH(timeout_kills_escaped_session)
{
	/* setsid: out of the exec's process group and session; the subreaper still finds it. */
	timeout_kills_tree("setsid sleep 100 & setsid sh -c 'sleep 100 & sleep 100' & sleep 100");
}

Test(exec, timeout_not_reached)
{
	sm_exec *x = sh("echo quick");
	sm_outcome out;

	sm_exec_timeout_ms(x, 30000);
	run(x, &out);
	cr_expect(!out.timed_out);
	cr_expect_eq(out.status, 0);
	sm_outcome_free(&out);
}

BOTH(thirty_two_concurrent)
{
	char dir[128];

	snprintf(dir, sizeof(dir), "%s/barrier", fx.dir);
	fixture_concurrent(&fx.target, dir, 32, 40000);
}

/* ---- with per-exec cgroups (cgroup.kill), where this host has a writable cgroup2 ---- */

static char cg_dir[256];

static void start_cgroup(void)
{
	agent_fixture_cgroup2(cg_dir, sizeof(cg_dir));
	if (!cg_dir[0])
		cr_skip_test("no writable cgroup2 hierarchy here");
	agent_fixture_start(&fx, agent_fixture_binary(false), (const char *[]){ "--cgroup", cg_dir, NULL });
}

static void stop_cgroup(void)
{
	agent_fixture_stop(&fx);
	/* Empty by now: the agent removes each exec's cgroup when the exec ends. */
	if (cg_dir[0])
		cr_expect(rmdir(cg_dir) == 0, "rmdir %s: %s", cg_dir, strerror(errno));
}

TestSuite(exec_cgroup, .init = start_cgroup, .fini = stop_cgroup, .timeout = 60);

Test(exec_cgroup, timeout_kills_through_cgroup)
{
	struct agent_conn c;
	struct proto_frame f;
	sm_error *err = NULL;
	char script[256];
	sm_outcome out;

	/* The agent says it uses cgroups, and the exec runs in one of its own. */
	cr_assert(agent_open(&c, &fx.target, false, &err) == 0);
	proto_encode_empty(&c.out, PROTO_PING);
	cr_assert(agent_send(&c, 0, &err) == 0 && agent_recv(&c, &f, 0, &err) == 1, "%s", sm_error_string(err));
	cr_expect(c.caps & PROTO_CAP_CGROUP);
	agent_close(&c);
	snprintf(script, sizeof(script), "grep -c sm-exec- /proc/self/cgroup");
	run(sh(script), &out);
	cr_expect_str_eq(str(out.stdout_data), "1\n");
	sm_outcome_free(&out);
	timeout_kills_tree("setsid sleep 100 & setsid sh -c 'sleep 100 & sleep 100' & sleep 100");
}
