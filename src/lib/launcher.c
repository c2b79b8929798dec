/*
 * The launcher thread (launcher.h). A caller queues a request under the
 * lock and waits; the thread forks the child and answers with its pid and
 * the read end of a close-on-exec pipe. The caller reads that pipe: EOF
 * means the exec happened, a struct launch_failure says which step failed
 * and why. The caller then opens the pidfd and owns the child; the
 * launcher keeps nothing of it.
 *
 * The state is per process (a launcher is a thread of one process), the
 * library's one global besides the log callback. A fork() of the program
 * takes the lock first (pthread_atfork), so no child of it holds a pipe's
 * write end (which would keep a caller from its EOF) or a half-updated
 * queue; in such a child the launcher is gone, and its first launch
 * starts one of its own.
 *
 * The launcher forks with _Fork(), which runs no atfork handlers: glibc
 * holds its atfork lock across a fork() and its handlers, so a fork() of
 * ours would wait for a program's fork() that waits in our handler for
 * us. Between the fork and the exec the child makes async-signal-safe
 * calls only: the program's other threads may hold any lock.
 */
#include "lib/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"

#define LAUNCH_CLOEXEC_FALLBACK_MAX 65536 /* descriptors marked one by one without close_range */

enum launch_step { LAUNCH_PARENT, LAUNCH_STDIN, LAUNCH_LOG, LAUNCH_PASS, LAUNCH_EXEC, LAUNCH_NSTEPS };

/* What a child that failed writes to its status pipe before _exit(127). */
struct launch_failure {
	int step;   /* enum launch_step */
	int errnum;
};

struct launch_req {
	const struct launch *l;
	struct launch_req *next;
	pid_t pid;      /* the child, or -1 */
	int errnum;     /* why there is no child */
	int status_fd;  /* read end of the status pipe */
	bool answered;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t queued;    /* the launcher: a request to serve */
	pthread_cond_t answered;  /* callers: a request was served */
	struct launch_req *head, *tail;
	pid_t owner;              /* the process whose launcher runs; 0 before one starts */
	int owner_pidfd;          /* a pidfd of owner, or -1: how a child in a PID namespace sees it end */
} launcher = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, -1 };

static pthread_once_t launcher_once = PTHREAD_ONCE_INIT;

/* ---- the child, between fork and exec: async-signal-safe calls only ---- */

static _Noreturn void child_fail(int status_fd, enum launch_step step)
{
	struct launch_failure f = { step, errno };

	if (write(status_fd, &f, sizeof(f)) < 0)
		_exit(126);
	_exit(127);
}

/* fd as target for the exec: dup2 of a descriptor onto itself would keep its O_CLOEXEC. */
static int child_dup(int fd, int target)
{
	return fd == target ? fcntl(fd, F_SETFD, 0) : dup2(fd, target);
}

/* Whatever the program opened without O_CLOEXEC stays out of the child. */
static void child_cloexec_all(void)
{
	struct rlimit r;
	int max = LAUNCH_CLOEXEC_FALLBACK_MAX;

	if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < (rlim_t)max)
		max = (int)r.rlim_cur;
	for (int fd = 3; fd < max; fd++)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/*
 * Whether the process that forked us ended before our PR_SET_PDEATHSIG
 * could fire for it. In a PID namespace of our own the parent is outside
 * it and getppid() says 0 whether it lives or not; its pidfd says.
 */
static bool child_orphaned(pid_t parent, int owner_pidfd)
{
	struct pollfd p = { .fd = owner_pidfd, .events = POLLIN };

	if (getppid() == parent)
		return false;
	return owner_pidfd < 0 || poll(&p, 1, 0) != 0;
}

