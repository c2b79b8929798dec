/* Internal helpers to build sm_error values. */
#ifndef SM_BASE_ERROR_H
#define SM_BASE_ERROR_H

#include <supermachine.h>

/*
 * Stores a new error in *err (if err is not NULL) whose cause is whatever
 * *err held before, so callers can add context on the way up:
 *     if (oci_pull(..., err) < 0)
 *             return sm_error_set(err, SM_E_REGISTRY, 0, "pull %s", ref), -1;
 * errnum, when not 0, is appended as ": strerror(errnum)".
 */
__attribute__((format(printf, 4, 5)))
void sm_error_set(sm_error **err, sm_code code, int errnum, const char *fmt, ...);

/* Like sm_error_set, but the code is inherited from the cause if any. */
__attribute__((format(printf, 2, 3)))
void sm_error_wrap(sm_error **err, const char *fmt, ...);

#endif
