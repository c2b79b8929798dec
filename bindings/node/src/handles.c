/*
 * Images, pools, VMs and port forwards as externals. A handle lives as
 * long as JavaScript holds it or a call on it is in flight (task_hold);
 * what the library holds is freed by an explicit close/release, else by
 * the external's finalizer, on a binding thread when freeing may wait.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "config.h"

static const uint32_t IMAGE_KIND = 1, POOL_KIND = 2, VM_KIND = 3, FWD_KIND = 4;

struct image_h {
	struct handle h;
	sm_image *img;
};

struct pool_h {
	struct handle h;
	sm_pool *pool;
	struct vm_cfg *cfg; /* read by the pool for its whole life */
};

struct vm_h {
	struct handle h;
	sm_vm *vm;
	bool pooled;   /* give it back with sm_pool_release */
	bool borrowed; /* a bake's warmup VM: never freed here */
};

struct fwd_h {
	struct handle h;
	sm_forward *f;
};

/* ---- frees that may wait, on a binding thread ---- */

static int bg_image_free(struct call *c, sm_error **err)
{
	(void)err;
	sm_image_free(c->obj);
	return 0;
}

static int bg_pool_free(struct call *c, sm_error **err)
{
	(void)err;
	sm_pool_free(c->obj);
	vm_cfg_free(c->cfg);
	c->cfg = NULL;
	return 0;
}

static int bg_vm_free(struct call *c, sm_error **err)
{
	(void)err;
	sm_vm_free(c->obj);
	return 0;
}

static void background(napi_env env, call_fn fn, void *obj, struct vm_cfg *cfg)
{
	struct call *c = call_new(fn, NULL);

	if (!c)
		return;
	c->obj = obj;
	c->cfg = cfg;
	task_background(env, &c->t);
}

static void image_finalize(napi_env env, void *data, void *hint)
{
	struct image_h *h = data;

	(void)hint;
	if (h->img)
		background(env, bg_image_free, h->img, NULL);
	free(h);
}

static void pool_finalize(napi_env env, void *data, void *hint)
{
	struct pool_h *h = data;

	(void)hint;
	if (h->pool)
		background(env, bg_pool_free, h->pool, h->cfg);
	else
		vm_cfg_free(h->cfg);
	free(h);
}

static void vm_finalize(napi_env env, void *data, void *hint)
{
	struct vm_h *h = data;
	char msg[256];

	(void)hint;
	if (h->vm && !h->borrowed) {
		snprintf(msg, sizeof(msg),
			 "supermachine: VM %s was garbage-collected without release(): %s it; "
			 "call vm.release() or use `await using`",
			 sm_vm_id(h->vm), h->pooled ? "released" : "stopped");
		emit_warning(env, msg);
		if (h->pooled)
			sm_pool_release(h->vm);
		else
			background(env, bg_vm_free, h->vm, NULL);
	}
	free(h);
}

static void fwd_finalize(napi_env env, void *data, void *hint)
{
	struct fwd_h *h = data;

	(void)env;
	(void)hint;
	sm_forward_stop(h->f);
	free(h);
}

static napi_value external(napi_env env, struct handle *h, const uint32_t *kind, napi_finalize fin)
{
	napi_value v;

	h->kind = kind;
	if (napi_create_external(env, h, fin, NULL, &v) != napi_ok) {
		fin(env, h, NULL);
		return NULL;
	}
	return v;
}

napi_value vm_handle_new(napi_env env, sm_vm *vm, bool pooled, bool borrowed)
{
	struct vm_h *h = calloc(1, sizeof(*h));

	if (!h) {
		if (pooled)
			sm_pool_release(vm);
		else if (!borrowed)
			sm_vm_free(vm);
		return throw_code(env, SM_E_NOMEM, "VM handle: out of memory");
	}
	h->vm = vm;
	h->pooled = pooled;
	h->borrowed = borrowed;
	return external(env, &h->h, &VM_KIND, vm_finalize);
}

