/*
 * The store: pull (with progress reports posted to the main thread),
 * images and snapshots (lists), and bake, whose warmup runs JavaScript
 * from the library's warmup_fn: the bake thread posts the VM to the main
 * thread and sleeps until the warmup's promise settles and every call the
 * warmup made on that VM has ended (the VM is then revoked, so a call
 * after the warmup fails instead of touching a VM the bake stops).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "config.h"

/* ---- pull ---- */

struct pull_call {
	struct call c;
	napi_ref on_progress;
	atomic_bool cancel; /* onProgress returned false */
	sm_pull_config cfg;
};

struct progress_post {
	struct post post;
	struct pull_call *pc; /* alive: progress posts reach the main thread before the call's settlement */
	sm_pull_progress p;
	char digest[80];
};

static const char *const phase_names[] = { "resolving", "downloading", "building", "done" };
static const char *const blob_states[] = { "waiting", "downloading", "done", "cached" };

static void progress_drop(struct post *p) { free(container_of(p, struct progress_post, post)); }

static napi_value progress_value(napi_env env, const struct progress_post *pp)
{
	const sm_pull_progress *p = &pp->p;
	napi_value o;

	napi_create_object(env, &o);
	set_prop(env, o, "phase", make_string(env, p->phase <= SM_PULL_DONE ? phase_names[p->phase] : "unknown"));
	set_prop(env, o, "digest", make_string(env, pp->digest[0] ? pp->digest : NULL));
	set_prop(env, o, "state", make_string(env, p->state <= SM_BLOB_CACHED ? blob_states[p->state] : "unknown"));
	set_prop(env, o, "done", make_u64(env, p->done));
	set_prop(env, o, "total", make_u64(env, p->total));
	set_prop(env, o, "bytesDone", make_u64(env, p->bytes_done));
	set_prop(env, o, "bytesTotal", make_u64(env, p->bytes_total));
	set_prop(env, o, "blobsDone", make_u64(env, p->blobs_done));
	set_prop(env, o, "blobsTotal", make_u64(env, p->blobs_total));
	return o;
}

static void progress_on_main(napi_env env, struct post *p)
{
	struct progress_post *pp = container_of(p, struct progress_post, post);
	napi_value fn, arg, ret, undef, f;

	napi_get_undefined(env, &undef);
	if (napi_get_reference_value(env, pp->pc->on_progress, &fn) == napi_ok && fn) {
		arg = progress_value(env, pp);
		if (napi_call_function(env, undef, fn, 1, &arg, &ret) != napi_ok) {
			take_exception(env); /* a throwing callback cancels the pull */
			atomic_store(&pp->pc->cancel, true);
		} else {
			napi_get_boolean(env, false, &f);
			bool is_false = false;
			napi_strict_equals(env, ret, f, &is_false);
			if (is_false)
				atomic_store(&pp->pc->cancel, true);
		}
	}
	progress_drop(p);
}

/* On the pulling thread: a copy of the report to the main thread, never waiting for it. */
static int pull_progress(const sm_pull_progress *p, void *opaque)
{
	struct pull_call *pc = opaque;
	struct progress_post *pp;

	if (atomic_load(&pc->cancel))
		return 1;
	if (pc->on_progress && (pp = calloc(1, sizeof(*pp)))) {
		pp->post = (struct post){ progress_on_main, progress_drop };
		pp->pc = pc;
		pp->p = *p;
		if (p->digest)
			strncpy(pp->digest, p->digest, sizeof(pp->digest) - 1);
		runner_post(pc->c.t.runner, &pp->post);
	}
	return 0;
}

static int run_pull(struct call *c, sm_error **err)
{
	struct pull_call *pc = container_of(c, struct pull_call, c);
	sm_oci_image *img = sm_oci_pull(c->s, &pc->cfg, err);

	if (!img)
		return -1;
	c->data = sm_oci_image_json(img);
	sm_oci_image_free(img);
	return 0;
}

static napi_value res_json(napi_env env, struct call *c)
{
	return make_string(env, c->data ? c->data : "null");
}

static void pull_settled(napi_env env, struct task *t)
{
	struct pull_call *pc = container_of(t, struct pull_call, c.t);

	if (pc->on_progress)
		napi_delete_reference(env, pc->on_progress);
	free((char *)pc->cfg.platform);
}

