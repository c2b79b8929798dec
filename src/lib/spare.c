/*
 * Spare workers (spare.h). The handoff is one SOCK_SEQPACKET message, so
 * the worker never sees half a command line, and one reply line in the
 * control socket's "ok" / "error TEXT" form.
 */
#include "lib/spare.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "lib/launcher.h"
#include "proto/worker.h"

#define SPARE_REPLY_WAIT_MS 5000 /* parsing a command line: far less than this */

bool spare_wanted(void)
{
	const char *v = getenv("SUPERMACHINE_SPARE");

	return v && strcmp(v, "1") == 0; /* opt-in until the pool's vm tests count a spare among its workers */
}

int spare_start(struct spare *s, const char *exe, sm_error **err)
{
	char fd[16];
	const char *argv[] = { exe, WORKER_SPARE_OPTION, fd, NULL };
	int sv[2];

	*s = (struct spare){ .pidfd = -1, .sock = -1 };
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return sm_error_set(err, SM_E_IO, errno, "spare worker: socketpair"), -1;
	snprintf(fd, sizeof(fd), "%d", LAUNCH_PASS_FD);
	/* its own output before a handoff (a refusal) goes back on the socket too */
	struct launch l = { .argv = argv, .log = "/dev/null", .pass = true, .pass_fd = sv[1] };
	int rc = launcher_spawn(&l, &s->pid, &s->pidfd, err);
	close(sv[1]);
	if (rc < 0) {
		close(sv[0]);
		*s = (struct spare){ .pidfd = -1, .sock = -1 };
		return sm_error_wrap(err, "spare worker"), -1;
	}
	s->sock = sv[0];
	return 0;
}

bool spare_alive(const struct spare *s)
{
	struct pollfd p[2] = { { .fd = s->pidfd, .events = POLLIN }, { .fd = s->sock, .events = POLLIN } };

	if (s->pid <= 0)
		return false;
	if (s->pidfd < 0 && kill(s->pid, 0) < 0)
		return false;
	/* an exited spare's pidfd is readable; its socket hangs up; it never writes first */
	return poll(p, 2, 0) == 0;
}

void spare_kill(struct spare *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (s->pidfd >= 0)
		close(s->pidfd);
	if (s->sock >= 0)
		close(s->sock);
	*s = (struct spare){ .pidfd = -1, .sock = -1 };
}

/* The handoff message with the log descriptor. */
static int spare_send(struct spare *s, const char *const argv[], int log_fd, sm_error **err)
{
	char *buf = malloc(WORKER_SPARE_MSG_MAX);
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
	ssize_t n = buf ? worker_handoff_encode(argv, buf, WORKER_SPARE_MSG_MAX) : -ENOMEM;
	struct iovec iov = { buf, n > 0 ? (size_t)n : 0 };
	struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&h);

	if (n < 0) {
		free(buf);
		return sm_error_set(err, n == -ENOMEM ? SM_E_NOMEM : SM_E_INVALID, (int)-n,
				    "spare worker: the command line does not fit a handoff"), -1;
	}
	*cm = (struct cmsghdr){ .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS, .cmsg_len = CMSG_LEN(sizeof(int)) };
	memcpy(CMSG_DATA(cm), &log_fd, sizeof(int));
	n = sendmsg(s->sock, &h, MSG_NOSIGNAL);
	free(buf);
	if (n < 0)
		return sm_error_set(err, SM_E_IO, errno, "spare worker %d: send the command line", (int)s->pid), -1;
	return 0;
}

/* The spare's one reply line: 0 on "ok". */
static int spare_answer(struct spare *s, sm_error **err)
{
	char line[WORKER_CTL_LINE_MAX + 1];
	struct pollfd p = { .fd = s->sock, .events = POLLIN };
	struct worker_reply r;
	ssize_t n = poll(&p, 1, SPARE_REPLY_WAIT_MS) == 1 ? recv(s->sock, line, sizeof(line) - 1, 0) : -1;

	if (n <= 0)
		return sm_error_set(err, SM_E_IO, n < 0 ? errno : 0, "spare worker %d: no answer to its command line",
				    (int)s->pid), -1;
	line[n] = 0;
	if (worker_reply_parse(line, &r) < 0)
		return sm_error_set(err, SM_E_IO, 0, "spare worker %d: an answer neither ok nor error", (int)s->pid), -1;
	if (!r.ok)
		return sm_error_set(err, SM_E_INVALID, 0, "spare worker %d refused its command line: %s", (int)s->pid,
				    r.text), -1;
	return 0;
}

int spare_hand(struct spare *s, const char *const argv[], const char *log, pid_t *pid, int *pidfd, sm_error **err)
{
	int log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (log_fd < 0) {
		sm_error_set(err, SM_E_IO, errno, "spare worker: open its log %s", log);
		return spare_kill(s), -1;
	}
	rc = spare_send(s, argv, log_fd, err);
	close(log_fd);
	if (rc == 0)
		rc = spare_answer(s, err);
	if (rc < 0)
		return spare_kill(s), -1;
	*pid = s->pid;
	*pidfd = s->pidfd;
	close(s->sock);
	*s = (struct spare){ .pidfd = -1, .sock = -1 };
	return 0;
}
