/*
 * The agent's main loop, run by PID 1 (or by --agent-only on a host):
 * accept connections and fork one session process per connection, reap
 * every child (sessions, the workload, orphans), forward signals to the
 * workload, count heartbeats, and act on shutdown requests. Nothing in
 * this loop blocks: sessions do all the talking.
 */
#include "guest/init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGPWR };

static int listen_vsock(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int agent_listen(struct init_state *st)
{
	const char *l = st->listen;
	char *end;
	unsigned long port;

	if (!strncmp(l, "unix:", 5)) {
		st->listen_fd = listen_unix(l + 5);
	} else if (!strncmp(l, "vsock:", 6)) {
		port = strtoul(l + 6, &end, 10);
		if (*end || !port || port > UINT32_MAX)
			return -EINVAL;
		st->listen_fd = listen_vsock((unsigned)port);
	} else {
		return -EINVAL;
	}
	if (st->listen_fd < 0) {
		agent_log("listen on %s: %s", l, strerror(-st->listen_fd));
		return st->listen_fd;
	}
	return 0;
}

static int setup_signals(struct init_state *st)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
		sigaddset(&set, forwarded[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	st->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return st->sig_fd < 0 ? -errno : 0;
}

static int setup_heartbeat(struct init_state *st)
{
	if (!st->heartbeat_path)
		return 0;
	if (mkfifo(st->heartbeat_path, 0666) < 0 && errno != EEXIST)
		return -errno;
	chmod(st->heartbeat_path, 0666);
	/* Read-write, so the FIFO never reports EOF when a writer closes. */
	st->heartbeat_fd = open(st->heartbeat_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	return st->heartbeat_fd < 0 ? -errno : 0;
}

pid_t agent_start_workload(struct init_state *st)
{
	struct user_ids ids;
	char why[256], cg[PROTO_MAX_PATH];
	const char *cwd = st->cfg.workdir && st->cfg.workdir[0] ? st->cfg.workdir : "/";
	struct spawn_spec spec = { .argv = st->cfg.argv, .cwd = cwd, .ids = &ids,
				   /* stdin empty, output to init's (the console in a VM) */
				   .fd_in = -1, .fd_out = STDOUT_FILENO, .fd_err = STDERR_FILENO,
				   .cgroup_fd = -1 };
	pid_t pid;

	if (!st->cfg.nargv)
		return 0;
	if (user_resolve(st->cfg.user, &ids, why, sizeof(why)) < 0) {
		agent_log("workload: %s", why);
		return -1;
	}
	spec.envp = env_build(st->image_env, NULL, &ids, false);
	if (!spec.envp)
		return -1;
	spec.cgroup_fd = cgroup_create(st->cgroup_root, "workload", cg, sizeof(cg));
	if (spec.cgroup_fd < 0 && (st->pid1 || st->cgroup_root[0]))
		seal_uncontained(st, "the workload");
	pid = spawn_command(&spec);
	if (spec.cgroup_fd >= 0)
		close(spec.cgroup_fd);
	free(spec.envp);
	if (pid < 0) {
		agent_log("workload: fork: %s", strerror(errno));
		return -1;
	}
	st->shared->workload_pid = pid;
	agent_log("workload %s started (pid %d)", st->cfg.argv[0], (int)pid);
	return pid;
}

static void spawn_session(struct init_state *st, int conn)
{
	pid_t pid = fork();

	if (pid < 0) {
		agent_log("fork for a connection: %s; dropping it", strerror(errno));
		close(conn);
		return;
	}
	if (pid > 0) {
		close(conn);
		return;
	}
	close(st->listen_fd);
	close(st->sig_fd);
	close(st->ctl_rd);
	if (st->heartbeat_fd >= 0)
		close(st->heartbeat_fd);
	/* Orphans of this exec come back to this process, not to PID 1 (see tree.c). */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	session_serve(st, conn);
	/* exit, not _exit: a sanitizer build checks the session for leaks here. */
	exit(0);
}

static void accept_all(struct init_state *st)
{
	for (;;) {
		int conn = accept4(st->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				agent_log("accept: %s", strerror(errno));
			return;
		}
		spawn_session(st, conn);
	}
}

/* Returns true when the workload ended and init should power off. */
static bool reap_all(struct init_state *st)
{
	bool workload_ended = false;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid != st->shared->workload_pid)
			continue;
		st->shared->workload_pid = 0;
		if (WIFSIGNALED(status))
			agent_log("workload ended by signal %d", WTERMSIG(status));
		else
			agent_log("workload exited with status %d", WEXITSTATUS(status));
		workload_ended = true;
	}
	return workload_ended && (st->cfg.flags & PROTO_CFG_SHUTDOWN_ON_EXIT);
}

/* 1: shut down (grace in *grace_ms), 0: carry on. */
static int handle_signals(struct init_state *st, uint32_t *grace_ms)
{
	struct signalfd_siginfo si;
	int down = 0;

	while (read(st->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		int sig = (int)si.ssi_signo;
		pid_t wl = st->shared->workload_pid;

		if (sig == SIGCHLD) {
			if (reap_all(st)) {
				*grace_ms = 0;
				down = 1;
			}
			continue;
		}
		if (!st->pid1 && (sig == SIGTERM || sig == SIGINT)) {
			*grace_ms = 0;
			down = 1;
			continue;
		}
		if (wl > 0)
			kill(wl, sig);
	}
	return down;
}

static void count_heartbeats(struct init_state *st)
{
	uint8_t buf[256];
	ssize_t n;

	while ((n = read(st->heartbeat_fd, buf, sizeof(buf))) > 0)
		st->shared->heartbeat += (uint64_t)n;
}

/* Sends the workload its stop signal and waits up to grace_ms for it, reaping. */
static void stop_workload(struct init_state *st, uint32_t grace_ms)
{
	uint64_t deadline = init_now_ns() + (uint64_t)grace_ms * 1000000u;
	pid_t wl = st->shared->workload_pid;

	if (wl <= 0)
		return;
	kill(wl, st->cfg.stop_signal ? (int)st->cfg.stop_signal : SIGTERM);
	while (st->shared->workload_pid > 0 && init_now_ns() < deadline) {
		struct pollfd p = { .fd = st->sig_fd, .events = POLLIN };
		uint32_t ignored;
		poll(&p, 1, (int)((deadline - init_now_ns()) / 1000000u) + 1);
		handle_signals(st, &ignored);
	}
	if (st->shared->workload_pid > 0) {
		kill(-st->shared->workload_pid, SIGKILL);
		kill(st->shared->workload_pid, SIGKILL);
	}
}

int agent_run(struct init_state *st)
{
	uint32_t grace_ms = 0;
	int rc, ctl_pipe[2];

	if (pipe2(ctl_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	st->ctl_rd = ctl_pipe[0];
	st->ctl_wr = ctl_pipe[1];
	rc = setup_signals(st);
	if (rc == 0)
		rc = setup_heartbeat(st);
	if (rc < 0) {
		agent_log("agent setup: %s", strerror(-rc));
		return rc;
	}
	/* Without PID 1 above it, the agent must reap the orphans of its sessions itself. */
	if (!st->pid1)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (st->cfg.nargv && agent_start_workload(st) < 0 &&
	    (st->cfg.flags & PROTO_CFG_SHUTDOWN_ON_EXIT))
		goto down;
	if (st->ready_fd >= 0) {
		if (write(st->ready_fd, "1", 1) < 0)
			agent_log("ready fd: %s", strerror(errno));
		close(st->ready_fd);
		st->ready_fd = -1;
	}
	for (;;) {
		struct pollfd p[4] = {
			{ .fd = st->listen_fd, .events = POLLIN },
			{ .fd = st->sig_fd, .events = POLLIN },
			{ .fd = st->ctl_rd, .events = POLLIN },
			{ .fd = st->heartbeat_fd, .events = POLLIN },
		};
		struct init_ctl ctl;

		if (poll(p, 4, -1) < 0 && errno != EINTR) {
			agent_log("poll: %s", strerror(errno));
			continue;
		}
		if (p[0].revents)
			accept_all(st);
		if (p[1].revents && handle_signals(st, &grace_ms))
			break;
		if (p[3].revents)
			count_heartbeats(st);
		if (p[2].revents && read(st->ctl_rd, &ctl, sizeof(ctl)) == sizeof(ctl) && ctl.op == 'S') {
			grace_ms = ctl.arg;
			break;
		}
	}
down:
	close(st->listen_fd);
	st->listen_fd = -1;
	stop_workload(st, grace_ms);
	if (st->pid1)
		pid1_poweroff(st);
	/* A host test agent leaves nothing behind: sessions and what they started. */
	tree_kill(NULL, 0);
	return 0;
}
