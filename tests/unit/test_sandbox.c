/*
 * The worker's seccomp filter, applied in a forked child: what a running
 * VM does keeps working (including the sanitizer runtime's exit-time
 * checks in this ASan build), and anything else ends the process with
 * SANDBOX_EXIT_STATUS and a line naming the system call.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/sandbox.h"

/* The snapshots option of the next sandboxed() run. */
static bool with_snapshots;

/* Runs fn in a sandboxed child; returns its wait status, its stderr in err. */
static int sandboxed(void (*fn)(void), bool sockets, char *err, size_t errlen)
{
	int pipefd[2];
	cr_assert_eq(pipe(pipefd), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sandbox_options o = { .mode = SANDBOX_ENFORCE, .sockets = sockets,
					     .snapshots = with_snapshots };
		struct vmm_err e;
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		if (sandbox_apply(&o, &e) < 0) {
			fprintf(stderr, "apply failed: %s\n", e.msg);
			_exit(99);
		}
		fn();
		exit(0); /* through atexit: LeakSanitizer runs here */
	}
	close(pipefd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < errlen && (r = read(pipefd[0], err + n, errlen - n - 1)) > 0)
		n += (size_t)r;
	err[n] = 0;
	close(pipefd[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static void allowed_work(void)
{
	/* malloc at several sizes (brk, mmap), a pipe write, time, randomness */
	for (int i = 0; i < 100; i++)
		free(malloc((size_t)1 << (i % 24)));
	char buf[16];
	struct timespec ts;
	if (getrandom(buf, sizeof(buf), 0) != sizeof(buf) || clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		_exit(3);
	if (write(STDERR_FILENO, "fine\n", 5) != 5)
		_exit(4);
}

static void forbidden_chdir(void)
{
	syscall(SYS_chdir, "/");
	_exit(0);
}

static void forbidden_socket(void)
{
	syscall(SYS_socket, 1, 1, 0);
	_exit(0);
}

Test(sandbox, running_vm_work_is_allowed)
{
	char err[4096];
	int st = sandboxed(allowed_work, false, err, sizeof(err));
	cr_assert(WIFEXITED(st), "killed by signal %d; stderr: %s", WTERMSIG(st), err);
	cr_assert_eq(WEXITSTATUS(st), 0, "stderr: %s", err);
	cr_assert_not_null(strstr(err, "fine"));
}

Test(sandbox, forbidden_call_is_named_and_ends_the_process)
{
	char err[4096];
	int st = sandboxed(forbidden_chdir, false, err, sizeof(err));
	cr_assert(WIFEXITED(st), "killed by signal %d", WTERMSIG(st));
	cr_assert_eq(WEXITSTATUS(st), SANDBOX_EXIT_STATUS, "stderr: %s", err);
	char want[64];
	snprintf(want, sizeof(want), "blocked system call %d;", SYS_chdir);
	cr_assert_not_null(strstr(err, want), "stderr: %s", err);
}

Test(sandbox, sockets_only_when_asked)
{
	char err[4096];
	int st = sandboxed(forbidden_socket, false, err, sizeof(err));
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), SANDBOX_EXIT_STATUS, "stderr: %s", err);
	st = sandboxed(forbidden_socket, true, err, sizeof(err));
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "stderr: %s", err);
}

static int snap_fd = -1;
static char snap_path[64];

/* What a snapshot does to its files once the VM runs; the KVM ioctls it
 * needs are checked by tests/vm (snapshot-vmm) under the real filter. */
static void snapshot_file_work(void)
{
	char dst[80];

	snprintf(dst, sizeof(dst), "%s.renamed", snap_path);
	/* The writer's open: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC exactly. */
	int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || close(fd) < 0 || unlink(dst) < 0)
		_exit(4);
	if (ftruncate(snap_fd, 8192) < 0 || rename(snap_path, dst) < 0 || rename(dst, snap_path) < 0)
		_exit(3);
}

Test(sandbox, snapshot_files_only_when_asked)
{
	char err[4096];

	strcpy(snap_path, "/tmp/sm-sandbox-snap-XXXXXX");
	snap_fd = mkstemp(snap_path);
	cr_assert_geq(snap_fd, 0);
	with_snapshots = false;
	int st = sandboxed(snapshot_file_work, false, err, sizeof(err));
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), SANDBOX_EXIT_STATUS, "stderr: %s", err);
	with_snapshots = true;
	st = sandboxed(snapshot_file_work, false, err, sizeof(err));
	with_snapshots = false;
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "stderr: %s", err);
	close(snap_fd);
	unlink(snap_path);
}

Test(sandbox, mode_from_environment)
{
	unsetenv("SUPERMACHINE_SECCOMP");
	cr_assert_eq(sandbox_mode_from_env(), SANDBOX_ENFORCE);
	setenv("SUPERMACHINE_SECCOMP", "log", 1);
	cr_assert_eq(sandbox_mode_from_env(), SANDBOX_LOG);
	setenv("SUPERMACHINE_SECCOMP", "off", 1);
	cr_assert_eq(sandbox_mode_from_env(), SANDBOX_OFF);
	setenv("SUPERMACHINE_SECCOMP", "bogus", 1);
	cr_assert_eq(sandbox_mode_from_env(), SANDBOX_ENFORCE);
}
