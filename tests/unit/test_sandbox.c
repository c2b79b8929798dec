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

#include "base/guest_mem.h"
#include "base/snapshot.h"
#include "vmm/sandbox.h"
#include "vmm/snapshot_memory.h"

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

/* The snapshot the next snapshot_file_work() writes: a directory and a VM's RAM. */
static char snap_dir[64];
static struct guest_mem snap_mem;

/*
 * What a snapshot does to its files once the VM runs, with the writers
 * themselves: the state file (durable_write), the memory file (sparse, a
 * rename and the directory's fsync). The KVM ioctls it needs are checked
 * by tests/vm (snapshot-vmm) under the real filter.
 */
static void snapshot_file_work(void)
{
	static const uint8_t id[SNAP_ID_BYTES] = { 1 };
	char path[96];
	struct vmm_err e = { { 0 } };
	struct snap_writer *w = snap_writer_new();

	if (!w)
		_exit(3);
	snap_section_begin(w, SNAP_TAG_SERIAL, 0, 1);
	snap_put_u32(w, 42);
	snap_section_end(w);
	snprintf(path, sizeof(path), "%s/state", snap_dir);
	if (snap_writer_finish(w, path, &e) < 0) {
		fprintf(stderr, "%s\n", e.msg);
		_exit(4);
	}
	snap_writer_free(w);
	snprintf(path, sizeof(path), "%s/memory", snap_dir);
	if (snap_memory_write(path, &snap_mem, id, &e) < 0) {
		fprintf(stderr, "%s\n", e.msg);
		_exit(5);
	}
}

Test(sandbox, snapshot_files_only_when_asked)
{
	char err[4096], cmd[128];

	strcpy(snap_dir, "/tmp/sm-sandbox-snap-XXXXXX");
	cr_assert_not_null(mkdtemp(snap_dir));
	/* RAM made before the lockdown (memfd_create is not allowed after it) */
	cr_assert_eq(guest_mem_alloc(&snap_mem, 2 << 20, 3ull << 30, 4ull << 30), 0);
	memset(guest_mem_ptr(&snap_mem, 4096, 4096), 0x5a, 4096);
	with_snapshots = false;
	int st = sandboxed(snapshot_file_work, false, err, sizeof(err));
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), SANDBOX_EXIT_STATUS, "stderr: %s", err);
	/* what the killed writer left (a sanitizer build lets it open its temp) */
	snprintf(cmd, sizeof(cmd), "rm -f %s/*", snap_dir);
	cr_assert_eq(system(cmd), 0);
	with_snapshots = true;
	st = sandboxed(snapshot_file_work, false, err, sizeof(err));
	with_snapshots = false;
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "stderr: %s", err);
	/* both files in place, no temp left beside them */
	snprintf(cmd, sizeof(cmd), "test \"$(ls %s | tr '\\n' ' ')\" = 'memory state '", snap_dir);
	cr_expect_eq(system(cmd), 0, "%s holds other files than memory and state", snap_dir);
	guest_mem_free(&snap_mem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", snap_dir);
	cr_expect_eq(system(cmd), 0);
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
