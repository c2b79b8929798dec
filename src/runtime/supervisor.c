/*
 * The host processes that stand for a container and its execs. The
 * shim waits on the pid it is given and takes its exit status as the
 * workload's, so that process must live exactly as long as the workload:
 *
 * create forks the supervisor, which boots the VM (the rootfs directory
 * as its root, no workload yet), says "ok" to create over a pipe and
 * waits on the start fifo; start writes a byte to it; the supervisor then
 * runs process.args as an exec in the VM, relays stdio (the shim's pipes,
 * or a pty whose master went to --console-socket), forwards signals and
 * exits with the process's status once it ends, stopping the VM. The
 * VM's worker is tied to the supervisor (sm_vm_config.detached is off):
 * whatever kills the supervisor kills the VM.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define RT_STOP_GRACE_MS 2000

/* The one line create or exec --detach waits for: "ok VMID" or "error MESSAGE". */
static void ready(const struct rt_run *r, const char *word, const char *arg)
{
	if (r->ready_fd < 0)
		return;
	dprintf(r->ready_fd, "%s %s\n", word, arg);
	close(r->ready_fd);
}

static void give_up(const struct rt_run *r, const char *what, const sm_error *e)
{
	char msg[RT_WHY];

	snprintf(msg, sizeof(msg), "%s: %s", what, e ? sm_error_string(e) : strerror(errno));
	if (r->ready_fd >= 0)
		ready(r, "error", msg);
	else
		rt_error("%s", msg);
}

/* Every signal that can be caught arrives on the returned signalfd instead. */
static int signals_take(void)
{
	sigset_t all;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	return signalfd(-1, &all, SFD_CLOEXEC);
}

/* runc's --console-socket: the pty master goes to the shim over SCM_RIGHTS. */
static int console_send(const char *sock_path, int master)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, name[] = "/dev/ptmx";
	struct iovec io = { name, sizeof(name) - 1 };
	struct msghdr mh = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	int fd, rc;

	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return errno = ENAMETOOLONG, -1;
	strcpy(sa.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || sendmsg(fd, &mh, 0) < 0 ? -1 : 0;
	close(fd);
	return rc;
}

/*
 * A pty for a terminal process: the master to the shim, the slave kept
 * here in raw mode (the guest's own pty does the line discipline) as our
 * controlling terminal, so the shim's resizes arrive as SIGWINCH.
 */
