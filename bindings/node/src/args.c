/*
 * Reading JavaScript arguments. Every reader throws a SupermachineError
 * (code "invalid") naming the argument on a bad value and returns -1 or
 * NULL; the binding never reads a value it did not check.
 */
#include <stdlib.h>
#include <string.h>

#include "addon.h"

#define MAX_ARGV 4096 /* entries of one argv, chain or env: beyond it is a mistake, not a command */

int arg_count(napi_env env, napi_callback_info info, size_t want, napi_value *argv, napi_value *self)
{
	size_t argc = want;

	if (napi_get_cb_info(env, info, &argc, argv, self, NULL) != napi_ok)
		return -1;
	for (size_t i = argc; i < want; i++)
		napi_get_undefined(env, &argv[i]);
	return 0;
}

bool is_nullish(napi_env env, napi_value v)
{
	napi_valuetype t;

	return napi_typeof(env, v, &t) != napi_ok || t == napi_undefined || t == napi_null;
}

char *arg_string(napi_env env, napi_value v, const char *what)
{
	size_t len;
	char *s;

	if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
		throw_code(env, SM_E_INVALID, "%s must be a string", what);
		return NULL;
	}
	s = malloc(len + 1);
	if (!s) {
		throw_code(env, SM_E_NOMEM, "%s: out of memory", what);
		return NULL;
	}
	napi_get_value_string_utf8(env, v, s, len + 1, &len);
	if (strlen(s) != len) {
		free(s);
		throw_code(env, SM_E_INVALID, "%s holds a NUL character", what);
		return NULL;
	}
	return s;
}

int arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out)
{
	double d;

	if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= UINT32_MAX) || d != (double)(uint32_t)d) {
		throw_code(env, SM_E_INVALID, "%s must be a whole number from 0 to %u", what, UINT32_MAX);
		return -1;
	}
	*out = (uint32_t)d;
	return 0;
}

void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

char **arg_strv(napi_env env, napi_value v, const char *what)
{
	bool is_array = false;
	uint32_t n = 0;
	char **out;

	if (napi_is_array(env, v, &is_array) != napi_ok || !is_array || napi_get_array_length(env, v, &n) != napi_ok ||
	    n == 0 || n > MAX_ARGV) {
		throw_code(env, SM_E_INVALID, "%s must be an array of 1 to %u strings", what, MAX_ARGV);
		return NULL;
	}
	out = calloc(n + 1, sizeof(*out));
	if (!out) {
		throw_code(env, SM_E_NOMEM, "%s: out of memory", what);
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		napi_value e;
		if (napi_get_element(env, v, i, &e) != napi_ok || !(out[i] = arg_string(env, e, what))) {
			strv_free(out);
			return NULL;
		}
	}
	return out;
}

int arg_bytes(napi_env env, napi_value v, const char *what, void **data, size_t *len)
{
	bool is_buf = false, is_ta = false;
	napi_valuetype t;
	void *src = NULL;

	napi_is_buffer(env, v, &is_buf);
	if (!is_buf)
		napi_is_typedarray(env, v, &is_ta);
	if (is_buf) {
		napi_get_buffer_info(env, v, &src, len);
	} else if (is_ta) {
		napi_typedarray_type tt;
		size_t count, offset;
		napi_value ab;
		napi_get_typedarray_info(env, v, &tt, &count, &src, &ab, &offset);
		*len = count;
		if (tt != napi_uint8_array && tt != napi_int8_array && tt != napi_uint8_clamped_array) {
			throw_code(env, SM_E_INVALID, "%s: a typed array must be of bytes (Uint8Array)", what);
			return -1;
		}
	} else if (napi_typeof(env, v, &t) == napi_ok && t == napi_string) {
		*data = arg_string(env, v, what);
		*len = *data ? strlen(*data) : 0;
		return *data ? 0 : -1;
	} else {
		throw_code(env, SM_E_INVALID, "%s must be a Buffer, a Uint8Array or a string", what);
		return -1;
	}
	*data = malloc(*len ? *len : 1);
	if (!*data) {
		throw_code(env, SM_E_NOMEM, "%s: out of memory", what);
		return -1;
	}
	if (*len)
		memcpy(*data, src, *len);
	return 0;
}

bool opt_get(napi_env env, napi_value obj, const char *key, napi_value *out)
{
	bool has = false;

	if (is_nullish(env, obj) || napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return false;
	return napi_get_named_property(env, obj, key, out) == napi_ok && !is_nullish(env, *out);
}

int opt_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	napi_value v;

	return opt_get(env, obj, key, &v) ? arg_u32(env, v, key, out) : 0;
}

int opt_bool(napi_env env, napi_value obj, const char *key, bool *out)
{
	napi_value v;

	if (!opt_get(env, obj, key, &v))
		return 0;
	if (napi_get_value_bool(env, v, out) != napi_ok) {
		throw_code(env, SM_E_INVALID, "%s must be true or false", key);
		return -1;
	}
	return 0;
}

char *opt_string(napi_env env, napi_value obj, const char *key, bool *bad)
{
	napi_value v;
	char *s;

	if (!opt_get(env, obj, key, &v))
		return NULL;
	s = arg_string(env, v, key);
	*bad |= !s;
	return s;
}

void *arg_handle(napi_env env, napi_value v, const uint32_t *kind, const char *what)
{
	napi_valuetype t;
	void *p = NULL;

	if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok ||
	    !p || *(const uint32_t **)p != kind) {
		throw_code(env, SM_E_INVALID, "not a %s handle", what);
		return NULL;
	}
	return p;
}

napi_value make_u64(napi_env env, uint64_t v)
{
	napi_value out;

	napi_create_double(env, (double)v, &out);
	return out;
}

napi_value make_string(napi_env env, const char *s)
{
	napi_value out;

	if (!s)
		napi_get_null(env, &out);
	else
		napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
	return out;
}

void set_prop(napi_env env, napi_value obj, const char *key, napi_value v)
{
	napi_set_named_property(env, obj, key, v);
}

void export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn)
{
	napi_value f;

	napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
	napi_set_named_property(env, exports, name, f);
}
