/*
 * sm_oci_*: the OCI image store for embedders and the CLI (pull with
 * progress, list, inspect, remove), over src/oci. Each call opens the
 * default store ($SUPERMACHINE_HOME, ...) for its own duration, as
 * sm_vm_start() does, so there is no store handle to share or free.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "base/error.h"
#include "lib/snapshot.h"
#include "oci/oci.h"

struct sm_oci_image {
	struct oci_image *img;
};

struct sm_oci_image_list {
	struct oci_image **raw;
	struct sm_oci_image *v; /* one per raw entry, pointing at it */
	size_t n;
};

/* ---- pull ---- */

struct pull_relay {
	const sm_pull_config *cfg;
};

static sm_pull_phase pull_phase(const char *phase)
{
	if (!strcmp(phase, "resolving"))
		return SM_PULL_RESOLVING;
	if (!strcmp(phase, "downloading"))
		return SM_PULL_DOWNLOADING;
	return !strcmp(phase, "building") ? SM_PULL_BUILDING : SM_PULL_DONE;
}

/* The oci layer's report in the public shape. */
static int pull_progress(const struct oci_progress *p, void *arg)
{
	const struct pull_relay *r = arg;
	sm_pull_progress out = {
		.phase = pull_phase(p->phase),
		.digest = p->digest,
		.state = (sm_pull_blob_state)p->state,
		.done = p->blob_done,
		.total = p->blob_total,
		.bytes_done = p->bytes_done,
		.bytes_total = p->bytes_total,
		.blobs_done = p->layers_done,
		.blobs_total = p->layers_total,
	};

	return r->cfg->progress(&out, r->cfg->progress_opaque);
}

static sm_oci_image *image_wrap(struct oci_image *img, sm_error **err)
{
	struct sm_oci_image *w = malloc(sizeof(*w));

	if (!w) {
		oci_image_free(img);
		return sm_error_set(err, SM_E_NOMEM, 0, "image"), NULL;
	}
	w->img = img;
	return w;
}

sm_oci_image *sm_oci_pull(const char *source, const sm_pull_config *cfg, sm_error **err)
{
	sm_pull_config c;
	struct pull_relay relay = { &c };
	struct oci_pull_opts o = { 0 };
	struct oci_store *st = NULL;
	struct oci_image *img = NULL;
	int rc;

	if (!source || !*source)
		return sm_error_set(err, SM_E_INVALID, 0, "pull: no image given"), NULL;
	if (pull_config_copy(&c, cfg, err) < 0)
		return NULL;
	o.platform = c.platform;
	o.plain_http = c.plain_http;
	o.insecure = c.insecure;
	o.no_rootfs = c.no_rootfs;
	if (c.progress) {
		o.progress = pull_progress;
		o.progress_arg = &relay;
	}
	rc = oci_store_open(NULL, &st, err) < 0 ? -1 : oci_pull(st, source, &o, &img, err);
	oci_store_close(st);
	return rc < 0 ? NULL : image_wrap(img, err);
}

/* ---- one image ---- */

sm_oci_image *sm_oci_image_get(const char *name, sm_error **err)
{
	struct oci_store *st = NULL;
	struct oci_image *img = NULL;
	int rc;

	if (!name || !*name)
		return sm_error_set(err, SM_E_INVALID, 0, "no image given"), NULL;
	rc = oci_store_open(NULL, &st, err) < 0 ? -1 : oci_image_resolve(st, name, &img, err);
	oci_store_close(st);
	return rc < 0 ? NULL : image_wrap(img, err);
}

int sm_oci_image_remove(const char *name, uint64_t *freed, sm_error **err)
{
	struct oci_store *st = NULL;
	uint64_t f = 0;
	int rc;

	if (!name || !*name)
		return sm_error_set(err, SM_E_INVALID, 0, "no image given"), -1;
	rc = oci_store_open(NULL, &st, err) < 0 ? -1 : oci_image_remove(st, name, &f, err);
	oci_store_close(st);
	if (freed)
		*freed = rc < 0 ? 0 : f;
	return rc < 0 ? -1 : 0;
}

void sm_oci_image_free(sm_oci_image *img)
{
	if (!img)
		return;
	oci_image_free(img->img);
	free(img);
}

/* ---- the list ---- */

sm_oci_image_list *sm_oci_image_list_load(sm_error **err)
{
	struct sm_oci_image_list *l = calloc(1, sizeof(*l));
	struct oci_store *st = NULL;
	int rc;

	if (!l)
		return sm_error_set(err, SM_E_NOMEM, 0, "image list"), NULL;
	rc = oci_store_open(NULL, &st, err) < 0 ? -1 : oci_image_list(st, &l->raw, &l->n, err);
	oci_store_close(st);
	if (rc == 0 && l->n && !(l->v = calloc(l->n, sizeof(*l->v)))) {
		sm_error_set(err, SM_E_NOMEM, 0, "image list");
		rc = -1;
	}
	if (rc < 0) {
		sm_oci_image_list_free(l);
		return NULL;
	}
	for (size_t i = 0; i < l->n; i++)
		l->v[i].img = l->raw[i];
	return l;
}

