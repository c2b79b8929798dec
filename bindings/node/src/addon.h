/*
 * The Node-API addon under @supermachine/core (docs/node.md): native
 * handles and promise-returning calls over include/supermachine.h only.
 * index.js builds the public classes on top of what this exports.
 *
 * Threading: every call that may wait runs on a thread of the binding
 * (runner.c), never on the event loop and never on libuv's small shared
 * pool, where four waiting acquires could starve the execs that would
 * release their VMs. Results come back through one thread-safe function
 * per environment (a main thread or a worker_thread), which is referenced
 * only while a call is pending: an idle binding keeps no loop alive.
 */
#ifndef SM_NODE_ADDON_H
#define SM_NODE_ADDON_H

/* Pinned: one build runs on every Node that has Node-API 8 (Node 12.22, 14.17, 16+). */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <supermachine.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Something handed to the main thread: on_main runs there, or drop when the environment is gone. */
struct post {
	void (*on_main)(napi_env env, struct post *p);
	void (*drop)(struct post *p);
};

struct runner;

/*
 * The native side of an external handed to JavaScript. busy counts (on
 * the main thread) the calls in flight on it and what else uses it (a
 * spawned child): it is not freed or released while busy, and idle, when
 * set, runs once busy is back to 0.
 */
struct handle {
	const uint32_t *kind;
	unsigned busy;
	void (*idle)(napi_env env, struct handle *h);
	void *idle_opaque;
};

/* One blocking call: run on a binding thread, then settled on the main thread. */
struct task {
	struct post post;
	struct task *next;
	struct runner *runner;
	void (*run)(struct task *t);
	/* The value to resolve with; NULL rejects with err, else with the pending exception. */
	napi_value (*done)(napi_env env, struct task *t);
	/* Frees what the task still holds and the task itself; on any thread, no napi calls. */
	void (*cleanup)(struct task *t);
	/* Main thread, after the promise settled, before cleanup: drops the task's napi references. May be NULL. */
	void (*settled)(napi_env env, struct task *t);
	napi_deferred deferred; /* NULL: a background call nobody awaits (a finalizer's free) */
	sm_error *err;
	struct handle *held;    /* kept alive and busy until settled (task_hold) */
	napi_ref held_ref;
};

/* Per environment (napi_set_instance_data): no state is shared between environments. */
struct addon {
	struct runner *runner;
	napi_ref error_class; /* SupermachineError, handed over by index.js */
};

/* runner.c */
struct runner *runner_new(napi_env env);
void runner_close(struct runner *r);
/* Queues t (its run, done, cleanup set) and returns its promise. */
napi_value task_start(napi_env env, struct task *t);
/* Queues t with no promise: for frees that may wait (a finalizer cannot). */
void task_background(napi_env env, struct task *t);
/* Holds value (whose native side is h) until t settles. */
void task_hold(napi_env env, struct task *t, napi_value value, struct handle *h);
/* busy - 1, and idle() at 0. */
void handle_unbusy(napi_env env, struct handle *h);
/* process.emitWarning(message) on the main thread, from any thread. */
void emit_warning(napi_env env, const char *message);
/* From any thread; false when the environment is going away (p->drop was called). */
bool runner_post(struct runner *r, struct post *p);
struct addon *addon_of(napi_env env);

/* errors.c */
/* A SupermachineError for e (and its causes); e stays the caller's. */
napi_value error_from_sm(napi_env env, const sm_error *e);
/* A SupermachineError of code with message, as a thrown exception; returns NULL. */
napi_value throw_code(napi_env env, sm_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
napi_value throw_sm(napi_env env, sm_error *e);
/* Takes the pending exception (or makes one saying what failed). */
napi_value take_exception(napi_env env);
void define_errors(napi_env env, napi_value exports);

/* args.c: argument readers; on a bad value each throws and returns -1 (or NULL). */
int arg_count(napi_env env, napi_callback_info info, size_t want, napi_value *argv, napi_value *self);
char *arg_string(napi_env env, napi_value v, const char *what);
int arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out);
bool is_nullish(napi_env env, napi_value v);
/* A NULL-terminated copy of an array of strings; free with strv_free. */
char **arg_strv(napi_env env, napi_value v, const char *what);
void strv_free(char **v);
/* The bytes of a Buffer/TypedArray or the UTF-8 of a string, copied. */
int arg_bytes(napi_env env, napi_value v, const char *what, void **data, size_t *len);
/* obj[key] when present and not undefined/null. */
bool opt_get(napi_env env, napi_value obj, const char *key, napi_value *out);
int opt_u32(napi_env env, napi_value obj, const char *key, uint32_t *out);
int opt_bool(napi_env env, napi_value obj, const char *key, bool *out);
char *opt_string(napi_env env, napi_value obj, const char *key, bool *bad);
/* A handle's pointer, checked against its kind; throws on a foreign or closed one. */
void *arg_handle(napi_env env, napi_value v, const uint32_t *kind, const char *what);
napi_value make_u64(napi_env env, uint64_t v);
napi_value make_string(napi_env env, const char *s);
void set_prop(napi_env env, napi_value obj, const char *key, napi_value v);
/* Defines name as a function of exports. */
void export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn);

/* handles.c: images, pools, VMs, forwards */
void define_handles(napi_env env, napi_value exports);
/* The VM behind a Vm handle, or NULL (thrown). */
sm_vm *vm_of(napi_env env, napi_value v);
struct handle *vm_handle_base(napi_env env, napi_value v);
/* A handle for vm; borrowed handles never free or release it. */
napi_value vm_handle_new(napi_env env, sm_vm *vm, bool pooled, bool borrowed);
/* Makes a borrowed handle unusable (its VM is gone). */
void vm_handle_revoke(napi_env env, napi_value handle);

/* exec.c */
void define_exec(napi_env env, napi_value exports);

/* store.c: pull, images, snapshots, bake */
void define_store(napi_env env, napi_value exports);

#endif
