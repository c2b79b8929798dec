/*
 * Spare workers (src/lib/spare.c, src/worker/main.c --spare) with the
 * real worker binary and no VM: a spare waits; handed a restore of a
 * missing snapshot it says so in the log it was handed and exits 2; a
 * dead spare is not alive; a malformed handoff is refused on the socket.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/spare.h"
#include "proto/worker.h"

static char dir[64], logpath[128];

static void mktmp(void)
{
	strcpy(dir, "/tmp/sm-spare-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(logpath, sizeof(logpath), "%s/worker.log", dir);
}

static void rmtmp(void)
{
	unlink(logpath);
	rmdir(dir);
}

TestSuite(spare, .init = mktmp, .fini = rmtmp);

static int exit_status(pid_t pid)
{
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void slurp(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;

	buf[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
}

static void start(struct spare *s)
{
	sm_error *err = NULL;

	cr_assert_eq(spare_start(s, SM_TEST_WORKER, &err), 0, "%s", sm_error_string(err));
	usleep(100000); /* linked and waiting by now, or dead */
	cr_assert(spare_alive(s), "a spare waits for its command line");
}

Test(spare, a_handed_restore_of_a_missing_snapshot_fails_in_its_log)
{
	const char *argv[] = { SM_TEST_WORKER, "--restore", "/nonexistent/sm-spare-snapshot", NULL };
	struct spare s;
	sm_error *err = NULL;
	pid_t pid;
	int pidfd;
	char log[4096];

	start(&s);
	cr_assert_eq(spare_hand(&s, argv, logpath, &pid, &pidfd, &err), 0, "%s", sm_error_string(err));
	cr_assert_eq(s.pid, 0, "the spare is the caller's worker now");
	cr_assert_eq(exit_status(pid), WORKER_EXIT_USAGE);
	close(pidfd);
	slurp(logpath, log, sizeof(log));
	cr_assert(strstr(log, "/nonexistent/sm-spare-snapshot"), "the log it was handed says why: %s", log);
}

Test(spare, a_killed_spare_is_not_alive)
{
	struct spare s;
	siginfo_t si;

	start(&s);
	cr_assert_eq(kill(s.pid, SIGKILL), 0);
	cr_assert_eq(waitid(P_PID, (id_t)s.pid, &si, WEXITED | WNOWAIT), 0);
	cr_assert_not(spare_alive(&s), "a dead spare is never used");
	spare_kill(&s);
	cr_assert_eq(s.pid, 0);
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "reaped");
}

Test(spare, its_library_gone_it_exits)
{
	struct spare s;
	pid_t pid;

	start(&s);
	pid = s.pid;
	close(s.sock);
	cr_assert_eq(exit_status(pid), WORKER_EXIT_USAGE);
	close(s.pidfd);
}

/* What the worker answers to raw bytes sent on its socket, and its exit status. */
static int refused(struct spare *s, const void *msg, size_t len, bool with_log, char *reply, size_t rlen)
{
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
	struct iovec iov = { (void *)msg, len };
	struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1 };
	int log_fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	pid_t pid = s->pid;

	if (with_log) {
		h.msg_control = c.buf;
		h.msg_controllen = sizeof(c.buf);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&h);
		*cm = (struct cmsghdr){ .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS,
					.cmsg_len = CMSG_LEN(sizeof(int)) };
		memcpy(CMSG_DATA(cm), &log_fd, sizeof(int));
	}
	cr_assert_eq(sendmsg(s->sock, &h, 0), (ssize_t)len);
	close(log_fd);
	ssize_t n = recv(s->sock, reply, rlen - 1, 0);
	reply[n > 0 ? n : 0] = 0;
	close(s->sock);
	close(s->pidfd);
	return exit_status(pid);
}

Test(spare, a_malformed_handoff_is_refused)
{
	static const char *const argv_help[] = { SM_TEST_WORKER, "--help", NULL },
			  *argv_bad[] = { SM_TEST_WORKER, "--no-such-option", NULL },
			  *argv_ok[] = { SM_TEST_WORKER, "--restore", "/x", NULL };
	char buf[512], reply[600];
	struct spare s;
	ssize_t n;

	start(&s);
	cr_assert_eq(refused(&s, "garbage", 7, true, reply, sizeof(reply)), WORKER_EXIT_USAGE);
	cr_assert(strstr(reply, "error spare: malformed handoff"), "%s", reply);

	start(&s);
	n = worker_handoff_encode(argv_ok, buf, sizeof(buf));
	cr_assert_eq(refused(&s, buf, (size_t)n, false, reply, sizeof(reply)), WORKER_EXIT_USAGE);
	cr_assert(strstr(reply, "no log descriptor"), "%s", reply);

	start(&s);
	n = worker_handoff_encode(argv_help, buf, sizeof(buf));
	cr_assert_eq(refused(&s, buf, (size_t)n, true, reply, sizeof(reply)), WORKER_EXIT_USAGE);
	cr_assert(strstr(reply, "may not ask for --help"), "%s", reply);

	start(&s);
	n = worker_handoff_encode(argv_bad, buf, sizeof(buf));
	cr_assert_eq(refused(&s, buf, (size_t)n, true, reply, sizeof(reply)), WORKER_EXIT_USAGE);
	cr_assert(strstr(reply, "error ") && strstr(reply, "no-such-option"), "%s", reply);
	slurp(logpath, buf, sizeof(buf));
	cr_assert(strstr(buf, "no-such-option"), "the refusal is in the log too: %s", buf);
}

Test(spare, the_refusal_reaches_the_library_as_an_error)
{
	const char *argv[] = { SM_TEST_WORKER, "--help", NULL };
	struct spare s;
	sm_error *err = NULL;
	pid_t pid = 0;
	int pidfd = -1;

	start(&s);
	cr_assert_eq(spare_hand(&s, argv, logpath, &pid, &pidfd, &err), -1);
	cr_assert(strstr(sm_error_string(err), "refused its command line"), "%s", sm_error_string(err));
	cr_assert_eq(s.pid, 0, "killed and reaped");
	sm_error_free(err);
}