void vm_handle_revoke(napi_env env, napi_value handle)
{
	struct vm_h *h = arg_handle(env, handle, &VM_KIND, "Vm");

	if (h)
		h->vm = NULL;
}

static struct vm_h *vm_h_of(napi_env env, napi_value v)
{
	struct vm_h *h = arg_handle(env, v, &VM_KIND, "Vm");

	if (h && !h->vm) {
		throw_code(env, SM_E_INVALID, "the VM was released or stopped: it cannot be used any more");
		return NULL;
	}
	return h;
}

sm_vm *vm_of(napi_env env, napi_value v)
{
	struct vm_h *h = vm_h_of(env, v);

	return h ? h->vm : NULL;
}

struct handle *vm_handle_base(napi_env env, napi_value v)
{
	struct vm_h *h = vm_h_of(env, v);

	return h ? &h->h : NULL;
}

/* ---- results ---- */

static napi_value res_undefined(napi_env env, struct call *c)
{
	napi_value v;

	(void)c;
	napi_get_undefined(env, &v);
	return v;
}

static napi_value res_image(napi_env env, struct call *c)
{
	struct image_h *h = calloc(1, sizeof(*h));

	if (!h)
		return throw_code(env, SM_E_NOMEM, "image handle: out of memory");
	h->img = c->obj;
	c->obj = NULL;
	return external(env, &h->h, &IMAGE_KIND, image_finalize);
}

static napi_value res_pool(napi_env env, struct call *c)
{
	struct pool_h *h = calloc(1, sizeof(*h));

	if (!h)
		return throw_code(env, SM_E_NOMEM, "pool handle: out of memory");
	h->pool = c->obj;
	h->cfg = c->cfg;
	c->obj = NULL;
	c->cfg = NULL;
	return external(env, &h->h, &POOL_KIND, pool_finalize);
}

static napi_value res_vm(napi_env env, struct call *c, bool pooled)
{
	sm_vm *vm = c->obj;

	c->obj = NULL;
	return vm_handle_new(env, vm, pooled, false);
}

static napi_value res_vm_pooled(napi_env env, struct call *c) { return res_vm(env, c, true); }
static napi_value res_vm_own(napi_env env, struct call *c) { return res_vm(env, c, false); }

/* What a call still holds when its promise is gone (rejected, or the environment torn down). */
static void leftover_vm(struct call *c)
{
	if (c->obj && c->flag)
		sm_pool_release(c->obj);
	else if (c->obj)
		sm_vm_free(c->obj);
}

/* ---- images ---- */

static int run_image_open(struct call *c, sm_error **err)
{
	return (c->obj = sm_image_open(c->s, err)) ? 0 : -1;
}

static void leftover_image(struct call *c) { sm_image_free(c->obj); }

/* imageOpen(nameOrDir) -> Promise<image> */
static napi_value js_image_open(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct call *c;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(c = call_new(run_image_open, res_image)))
		return NULL;
	c->leftover = leftover_image;
	if (!(c->s = arg_string(env, argv[0], "the snapshot name or directory")))
		return call_abort(c);
	return task_start(env, &c->t);
}

static struct image_h *image_of(napi_env env, napi_value v)
{
	struct image_h *h = arg_handle(env, v, &IMAGE_KIND, "Image");

	if (h && !h->img) {
		throw_code(env, SM_E_INVALID, "the image was closed");
		return NULL;
	}
	return h;
}

static napi_value js_image_path(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct image_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = image_of(env, argv[0])))
		return NULL;
	return make_string(env, sm_image_path(h->img));
}

static int run_image_start(struct call *c, sm_error **err)
{
	return (c->obj = sm_image_start(c->target, c->cfg ? &c->cfg->c : NULL, err)) ? 0 : -1;
}

