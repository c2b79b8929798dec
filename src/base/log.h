/*
 * Log lines of the VMM: one line per call on stderr (the worker's owner
 * redirects it to a file if it wants one), prefixed so a reader can tell
 * our lines from anything else on that stream.
 */
#ifndef SM_BASE_LOG_H
#define SM_BASE_LOG_H

#include <stdbool.h>
#include <stdio.h>

#define VMM_LOG_PREFIX "supermachine-worker: "

__attribute__((format(printf, 1, 2)))
void vmm_log(const char *fmt, ...);

/* Same, to a given stream (NULL = stderr). */
__attribute__((format(printf, 2, 3)))
void vmm_log_to(FILE *f, const char *fmt, ...);

/*
 * Logs only the first time *once is seen false, so a guest that repeats a
 * bad access cannot flood the log. *once is flipped atomically.
 */
__attribute__((format(printf, 2, 3)))
void vmm_log_once(bool *once, const char *fmt, ...);

/*
 * A setup failure the user can cause (bad kernel, too little memory, a
 * missing disk): the callee fills in one line that says what and where, the
 * caller prints it once and exits.
 */
struct vmm_err {
	char msg[512];
};

/* Fills e (if not NULL) and returns rc, so callers can `return vmm_err_set(...)`. */
__attribute__((format(printf, 3, 4)))
int vmm_err_set(struct vmm_err *e, int rc, const char *fmt, ...);

#endif
