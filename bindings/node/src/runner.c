/*
 * The binding's threads and the way back to the main thread.
 *
 * A runner belongs to one environment. Its threads are started on demand
 * (one per call waiting at once, so a call never queues behind another
 * that waits, like an acquire behind the execs that would release VMs)
 * and end after RUNNER_IDLE_S without work. The runner is freed by the
 * last of its environment and its threads.
 *
 * Results travel through one napi_threadsafe_function. Threads call it
 * with the runner's mutex held and stop once the function's finalizer
 * (the environment's teardown, which takes the mutex) has marked the
 * runner closed: no call can reach a finalized function.
 *
 * Node finalizes that function before the environment's externals, so a
 * handle's finalizer can queue a free on a closed runner: nothing may
 * touch the function then, and the threads still run such frees (a VM
 * left to the garbage collector is stopped even when its worker_thread
 * exits), while a call whose promise went away is dropped unrun.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addon.h"

#define RUNNER_IDLE_S 30
#define RUNNER_STACK (512 * 1024) /* the library's calls are shallow; 8 MiB each would be mostly address space */

struct runner {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct task *head, *tail;
	unsigned threads, idle;
	unsigned refs;    /* the environment + each thread */
	bool closed;      /* the thread-safe function is gone */
	napi_threadsafe_function tsfn;
	unsigned pending; /* main thread only: calls not yet settled */
};

static void runner_unref(struct runner *r)
{
	bool last;

	pthread_mutex_lock(&r->mu);
	last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (!last)
		return;
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

bool runner_post(struct runner *r, struct post *p)
{
	napi_status st = napi_closing;

	pthread_mutex_lock(&r->mu);
	if (!r->closed)
		st = napi_call_threadsafe_function(r->tsfn, p, napi_tsfn_nonblocking);
	pthread_mutex_unlock(&r->mu);
	if (st != napi_ok)
		p->drop(p);
	return st == napi_ok;
}

/* Waits for a task; NULL when idle too long, or closed with none queued. Called and returns with mu held. */
static struct task *next_task(struct runner *r)
{
	struct timespec until;

	while (!r->head && !r->closed) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += RUNNER_IDLE_S;
		r->idle++;
		int rc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
		r->idle--;
		if (rc == ETIMEDOUT && !r->head)
			return NULL;
	}
	struct task *t = r->head;
	if (t) {
		r->head = t->next;
		if (!r->head)
			r->tail = NULL;
	}
	return t;
}

static void *runner_thread(void *opaque)
{
	struct runner *r = opaque;
	struct task *t;

	pthread_mutex_lock(&r->mu);
	while ((t = next_task(r))) {
		bool orphan = r->closed && t->deferred; /* only a free still matters */
		pthread_mutex_unlock(&r->mu);
		if (!orphan)
			t->run(t);
		runner_post(r, &t->post);
		pthread_mutex_lock(&r->mu);
	}
	r->threads--;
	pthread_mutex_unlock(&r->mu);
	runner_unref(r);
	return NULL;
}

/* A new thread when none is idle; with mu held. Without one the task waits for a busy thread. */
static void runner_grow(struct runner *r)
{
	pthread_attr_t attr;
	pthread_t th;

	if (r->idle > 0)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, RUNNER_STACK);
	r->refs++;
	if (pthread_create(&th, &attr, runner_thread, r) == 0)
		r->threads++;
	else
		r->refs--;
	pthread_attr_destroy(&attr);
}

void handle_unbusy(napi_env env, struct handle *h)
{
	if (--h->busy == 0 && h->idle) {
		void (*idle)(napi_env, struct handle *) = h->idle;
		h->idle = NULL;
		idle(env, h);
	}
}

void task_hold(napi_env env, struct task *t, napi_value value, struct handle *h)
{
	napi_create_reference(env, value, 1, &t->held_ref);
	t->held = h;
	h->busy++;
}

