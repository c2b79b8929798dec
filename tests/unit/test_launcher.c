/*
 * The launcher (src/lib/launcher.c) without a VM: real programs
 * (/bin/sleep, /bin/sh) started from threads that come and go, from a
 * forked process, many at once, and programs that cannot start.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/launcher.h"

#define LAUNCH_THREADS 16

static char dir[64], logpath[128];

static void mktmp(void)
{
	strcpy(dir, "/tmp/sm-launcher-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(logpath, sizeof(logpath), "%s/child.log", dir);
}

static void rmtmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert(system(cmd) == 0);
}

TestSuite(launcher, .init = mktmp, .fini = rmtmp, .timeout = 60);

static const char *const sleep_argv[] = { "/bin/sleep", "60", NULL };

struct spawned {
	const char *const *argv;
	pid_t pid;
	int pidfd, rc;
	sm_error *err;
};

static void *spawn_thread(void *opaque)
{
	struct spawned *s = opaque;
	struct launch l = { .argv = s->argv, .log = logpath };

	s->rc = launcher_spawn(&l, &s->pid, &s->pidfd, &s->err);
	return NULL;
}

/* Starts argv from a thread of its own, which has exited when this returns. */
static struct spawned spawn_from_thread(const char *const *argv)
{
	struct spawned s = { .argv = argv, .pid = -1, .pidfd = -1 };
	pthread_t t;

	cr_assert(pthread_create(&t, NULL, spawn_thread, &s) == 0);
	cr_assert(pthread_join(t, NULL) == 0);
	cr_assert(s.rc == 0, "spawn %s: %s", argv[0], sm_error_string(s.err));
	return s;
}

/* Whether the process behind pidfd ends within ms. */
static bool ends_within(int pidfd, int ms)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