/* pull(ref, {platform, plainHttp, insecure, noRootfs}, onProgress|undefined) -> Promise<JSON text of the image> */
static napi_value js_pull(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	struct pull_call *pc;
	bool bad = false;

	if (arg_count(env, info, 3, argv, NULL) < 0 || !(pc = calloc(1, sizeof(*pc))))
		return NULL;
	call_init(&pc->c, run_pull, res_json);
	pc->c.t.settled = pull_settled;
	pc->cfg = (sm_pull_config)SM_PULL_CONFIG_INIT;
	pc->cfg.platform = opt_string(env, argv[1], "platform", &bad);
	if (!(pc->c.s = arg_string(env, argv[0], "the image reference")) || bad ||
	    opt_bool(env, argv[1], "plainHttp", &pc->cfg.plain_http) < 0 ||
	    opt_bool(env, argv[1], "insecure", &pc->cfg.insecure) < 0 ||
	    opt_bool(env, argv[1], "noRootfs", &pc->cfg.no_rootfs) < 0) {
		free((char *)pc->cfg.platform);
		return call_abort(&pc->c);
	}
	pc->cfg.progress = pull_progress;
	pc->cfg.progress_opaque = pc;
	if (!is_nullish(env, argv[2]))
		napi_create_reference(env, argv[2], 1, &pc->on_progress);
	return task_start(env, &pc->c.t);
}

/* ---- lists ---- */

static int run_images(struct call *c, sm_error **err)
{
	sm_oci_image_list *l = sm_oci_image_list_load(err);

	if (!l)
		return -1;
	c->data = sm_oci_image_list_json(l);
	sm_oci_image_list_free(l);
	return 0;
}

static napi_value js_images(napi_env env, napi_callback_info info)
{
	struct call *c = call_new(run_images, res_json);

	(void)info;
	return c ? task_start(env, &c->t) : NULL;
}

static int run_snapshots(struct call *c, sm_error **err)
{
	return (c->obj = sm_snapshot_list_load(err)) ? 0 : -1;
}

static void leftover_snapshots(struct call *c) { sm_snapshot_list_free(c->obj); }

static napi_value snapshot_value(napi_env env, const sm_snapshot_info *s)
{
	napi_value o;

	napi_create_object(env, &o);
	set_prop(env, o, "name", make_string(env, sm_snapshot_info_name(s)));
	set_prop(env, o, "path", make_string(env, sm_snapshot_info_path(s)));
	set_prop(env, o, "image", make_string(env, sm_snapshot_info_image(s)));
	set_prop(env, o, "imageDigest", make_string(env, sm_snapshot_info_image_digest(s)));
	set_prop(env, o, "warmupTag", make_string(env, sm_snapshot_info_warmup_tag(s)));
	set_prop(env, o, "memoryMib", make_u64(env, sm_snapshot_info_memory_mib(s)));
	set_prop(env, o, "vcpus", make_u64(env, sm_snapshot_info_vcpus(s)));
	set_prop(env, o, "created", make_u64(env, (uint64_t)sm_snapshot_info_created(s)));
	set_prop(env, o, "diskBytes", make_u64(env, sm_snapshot_info_disk_bytes(s)));
	return o;
}

static napi_value res_snapshots(napi_env env, struct call *c)
{
	size_t n = sm_snapshot_list_count(c->obj);
	napi_value arr;

	napi_create_array_with_length(env, n, &arr);
	for (size_t i = 0; i < n; i++)
		napi_set_element(env, arr, (uint32_t)i, snapshot_value(env, sm_snapshot_list_at(c->obj, i)));
	return arr;
}

static napi_value js_snapshots(napi_env env, napi_callback_info info)
{
	struct call *c = call_new(run_snapshots, res_snapshots);

	(void)info;
	if (!c)
		return NULL;
	c->leftover = leftover_snapshots;
	return task_start(env, &c->t);
}

/* ---- bake ---- */

enum warm_state { WARM_IDLE, WARM_PENDING, WARM_OK, WARM_FAILED };

struct bake_call {
	struct call c;
	sm_bake_config cfg;
	struct vm_cfg *vm;
	char *name, *tag;
	char ***commands;       /* warmupCommands: argvs */
	napi_ref warmup;        /* (vmHandle) => Promise, index.js's wrapper; NULL: none */
	struct post warm_post;
	sm_vm *warm_vm;
	napi_ref warm_handle;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum warm_state state;
};

static void warm_finish(napi_env env, struct bake_call *b, bool ok)
{
	napi_value h;

	if (b->warm_handle) {
		if (napi_get_reference_value(env, b->warm_handle, &h) == napi_ok && h)
			vm_handle_revoke(env, h);
		napi_delete_reference(env, b->warm_handle);
		b->warm_handle = NULL;
	}
	pthread_mutex_lock(&b->mu);
	b->state = ok ? WARM_OK : WARM_FAILED;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void warm_idle(napi_env env, struct handle *h)
{
	struct bake_call *b = h->idle_opaque;

	warm_finish(env, b, b->state == WARM_PENDING); /* PENDING here: the promise fulfilled */
}

/* The warmup's promise settled: finish once the calls it left on the VM have ended. */
static void warm_settled(napi_env env, struct bake_call *b, bool ok)
{
	napi_value hv;
	struct handle *h = NULL;

	if (b->warm_handle && napi_get_reference_value(env, b->warm_handle, &hv) == napi_ok && hv)
		h = vm_handle_base(env, hv);
	take_exception(env); /* vm_handle_base throws for a VM already revoked: nothing to wait for */
	if (h && h->busy) {
		if (!ok)
			b->state = WARM_IDLE; /* remembered as failed for warm_idle */
		h->idle = warm_idle;
		h->idle_opaque = b;
		return;
	}
	warm_finish(env, b, ok);
}

static napi_value warm_cb(napi_env env, napi_callback_info info, bool ok)
{
	struct bake_call *b;

	napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&b);
	warm_settled(env, b, ok);
	return NULL;
}