static int run_image_acquire(struct call *c, sm_error **err)
{
	return (c->obj = sm_image_acquire(c->target, err)) ? 0 : -1;
}

static int run_vm_start(struct call *c, sm_error **err)
{
	return (c->obj = sm_vm_start(c->s, c->cfg ? &c->cfg->c : NULL, err)) ? 0 : -1;
}

/* A call on an image handle (argv[0]) with an optional VM config (argv[1]). */
static napi_value image_call(napi_env env, napi_callback_info info, call_fn fn, result_fn res, bool pooled)
{
	napi_value argv[2];
	struct image_h *h;
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(h = image_of(env, argv[0])) || !(c = call_new(fn, res)))
		return NULL;
	c->target = h->img;
	c->flag = pooled;
	c->leftover = leftover_vm;
	if (!(c->cfg = vm_cfg_from(env, argv[1])))
		return call_abort(c);
	task_hold(env, &c->t, argv[0], &h->h);
	return task_start(env, &c->t);
}

static napi_value js_image_start(napi_env env, napi_callback_info info)
{
	return image_call(env, info, run_image_start, res_vm_own, false);
}

static napi_value js_image_acquire(napi_env env, napi_callback_info info)
{
	return image_call(env, info, run_image_acquire, res_vm_pooled, true);
}

/* vmStart(imageOrRootfs, config) -> Promise<vm>: boots a pulled image (or restores a stored snapshot). */
static napi_value js_vm_start(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(c = call_new(run_vm_start, res_vm_own)))
		return NULL;
	c->leftover = leftover_vm;
	if (!(c->s = arg_string(env, argv[0], "the image")) || !(c->cfg = vm_cfg_from(env, argv[1])))
		return call_abort(c);
	return task_start(env, &c->t);
}

static int run_image_close(struct call *c, sm_error **err)
{
	(void)err;
	sm_image_free(c->obj);
	c->obj = NULL;
	return 0;
}

static napi_value js_image_close(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct image_h *h;
	struct call *c;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = arg_handle(env, argv[0], &IMAGE_KIND, "Image")))
		return NULL;
	if (h->h.busy)
		return throw_code(env, SM_E_BUSY, "the image has %u calls in flight", h->h.busy);
	if (!(c = call_new(run_image_close, res_undefined)))
		return NULL;
	c->obj = h->img;
	h->img = NULL;
	return task_start(env, &c->t);
}

/* ---- pools ---- */

/* The sm_pool_config of opts: {min, max, idleTimeoutMs, acquireTimeoutMs, restoreOnRelease, vm}. */
static int pool_cfg(napi_env env, napi_value opts, struct call *c)
{
	bool restore = true;
	napi_value vm;

	if (!is_nullish(env, opts)) {
		napi_valuetype t;
		if (napi_typeof(env, opts, &t) != napi_ok || t != napi_object)
			return throw_code(env, SM_E_INVALID, "the pool options must be an object"), -1;
	}
	c->pool_cfg = (sm_pool_config)SM_POOL_CONFIG_INIT;
	if (opt_u32(env, opts, "min", &c->pool_cfg.min) < 0 || opt_u32(env, opts, "max", &c->pool_cfg.max) < 0 ||
	    opt_u32(env, opts, "idleTimeoutMs", &c->pool_cfg.idle_timeout_ms) < 0 ||
	    opt_u32(env, opts, "acquireTimeoutMs", &c->pool_cfg.acquire_timeout_ms) < 0 ||
	    opt_bool(env, opts, "restoreOnRelease", &restore) < 0)
		return -1;
	c->pool_cfg.keep_state_on_release = !restore;
	if (!opt_get(env, opts, "vm", &vm))
		vm = NULL;
	if (vm && !(c->cfg = vm_cfg_from(env, vm)))
		return -1;
	c->pool_cfg.vm = c->cfg ? &c->cfg->c : NULL;
	return 0;
}

