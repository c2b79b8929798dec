/*
 * The launcher: the one thread of the process that forks workers.
 *
 * PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, not
 * the process. Forked on the caller's thread, a worker would die with
 * whichever thread called sm_vm_start(). Every worker is forked by the
 * launcher instead, a thread the library starts on first use and never
 * stops: a worker then dies with the process, and with nothing else,
 * whatever thread asked for it.
 */
#ifndef SM_LIB_LAUNCHER_H
#define SM_LIB_LAUNCHER_H

#include <stdbool.h>
#include <sys/types.h>

#include <supermachine.h>

struct launch {
	const char *const *argv; /* argv[0]: the program's path (no PATH search) */
	const char *log;         /* stdout and stderr, created 0600 and truncated; stdin is /dev/null */
	/*
	 * Its own session, and it outlives the process; otherwise it is
	 * killed (SIGKILL) when the process ends.
	 */
	bool detached;
	/*
	 * CLONE_NEW* flags (a jailed worker, worker_jail_clone_flags()): the
	 * child is started by clone3 in those namespaces, PID 1 of its own
	 * PID namespace when CLONE_NEWPID is among them, and still the
	 * caller's child: pid, pidfd and waitpid are the host's.
	 */
	unsigned long namespaces;
	bool cgroup;             /* it starts in the cgroup v2 directory cgroup_fd (CLONE_INTO_CGROUP) */
	int cgroup_fd;
	/* pass_fd is inherited as descriptor LAUNCH_PASS_FD (a spare worker's socket) */
	bool pass;
	int pass_fd;
};

#define LAUNCH_PASS_FD 3

/*
 * Starts l's program from any thread and returns once it has exec'd: its
 * pid and a pidfd for it (-1 where pidfd_open is unavailable). The child
 * is the caller's to reap (waitpid works from any thread of the process).
 * A failed exec, or a failed step before it, is an error naming the
 * program, the step and the errno (SM_E_NOT_FOUND for a missing program),
 * and that child is reaped here. Only the standard streams (and l->pass_fd)
 * are inherited: every other descriptor is closed at the exec, the caller's
 * or not.
 */
int launcher_spawn(const struct launch *l, pid_t *pid, int *pidfd, sm_error **err);

#endif