static napi_value warm_fulfilled(napi_env env, napi_callback_info info) { return warm_cb(env, info, true); }
static napi_value warm_rejected(napi_env env, napi_callback_info info) { return warm_cb(env, info, false); }

/* promise.then(fulfilled, rejected), both settling b. */
static bool warm_then(napi_env env, napi_value promise, struct bake_call *b)
{
	napi_value then, fns[2];

	if (napi_get_named_property(env, promise, "then", &then) != napi_ok)
		return false;
	napi_create_function(env, "warmupDone", NAPI_AUTO_LENGTH, warm_fulfilled, b, &fns[0]);
	napi_create_function(env, "warmupFailed", NAPI_AUTO_LENGTH, warm_rejected, b, &fns[1]);
	return napi_call_function(env, promise, then, 2, fns, NULL) == napi_ok;
}

static void warm_on_main(napi_env env, struct post *p)
{
	struct bake_call *b = container_of(p, struct bake_call, warm_post);
	napi_value fn, handle, ret, undef;
	bool is_promise = false;

	napi_get_undefined(env, &undef);
	handle = vm_handle_new(env, b->warm_vm, false, true);
	if (!handle || napi_get_reference_value(env, b->warmup, &fn) != napi_ok) {
		take_exception(env);
		warm_finish(env, b, false);
		return;
	}
	napi_create_reference(env, handle, 1, &b->warm_handle);
	if (napi_call_function(env, undef, fn, 1, &handle, &ret) != napi_ok) {
		take_exception(env); /* index.js's wrapper keeps the error for the bake's rejection */
		warm_settled(env, b, false);
		return;
	}
	napi_is_promise(env, ret, &is_promise);
	if (!is_promise)
		warm_settled(env, b, true);
	else if (!warm_then(env, ret, b)) {
		take_exception(env);
		warm_settled(env, b, false);
	}
}

