/*
 * sm_bake: image -> snapshot. Pull if needed, cold boot, wait for the
 * trigger (agent up, a delay, the workload's first listening socket, the
 * N-th heartbeat), run the warmup commands, quiesce, capture, stop.
 *
 * Everything that shapes the snapshot (image digest, VM settings,
 * trigger, warmup commands and tag) is recorded as metadata.json's
 * "bake" object; a bake finding an intact snapshot with the same object
 * (and still-matching kernel, initramfs and rootfs) reuses it.
 */
#include "lib/snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "base/error.h"
#include "lib/vm_mount.h"
#include "oci/oci.h"

#define BAKE_DEFAULT_TRIGGER_TIMEOUT_MS 120000u
#define BAKE_POLL_US 50000

struct bake {
	const sm_bake_config *cfg; /* &own */
	sm_bake_config own;        /* the caller's, at our size; own.vm is &vm */
	sm_vm_config vm;
	uint64_t t0;
	const char *step;
};

static void step_begin(struct bake *b, const char *step)
{
	b->step = step;
	b->t0 = agent_now_ns();
	if (b->cfg->progress)
		b->cfg->progress(step, false, 0, b->cfg->progress_opaque);
}

static void step_end(struct bake *b)
{
	if (b->cfg->progress)
		b->cfg->progress(b->step, true, (agent_now_ns() - b->t0) / 1000u, b->cfg->progress_opaque);
}

static const char *trigger_name(sm_bake_trigger t)
{
	switch (t) {
	case SM_BAKE_READY: return "ready";
	case SM_BAKE_LISTENER: return "listener";
	case SM_BAKE_AFTER_MS: return "after";
	case SM_BAKE_HEARTBEAT: return "heartbeat";
	}
	return NULL;
}

/* The image pulled into the store (pulled now if missing); NULL for an ext4 file. */
static int bake_image(const char *image, struct oci_image **img, sm_error **err)
{
	struct oci_store *st = NULL;
	struct stat sb;
	int rc;

	*img = NULL;
	if (stat(image, &sb) == 0 && S_ISREG(sb.st_mode))
		return 0;
	if (oci_store_open(NULL, &st, err) < 0)
		return -1;
	rc = oci_image_resolve(st, image, img, NULL);
	if (rc < 0)
		rc = oci_pull(st, image, NULL, img, err);
	oci_store_close(st);
	return rc < 0 ? -1 : 0;
}

static json_t *bake_mounts(const sm_vm_config *v)
{
	struct vm_mounts ms;
	json_t *a;

	if (vm_mounts_plan(v, &ms, NULL) < 0)
		return json_null(); /* the boot will say what is wrong */
	a = vm_mounts_json(&ms, false);
	vm_mounts_free(&ms);
	return a ? a : json_null();
}

/* Everything that shapes the snapshot: equal keys, equal bakes. */
static json_t *bake_key(const char *image, const struct oci_image *img, const sm_bake_config *c)
{
	const sm_vm_config *v = c->vm;
	json_t *warm = json_array();

	json_t *vols = json_array();

	for (size_t i = 0; warm && c->warmup && c->warmup[i]; i++)
		json_array_append_new(warm, snapmeta_strv(c->warmup[i]));
	/* which guest paths have volumes (their contents are never part of a snapshot) */
	for (size_t i = 0; vols && i < v->nvolumes; i++)
		json_array_append_new(vols, json_pack("{s:s?, s:b}", "guest_path", v->volumes[i].guest_path, "read_only",
						      v->volumes[i].read_only));
	json_t *key = json_pack("{s:s, s:s, s:I, s:I, s:i, s:b, s:o, s:o, s:b, s:s?, s:s?, s:s, s:I, s:o, s:s, s:I, s:o, s:I, s:b}",
			 "image", image, "image_digest", img ? img->manifest_digest : "", "memory_mib",
			 (json_int_t)(v->memory_mib ? v->memory_mib : VM_DEFAULT_MEMORY_MIB), "vcpus",
			 (json_int_t)v->vcpus, "profile", (int)v->profile, "network", v->network, "env",
			 snapmeta_strv(v->env), "workload", snapmeta_strv(v->workload), "image_workload", !v->workload,
			 "workdir", v->workdir, "user", v->user, "trigger", trigger_name(c->trigger), "trigger_value",
			 (json_int_t)c->trigger_value, "warmup", warm ? warm : json_null(), "warmup_tag",
			 c->warmup_tag ? c->warmup_tag : "", "settle_ms", (json_int_t)c->settle_ms, "volumes",
			 vols ? vols : json_null(), "balloon_target_mib", (json_int_t)c->balloon_target_mib,
			 "warmup_fn", c->warmup_fn != NULL);
	/* where each share is and how (its files are never part of a snapshot, nor its host directory) */
	if (key && v->nmounts)
		json_object_set_new(key, "mounts", bake_mounts(v));
	return key;
}