static int run_image_pool(struct call *c, sm_error **err)
{
	return (c->obj = sm_image_pool(c->target, &c->pool_cfg, err)) ? 0 : -1;
}

static int run_pool_new(struct call *c, sm_error **err)
{
	return (c->obj = sm_pool_new(c->s, &c->pool_cfg, err)) ? 0 : -1;
}

static void leftover_pool(struct call *c) { sm_pool_free(c->obj); }

/* imagePool(image, opts) -> Promise<pool> */
static napi_value js_image_pool(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct image_h *h;
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(h = image_of(env, argv[0])) ||
	    !(c = call_new(run_image_pool, res_pool)))
		return NULL;
	c->target = h->img;
	c->leftover = leftover_pool;
	if (pool_cfg(env, argv[1], c) < 0)
		return call_abort(c);
	task_hold(env, &c->t, argv[0], &h->h);
	return task_start(env, &c->t);
}

/* poolNew(nameOrDir, opts) -> Promise<pool> */
static napi_value js_pool_new(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(c = call_new(run_pool_new, res_pool)))
		return NULL;
	c->leftover = leftover_pool;
	if (!(c->s = arg_string(env, argv[0], "the snapshot name or directory")) || pool_cfg(env, argv[1], c) < 0)
		return call_abort(c);
	return task_start(env, &c->t);
}

static struct pool_h *pool_of(napi_env env, napi_value v)
{
	struct pool_h *h = arg_handle(env, v, &POOL_KIND, "Pool");

	if (h && !h->pool) {
		throw_code(env, SM_E_INVALID, "the pool was closed");
		return NULL;
	}
	return h;
}

static int run_pool_acquire(struct call *c, sm_error **err)
{
	return (c->obj = sm_pool_acquire(c->target, err)) ? 0 : -1;
}

static napi_value js_pool_acquire(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct pool_h *h;
	struct call *c;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = pool_of(env, argv[0])) ||
	    !(c = call_new(run_pool_acquire, res_vm_pooled)))
		return NULL;
	c->target = h->pool;
	c->flag = true;
	c->leftover = leftover_vm;
	task_hold(env, &c->t, argv[0], &h->h);
	return task_start(env, &c->t);
}

static napi_value js_pool_stats(napi_env env, napi_callback_info info)
{
	napi_value argv[1], o;
	struct pool_h *h;
	sm_pool_stats s;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = pool_of(env, argv[0])))
		return NULL;
	sm_pool_get_stats(h->pool, &s);
	napi_create_object(env, &o);
	set_prop(env, o, "idle", make_u64(env, s.idle));
	set_prop(env, o, "busy", make_u64(env, s.busy));
	set_prop(env, o, "starting", make_u64(env, s.starting));
	set_prop(env, o, "spawned", make_u64(env, s.spawned));
	set_prop(env, o, "evicted", make_u64(env, s.evicted));
	set_prop(env, o, "died", make_u64(env, s.died));
	set_prop(env, o, "waits", make_u64(env, s.waits));
	set_prop(env, o, "acquires", make_u64(env, s.acquires));
	set_prop(env, o, "acquireTimeouts", make_u64(env, s.acquire_timeouts));
	set_prop(env, o, "acquireP50Us", make_u64(env, s.acquire_p50_us));
	set_prop(env, o, "acquireP99Us", make_u64(env, s.acquire_p99_us));
	set_prop(env, o, "acquireMaxUs", make_u64(env, s.acquire_max_us));
	return o;
}

/* poolClose(pool) -> Promise: stops every worker (VMs still acquired die; release them after). */
static napi_value js_pool_close(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct pool_h *h;
	struct call *c;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = arg_handle(env, argv[0], &POOL_KIND, "Pool")))
		return NULL;
	if (!h->pool)
		return call_resolved(env);
	if (h->h.busy)
		return throw_code(env, SM_E_BUSY, "the pool has %u calls in flight (acquires waiting)", h->h.busy);
	if (!(c = call_new(bg_pool_free, res_undefined)))
		return NULL;
	c->obj = h->pool;
	c->cfg = h->cfg;
	h->pool = NULL;
	h->cfg = NULL;
	return task_start(env, &c->t);
}

