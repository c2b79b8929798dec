/*
 * A spare worker (src/proto/worker.h, "a spare worker"): exec'd and
 * linked ahead of need, forked by the launcher thread like every worker,
 * waiting on its end of a socketpair. A restore hands it its command
 * line and log instead of paying for exec and dynamic linking. Never
 * for a jailed or a detached worker (those start in namespaces of their
 * own or their own session).
 */
#ifndef SM_LIB_SPARE_H
#define SM_LIB_SPARE_H

#include <stdbool.h>
#include <sys/types.h>

#include <supermachine.h>

struct spare {
	pid_t pid;  /* 0: none */
	int pidfd;  /* -1 where pidfd_open is unavailable */
	int sock;   /* the library's end of the socketpair */
};

/* Whether spares are used: with SUPERMACHINE_SPARE=1 (bench/README.md measures both). */
bool spare_wanted(void);
/* Starts a spare of the worker binary exe into s (empty before). */
int spare_start(struct spare *s, const char *exe, sm_error **err);
/* Whether s holds a spare that still waits: its pidfd not readable, its socket not hung up. */
bool spare_alive(const struct spare *s);
/*
 * Hands argv (argv[0] the worker binary) and the log file log (created
 * 0600, truncated) to s and reads its answer. 0: *pid and *pidfd are the
 * caller's worker now. -1: the spare refused (its reason in err) or is
 * gone, and it is killed and reaped. Either way s is empty after.
 */
int spare_hand(struct spare *s, const char *const argv[], const char *log, pid_t *pid, int *pidfd, sm_error **err);
/* Kills and reaps s's spare, if any; s is empty after. */
void spare_kill(struct spare *s);

#endif
