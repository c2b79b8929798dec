/* The generic blocking call of call.h. */
#include <stdlib.h>
#include <unistd.h>

#include "call.h"
#include "config.h"

static void call_run(struct task *t)
{
	struct call *c = container_of(t, struct call, t);

	c->failed = c->fn(c, &t->err) < 0;
}

static napi_value call_done(napi_env env, struct task *t)
{
	struct call *c = container_of(t, struct call, t);

	if (c->failed) /* and the library said nothing: it always should */
		return throw_code(env, SM_E_INTERNAL, "a supermachine call failed without an error");
	if (!c->result) {
		napi_value v;
		napi_get_undefined(env, &v);
		return v;
	}
	return c->result(env, c);
}

static void call_cleanup(struct task *t)
{
	struct call *c = container_of(t, struct call, t);

	if (c->obj && c->leftover)
		c->leftover(c);
	sm_error_free(t->err);
	free(c->s);
	free(c->data);
	vm_cfg_free(c->cfg);
	free(c);
}

void call_init(struct call *c, call_fn fn, result_fn result)
{
	c->fn = fn;
	c->result = result;
	c->rc = -1;
	c->t.run = call_run;
	c->t.done = call_done;
	c->t.cleanup = call_cleanup;
}

struct call *call_new(call_fn fn, result_fn result)
{
	struct call *c = calloc(1, sizeof(*c));

	if (c)
		call_init(c, fn, result);
	return c;
}

napi_value call_abort(struct call *c)
{
	c->t.cleanup(&c->t);
	return NULL;
}

napi_value call_resolved(napi_env env)
{
	napi_deferred d;
	napi_value p, u;

	napi_create_promise(env, &d, &p);
	napi_get_undefined(env, &u);
	napi_resolve_deferred(env, d, u);
	return p;
}
