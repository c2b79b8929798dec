/*
 * Exec: an ExecBuilder's state (a plain object from index.js) becomes an
 * sm_exec on the main thread, where every setter copies what it is given;
 * sm_exec_output() or sm_exec_spawn() then runs on a binding thread.
 * Collected output comes back as Buffers over the library's own memory,
 * without a copy.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "call.h"

static const uint32_t CHILD_KIND = 5;

struct child_h {
	struct handle h;
	sm_child *c;
	struct handle *vm; /* busy while the child lives */
	napi_ref vm_ref;
};

/* Applies one setter's result: the library keeps a bad value's error for output()/spawn(). */
static int spec_argvs(napi_env env, napi_value spec, sm_exec *x)
{
	napi_value v, chain;
	uint32_t n = 0;
	char **argv;

	if (!opt_get(env, spec, "argv", &v))
		return throw_code(env, SM_E_INVALID, "exec: no argv given"), -1;
	if (!(argv = arg_strv(env, v, "argv")))
		return -1;
	sm_exec_argv(x, (const char *const *)argv);
	strv_free(argv);
	if (!opt_get(env, spec, "chain", &chain))
		return 0;
	napi_get_array_length(env, chain, &n);
	for (uint32_t i = 0; i < n; i++) {
		napi_get_element(env, chain, i, &v);
		if (!(argv = arg_strv(env, v, "chain")))
			return -1;
		sm_exec_chain(x, (const char *const *)argv);
		strv_free(argv);
	}
	return 0;
}

/* env: [[key, value], ...] (index.js flattens objects and Maps into this). */
static int spec_env(napi_env env, napi_value spec, sm_exec *x)
{
	napi_value list, pair;
	uint32_t n = 0;

	if (!opt_get(env, spec, "env", &list))
		return 0;
	napi_get_array_length(env, list, &n);
	for (uint32_t i = 0; i < n; i++) {
		napi_get_element(env, list, i, &pair);
		char **kv = arg_strv(env, pair, "env entry");
		if (!kv)
			return -1;
		if (!kv[1] || kv[2]) {
			strv_free(kv);
			return throw_code(env, SM_E_INVALID, "an env entry must be [key, value]"), -1;
		}
		sm_exec_env(x, kv[0], kv[1]);
		strv_free(kv);
	}
	return 0;
}