static _Noreturn void child_run(const struct launch *l, int status_fd, pid_t parent, int owner_pidfd)
{
	sigset_t none;
	int fd;

	if (l->detached) {
		setsid(); /* no terminal signals from the shell that ran `run -d` */
	} else {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* the launcher thread: it ends with the process only */
		if (child_orphaned(parent, owner_pidfd)) {
			errno = ESRCH; /* the process ended before the prctl */
			child_fail(status_fd, LAUNCH_PARENT);
		}
	}
	signal(SIGPIPE, SIG_DFL);
	child_cloexec_all();
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || child_dup(fd, STDIN_FILENO) < 0)
		child_fail(status_fd, LAUNCH_STDIN);
	fd = open(l->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || child_dup(fd, STDOUT_FILENO) < 0 || child_dup(fd, STDERR_FILENO) < 0)
		child_fail(status_fd, LAUNCH_LOG);
	if (l->pass && child_dup(l->pass_fd, LAUNCH_PASS_FD) < 0)
		child_fail(status_fd, LAUNCH_PASS);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL); /* the launcher blocks every signal; the program starts with none */
	execv(l->argv[0], (char *const *)l->argv);
	child_fail(status_fd, LAUNCH_EXEC);
}

/* ---- the launcher thread ---- */

/* A close-on-exec pipe whose write end is above stderr and LAUNCH_PASS_FD, which the child replaces. */
static int launcher_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	if (fds[1] > LAUNCH_PASS_FD)
		return 0;
	int high = fcntl(fds[1], F_DUPFD_CLOEXEC, LAUNCH_PASS_FD + 1), e = errno;
	close(fds[1]);
	fds[1] = high;
	if (high >= 0)
		return 0;
	close(fds[0]);
	errno = e;
	return -1;
}

/*
 * The child: _Fork(), or for a jailed worker clone3() into its namespaces
 * and cgroup. Like _Fork() it returns twice; the child then makes only
 * raw system calls, so glibc's idea of its thread id (stale after a raw
 * clone) is never consulted.
 */
static pid_t launcher_clone(const struct launch *l)
{
	struct clone_args a = {
		.flags = l->namespaces | (l->cgroup ? CLONE_INTO_CGROUP : 0),
		.exit_signal = SIGCHLD,
		.cgroup = l->cgroup ? (uint64_t)l->cgroup_fd : 0,
	};

	if (!a.flags)
		return _Fork();
	return (pid_t)syscall(SYS_clone3, &a, sizeof(a));
}

/* Forks r's child, lock held: no fork() of the program copies the pipe meanwhile. */
static void launcher_fork(struct launch_req *r)
{
	int fds[2];

	if (launcher_pipe(fds) < 0) {
		r->errnum = errno;
		return;
	}
	r->pid = launcher_clone(r->l);
	if (r->pid == 0)
		child_run(r->l, fds[1], launcher.owner, launcher.owner_pidfd);
	r->errnum = errno;
	close(fds[1]);
	if (r->pid > 0)
		r->status_fd = fds[0];
	else
		close(fds[0]);
}

static void *launcher_main(void *unused)
{
	(void)unused;
	pthread_mutex_lock(&launcher.lock);
	for (;;) {
		struct launch_req *r = launcher.head;
		if (!r) {
			pthread_cond_wait(&launcher.queued, &launcher.lock);
			continue;
		}
		launcher.head = r->next;
		if (!launcher.head)
			launcher.tail = NULL;
		launcher_fork(r);
		r->answered = true;
		pthread_cond_broadcast(&launcher.answered);
	}
	return NULL;
}

/* Lock held. Never joined: it lives as long as the process. */
static int launcher_start(void)
{
	pthread_attr_t a;
	sigset_t all;
	pthread_t t;
	int rc;

	launcher.head = launcher.tail = NULL; /* another process's requests, if any */
	sigfillset(&all);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	/* the program's signals are never delivered to it */
	pthread_attr_setsigmask_np(&a, &all);
	rc = pthread_create(&t, &a, launcher_main, NULL);
	pthread_attr_destroy(&a);
	if (rc)
		return rc;
	pthread_setname_np(t, "sm-launcher");
	launcher.owner = getpid();
	launcher.owner_pidfd = (int)syscall(SYS_pidfd_open, launcher.owner, 0);
	return 0;
}

/* ---- fork() of the program ---- */

static void launcher_prepare(void)
{
	pthread_mutex_lock(&launcher.lock);
}

static void launcher_parent(void)
{
	pthread_mutex_unlock(&launcher.lock);
}