static void task_settle(napi_env env, struct post *p)
{
	struct task *t = container_of(p, struct task, post);
	struct runner *r = t->runner;
	napi_value v = t->err ? NULL : t->done(env, t);

	if (t->deferred && v)
		napi_resolve_deferred(env, t->deferred, v);
	else if (t->deferred)
		napi_reject_deferred(env, t->deferred, t->err ? error_from_sm(env, t->err) : take_exception(env));
	else if (!v && !t->err)
		take_exception(env); /* a background call's failure has nobody to tell */
	if (t->held) {
		napi_delete_reference(env, t->held_ref);
		handle_unbusy(env, t->held);
	}
	if (t->settled)
		t->settled(env, t);
	t->cleanup(t);
	if (--r->pending == 0)
		napi_unref_threadsafe_function(env, r->tsfn);
}

/* The environment went away with the call in flight: its promise is gone with it. */
static void task_drop(struct post *p)
{
	struct task *t = container_of(p, struct task, post);

	t->cleanup(t);
}

static void task_queue(napi_env env, struct task *t)
{
	struct runner *r = addon_of(env)->runner;

	t->post = (struct post){ task_settle, task_drop };
	t->runner = r;
	t->next = NULL;
	pthread_mutex_lock(&r->mu);
	if (!r->closed && r->pending++ == 0) /* closed: the function is freed */
		napi_ref_threadsafe_function(env, r->tsfn);
	if (r->tail)
		r->tail->next = t;
	else
		r->head = t;
	r->tail = t;
	runner_grow(r);
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

napi_value task_start(napi_env env, struct task *t)
{
	napi_value promise;

	if (napi_create_promise(env, &t->deferred, &promise) != napi_ok) {
		if (t->held) {
			napi_delete_reference(env, t->held_ref);
			handle_unbusy(env, t->held);
		}
		t->cleanup(t);
		return NULL;
	}
	task_queue(env, t);
	return promise;
}

void task_background(napi_env env, struct task *t)
{
	t->deferred = NULL;
	task_queue(env, t);
}

struct warning {
	struct post post;
	char *message;
};

static void warning_drop(struct post *p)
{
	struct warning *w = container_of(p, struct warning, post);

	free(w->message);
	free(w);
}

static void warning_emit(napi_env env, struct post *p)
{
	struct warning *w = container_of(p, struct warning, post);
	napi_value global, process, fn, msg;

	napi_get_global(env, &global);
	if (napi_get_named_property(env, global, "process", &process) == napi_ok &&
	    napi_get_named_property(env, process, "emitWarning", &fn) == napi_ok) {
		napi_create_string_utf8(env, w->message, NAPI_AUTO_LENGTH, &msg);
		if (napi_call_function(env, process, fn, 1, &msg, NULL) != napi_ok)
			take_exception(env);
	}
	warning_drop(p);
}

void emit_warning(napi_env env, const char *message)
{
	struct warning *w = calloc(1, sizeof(*w));

	if (!w || !(w->message = strdup(message))) {
		free(w);
		return;
	}
	w->post = (struct post){ warning_emit, warning_drop };
	runner_post(addon_of(env)->runner, &w->post);
}

static void call_js(napi_env env, napi_value fn, void *context, void *data)
{
	struct post *p = data;

	(void)fn;
	(void)context;
	if (env)
		p->on_main(env, p);
	else
		p->drop(p);
}

static void tsfn_finalize(napi_env env, void *data, void *hint)
{
	struct runner *r = data;

	(void)env;
	(void)hint;
	pthread_mutex_lock(&r->mu);
	r->closed = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

struct runner *runner_new(napi_env env)
{
	struct runner *r = calloc(1, sizeof(*r));
	napi_value name;

	if (!r)
		return NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->refs = 1;
	napi_create_string_utf8(env, "supermachine", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, r, tsfn_finalize, r, call_js,
					    &r->tsfn) != napi_ok) {
		runner_unref(r);
		return NULL;
	}
	napi_unref_threadsafe_function(env, r->tsfn);
	return r;
}

/*
 * The environment's teardown: its threads finish what is queued and end.
 * Tasks no thread will take (none could start) are only cleaned up.
 */
void runner_close(struct runner *r)
{
	struct task *t, *queued = NULL;

	pthread_mutex_lock(&r->mu);
	r->closed = true;
	if (r->threads == 0) {
		queued = r->head;
		r->head = r->tail = NULL;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	for (; queued; queued = t) {
		t = queued->next;
		queued->cleanup(queued);
	}
	runner_unref(r);
}
