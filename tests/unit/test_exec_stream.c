/*
 * Streaming execs (sm_exec_spawn): output and input of any size with flow
 * control, tty resize, signals, and a VM (here: the agent) that dies in
 * the middle. Real agent, real client, over a unix socket.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/exec.h"
#include "test_agent_fixture.h"

static struct agent_fixture fx;

static void start(void)
{
	agent_fixture_start(&fx, agent_fixture_binary(false), NULL);
}

static void stop(void)
{
	agent_fixture_stop(&fx);
}

TestSuite(stream, .init = start, .fini = stop, .timeout = 90);

static sm_child *spawn(sm_exec *x)
{
	sm_error *err = NULL;
	sm_child *c = sm_exec_spawn(x, &err);

	cr_assert(c, "spawn failed: %s", sm_error_string(err));
	sm_exec_free(x);
	return c;
}

static sm_exec *sh(const char *script)
{
	return fixture_sh(&fx.target, script);
}

static void wait_ok(sm_child *c, sm_outcome *out)
{
	sm_error *err = NULL;

	cr_assert(sm_child_wait(c, out, &err) == 0, "wait failed: %s", sm_error_string(err));
}

/* Reads fd to EOF; returns the byte count, checking every byte equals want (or not, with want < 0). */
static size_t drain(int fd, int want)
{
	static char buf[1 << 16];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; want >= 0 && i < n; i++)
			cr_assert_eq(buf[i], (char)want, "byte %zu is %d", total + (size_t)i, buf[i]);
		total += (size_t)n;
	}
	cr_assert(n == 0, "read: %s", strerror(errno));
	return total;
}

static long status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	long kib = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fp = fopen(path, "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, field, strlen(field)))
			kib = strtol(line + strlen(field) + 1, NULL, 10);
	fclose(fp);
	return kib;
}

Test(stream, hundred_mib_of_output)
{
	const size_t want = 100u << 20;
	sm_child *c = spawn(sh("head -c 104857600 /dev/zero; echo done >&2"));
	sm_outcome out;
	char err[16] = { 0 };

	cr_expect_eq(drain(sm_child_stdout(c), 0), want);
	cr_expect_eq(read(sm_child_stderr(c), err, sizeof(err) - 1), 5);
	cr_expect_str_eq(err, "done\n");
	wait_ok(c, &out);
	cr_expect_eq(out.status, 0);
	sm_child_free(c);
}

Test(stream, slow_reader_is_flow_controlled)
{
	sm_child *c = spawn(sh("head -c 104857600 /dev/zero"));
	char buf[4096];
	pid_t pids[16];
	sm_outcome out;
	int n;

	cr_assert(read(sm_child_stdout(c), buf, sizeof(buf)) > 0);
	/* Let the command run into the full pipes while nobody reads (waiting, not measuring). */
	usleep(500000);
	n = agent_fixture_descendants(&fx, pids, 16);
	cr_assert(n >= 1);
	for (int i = 0; i < n; i++) {
		long hwm = status_kib(pids[i], "VmHWM:");
		/* 100 MiB were offered; a guest that buffered them would show it here. */
		cr_expect(hwm < 64 * 1024, "process %d of the exec peaked at %ld KiB while the host did not read",
			  (int)pids[i], hwm);
	}
	drain(sm_child_stdout(c), 0);
	wait_ok(c, &out);
	cr_expect_eq(out.status, 0);
	sm_child_free(c);
}

