/* oci_pull: resolve a source to one image manifest, fetch or import its
 * blobs, build its rootfs, then record its name. */
#include "oci/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Reports the start of a phase; -1 (err set) when the callback cancels. */
static int progress_phase(const struct oci_pull_opts *o, const char *phase, sm_error **err)
{
	struct oci_progress p = { .phase = phase };

	if (o->progress && o->progress(&p, o->progress_arg))
		return sm_error_set(err, SM_E_CANCELED, 0, "canceled while %s", phase), -1;
	return 0;
}

static bool config_type_ok(const char *mt)
{
	return !strcmp(mt, MT_OCI_CONFIG) || !strcmp(mt, MT_DOCKER_CONFIG);
}

/* Checks what the manifest declares before anything big is fetched. */
static int manifest_check_types(const struct oci_manifest *m, sm_error **err)
{
	if (!config_type_ok(m->config.media_type)) {
		sm_error_set(err, SM_E_UNSUPPORTED, 0,
			     "not a container image: config media type is '%.100s'",
			     m->config.media_type);
		return -1;
	}
	if (m->config.size > (int64_t)OCI_CONFIG_MAX) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config of %jd bytes is too large",
			     (intmax_t)m->config.size);
		return -1;
	}
	for (size_t i = 0; i < m->n_layers; i++)
		if (!oci_layer_type_ok(m->layers[i].media_type)) {
			sm_error_set(err, SM_E_UNSUPPORTED, 0,
				     "layer %zu (%s) has unsupported media type '%.100s'", i + 1,
				     m->layers[i].digest, m->layers[i].media_type);
			return -1;
		}
	return 0;
}

static bool platform_field_ok(const char *have, const char *want)
{
	return !have || !*have || !strcmp(have, want);
}

int pull_check_image(struct oci_store *st, const struct oci_manifest *m,
		     const struct oci_platform *plat, struct store_record *rec, sm_error **err)
{
	struct oci_image_config c;
	char **diff_ids = NULL, *buf = NULL;
	size_t len;
	int rc = -1;

	if (manifest_check_types(m, err) < 0)
		return -1;
	if (store_blob_read(st, m->config.digest, OCI_CONFIG_MAX, &buf, &len, err) < 0)
		return -1;
	if (oci_config_parse(buf, len, &c, &diff_ids, err) < 0)
		goto out;
	if (strv_len(diff_ids) != m->n_layers) {
		sm_error_set(err, SM_E_IMAGE, 0,
			     "image config lists %zu layer diff_ids but the manifest has %zu layers",
			     strv_len(diff_ids), m->n_layers);
		goto out_cfg;
	}
	if (!platform_field_ok(c.os, plat->os) || !platform_field_ok(c.architecture, plat->arch)) {
		sm_error_set(err, SM_E_IMAGE, 0,
			     "image is for %s/%s, not %s/%s (choose with --platform)",
			     c.os ? c.os : "?", c.architecture ? c.architecture : "?", plat->os,
			     plat->arch);
		goto out_cfg;
	}
	strcpy(rec->config, m->config.digest);
	rc = 0;
out_cfg:
	oci_config_clear(&c);
out:
	strv_free(diff_ids);
	free(buf);
	return rc;
}

static int fetch_manifest(struct registry *r, struct oci_store *st, const char *reference,
			  struct oci_manifest *m, char digest[OCI_DIGEST_SIZE], sm_error **err)
{
	char *body = NULL, *ct = NULL;
	char stored[OCI_DIGEST_SIZE];
	size_t len;
	int rc = registry_get_manifest(r, reference, &body, &len, &ct, digest, err);

	if (rc == 0)
		rc = oci_manifest_parse(body, len, ct, "manifest", m, err);
	if (rc == 0) {
		rc = store_blob_write(st, body, len, stored, err);
		if (rc < 0)
			oci_manifest_free(m);
	}
	free(body);
	free(ct);
	return rc < 0 ? -1 : 0;
}

/* Fetches a manifest by reference; follows an index to the platform's
 * manifest. Stores every manifest it uses. */