/* The environment is gone: the bake fails rather than sleeping for ever. */
static void warm_drop(struct post *p)
{
	struct bake_call *b = container_of(p, struct bake_call, warm_post);

	pthread_mutex_lock(&b->mu);
	b->state = WARM_FAILED;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* sm_bake_config.warmup_fn, on the bake's thread. */
static int warmup_fn(sm_vm *vm, void *opaque, sm_error **err)
{
	struct bake_call *b = opaque;
	enum warm_state st;

	(void)err; /* the JavaScript error travels on the JavaScript side (index.js) */
	b->warm_vm = vm;
	b->state = WARM_PENDING;
	b->warm_post = (struct post){ warm_on_main, warm_drop };
	runner_post(b->c.t.runner, &b->warm_post);
	pthread_mutex_lock(&b->mu);
	while (b->state == WARM_PENDING || b->state == WARM_IDLE)
		pthread_cond_wait(&b->cv, &b->mu);
	st = b->state;
	pthread_mutex_unlock(&b->mu);
	return st == WARM_OK ? 0 : -1;
}

static int run_bake(struct call *c, sm_error **err)
{
	struct bake_call *b = container_of(c, struct bake_call, c);

	return (c->rc = sm_bake(c->s, b->name, &b->cfg, err)) < 0 ? -1 : 0;
}

static napi_value res_baked(napi_env env, struct call *c)
{
	napi_value v;

	napi_get_boolean(env, c->rc == 0, &v);
	return v;
}

static void bake_settled(napi_env env, struct task *t)
{
	struct bake_call *b = container_of(t, struct bake_call, c.t);

	if (b->warmup)
		napi_delete_reference(env, b->warmup);
	if (b->warm_handle)
		napi_delete_reference(env, b->warm_handle);
}

static void bake_cleanup(struct task *t)
{
	struct bake_call *b = container_of(t, struct bake_call, c.t);

	for (size_t i = 0; b->commands && b->commands[i]; i++)
		strv_free(b->commands[i]);
	free(b->commands);
	vm_cfg_free(b->vm);
	free(b->name);
	free(b->tag);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	sm_error_free(t->err);
	free(b->c.s);
	free(b);
}

/* snapshotOn: "ready", "listener", "listener:PORT", "after:MS", "heartbeat:N". */
static int bake_trigger(napi_env env, napi_value opts, struct bake_call *b)
{
	bool bad = false;
	char *s = opt_string(env, opts, "snapshotOn", &bad), *end = NULL;
	const char *colon;
	unsigned long v = 0;
	int rc = bad ? -1 : 0;

	if (!s)
		return rc;
	colon = strchr(s, ':');
	if (colon)
		v = strtoul(colon + 1, &end, 10);
	if (colon && (!*(colon + 1) || *end || v > UINT32_MAX))
		rc = -1;
	else if (!strncmp(s, "ready", 5) && !colon)
		b->cfg.trigger = SM_BAKE_READY;
	else if (!strncmp(s, "listener", colon ? (size_t)(colon - s) : strlen(s)) && strlen(s) >= 8)
		b->cfg.trigger = SM_BAKE_LISTENER;
	else if (colon && !strncmp(s, "after:", 6))
		b->cfg.trigger = SM_BAKE_AFTER_MS;
	else if (colon && !strncmp(s, "heartbeat:", 10))
		b->cfg.trigger = SM_BAKE_HEARTBEAT;
	else
		rc = -1;
	b->cfg.trigger_value = (uint32_t)v;
	if (rc < 0)
		throw_code(env, SM_E_INVALID,
			   "snapshotOn must be 'ready', 'listener[:PORT]', 'after:MS' or 'heartbeat:N', not '%s'", s);
	free(s);
	return rc;
}

static int bake_commands(napi_env env, napi_value opts, struct bake_call *b)
{
	napi_value list, e;
	uint32_t n = 0;

	if (!opt_get(env, opts, "warmupCommands", &list))
		return 0;
	if (napi_get_array_length(env, list, &n) != napi_ok || !(b->commands = calloc(n + 1, sizeof(*b->commands))))
		return throw_code(env, SM_E_INVALID, "warmupCommands must be an array of argv arrays"), -1;
	for (uint32_t i = 0; i < n; i++) {
		napi_get_element(env, list, i, &e);
		if (!(b->commands[i] = arg_strv(env, e, "warmupCommands")))
			return -1;
	}
	b->cfg.warmup = (const char *const *const *)b->commands;
	return 0;
}

static int bake_options(napi_env env, napi_value opts, struct bake_call *b)
{
	bool bad = false;
	napi_value vm;

	b->name = opt_string(env, opts, "name", &bad);
	b->tag = opt_string(env, opts, "warmupTag", &bad);
	if (bad)
		return -1;
	if (!b->name)
		return throw_code(env, SM_E_INVALID, "bake: no name (the snapshot's name or directory)"), -1;
	b->cfg.warmup_tag = b->tag;
	if (!opt_get(env, opts, "vm", &vm))
		vm = opts; /* memoryMib, vcpus, ... may sit beside the bake's own options */
	if (!(b->vm = vm_cfg_from(env, vm)))
		return -1;
	b->cfg.vm = &b->vm->c;
	if (opt_u32(env, opts, "triggerTimeoutMs", &b->cfg.trigger_timeout_ms) < 0 ||
	    opt_u32(env, opts, "settleMs", &b->cfg.settle_ms) < 0 ||
	    opt_u32(env, opts, "balloonTargetMib", &b->cfg.balloon_target_mib) < 0 ||
	    opt_bool(env, opts, "force", &b->cfg.force) < 0)
		return -1;
	return bake_trigger(env, opts, b) < 0 || bake_commands(env, opts, b) < 0 ? -1 : 0;
}

/* bake(image, opts, warmupWrapper|undefined) -> Promise<boolean: baked now (false: cached)> */
static napi_value js_bake(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	struct bake_call *b;

	if (arg_count(env, info, 3, argv, NULL) < 0 || !(b = calloc(1, sizeof(*b))))
		return NULL;
	call_init(&b->c, run_bake, res_baked);
	b->c.t.cleanup = bake_cleanup;
	b->c.t.settled = bake_settled;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cv, NULL);
	b->cfg = (sm_bake_config)SM_BAKE_CONFIG_INIT;
	if (!(b->c.s = arg_string(env, argv[0], "the image")) || bake_options(env, argv[1], b) < 0) {
		bake_cleanup(&b->c.t);
		return NULL;
	}
	if (!is_nullish(env, argv[2])) {
		napi_create_reference(env, argv[2], 1, &b->warmup);
		b->cfg.warmup_fn = warmup_fn;
		b->cfg.warmup_opaque = b;
	}
	return task_start(env, &b->c.t);
}

void define_store(napi_env env, napi_value exports)
{
	export_fn(env, exports, "pull", js_pull);
	export_fn(env, exports, "images", js_images);
	export_fn(env, exports, "snapshots", js_snapshots);
	export_fn(env, exports, "bake", js_bake);
}