/* stage: [[path, data, mode], ...] */
static int spec_stage(napi_env env, napi_value spec, sm_exec *x)
{
	napi_value list, e, v;
	uint32_t n = 0, mode;

	if (!opt_get(env, spec, "stage", &list))
		return 0;
	napi_get_array_length(env, list, &n);
	for (uint32_t i = 0; i < n; i++) {
		void *data = NULL;
		size_t len = 0;
		char *path;
		napi_get_element(env, list, i, &e);
		napi_get_element(env, e, 0, &v);
		if (!(path = arg_string(env, v, "stageFile path")))
			return -1;
		napi_get_element(env, e, 1, &v);
		int rc = arg_bytes(env, v, "stageFile data", &data, &len);
		napi_get_element(env, e, 2, &v);
		mode = 0644;
		if (rc == 0 && !is_nullish(env, v))
			rc = arg_u32(env, v, "stageFile mode", &mode);
		if (rc == 0)
			sm_exec_stage_file_mode(x, path, data, len, mode);
		free(path);
		free(data);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int spec_scalars(napi_env env, napi_value spec, sm_exec *x)
{
	uint32_t timeout = 0, rows = 0, cols = 0, limit = 0;
	bool tty = false, bad = false;
	char *cwd, *user;
	napi_value v;

	if (opt_u32(env, spec, "timeoutMs", &timeout) < 0 || opt_u32(env, spec, "rows", &rows) < 0 ||
	    opt_u32(env, spec, "cols", &cols) < 0 || opt_u32(env, spec, "outputLimit", &limit) < 0 ||
	    opt_bool(env, spec, "tty", &tty) < 0)
		return -1;
	cwd = opt_string(env, spec, "cwd", &bad);
	user = opt_string(env, spec, "user", &bad);
	if (!bad && cwd)
		sm_exec_cwd(x, cwd);
	if (!bad && user)
		sm_exec_user(x, user);
	free(cwd);
	free(user);
	if (bad)
		return -1;
	sm_exec_timeout_ms(x, timeout);
	sm_exec_tty(x, tty);
	if (rows || cols)
		sm_exec_winsize(x, rows, cols);
	if (limit)
		sm_exec_output_limit(x, limit);
	if (opt_get(env, spec, "stdin", &v)) {
		void *data;
		size_t len;
		if (arg_bytes(env, v, "stdin", &data, &len) < 0)
			return -1;
		sm_exec_stdin(x, data, len);
		free(data);
	}
	return 0;
}

/* An sm_exec on vm from spec; NULL (thrown) on a bad spec. */
static sm_exec *exec_from(napi_env env, sm_vm *vm, napi_value spec)
{
	sm_exec *x = sm_exec_new(vm);

	if (!x)
		return throw_code(env, SM_E_NOMEM, "exec: out of memory"), NULL;
	if (spec_argvs(env, spec, x) < 0 || spec_env(env, spec, x) < 0 || spec_stage(env, spec, x) < 0 ||
	    spec_scalars(env, spec, x) < 0) {
		sm_exec_free(x);
		return NULL;
	}
	return x;
}

struct exec_call {
	struct call c;
	sm_exec *x;
	sm_outcome out;
	sm_child *child;
};

static void free_output(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	free(data);
}

/* A Buffer over the outcome's bytes, which it takes over. */
static napi_value output_buffer(napi_env env, char **data, size_t len)
{
	napi_value buf;
	void *copy;

	if (*data && len && napi_create_external_buffer(env, len, *data, free_output, NULL, &buf) == napi_ok) {
		*data = NULL;
		return buf;
	}
	napi_create_buffer_copy(env, 0, "", &copy, &buf);
	return buf;
}

static napi_value outcome_value(napi_env env, sm_outcome *o)
{
	napi_value v, b;

	napi_create_object(env, &v);
	napi_create_int32(env, o->status, &b);
	set_prop(env, v, "status", b);
	napi_create_int32(env, o->signal, &b);
	set_prop(env, v, "signal", b);
	napi_get_boolean(env, o->timed_out, &b);
	set_prop(env, v, "timedOut", b);
	set_prop(env, v, "chainIndex", make_u64(env, o->chain_index));
	set_prop(env, v, "durationUs", make_u64(env, o->duration_us));
	set_prop(env, v, "peakRssKib", make_u64(env, o->peak_rss_kib));
	set_prop(env, v, "stdout", output_buffer(env, &o->stdout_data, o->stdout_len));
	set_prop(env, v, "stderr", output_buffer(env, &o->stderr_data, o->stderr_len));
	napi_get_boolean(env, o->stdout_truncated, &b);
	set_prop(env, v, "stdoutTruncated", b);
	napi_get_boolean(env, o->stderr_truncated, &b);
	set_prop(env, v, "stderrTruncated", b);
	return v;
}

static int run_output(struct call *c, sm_error **err)
{
	struct exec_call *e = container_of(c, struct exec_call, c);

	return sm_exec_output(e->x, &e->out, err);
}

static napi_value res_outcome(napi_env env, struct call *c)
{
	struct exec_call *e = container_of(c, struct exec_call, c);

	return outcome_value(env, &e->out);
}

static void exec_cleanup(struct task *t)
{
	struct exec_call *e = container_of(t, struct exec_call, c.t);

	sm_outcome_free(&e->out);
	sm_exec_free(e->x);
	sm_child_free(e->child);
	sm_error_free(t->err);
	free(e);
}

/* Starts fn over exec_from(argv[0]'s VM, argv[1]). */
static napi_value exec_start(napi_env env, napi_callback_info info, call_fn fn, result_fn res)
{
	napi_value argv[2];
	struct exec_call *e;
	struct handle *h;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(h = vm_handle_base(env, argv[0])))
		return NULL;
	if (!(e = calloc(1, sizeof(*e))))
		return throw_code(env, SM_E_NOMEM, "exec: out of memory");
	call_init(&e->c, fn, res);
	e->c.t.cleanup = exec_cleanup;
	if (!(e->x = exec_from(env, vm_of(env, argv[0]), argv[1]))) {
		exec_cleanup(&e->c.t);
		return NULL;
	}
	task_hold(env, &e->c.t, argv[0], h);
	return task_start(env, &e->c.t);
}

/* exec(vm, spec) -> Promise<outcome> */
static napi_value js_exec(napi_env env, napi_callback_info info)
{
	return exec_start(env, info, run_output, res_outcome);
}

/* ---- spawn ---- */

static int run_spawn(struct call *c, sm_error **err)
{
	struct exec_call *e = container_of(c, struct exec_call, c);

	return (e->child = sm_exec_spawn(e->x, err)) ? 0 : -1;
}

static void child_finalize(napi_env env, void *data, void *hint)
{
	struct child_h *h = data;

	(void)hint;
	sm_child_free(h->c); /* kills a command still running; the pump thread ends with it */
	if (h->vm) {
		napi_delete_reference(env, h->vm_ref);
		handle_unbusy(env, h->vm);
	}
	free(h);
}

/* A JavaScript-owned copy of one of the child's descriptors (-1 when it has none). */
static napi_value dup_fd(napi_env env, int fd)
{
	napi_value v;

	napi_create_int32(env, fd >= 0 ? dup(fd) : -1, &v);
	return v;
}

static napi_value res_child(napi_env env, struct call *c)
{
	struct exec_call *e = container_of(c, struct exec_call, c);
	struct child_h *h = calloc(1, sizeof(*h));
	napi_value o, ext, vmv;

	if (!h)
		return throw_code(env, SM_E_NOMEM, "child handle: out of memory");
	h->h.kind = &CHILD_KIND;
	h->c = e->child;
	e->child = NULL;
	/* the child keeps its VM (held by the call until now) busy and alive */
	napi_get_reference_value(env, c->t.held_ref, &vmv);
	napi_create_reference(env, vmv, 1, &h->vm_ref);
	h->vm = c->t.held;
	h->vm->busy++;
	if (napi_create_external(env, h, child_finalize, NULL, &ext) != napi_ok) {
		child_finalize(env, h, NULL);
		return NULL;
	}
	napi_create_object(env, &o);
	set_prop(env, o, "handle", ext);
	set_prop(env, o, "stdin", dup_fd(env, sm_child_stdin(h->c)));
	set_prop(env, o, "stdout", dup_fd(env, sm_child_stdout(h->c)));
	set_prop(env, o, "stderr", dup_fd(env, sm_child_stderr(h->c)));
	return o;
}

/* spawn(vm, spec) -> Promise<{handle, stdin, stdout, stderr}>: the descriptors are the caller's. */
static napi_value js_spawn(napi_env env, napi_callback_info info)
{
	return exec_start(env, info, run_spawn, res_child);
}

static struct child_h *child_of(napi_env env, napi_value v)
{
	struct child_h *h = arg_handle(env, v, &CHILD_KIND, "Child");

	if (h && !h->c) {
		throw_code(env, SM_E_INVALID, "the child was freed");
		return NULL;
	}
	return h;
}

static napi_value js_child_close_stdin(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct child_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = child_of(env, argv[0])))
		return NULL;
	sm_child_close_stdin(h->c);
	return NULL;
}