/* Writes total patterned bytes to stdin while reading stdout back, with poll. */
Test(stream, stdin_streamed_and_echoed)
{
	const size_t total = 16u << 20;
	sm_child *c = spawn(sh("cat"));
	static unsigned char wbuf[65536], rbuf[65536];
	size_t sent = 0, got = 0;
	sm_outcome out;

	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (unsigned char)(i * 7 + 3);
	while (got < total) {
		struct pollfd p[2] = { { .fd = sm_child_stdin(c), .events = POLLOUT },
				       { .fd = sm_child_stdout(c), .events = POLLIN } };
		if (sent == total && sm_child_stdin(c) >= 0)
			sm_child_close_stdin(c);
		p[0].fd = sm_child_stdin(c);
		cr_assert(poll(p, 2, 30000) > 0, "stalled at %zu sent, %zu echoed", sent, got);
		if (p[0].revents & POLLOUT) {
			size_t off = sent % sizeof(wbuf), n = sizeof(wbuf) - off;
			ssize_t w;
			if (n > total - sent)
				n = total - sent;
			w = write(p[0].fd, wbuf + off, n);
			cr_assert(w > 0);
			sent += (size_t)w;
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			ssize_t r = read(p[1].fd, rbuf, sizeof(rbuf));
			cr_assert(r > 0, "stdout ended after %zu of %zu bytes", got, total);
			for (ssize_t i = 0; i < r; i++)
				cr_assert_eq(rbuf[i], wbuf[(got + (size_t)i) % sizeof(wbuf)], "byte %zu differs", got + (size_t)i);
			got += (size_t)r;
		}
	}
	cr_expect_eq(drain(sm_child_stdout(c), -1), 0);
	wait_ok(c, &out);
	cr_expect_eq(out.status, 0);
	sm_child_free(c);
}

/* Reads from fd until needle shows up (or EOF); returns what was read. */
static char *read_until(int fd, const char *needle)
{
	static char buf[8192];
	size_t n = 0;

	while (n < sizeof(buf) - 1) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		buf[n] = 0;
		if (strstr(buf, needle))
			break;
	}
	buf[n] = 0;
	return buf;
}

Test(stream, tty_resize_seen_by_stty)
{
	sm_exec *x = sh("stty size; echo ready; read line; stty size");
	sm_error *err = NULL;
	sm_outcome out;
	sm_child *c;

	sm_exec_tty(x, true);
	sm_exec_winsize(x, 24, 80);
	c = spawn(x);
	cr_expect(strstr(read_until(sm_child_stdout(c), "ready"), "24 80\r\nready"));
	cr_assert(sm_child_resize(c, 50, 132, &err) == 0);
	/* The resize and this line travel in order on one connection. */
	cr_assert(write(sm_child_stdin(c), "go\n", 3) == 3);
	cr_expect(strstr(read_until(sm_child_stdout(c), "50 132"), "50 132"), "no resized window seen");
	drain(sm_child_stdout(c), -1);
	wait_ok(c, &out);
	cr_expect_eq(out.status, 0);
	sm_child_free(c);
}

Test(stream, tty_close_stdin_is_eof)
{
	sm_exec *x = sh("cat; echo after-eof");
	sm_outcome out;
	sm_child *c;

	sm_exec_tty(x, true);
	c = spawn(x);
	cr_assert(write(sm_child_stdin(c), "line\n", 5) == 5);
	cr_expect(strstr(read_until(sm_child_stdout(c), "line\r\nline"), "line\r\nline"));
	sm_child_close_stdin(c);
	cr_expect(strstr(read_until(sm_child_stdout(c), "after-eof"), "after-eof"));
	drain(sm_child_stdout(c), -1);
	wait_ok(c, &out);
	cr_expect_eq(out.status, 0);
	sm_child_free(c);
}

Test(stream, signal_reaches_command)
{
	sm_child *c = spawn(sh("trap 'echo got-usr1; exit 7' USR1; echo armed; while :; do sleep 0.05; done"));
	sm_error *err = NULL;
	sm_outcome out;

	cr_expect(strstr(read_until(sm_child_stdout(c), "armed"), "armed"));
	cr_assert(sm_child_signal(c, SIGUSR1, &err) == 0);
	cr_expect(strstr(read_until(sm_child_stdout(c), "got-usr1"), "got-usr1"));
	drain(sm_child_stdout(c), -1);
	wait_ok(c, &out);
	cr_expect_eq(out.status, 7);
	cr_expect(sm_child_signal(c, 0, &err) < 0);
	sm_error_free(err);
	sm_child_free(c);
}

