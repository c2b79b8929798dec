/*
 * sm_error (include/supermachine.h): the public type's implementation, in
 * base so that every subsystem (oci, lib) builds its error chains without
 * reaching up into the library.
 */
#include "base/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sm_error {
	sm_code code;
	int errnum;
	char *message;
	char *full; /* lazily built "outer: inner" string */
	struct sm_error *cause;
};

/* Returned when allocating an error itself fails. */
static const struct sm_error oom_error = {
	.code = SM_E_NOMEM,
	.errnum = ENOMEM,
	.message = (char *)"out of memory while reporting an error",
	.full = (char *)"out of memory while reporting an error",
};

static int is_static(const sm_error *e) { return e == &oom_error; }

/* The format attribute lets clang check the callers' formats instead of this vasprintf's. */
__attribute__((format(printf, 4, 0)))
static void error_push(sm_error **err, sm_code code, int errnum, const char *fmt, va_list ap)
{
	sm_error *e;
	char *msg = NULL;

	if (!err)
		return;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	if (msg && errnum) {
		char *with = NULL;
		if (asprintf(&with, "%s: %s", msg, strerror(errnum)) >= 0) {
			free(msg);
			msg = with;
		}
	}
	e = calloc(1, sizeof(*e));
	if (!e || !msg) {
		free(e);
		free(msg);
		sm_error_free(*err);
		*err = (sm_error *)&oom_error;
		return;
	}
	e->code = code;
	e->errnum = errnum;
	e->message = msg;
	e->cause = *err;
	*err = e;
}

void sm_error_set(sm_error **err, sm_code code, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_push(err, code, errnum, fmt, ap);
	va_end(ap);
}

void sm_error_wrap(sm_error **err, const char *fmt, ...)
{
	va_list ap;
	sm_code code = (err && *err) ? (*err)->code : SM_E_INTERNAL;

	va_start(ap, fmt);
	error_push(err, code, 0, fmt, ap);
	va_end(ap);
}

sm_code sm_error_code(const sm_error *e) { return e ? e->code : SM_OK; }
const char *sm_error_message(const sm_error *e) { return e ? e->message : ""; }
int sm_error_errno(const sm_error *e) { return e ? e->errnum : 0; }
const sm_error *sm_error_cause(const sm_error *e) { return e ? e->cause : NULL; }

const char *sm_error_string(const sm_error *e)
{
	size_t len = 0;
	const sm_error *p;
	char *s;

	if (!e)
		return "";
	if (e->full)
		return e->full;
	for (p = e; p; p = p->cause)
		len += strlen(p->message) + 2;
	s = malloc(len + 1);
	if (!s)
		return e->message;
	s[0] = '\0';
	for (p = e; p; p = p->cause) {
		strcat(s, p->message);
		if (p->cause)
			strcat(s, ": ");
	}
	((sm_error *)e)->full = s;
	return s;
}

void sm_error_free(sm_error *e)
{
	while (e && !is_static(e)) {
		sm_error *cause = e->cause;
		free(e->message);
		free(e->full);
		free(e);
		e = cause;
	}
}

const char *sm_code_name(sm_code code)
{
	static const char *const names[] = {
		[SM_OK] = "ok",
		[SM_E_INVALID] = "invalid",
		[SM_E_NOT_FOUND] = "not-found",
		[SM_E_IO] = "io",
		[SM_E_NOMEM] = "no-memory",
		[SM_E_KVM] = "kvm",
		[SM_E_REGISTRY] = "registry",
		[SM_E_AUTH] = "auth",
		[SM_E_DIGEST] = "digest",
		[SM_E_IMAGE] = "image",
		[SM_E_SNAPSHOT] = "snapshot",
		[SM_E_TIMEOUT] = "timeout",
		[SM_E_VM_DIED] = "vm-died",
		[SM_E_PROTOCOL] = "protocol",
		[SM_E_BUSY] = "busy",
		[SM_E_UNSUPPORTED] = "unsupported",
		[SM_E_INTERNAL] = "internal",
		[SM_E_CANCELED] = "canceled",
	};

	if ((unsigned)code >= sizeof(names) / sizeof(names[0]) || !names[code])
		return "unknown";
	return names[code];
}
