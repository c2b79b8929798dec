/*
 * sm_error chains as SupermachineError objects: the class is index.js's,
 * handed over by init(); each level becomes one error whose .cause is
 * the next, .code the level's sm_code_name() and .errno its errno.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "addon.h"

#define MAX_CHAIN 32 /* deeper chains are cut: the root is what matters most, and it is kept */

/* One level: new SupermachineError(message, code, errno, cause). */
static napi_value make_level(napi_env env, const char *message, sm_code code, int errnum, napi_value cause)
{
	struct addon *a = addon_of(env);
	napi_value cls, args[4], out = NULL;

	if (!a || !a->error_class || napi_get_reference_value(env, a->error_class, &cls) != napi_ok || !cls) {
		napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &args[0]);
		napi_create_error(env, NULL, args[0], &out);
		return out;
	}
	napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &args[0]);
	napi_create_string_utf8(env, sm_code_name(code), NAPI_AUTO_LENGTH, &args[1]);
	napi_create_int32(env, errnum, &args[2]);
	if (cause)
		args[3] = cause;
	else
		napi_get_undefined(env, &args[3]);
	if (napi_new_instance(env, cls, 4, args, &out) != napi_ok)
		return take_exception(env);
	return out;
}

napi_value error_from_sm(napi_env env, const sm_error *e)
{
	const sm_error *levels[MAX_CHAIN];
	napi_value cause = NULL;
	size_t n = 0;

	if (!e)
		return make_level(env, "supermachine: an error without a message", SM_E_INTERNAL, 0, NULL);
	for (const sm_error *l = e; l && n < MAX_CHAIN; l = sm_error_cause(l))
		levels[n++] = l;
	while (n-- > 0)
		cause = make_level(env, sm_error_string(levels[n]), sm_error_code(levels[n]), sm_error_errno(levels[n]),
				   cause);
	return cause;
}

napi_value throw_sm(napi_env env, sm_error *e)
{
	napi_throw(env, error_from_sm(env, e));
	sm_error_free(e);
	return NULL;
}

napi_value throw_code(napi_env env, sm_code code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	bool pending = false;

	napi_is_exception_pending(env, &pending);
	if (pending)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	napi_throw(env, make_level(env, msg, code, 0, NULL));
	return NULL;
}

napi_value take_exception(napi_env env)
{
	napi_value ex = NULL, msg;
	bool pending = false;

	napi_is_exception_pending(env, &pending);
	if (pending && napi_get_and_clear_last_exception(env, &ex) == napi_ok && ex)
		return ex;
	napi_create_string_utf8(env, "supermachine: a Node-API call failed", NAPI_AUTO_LENGTH, &msg);
	napi_create_error(env, NULL, msg, &ex);
	return ex;
}

/* init(SupermachineError): the class errors are made of. */
static napi_value js_init(napi_env env, napi_callback_info info)
{
	struct addon *a = addon_of(env);
	napi_value argv[1];
	napi_valuetype t;

	if (arg_count(env, info, 1, argv, NULL) < 0)
		return NULL;
	if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function)
		return throw_code(env, SM_E_INVALID, "init: the error class must be a function");
	if (a->error_class)
		napi_delete_reference(env, a->error_class);
	napi_create_reference(env, argv[0], 1, &a->error_class);
	return NULL;
}

/* codeName(n): sm_code_name() for a number, for tests and tools. */
static napi_value js_code_name(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	uint32_t code;

	if (arg_count(env, info, 1, argv, NULL) < 0 || arg_u32(env, argv[0], "code", &code) < 0)
		return NULL;
	return make_string(env, sm_code_name((sm_code)code));
}

void define_errors(napi_env env, napi_value exports)
{
	export_fn(env, exports, "init", js_init);
	export_fn(env, exports, "codeName", js_code_name);
}