Test(stream, kill_signal_ends_it)
{
	sm_child *c = spawn(sh("echo up; exec sleep 100"));
	sm_error *err = NULL;
	sm_outcome out;

	cr_expect(strstr(read_until(sm_child_stdout(c), "up"), "up"));
	cr_assert(sm_child_signal(c, SIGKILL, &err) == 0);
	drain(sm_child_stdout(c), -1);
	wait_ok(c, &out);
	cr_expect_eq(out.signal, SIGKILL);
	cr_expect(!out.timed_out);
	sm_child_free(c);
}

static void kill_session(void)
{
	pid_t pids[16];
	int n = agent_fixture_descendants(&fx, pids, 16);

	cr_assert(n >= 1);
	/* The first descendant found may be the session or its command: kill them all, as a dying VM does. */
	for (int i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
}

Test(stream, agent_dying_mid_exec_is_vm_died)
{
	sm_child *c = spawn(sh("echo up; sleep 100"));
	sm_error *err = NULL;
	sm_outcome out;

	cr_expect(strstr(read_until(sm_child_stdout(c), "up"), "up"));
	kill_session();
	drain(sm_child_stdout(c), -1);
	cr_assert(sm_child_wait(c, &out, &err) < 0, "wait succeeded after the agent died");
	cr_expect_eq(sm_error_code(err), SM_E_VM_DIED, "%s", sm_error_string(err));
	sm_error_free(err);
	sm_child_free(c);
}

Test(stream, whole_agent_dying_is_vm_died_for_output)
{
	sm_exec *x = sh("sleep 100");
	sm_error *err = NULL;
	sm_outcome out;
	pid_t killer = fork();

	cr_assert(killer >= 0);
	if (killer == 0) {
		/* From outside: the agent and all it runs go away while output() waits. */
		pid_t pids[16];
		int n;
		usleep(300000);
		n = agent_fixture_descendants(&fx, pids, 16);
		kill(fx.pid, SIGKILL);
		for (int i = 0; i < n; i++)
			kill(pids[i], SIGKILL);
		_exit(0);
	}
	cr_assert(sm_exec_output(x, &out, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_VM_DIED, "%s", sm_error_string(err));
	sm_error_free(err);
	sm_exec_free(x);
}

Test(stream, free_without_wait_kills_the_command)
{
	sm_child *c = spawn(sh("echo up; sleep 100"));

	cr_expect(strstr(read_until(sm_child_stdout(c), "up"), "up"));
	sm_child_free(c);
	/* The agent sees the host hang up and kills the exec's tree. */
	for (int i = 0; i < 300; i++) {
		pid_t pids[4];
		if (agent_fixture_descendants(&fx, pids, 4) == 0)
			return;
		usleep(10000);
	}
	cr_expect_fail("the command outlived its abandoned exec");
}

Test(stream, closing_stdout_discards_rest)
{
	sm_child *c = spawn(sh("head -c 10000000 /dev/zero; echo end >&2"));
	sm_outcome out;
	char buf[16] = { 0 };

	/* Not interested: the rest is dropped instead of stalling the command. */
	shutdown(sm_child_stdout(c), SHUT_RD);
	cr_expect_eq(read(sm_child_stderr(c), buf, sizeof(buf) - 1), 4);
	wait_ok(c, &out);
	cr_expect_eq(out.status, 0);
	sm_child_free(c);
}

Test(stream, spawn_reports_request_errors)
{
	sm_exec *x = sh("true");
	sm_error *err = NULL;

	sm_exec_user(x, "no-such-user-xyz");
	cr_assert_null(sm_exec_spawn(x, &err));
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err);
	sm_exec_free(x);
}
