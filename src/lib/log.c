/*
 * sm_set_log(): one process-wide callback. The level is an atomic so a
 * disabled message costs one load; the callback itself runs under a mutex,
 * which keeps calls from overlapping and lets sm_set_log() promise that
 * the old callback is not running once it returns (its opaque can go).
 */
#include "lib/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static sm_log_fn log_fn;
static void *log_opaque;
static atomic_int log_level = -1; /* -1: no callback */

void sm_set_log(sm_log_fn fn, void *opaque, sm_log_level level)
{
	if (level < SM_LOG_ERROR)
		level = SM_LOG_ERROR;
	if (level > SM_LOG_DEBUG)
		level = SM_LOG_DEBUG;
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_opaque = opaque;
	atomic_store(&log_level, fn ? (int)level : -1);
	pthread_mutex_unlock(&log_lock);
}

const char *sm_log_level_name(sm_log_level level)
{
	switch (level) {
	case SM_LOG_ERROR: return "error";
	case SM_LOG_WARN: return "warning";
	case SM_LOG_INFO: return "info";
	case SM_LOG_DEBUG: return "debug";
	}
	return "?";
}

void sm_log_stderr(sm_log_level level, const char *message, void *opaque)
{
	(void)opaque;
	fprintf(stderr, "supermachine: %s: %s\n", sm_log_level_name(level), message);
}

bool log_enabled(sm_log_level level)
{
	return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void log_msg(sm_log_level level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	/* checked again: sm_set_log() may have silenced us meanwhile */
	if (log_fn && (int)level <= atomic_load(&log_level))
		log_fn(level, msg, log_opaque);
	pthread_mutex_unlock(&log_lock);
}