size_t sm_oci_image_list_count(const sm_oci_image_list *l)
{
	return l ? l->n : 0;
}

const sm_oci_image *sm_oci_image_list_at(const sm_oci_image_list *l, size_t i)
{
	return l && i < l->n ? &l->v[i] : NULL;
}

void sm_oci_image_list_free(sm_oci_image_list *l)
{
	if (!l)
		return;
	oci_image_list_free(l->raw, l->n);
	free(l->v);
	free(l);
}

/* ---- JSON, as the CLI prints it ---- */

static char *json_text(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

	json_decref(j);
	return s;
}

/* One entry of `images --json`. */
static json_t *list_entry_json(const struct oci_image *img)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:s?, s:I, s:s?, s:I}", "name", img->name, "manifest_digest",
			 img->manifest_digest, "config_digest", img->config_digest, "size", (json_int_t)img->size,
			 "rootfs", img->rootfs_path, "rootfs_size", (json_int_t)img->rootfs_size, "created",
			 img->config.created, "pulled", (json_int_t)img->pulled);
}

char *sm_oci_image_list_json(const sm_oci_image_list *l)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && l && i < l->n; i++)
		if (json_array_append_new(arr, list_entry_json(l->raw[i])) < 0) {
			json_decref(arr);
			return NULL;
		}
	return json_text(arr);
}

#define STRV(v) ((const char *const *)(v))

char *sm_oci_image_json(const sm_oci_image *w)
{
	const struct oci_image *img = w->img;
	const struct oci_image_config *c = &img->config;
	json_t *cfg = json_pack("{s:o, s:o, s:o, s:s?, s:s?, s:o, s:s?}", "Entrypoint", snapmeta_strv(STRV(c->entrypoint)),
				"Cmd", snapmeta_strv(STRV(c->cmd)), "Env", snapmeta_strv(STRV(c->env)), "WorkingDir",
				c->working_dir, "User", c->user, "ExposedPorts", snapmeta_strv(STRV(c->exposed_ports)),
				"StopSignal", c->stop_signal);

	return json_text(json_pack("{s:s, s:s, s:s, s:s?, s:I, s:I, s:I, s:s?, s:s?, s:s?, s:o}", "name", img->name,
				   "manifest_digest", img->manifest_digest, "config_digest", img->config_digest,
				   "rootfs", img->rootfs_path, "rootfs_size", (json_int_t)img->rootfs_size, "size",
				   (json_int_t)img->size, "pulled", (json_int_t)img->pulled, "created", c->created, "os",
				   c->os, "architecture", c->architecture, "config", cfg));
}

/* ---- accessors ---- */

const char *sm_oci_image_name(const sm_oci_image *w) { return w->img->name; }
const char *sm_oci_image_manifest_digest(const sm_oci_image *w) { return w->img->manifest_digest; }
const char *sm_oci_image_config_digest(const sm_oci_image *w) { return w->img->config_digest; }
const char *sm_oci_image_rootfs(const sm_oci_image *w) { return w->img->rootfs_path; }
uint64_t sm_oci_image_size(const sm_oci_image *w) { return w->img->size; }
uint64_t sm_oci_image_rootfs_size(const sm_oci_image *w) { return w->img->rootfs_size; }
int64_t sm_oci_image_pulled(const sm_oci_image *w) { return w->img->pulled; }
const char *sm_oci_image_created(const sm_oci_image *w) { return w->img->config.created; }
const char *sm_oci_image_os(const sm_oci_image *w) { return w->img->config.os; }
const char *sm_oci_image_architecture(const sm_oci_image *w) { return w->img->config.architecture; }
const char *const *sm_oci_image_entrypoint(const sm_oci_image *w) { return STRV(w->img->config.entrypoint); }
const char *const *sm_oci_image_cmd(const sm_oci_image *w) { return STRV(w->img->config.cmd); }
const char *const *sm_oci_image_env(const sm_oci_image *w) { return STRV(w->img->config.env); }
const char *const *sm_oci_image_exposed_ports(const sm_oci_image *w) { return STRV(w->img->config.exposed_ports); }
const char *sm_oci_image_working_dir(const sm_oci_image *w) { return w->img->config.working_dir; }
const char *sm_oci_image_user(const sm_oci_image *w) { return w->img->config.user; }
const char *sm_oci_image_stop_signal(const sm_oci_image *w) { return w->img->config.stop_signal; }