static int exit_status(pid_t pid)
{
	int st;

	cr_assert(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void kill_and_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	cr_expect(exit_status(pid) == 128 + SIGKILL);
}

/* A worker forked on the caller's thread died with that thread (PR_SET_PDEATHSIG). */
Test(launcher, child_outlives_the_thread_that_started_it)
{
	struct spawned s = spawn_from_thread(sleep_argv);

	cr_assert(s.pidfd >= 0, "pidfd_open");
	cr_expect(!ends_within(s.pidfd, 500), "the child died with the thread that asked for it");
	cr_expect(waitpid(s.pid, NULL, WNOHANG) == 0, "the child is not running");
	kill_and_reap(s.pid);
	close(s.pidfd);
}

/*
 * Run in a process forked after the launcher started: spawns sleep from a
 * thread that exits, reports its pid, waits for the word to exit.
 */
static _Noreturn void owner_process(int report, int go)
{
	struct spawned s = { .argv = sleep_argv, .pid = -1, .pidfd = -1 };
	pthread_t t;
	char c;

	alarm(20); /* a launcher that was not restarted in this process hangs the spawn */
	if (pthread_create(&t, NULL, spawn_thread, &s) != 0 || pthread_join(t, NULL) != 0 || s.rc < 0)
		_exit(1);
	if (write(report, &s.pid, sizeof(s.pid)) != (ssize_t)sizeof(s.pid) || read(go, &c, 1) != 1)
		_exit(1);
	_exit(0);
}

Test(launcher, child_dies_with_the_process_that_owns_the_launcher)
{
	struct spawned warm = spawn_from_thread((const char *const[]){ "/bin/true", NULL });
	int report[2], go[2];
	pid_t owner, child = -1;

	/* this process has a launcher now: the forked owner must start its own */
	cr_expect(exit_status(warm.pid) == 0);
	close(warm.pidfd);
	cr_assert(pipe(report) == 0 && pipe(go) == 0);
	owner = fork();
	cr_assert(owner >= 0);
	if (owner == 0)
		owner_process(report[1], go[0]);
	close(report[1]);
	close(go[0]);
	cr_assert(read(report[0], &child, sizeof(child)) == (ssize_t)sizeof(child),
		  "the forked process could not start a child (its launcher?)");
	int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
	cr_assert(pidfd >= 0, "the child %d is not running", (int)child);
	cr_expect(!ends_within(pidfd, 300), "the child died before its owner");
	cr_assert(write(go[1], "x", 1) == 1);
	cr_expect(exit_status(owner) == 0);
	cr_expect(ends_within(pidfd, 10000), "the child outlived the process that owned the launcher");
	close(pidfd);
	close(report[0]);
	close(go[1]);
}

/* Spawns argv on this thread; its error, with the child already reaped. */
static sm_error *spawn_fails(const char *const *argv, const char *log)
{
	struct launch l = { .argv = argv, .log = log };
	sm_error *err = NULL;
	pid_t pid = -1;
	int pidfd = -1;

	cr_assert(launcher_spawn(&l, &pid, &pidfd, &err) < 0, "%s started", argv[0]);
	cr_assert(err);
	errno = 0;
	cr_expect(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "the failed child was not reaped");
	return err;
}

static void expect_error(sm_error *err, sm_code code, const char *part1, const char *part2)
{
	const char *msg = sm_error_string(err);

	cr_expect(sm_error_code(err) == code, "code %d: %s", sm_error_code(err), msg);
	cr_expect(strstr(msg, part1) && strstr(msg, part2), "'%s' lacks '%s' or '%s'", msg, part1, part2);
	sm_error_free(err);
}

Test(launcher, exec_failures_are_reported)
{
	char script[128];
	int fd;

	expect_error(spawn_fails((const char *const[]){ "/nonexistent/sm-worker", NULL }, logpath), SM_E_NOT_FOUND,
		     "start /nonexistent/sm-worker: exec", strerror(ENOENT));
	snprintf(script, sizeof(script), "%s/not-executable", dir);
	fd = open(script, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	close(fd);
	expect_error(spawn_fails((const char *const[]){ script, NULL }, logpath), SM_E_IO, "exec", strerror(EACCES));
	expect_error(spawn_fails(sleep_argv, "/nonexistent/dir/child.log"), SM_E_IO,
		     "open its log /nonexistent/dir/child.log", strerror(ENOENT));
}

Test(launcher, many_threads_at_once)
{
	static const char *const argv[] = { "/bin/sh", "-c", "exit 7", NULL };
	struct spawned s[LAUNCH_THREADS];
	pthread_t t[LAUNCH_THREADS];

	for (int i = 0; i < LAUNCH_THREADS; i++) {
		s[i] = (struct spawned){ .argv = argv, .pid = -1, .pidfd = -1 };
		cr_assert(pthread_create(&t[i], NULL, spawn_thread, &s[i]) == 0);
	}
	for (int i = 0; i < LAUNCH_THREADS; i++)
		cr_assert(pthread_join(t[i], NULL) == 0);
	for (int i = 0; i < LAUNCH_THREADS; i++) {
		cr_assert(s[i].rc == 0, "thread %d: %s", i, sm_error_string(s[i].err));
		for (int j = 0; j < i; j++)
			cr_expect(s[i].pid != s[j].pid, "two launches answered with pid %d", (int)s[i].pid);
		cr_expect(exit_status(s[i].pid) == 7, "child %d did not run its program", i);
		close(s[i].pidfd);
	}
}

static char *read_log(void)
{
	static char buf[256];
	int fd = open(logpath, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* stdout and stderr go to the log, stdin is /dev/null, nothing else is inherited. */
Test(launcher, only_the_standard_streams_are_inherited)
{
	int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, as a careless program would */
	char script[256];

	cr_assert(leak > STDERR_FILENO);
	snprintf(script, sizeof(script),
		 "echo out; echo err >&2; test -e /proc/self/fd/%d && exit 3; read x && exit 4; exit 0", leak);
	struct spawned s = spawn_from_thread((const char *const[]){ "/bin/sh", "-c", script, NULL });
	int st = exit_status(s.pid);
	cr_expect(st != 3, "descriptor %d leaked into the child", leak);
	cr_expect(st != 4, "stdin is not /dev/null");
	cr_expect(st == 0, "exit status %d", st);
	cr_expect_str_eq(read_log(), "out\nerr\n");
	close(s.pidfd);
	close(leak);
}

Test(launcher, detached_child_has_its_own_session)
{
	struct launch l = { .argv = sleep_argv, .log = logpath, .detached = true };
	struct spawned s = spawn_from_thread(sleep_argv);
	sm_error *err = NULL;
	pid_t pid;
	int pidfd;

	cr_expect(getsid(s.pid) == getsid(0), "an attached child left our session");
	kill_and_reap(s.pid);
	close(s.pidfd);
	cr_assert(launcher_spawn(&l, &pid, &pidfd, &err) == 0, "%s", sm_error_string(err));
	cr_expect(getsid(pid) == pid, "a detached child is not in a session of its own");
	kill_and_reap(pid);
	close(pidfd);
}

/*
 * A jailed worker's start (root only): PID 1 of its own PID namespace, in
 * its own network namespace (lo alone), and still the caller's child by
 * its host pid: the pidfd sees it, SIGKILL ends it, waitpid reaps it.
 */
Test(launcher, a_child_in_namespaces_is_pid_1_and_still_ours)
{
	const char *const argv[] = { "/bin/sh", "-c", "echo pid=$$ nics=$(grep -c : /proc/net/dev); exec sleep 60",
				     NULL };
	struct launch l = { .argv = argv, .log = logpath,
			    .namespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET };
	sm_error *err = NULL;
	pid_t pid = -1;
	int pidfd = -1;

	if (geteuid() != 0)
		cr_skip_test("namespaces are root's here");
	cr_assert(launcher_spawn(&l, &pid, &pidfd, &err) == 0, "%s", err ? sm_error_string(err) : "");
	cr_assert(pidfd >= 0 && pid > 1);
	for (int i = 0; i < 100 && !strstr(read_log(), "nics="); i++)
		usleep(20000);
	cr_expect(strstr(read_log(), "pid=1 nics=1\n"), "PID 1 with lo alone: %s", read_log());
	cr_expect(!ends_within(pidfd, 100), "it ended early");
	kill_and_reap(pid);
	close(pidfd);
}