/* ---- VMs ---- */

static napi_value js_vm_info(napi_env env, napi_callback_info info)
{
	napi_value argv[1], o, b;
	struct vm_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = vm_h_of(env, argv[0])))
		return NULL;
	napi_create_object(env, &o);
	set_prop(env, o, "id", make_string(env, sm_vm_id(h->vm)));
	set_prop(env, o, "consolePath", make_string(env, sm_vm_console_path(h->vm)));
	napi_get_boolean(env, h->pooled, &b);
	set_prop(env, o, "pooled", b);
	return o;
}

static napi_value js_vm_running(napi_env env, napi_callback_info info)
{
	napi_value argv[1], b;
	struct vm_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = vm_h_of(env, argv[0])))
		return NULL;
	napi_get_boolean(env, sm_vm_running(h->vm), &b);
	return b;
}

/*
 * vmRelease(vm) -> undefined for a pooled VM (back to its pool: cheap),
 * Promise for a started one (stopped and freed on a binding thread).
 * Twice is fine; while calls are in flight it is an error.
 */
static napi_value js_vm_release(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct vm_h *h;
	struct call *c;
	sm_vm *vm;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = arg_handle(env, argv[0], &VM_KIND, "Vm")))
		return NULL;
	if (!h->vm || h->borrowed)
		return call_resolved(env);
	if (h->h.busy)
		return throw_code(env, SM_E_BUSY, "VM %s has %u calls or children in flight: release it after they end",
				  sm_vm_id(h->vm), h->h.busy);
	vm = h->vm;
	h->vm = NULL;
	if (h->pooled) {
		sm_pool_release(vm);
		return call_resolved(env);
	}
	if (!(c = call_new(bg_vm_free, res_undefined)))
		return NULL;
	c->obj = vm;
	return task_start(env, &c->t);
}

static int run_vm_stop(struct call *c, sm_error **err)
{
	return sm_vm_stop(c->target, c->u32[0], err);
}

static int run_write_file(struct call *c, sm_error **err)
{
	return sm_vm_write_file(c->target, c->s, c->data, c->len, c->u32[0], err);
}

static int run_read_file(struct call *c, sm_error **err)
{
	return sm_vm_read_file(c->target, c->s, c->u32[0] ? c->u32[0] : 64u << 20, &c->data, &c->len, err);
}

static napi_value res_bytes(napi_env env, struct call *c)
{
	napi_value buf;
	void *copy;

	if (napi_create_buffer_copy(env, c->len, c->data ? c->data : "", &copy, &buf) != napi_ok)
		return NULL;
	return buf;
}

static int run_connect(struct call *c, sm_error **err)
{
	return (c->rc = sm_vm_connect(c->target, (uint16_t)c->u32[0], err)) < 0 ? -1 : 0;
}

static napi_value res_rc(napi_env env, struct call *c)
{
	napi_value v;

	napi_create_int32(env, c->rc, &v);
	c->rc = -1;
	return v;
}

static int run_workload_signal(struct call *c, sm_error **err)
{
	return sm_vm_workload_signal(c->target, (int)c->u32[0], err);
}

static int run_snapshot(struct call *c, sm_error **err)
{
	return sm_vm_snapshot(c->target, c->s, err);
}

static int run_wait(struct call *c, sm_error **err)
{
	int status = -1, rc = sm_vm_wait(c->target, (int)c->u32[0] - 1, &status, err);

	c->rc = rc == 1 ? -2 : status; /* -2: still running */
	return rc < 0 ? -1 : 0;
}