/* 1: the snapshot at dir was baked with key and is intact. */
static int bake_cached(const char *dir, const json_t *key, const sm_assets *assets)
{
	struct vm_asset_paths paths;
	struct snap_meta m;
	int hit;

	if (vm_assets_find(assets, &paths, NULL) < 0 || snapshot_check(dir, &paths, &m, NULL) < 0)
		return 0;
	hit = m.bake && json_equal(m.bake, (json_t *)key);
	snapmeta_release(&m);
	return hit;
}

static int wait_listener(struct sm_vm *vm, uint16_t port, bool *found, sm_error **err)
{
	uint16_t got = 0;

	if (agent_probe_listen(&vm->target, port, found, &got, err) < 0)
		return -1;
	return 0;
}

static int wait_heartbeat(struct sm_vm *vm, uint32_t n, bool *found, sm_error **err)
{
	uint64_t count = 0;

	if (agent_heartbeat(&vm->target, &count, err) < 0)
		return -1;
	*found = count >= n;
	return 0;
}

static int bake_trigger(struct sm_vm *vm, const sm_bake_config *c, sm_error **err)
{
	uint32_t timeout = c->trigger_timeout_ms ? c->trigger_timeout_ms : BAKE_DEFAULT_TRIGGER_TIMEOUT_MS;
	uint64_t start = agent_now_ns(), deadline = start + (uint64_t)timeout * 1000000u;

	if (c->trigger == SM_BAKE_READY)
		return 0;
	if (c->trigger == SM_BAKE_AFTER_MS)
		deadline = start + (uint64_t)c->trigger_value * 1000000u;
	for (;;) {
		bool found = false;
		if (vm_check(vm, "waiting for the snapshot trigger", err) < 0)
			return -1;
		if (c->trigger == SM_BAKE_AFTER_MS && agent_now_ns() >= deadline)
			return 0;
		if (c->trigger == SM_BAKE_LISTENER &&
		    wait_listener(vm, (uint16_t)c->trigger_value, &found, err) < 0)
			return -1;
		if (c->trigger == SM_BAKE_HEARTBEAT && wait_heartbeat(vm, c->trigger_value, &found, err) < 0)
			return -1;
		if (found)
			return 0;
		if (c->trigger != SM_BAKE_AFTER_MS && agent_now_ns() >= deadline)
			return sm_error_set(err, SM_E_TIMEOUT, 0,
					    "the %s trigger did not fire within %u ms (console: %s)",
					    trigger_name(c->trigger), timeout, vm->console), -1;
		usleep(BAKE_POLL_US);
	}
}

static void argv_string(const char *const *argv, char *out, size_t len)
{
	size_t n = 0;

	out[0] = 0;
	for (; argv && *argv && n + 1 < len; argv++)
		n += (size_t)snprintf(out + n, len - n, "%s%s", n ? " " : "", *argv);
}

static int bake_warmup_one(struct bake *b, struct sm_vm *vm, const char *const *argv, sm_error **err)
{
	char what[512], line[600];
	sm_exec *x = sm_exec_new(vm);
	sm_outcome o = { 0 };
	int rc = -1;

	argv_string(argv, what, sizeof(what));
	snprintf(line, sizeof(line), "warmup: %s", what);
	step_begin(b, line);
	if (!x)
		return sm_error_set(err, SM_E_NOMEM, 0, "warmup"), -1;
	if (sm_exec_argv(x, argv) < 0 || sm_exec_output(x, &o, err) < 0) {
		sm_error_wrap(err, "warmup '%s'", what);
		goto out;
	}
	if (o.status != 0) {
		sm_error_set(err, SM_E_INVALID, 0, "warmup '%s' exited with %s %d%s%.*s", what,
			     o.signal ? "signal" : "status", o.signal ? o.signal : o.status, o.stderr_len ? ": " : "",
			     (int)(o.stderr_len > 400 ? 400 : o.stderr_len), o.stderr_data ? o.stderr_data : "");
		goto out;
	}
	step_end(b);
	rc = 0;
out:
	sm_outcome_free(&o);
	sm_exec_free(x);
	return rc;
}