static int pull_resolve(struct registry *r, struct oci_store *st, const char *reference,
			const struct oci_platform *plat, struct oci_manifest *m,
			struct store_record *rec, sm_error **err)
{
	char digest[OCI_DIGEST_SIZE], next[OCI_DIGEST_SIZE];
	const struct oci_desc *d;

	if (fetch_manifest(r, st, reference, m, digest, err) < 0)
		return -1;
	if (m->kind == MANIFEST_INDEX) {
		strcpy(rec->index, digest);
		d = oci_index_select(m, plat, err);
		if (d)
			strcpy(next, d->digest);
		oci_manifest_free(m);
		if (!d || fetch_manifest(r, st, next, m, digest, err) < 0)
			return -1;
		if (m->kind != MANIFEST_IMAGE) {
			sm_error_set(err, SM_E_IMAGE, 0, "index entry %s is not an image manifest",
				     digest);
			oci_manifest_free(m);
			return -1;
		}
	}
	strcpy(rec->manifest, digest);
	return 0;
}

static int pull_registry(struct oci_store *st, const struct oci_source *src,
			 const struct oci_pull_opts *o, const struct oci_platform *plat,
			 struct store_record *rec, sm_error **err)
{
	struct registry *r = NULL;
	struct oci_manifest m = { 0 };
	const char *reference = src->ref.digest ? src->ref.digest : src->ref.tag;
	int rc = -1;

	if (registry_open(&src->ref, o, &r, err) < 0)
		return -1;
	if (pull_resolve(r, st, reference, plat, &m, rec, err) < 0)
		goto out;
	if (manifest_check_types(&m, err) < 0)
		goto out;
	if (progress_phase(o, "downloading", err) < 0 ||
	    registry_fetch_blobs(r, st, &m.config, 1, err) < 0 ||
	    pull_check_image(st, &m, plat, rec, err) < 0 ||
	    registry_fetch_blobs(r, st, m.layers, m.n_layers, err) < 0)
		goto out;
	rc = 0;
out:
	oci_manifest_free(&m);
	registry_close(r);
	return rc;
}

int oci_pull(struct oci_store *st, const char *source, const struct oci_pull_opts *opts,
	     struct oci_image **out, sm_error **err)
{
	static const struct oci_pull_opts defaults;
	const struct oci_pull_opts *o = opts ? opts : &defaults;
	struct oci_platform plat;
	struct oci_source src;
	struct store_record rec = { 0 };
	char *name = NULL, *rootfs = NULL;
	int lock = -1, rc = -1;

	if (oci_platform_parse(o->platform ? o->platform : "linux/amd64", &plat, err) < 0)
		return -1;
	if (oci_source_parse(source, &src, err) < 0)
		return -1;
	name = oci_source_name(&src);
	if (!name) {
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "pull");
		goto out;
	}
	lock = store_pull_lock(st, err);
	if (lock < 0)
		goto out;
	snprintf(rec.platform, sizeof(rec.platform), "%s/%s%s%s", plat.os, plat.arch,
		 plat.variant[0] ? "/" : "", plat.variant);
	if (progress_phase(o, "resolving", err) < 0)
		goto out;
	if (src.kind == SRC_REGISTRY)
		rc = pull_registry(st, &src, o, &plat, &rec, err);
	else
		rc = local_import(st, &src, &plat, &rec, err);
	if (rc < 0)
		goto out;
	rc = -1;
	if (!o->no_rootfs) {
		if (progress_phase(o, "building", err) < 0 ||
		    store_rootfs_ensure(st, rec.manifest, &rootfs, o->progress, o->progress_arg,
					err) < 0)
			goto out;
	}
	rec.pulled = (int64_t)time(NULL);
	if (store_index_put(st, name, &rec, err) < 0)
		goto out;
	if (out && store_image_load(st, name, &rec, out, err) < 0)
		goto out;
	/* stored: a cancel now comes too late to undo it */
	progress_phase(o, "done", NULL);
	rc = 0;
out:
	store_pull_unlock(lock);
	free(rootfs);
	free(name);
	oci_source_free(&src);
	return rc;
}
