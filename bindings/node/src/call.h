/*
 * A generic blocking call (call.c): fn runs on a binding thread with the
 * fields the JavaScript side filled in, result turns what it left into a
 * value on the main thread. What the call still owns when nobody takes
 * it (a rejected promise, a torn-down environment) goes to leftover.
 */
#ifndef SM_NODE_CALL_H
#define SM_NODE_CALL_H

#include "addon.h"

struct call;
struct vm_cfg;
typedef int (*call_fn)(struct call *c, sm_error **err);
typedef napi_value (*result_fn)(napi_env env, struct call *c);

struct call {
	struct task t;
	call_fn fn;
	result_fn result;
	void (*leftover)(struct call *c); /* frees obj when result did not take it */
	void *target;                     /* what fn works on (a VM, a pool, an image) */
	void *obj;                        /* what fn made */
	bool flag;
	bool failed;                      /* fn returned -1 */
	int rc;                           /* -1 until fn sets it */
	char *s;
	void *data;
	size_t len;
	uint32_t u32[2];
	struct vm_cfg *cfg;
	sm_pool_config pool_cfg;
};

/* Sets up a call embedded in a bigger struct (its cleanup then the caller's). */
void call_init(struct call *c, call_fn fn, result_fn result);
/* NULL when out of memory. result NULL: a background call. */
struct call *call_new(call_fn fn, result_fn result);
/* Frees a call that was never started; returns NULL for the caller to return. */
napi_value call_abort(struct call *c);
/* A promise already resolved with undefined. */
napi_value call_resolved(napi_env env);

#endif
