#include "base/log.h"

#include <stdarg.h>

__attribute__((format(printf, 2, 0))) static void log_line(FILE *f, const char *fmt, va_list ap)
{
	/* One buffer, one write: lines from different threads never interleave. */
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "%s", VMM_LOG_PREFIX);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);

	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	if (!f)
		f = stderr;
	fwrite(buf, 1, len, f);
	fflush(f);
}

void vmm_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(NULL, fmt, ap);
	va_end(ap);
}

void vmm_log_to(FILE *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(f, fmt, ap);
	va_end(ap);
}

void vmm_log_once(bool *once, const char *fmt, ...)
{
	va_list ap;

	if (__atomic_exchange_n(once, true, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	log_line(NULL, fmt, ap);
	va_end(ap);
}

int vmm_err_set(struct vmm_err *e, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return rc;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return rc;
}