/* childControl(child, 'signal', sig) or (child, 'resize', rows, cols): a frame queued to the pump, no wait. */
static napi_value js_child_control(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	struct child_h *h;
	uint32_t a = 0, b = 0;
	sm_error *err = NULL;
	char *what;
	int rc;

	if (arg_count(env, info, 4, argv, NULL) < 0 || !(h = child_of(env, argv[0])) ||
	    !(what = arg_string(env, argv[1], "control")))
		return NULL;
	if (arg_u32(env, argv[2], what, &a) < 0 || (!strcmp(what, "resize") && arg_u32(env, argv[3], "cols", &b) < 0)) {
		free(what);
		return NULL;
	}
	rc = !strcmp(what, "resize") ? sm_child_resize(h->c, a, b, &err) : sm_child_signal(h->c, (int)a, &err);
	free(what);
	return rc < 0 ? throw_sm(env, err) : NULL;
}

static int run_child_wait(struct call *c, sm_error **err)
{
	struct exec_call *e = container_of(c, struct exec_call, c);

	return sm_child_wait(c->target, &e->out, err);
}

/* childWait(child) -> Promise<outcome without output> */
static napi_value js_child_wait(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct exec_call *e;
	struct child_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = child_of(env, argv[0])))
		return NULL;
	if (h->h.busy)
		return throw_code(env, SM_E_BUSY, "wait() is already running on this child");
	if (!(e = calloc(1, sizeof(*e))))
		return throw_code(env, SM_E_NOMEM, "wait: out of memory");
	call_init(&e->c, run_child_wait, res_outcome);
	e->c.t.cleanup = exec_cleanup;
	e->c.target = h->c;
	task_hold(env, &e->c.t, argv[0], &h->h);
	return task_start(env, &e->c.t);
}

/* childFree(child): closes its descriptors (killing a command still running) and frees its VM for release(). */
static napi_value js_child_free(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct child_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = arg_handle(env, argv[0], &CHILD_KIND, "Child")))
		return NULL;
	if (h->h.busy)
		return throw_code(env, SM_E_BUSY, "the child's wait() is still running");
	sm_child_free(h->c);
	h->c = NULL;
	if (h->vm) {
		napi_delete_reference(env, h->vm_ref);
		handle_unbusy(env, h->vm);
		h->vm = NULL;
	}
	return NULL;
}

void define_exec(napi_env env, napi_value exports)
{
	export_fn(env, exports, "exec", js_exec);
	export_fn(env, exports, "spawn", js_spawn);
	export_fn(env, exports, "childCloseStdin", js_child_close_stdin);
	export_fn(env, exports, "childControl", js_child_control);
	export_fn(env, exports, "childWait", js_child_wait);
	export_fn(env, exports, "childFree", js_child_free);
}