static napi_value res_wait(napi_env env, struct call *c)
{
	napi_value v;

	if (c->rc == -2)
		napi_get_null(env, &v);
	else
		napi_create_int32(env, c->rc, &v);
	return v;
}

static int run_expose(struct call *c, sm_error **err)
{
	return (c->obj = sm_vm_expose_tcp(c->target, c->s, (uint16_t)c->u32[0], (uint16_t)c->u32[1], err)) ? 0 : -1;
}

static void leftover_fwd(struct call *c) { sm_forward_stop(c->obj); }

static napi_value res_fwd(napi_env env, struct call *c)
{
	struct fwd_h *h = calloc(1, sizeof(*h));

	if (!h)
		return throw_code(env, SM_E_NOMEM, "forward handle: out of memory");
	h->f = c->obj;
	c->obj = NULL;
	return external(env, &h->h, &FWD_KIND, fwd_finalize);
}

/* Starts fn on the VM of argv[0] with c already filled in by the caller. */
static napi_value vm_call_start(napi_env env, napi_value handle, struct call *c)
{
	struct vm_h *h = vm_h_of(env, handle);

	if (!h)
		return call_abort(c);
	c->target = h->vm;
	task_hold(env, &c->t, handle, &h->h);
	return task_start(env, &c->t);
}

/* vmStop(vm, graceMs) */
static napi_value js_vm_stop(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(c = call_new(run_vm_stop, res_undefined)))
		return NULL;
	if (!is_nullish(env, argv[1]) && arg_u32(env, argv[1], "graceMs", &c->u32[0]) < 0)
		return call_abort(c);
	return vm_call_start(env, argv[0], c);
}

/* vmWriteFile(vm, path, data, mode) */
static napi_value js_vm_write_file(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	struct call *c;

	if (arg_count(env, info, 4, argv, NULL) < 0 || !(c = call_new(run_write_file, res_undefined)))
		return NULL;
	c->u32[0] = 0644;
	if (!(c->s = arg_string(env, argv[1], "path")) || arg_bytes(env, argv[2], "data", &c->data, &c->len) < 0 ||
	    (!is_nullish(env, argv[3]) && arg_u32(env, argv[3], "mode", &c->u32[0]) < 0))
		return call_abort(c);
	return vm_call_start(env, argv[0], c);
}

/* vmReadFile(vm, path, maxBytes) -> Promise<Buffer> */
static napi_value js_vm_read_file(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	struct call *c;

	if (arg_count(env, info, 3, argv, NULL) < 0 || !(c = call_new(run_read_file, res_bytes)))
		return NULL;
	if (!(c->s = arg_string(env, argv[1], "path")) ||
	    (!is_nullish(env, argv[2]) && arg_u32(env, argv[2], "maxBytes", &c->u32[0]) < 0))
		return call_abort(c);
	return vm_call_start(env, argv[0], c);
}

/* A call on argv[0] taking one number argv[1] under 2^bits. */
static napi_value vm_call_u32(napi_env env, napi_callback_info info, call_fn fn, result_fn res, const char *what,
			      uint32_t max)
{
	napi_value argv[2];
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(c = call_new(fn, res)))
		return NULL;
	if (arg_u32(env, argv[1], what, &c->u32[0]) < 0)
		return call_abort(c);
	if (c->u32[0] > max)
		return throw_code(env, SM_E_INVALID, "%s must be at most %u, not %u", what, max, c->u32[0]),
		       call_abort(c);
	return vm_call_start(env, argv[0], c);
}

static napi_value js_vm_connect(napi_env env, napi_callback_info info)
{
	return vm_call_u32(env, info, run_connect, res_rc, "port", 65535);
}

static napi_value js_vm_workload_signal(napi_env env, napi_callback_info info)
{
	return vm_call_u32(env, info, run_workload_signal, res_undefined, "signal", 64);
}