/* The launcher thread and every caller waiting on it stayed in the parent. */
static void launcher_child(void)
{
	launcher.head = launcher.tail = NULL;
	launcher.owner = 0;
	if (launcher.owner_pidfd >= 0)
		close(launcher.owner_pidfd); /* the parent's */
	launcher.owner_pidfd = -1;
	pthread_cond_init(&launcher.queued, NULL);
	pthread_cond_init(&launcher.answered, NULL);
	pthread_mutex_unlock(&launcher.lock);
}

static void launcher_register(void)
{
	pthread_atfork(launcher_prepare, launcher_parent, launcher_child);
}

/* ---- callers ---- */

/* Queues r and waits for the answer; an errno when no launcher could start. */
static int launcher_ask(struct launch_req *r)
{
	int rc = 0;

	pthread_once(&launcher_once, launcher_register);
	pthread_mutex_lock(&launcher.lock);
	if (launcher.owner != getpid()) /* the first launch, or a child forked without fork() */
		rc = launcher_start();
	if (rc == 0) {
		if (launcher.tail)
			launcher.tail->next = r;
		else
			launcher.head = r;
		launcher.tail = r;
		pthread_cond_signal(&launcher.queued);
		while (!r->answered)
			pthread_cond_wait(&launcher.answered, &launcher.lock);
	}
	pthread_mutex_unlock(&launcher.lock);
	return rc;
}

static void launch_step_describe(const struct launch *l, int step, char *out, size_t len)
{
	if (step == LAUNCH_PARENT)
		snprintf(out, len, "the process is exiting");
	else if (step == LAUNCH_STDIN)
		snprintf(out, len, "open /dev/null as its stdin");
	else if (step == LAUNCH_LOG)
		snprintf(out, len, "open its log %s", l->log);
	else if (step == LAUNCH_PASS)
		snprintf(out, len, "pass it descriptor %d", l->pass_fd);
	else
		snprintf(out, len, "exec");
}

/* The child's word on its exec: EOF once it exec'd, else what failed. */
static int launcher_wait_exec(const struct launch *l, int fd, sm_error **err)
{
	struct launch_failure f;
	char what[4200];
	ssize_t n;

	do
		n = read(fd, &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(f) || f.step < 0 || f.step >= LAUNCH_NSTEPS)
		return sm_error_set(err, SM_E_INTERNAL, n < 0 ? errno : 0, "start %s: no word from the child on its exec",
				    l->argv[0]), -1;
	launch_step_describe(l, f.step, what, sizeof(what));
	sm_error_set(err, f.step == LAUNCH_EXEC && f.errnum == ENOENT ? SM_E_NOT_FOUND : SM_E_IO, f.errnum,
		     "start %s: %s", l->argv[0], what);
	return -1;
}

static int launch_one(const struct launch *l, pid_t *pid, int *pidfd, sm_error **err)
{
	struct launch_req r = { .l = l, .pid = -1, .status_fd = -1 };
	int rc = launcher_ask(&r);

	if (rc)
		return sm_error_set(err, SM_E_IO, rc, "start %s: start the launcher thread", l->argv[0]), -1;
	if (r.pid < 0)
		return sm_error_set(err, SM_E_IO, r.errnum, "start %s: fork", l->argv[0]), -1;
	rc = launcher_wait_exec(l, r.status_fd, err);
	close(r.status_fd);
	if (rc < 0) {
		kill(r.pid, SIGKILL); /* it is exiting already, unless its word was garbled */
		while (waitpid(r.pid, NULL, 0) < 0 && errno == EINTR)
			;
		return -1;
	}
	*pid = r.pid;
	*pidfd = (int)syscall(SYS_pidfd_open, r.pid, 0);
	return 0;
}

int launcher_spawn(const struct launch *l, pid_t *pid, int *pidfd, sm_error **err)
{
	int old, rc;

	/* r lives on this stack while queued: a cancelled caller would leave it to the launcher */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	rc = launch_one(l, pid, pidfd, err);
	pthread_setcancelstate(old, NULL);
	return rc;
}