static int bake_run(struct bake *b, struct sm_vm *vm, const char *dir, json_t *key, sm_error **err)
{
	const sm_bake_config *c = b->cfg;
	char step[64];
	struct snapshot_extra extra = { .bake = key, .warmup_tag = c->warmup_tag,
					.balloon_target_pages = c->balloon_target_mib << 8 };

	snprintf(step, sizeof(step), "wait for %s%s", trigger_name(c->trigger),
		 c->trigger == SM_BAKE_READY ? " (agent up)" : "");
	step_begin(b, step);
	if (bake_trigger(vm, c, err) < 0)
		return -1;
	step_end(b);
	for (size_t i = 0; c->warmup && c->warmup[i]; i++)
		if (bake_warmup_one(b, vm, c->warmup[i], err) < 0)
			return -1;
	if (c->warmup_fn) {
		step_begin(b, "warmup callback");
		if (c->warmup_fn(vm, c->warmup_opaque, err) < 0) {
			if (err && !*err)
				sm_error_set(err, SM_E_INVALID, 0, "the warmup callback failed");
			return sm_error_wrap(err, "warmup callback"), -1;
		}
		step_end(b);
	}
	step_begin(b, "quiesce");
	if (agent_quiesce(&vm->target, c->settle_ms, err) < 0)
		return -1;
	step_end(b);
	step_begin(b, "capture");
	if (snapshot_capture(vm, dir, &extra, true, err) < 0)
		return -1;
	step_end(b);
	return 0;
}

static int bake_check(const sm_bake_config *c, sm_error **err)
{
	if (!trigger_name(c->trigger))
		return sm_error_set(err, SM_E_INVALID, 0, "unknown trigger %d", (int)c->trigger), -1;
	if (c->trigger == SM_BAKE_LISTENER && c->trigger_value > 65535)
		return sm_error_set(err, SM_E_INVALID, 0, "listener port %u", c->trigger_value), -1;
	if (c->trigger == SM_BAKE_HEARTBEAT && c->trigger_value == 0)
		return sm_error_set(err, SM_E_INVALID, 0, "heartbeat trigger: N must be at least 1"), -1;
	if (c->settle_ms > PROTO_MAX_SETTLE_MS)
		return sm_error_set(err, SM_E_INVALID, 0, "settle %u ms is over %u", c->settle_ms,
				    PROTO_MAX_SETTLE_MS), -1;
	if (c->vm->detached)
		return sm_error_set(err, SM_E_INVALID, 0, "a bake VM cannot be detached"), -1;
	uint32_t mem = c->vm->memory_mib ? c->vm->memory_mib : VM_DEFAULT_MEMORY_MIB;
	if (c->balloon_target_mib >= mem)
		return sm_error_set(err, SM_E_INVALID, 0, "balloon target %u MiB is not less than the VM's %u MiB",
				    c->balloon_target_mib, mem), -1;
	return 0;
}

static int bake_boot_and_capture(struct bake *b, const char *image, const char *dir, json_t *key,
				 sm_error **err)
{
	sm_vm_config vc = *b->cfg->vm;
	struct sm_vm *vm;
	int rc;

	if (!vc.workload)
		vc.image_workload = true;
	vc.power_off_on_exit = false;
	step_begin(b, "boot");
	vm = vm_boot(image, &vc, err);
	if (!vm)
		return -1;
	step_end(b);
	rc = bake_run(b, vm, dir, key, err);
	step_begin(b, "stop");
	sm_vm_stop(vm, 0, NULL);
	sm_vm_free(vm);
	step_end(b);
	return rc;
}

int sm_bake(const char *image, const char *name_or_dir, const sm_bake_config *cfg, sm_error **err)
{
	struct bake b = { .cfg = &b.own };
	struct oci_image *img = NULL;
	json_t *key = NULL;
	char dir[4096];
	int rc = -1;

	if (!image || !*image) {
		sm_error_set(err, SM_E_INVALID, 0, "no image given");
		goto out;
	}
	if (bake_config_copy(&b.own, cfg, err) < 0 || vm_config_copy(&b.vm, b.own.vm, err) < 0)
		goto out;
	b.own.vm = &b.vm;
	if (bake_check(b.cfg, err) < 0 || snapshot_resolve(name_or_dir, dir, sizeof(dir), err) < 0)
		goto out;
	step_begin(&b, "resolve image");
	if (bake_image(image, &img, err) < 0)
		goto out;
	step_end(&b);
	key = bake_key(image, img, b.cfg);
	if (!key) {
		sm_error_set(err, SM_E_NOMEM, 0, "bake key");
		goto out;
	}
	if (!b.cfg->force && bake_cached(dir, key, b.vm.assets)) {
		rc = 1;
		goto out;
	}
	rc = bake_boot_and_capture(&b, img ? img->name : image, dir, key, err);
out:
	if (rc < 0)
		sm_error_wrap(err, "bake %s into %s", image ? image : "", name_or_dir ? name_or_dir : "");
	json_decref(key);
	oci_image_free(img);
	return rc;
}
