/*
 * The library's diagnostics, routed to the sm_set_log() callback
 * (include/supermachine.h) and dropped when none is set. Never stdout or
 * stderr directly.
 */
#ifndef SM_LIB_LOG_H
#define SM_LIB_LOG_H

#include <stdbool.h>

#include <supermachine.h>

/* True when a message at level would reach a callback (to skip costly formatting). */
bool log_enabled(sm_log_level level);

__attribute__((format(printf, 2, 3)))
void log_msg(sm_log_level level, const char *fmt, ...);

#define log_error(...) log_msg(SM_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(SM_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(SM_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(SM_LOG_DEBUG, __VA_ARGS__)

#endif