static int console_open(const struct rt_run *r, const struct rt_process *p)
{
	struct winsize ws = { .ws_row = (unsigned short)p->rows, .ws_col = (unsigned short)p->cols };
	struct termios t;
	int master, slave;

	if (!r->console_socket)
		return errno = EINVAL, -1;
	if (openpty(&master, &slave, NULL, NULL, ws.ws_row ? &ws : NULL) < 0)
		return -1;
	if (tcgetattr(slave, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(slave, TCSANOW, &t);
	}
	ioctl(slave, TIOCSCTTY, 0);
	if (console_send(r->console_socket, master) < 0) {
		close(master);
		close(slave);
		return -1;
	}
	close(master);
	return slave;
}

static sm_exec *exec_build(sm_vm *vm, const struct rt_process *p)
{
	sm_exec *x = sm_exec_new(vm);
	char user[32];

	if (!x)
		return NULL;
	snprintf(user, sizeof(user), "%u:%u", p->uid, p->gid);
	sm_exec_argv(x, (const char *const *)p->args);
	sm_exec_cwd(x, p->cwd);
	sm_exec_user(x, user);
	for (char **e = p->env; *e; e++) {
		char key[256];
		size_t k = (size_t)(strchr(*e, '=') - *e);
		snprintf(key, sizeof(key), "%.*s", (int)(k < sizeof(key) ? k : sizeof(key) - 1), *e);
		sm_exec_env(x, key, *e + k + 1);
	}
	if (p->terminal) {
		sm_exec_tty(x, true);
		if (p->rows && p->cols)
			sm_exec_winsize(x, p->rows, p->cols);
	}
	return x;
}

/* Copies what is readable on from to to; false at EOF or an error on either side. */
static bool pump(int from, int to)
{
	char buf[16384];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	for (ssize_t off = 0; n > 0 && off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += w;
	}
	return n > 0;
}

static void on_signal(int sigfd, sm_child *c, int tty)
{
	struct signalfd_siginfo si;
	struct winsize ws;

	if (read(sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGWINCH && tty >= 0 && ioctl(tty, TIOCGWINSZ, &ws) == 0)
		sm_child_resize(c, ws.ws_row, ws.ws_col, NULL);
	else if (si.ssi_signo != SIGCHLD && si.ssi_signo != SIGWINCH && si.ssi_signo != SIGPIPE)
		sm_child_signal(c, (int)si.ssi_signo, NULL);
}

/* Relays until the process's output ends. tty: the pty slave, else -1 (stdio is fds 0-2). */
static void relay(sm_child *c, int sigfd, int tty)
{
	int in = tty >= 0 ? tty : 0, out = tty >= 0 ? tty : 1;
	struct pollfd p[4] = { { .fd = sigfd, .events = POLLIN }, { .fd = in, .events = POLLIN },
			       { .fd = sm_child_stdout(c), .events = POLLIN }, { .fd = sm_child_stderr(c), .events = POLLIN } };

	if (tty < 0 && fcntl(0, F_GETFD) < 0)
		p[1].fd = -1;
	while (p[2].fd >= 0 || p[3].fd >= 0) {
		if (poll(p, 4, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			on_signal(sigfd, c, tty);
		if (p[1].revents && !pump(in, sm_child_stdin(c))) {
			sm_child_close_stdin(c);
			p[1].fd = -1;
		}
		if (p[2].revents && !pump(p[2].fd, out))
			p[2].fd = -1;
		if (p[3].revents && !pump(p[3].fd, tty >= 0 ? tty : 2))
			p[3].fd = -1;
	}
}

static int status_of(const sm_outcome *o)
{
	return o->signal ? 128 + o->signal : o->status;
}

/* The pty slave for a terminal process (its master sent to the shim), else -1; -2 on failure. */
static int console_for(const struct rt_run *r, const struct rt_process *p)
{
	int tty;

	if (!p->terminal)
		return -1;
	tty = console_open(r, p);
	if (tty < 0) {
		give_up(r, r->console_socket ? "console socket" : "process.terminal is set but no --console-socket given",
			NULL);
		return -2;
	}
	return tty;
}

/*
 * Runs p in vm to its end, tty its console (console_for); the status to
 * exit with (125 when it could not start).
 */
static int run_process(sm_vm *vm, const struct rt_process *p, const struct rt_run *r, int sigfd, int tty)
{
	int status = 125;
	sm_outcome out = { 0 };
	sm_error *e = NULL;
	sm_child *c = NULL;
	sm_exec *x = exec_build(vm, p);

	if (!x || !(c = sm_exec_spawn(x, &e))) {
		give_up(r, "start the process", e);
		goto out;
	}
	ready(r, "ok", sm_vm_id(vm));
	relay(c, sigfd, tty);
	if (sm_child_wait(c, &out, &e) < 0)
		give_up(&(struct rt_run){ .ready_fd = -1 }, "wait for the process", e); /* the ready line is said */
	else
		status = status_of(&out);
out:
	sm_outcome_free(&out);
	sm_error_free(e);
	sm_child_free(c);
	sm_exec_free(x);
	return status;
}

/* Blocks until start writes to the fifo (0), or a signal asks us to end (its number). */
static int wait_start(const char *state_dir, int sigfd)
{
	char path[4200], byte;
	struct signalfd_siginfo si;
	int fifo, rc = -1;

	snprintf(path, sizeof(path), "%s/" RT_START_FIFO, state_dir);
	/* read-write: we never see the end of a writer, only its byte */
	fifo = open(path, O_RDWR | O_CLOEXEC);
	if (fifo < 0)
		return SIGKILL;
	while (rc < 0) {
		struct pollfd p[2] = { { .fd = fifo, .events = POLLIN }, { .fd = sigfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			rc = SIGKILL;
		else if (p[0].revents && read(fifo, &byte, 1) == 1)
			rc = 0;
		else if (p[1].revents && read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGCHLD &&
			 si.ssi_signo != SIGWINCH && si.ssi_signo != SIGPIPE)
			rc = (int)si.ssi_signo; /* kill of a created container: it ends unstarted */
	}
	close(fifo);
	return rc;
}

/* A pod sandbox: nothing runs, as the pause process does nothing; it ends on a signal. */
static void __attribute__((noreturn)) supervise_sandbox(const struct rt_run *r, int sigfd)
{
	struct signalfd_siginfo si;
	int sig;

	ready(r, "ok", "");
	sig = wait_start(r->state_dir, sigfd);
	while (sig == 0)
		if (read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGCHLD && si.ssi_signo != SIGWINCH)
			sig = (int)si.ssi_signo;
	_exit(128 + sig);
}

void rt_supervise(const struct rt_spec *s, const char *id, const struct rt_run *r)
{
	struct rt_run later = { .state_dir = r->state_dir, .ready_fd = -1 };
	sm_mount mounts[RT_MAX_MOUNTS];
	int sigfd = signals_take(), sig, status, tty;
	sm_vm_config cfg;
	sm_error *e = NULL;
	sm_vm *vm;

	if (s->sandbox)
		supervise_sandbox(r, sigfd);
	rt_spec_vm_config(s, id, &cfg, mounts);
	vm = sm_vm_start(NULL, &cfg, &e);
	if (!vm) {
		give_up(r, "boot the VM", e);
		_exit(1);
	}
	/* the shim takes the pty master before create returns */
	if ((tty = console_for(r, &s->proc)) == -2) {
		sm_vm_free(vm);
		_exit(1);
	}
	ready(r, "ok", sm_vm_id(vm));
	sig = wait_start(r->state_dir, sigfd);
	status = sig ? 128 + sig : run_process(vm, &s->proc, &later, sigfd, tty);
	sm_vm_stop(vm, RT_STOP_GRACE_MS, NULL);
	sm_vm_free(vm);
	_exit(status);
}

int rt_exec(const char *vm_id, const struct rt_process *p, const struct rt_run *r)
{
	int sigfd = signals_take(), status;
	sm_error *e = NULL;
	sm_vm *vm = sm_vm_attach(vm_id, &e);

	if (!vm) {
		give_up(r, "find the container's VM", e);
		sm_error_free(e);
		return 125;
	}
	int tty = console_for(r, p);
	status = tty == -2 ? 125 : run_process(vm, p, r, sigfd, tty);
	sm_vm_free(vm);
	close(sigfd);
	return status;
}