/* vmWait(vm, timeoutMs + 1; 0 = for ever) -> Promise<status | -1, or null while running> */
static napi_value js_vm_wait(napi_env env, napi_callback_info info)
{
	return vm_call_u32(env, info, run_wait, res_wait, "timeout", INT32_MAX);
}

static napi_value js_vm_snapshot(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct call *c;

	if (arg_count(env, info, 2, argv, NULL) < 0 || !(c = call_new(run_snapshot, res_undefined)))
		return NULL;
	if (!(c->s = arg_string(env, argv[1], "the snapshot name or directory")))
		return call_abort(c);
	return vm_call_start(env, argv[0], c);
}

/* vmExposeTcp(vm, hostAddr|null, hostPort, guestPort) -> Promise<forward> */
static napi_value js_vm_expose_tcp(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	struct call *c;

	if (arg_count(env, info, 4, argv, NULL) < 0 || !(c = call_new(run_expose, res_fwd)))
		return NULL;
	c->leftover = leftover_fwd;
	if ((!is_nullish(env, argv[1]) && !(c->s = arg_string(env, argv[1], "host address"))) ||
	    arg_u32(env, argv[2], "hostPort", &c->u32[0]) < 0 || arg_u32(env, argv[3], "guestPort", &c->u32[1]) < 0)
		return call_abort(c);
	if (c->u32[0] > 65535 || c->u32[1] > 65535 || c->u32[1] == 0)
		return throw_code(env, SM_E_INVALID, "ports must be 0..65535 (the guest port not 0)"), call_abort(c);
	return vm_call_start(env, argv[0], c);
}

static napi_value js_fwd_port(napi_env env, napi_callback_info info)
{
	napi_value argv[1], v;
	struct fwd_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = arg_handle(env, argv[0], &FWD_KIND, "Forward")))
		return NULL;
	napi_create_uint32(env, h->f ? sm_forward_port(h->f) : 0, &v);
	return v;
}

static napi_value js_fwd_stop(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	struct fwd_h *h;

	if (arg_count(env, info, 1, argv, NULL) < 0 || !(h = arg_handle(env, argv[0], &FWD_KIND, "Forward")))
		return NULL;
	sm_forward_stop(h->f);
	h->f = NULL;
	return NULL;
}

void define_handles(napi_env env, napi_value exports)
{
	export_fn(env, exports, "imageOpen", js_image_open);
	export_fn(env, exports, "imagePath", js_image_path);
	export_fn(env, exports, "imageStart", js_image_start);
	export_fn(env, exports, "imageAcquire", js_image_acquire);
	export_fn(env, exports, "imagePool", js_image_pool);
	export_fn(env, exports, "imageClose", js_image_close);
	export_fn(env, exports, "vmStart", js_vm_start);
	export_fn(env, exports, "poolNew", js_pool_new);
	export_fn(env, exports, "poolAcquire", js_pool_acquire);
	export_fn(env, exports, "poolStats", js_pool_stats);
	export_fn(env, exports, "poolClose", js_pool_close);
	export_fn(env, exports, "vmInfo", js_vm_info);
	export_fn(env, exports, "vmRunning", js_vm_running);
	export_fn(env, exports, "vmRelease", js_vm_release);
	export_fn(env, exports, "vmStop", js_vm_stop);
	export_fn(env, exports, "vmWriteFile", js_vm_write_file);
	export_fn(env, exports, "vmReadFile", js_vm_read_file);
	export_fn(env, exports, "vmConnect", js_vm_connect);
	export_fn(env, exports, "vmWorkloadSignal", js_vm_workload_signal);
	export_fn(env, exports, "vmWait", js_vm_wait);
	export_fn(env, exports, "vmSnapshot", js_vm_snapshot);
	export_fn(env, exports, "vmExposeTcp", js_vm_expose_tcp);
	export_fn(env, exports, "forwardPort", js_fwd_port);
	export_fn(env, exports, "forwardStop", js_fwd_stop);
}
