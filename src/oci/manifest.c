/*
 * OCI index / OCI manifest / Docker manifest list / Docker v2 manifest, and
 * the image config. Everything here comes from a registry or a file, so every
 * field is checked for type and shape before use.
 */
#include "oci/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool field_ok(const char *s) { return s && strlen(s) < 32 && !strchr(s, '/'); }

int oci_platform_parse(const char *s, struct oci_platform *out, sm_error **err)
{
	char buf[100];
	char *os, *arch, *variant, *save = NULL;

	memset(out, 0, sizeof(*out));
	if (!s || strlen(s) >= sizeof(buf))
		goto bad;
	strcpy(buf, s);
	os = strtok_r(buf, "/", &save);
	arch = strtok_r(NULL, "/", &save);
	variant = strtok_r(NULL, "/", &save);
	if (!os || !arch || strtok_r(NULL, "/", &save) || !field_ok(os) || !field_ok(arch) ||
	    (variant && !field_ok(variant)))
		goto bad;
	strcpy(out->os, os);
	strcpy(out->arch, arch);
	if (variant)
		strcpy(out->variant, variant);
	return 0;
bad:
	sm_error_set(err, SM_E_INVALID, 0, "invalid platform '%s' (expected OS/ARCH[/VARIANT])",
		     s ? s : "");
	return -EINVAL;
}

static const char *json_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Strings with embedded NULs would be silently truncated by C code. */
static bool json_clean_string(json_t *v)
{
	return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int desc_parse(json_t *j, const char *what, size_t i, struct oci_desc *d, sm_error **err)
{
	json_t *size = json_object_get(j, "size");
	json_t *plat = json_object_get(j, "platform");
	const char *mt = json_str(j, "mediaType");
	const char *dg = json_str(j, "digest");
	json_t *ann = json_object_get(j, "annotations");

	if (!json_is_object(j) || !mt || !json_clean_string(json_object_get(j, "mediaType")) ||
	    strlen(mt) > 255) {
		sm_error_set(err, SM_E_REGISTRY, 0, "%s: descriptor %zu: missing or bad mediaType",
			     what, i);
		return -EINVAL;
	}
	if (!dg || !digest_valid(dg)) {
		sm_error_set(err, SM_E_REGISTRY, 0, "%s: descriptor %zu: %s digest '%.80s'", what,
			     i, dg && !strncmp(dg, "sha256:", 7) ? "bad" : "unsupported",
			     dg ? dg : "(none)");
		return -EINVAL;
	}
	if (!json_is_integer(size) || json_integer_value(size) < 0) {
		sm_error_set(err, SM_E_REGISTRY, 0, "%s: descriptor %zu: missing or negative size",
			     what, i);
		return -EINVAL;
	}
	d->media_type = strdup(mt);
	if (!d->media_type)
		return -ENOMEM;
	strcpy(d->digest, dg);
	d->size = json_integer_value(size);
	if (json_is_object(plat)) {
		const char *os = json_str(plat, "os"), *arch = json_str(plat, "architecture");
		const char *var = json_str(plat, "variant");
		if (os && arch && field_ok(os) && field_ok(arch) && (!var || field_ok(var))) {
			strcpy(d->platform.os, os);
			strcpy(d->platform.arch, arch);
			if (var)
				strcpy(d->platform.variant, var);
			d->has_platform = true;
		}
	}
	if (json_is_object(ann)) {
		json_t *rn = json_object_get(ann, "org.opencontainers.image.ref.name");
		if (json_clean_string(rn)) {
			d->ref_name = strdup(json_string_value(rn));
			if (!d->ref_name)
				return -ENOMEM;
		}
	}
	return 0;
}

static void desc_free(struct oci_desc *d)
{
	free(d->media_type);
	free(d->ref_name);
}

static int desc_array_parse(json_t *arr, const char *what, size_t max, struct oci_desc **out,
			    size_t *n, sm_error **err)
{
	size_t count = json_array_size(arr);
	struct oci_desc *ds;

	if (count > max) {
		sm_error_set(err, SM_E_IMAGE, 0, "%s: %zu entries, more than the %zu allowed", what,
			     count, max);
		return -E2BIG;
	}
	ds = calloc(count ? count : 1, sizeof(*ds));
	if (!ds)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++) {
		int rc = desc_parse(json_array_get(arr, i), what, i, &ds[i], err);
		if (rc < 0) {
			for (size_t k = 0; k <= i; k++)
				desc_free(&ds[k]);
			free(ds);
			return rc;
		}
	}
	*out = ds;
	*n = count;
	return 0;
}

static const char *manifest_type_of(json_t *root, const char *content_type)
{
	const char *mt = json_str(root, "mediaType");

	if (mt)
		return mt;
	if (content_type && *content_type && strncmp(content_type, "application/json", 16) &&
	    strncmp(content_type, "text/plain", 10))
		return content_type;
	/* The OCI spec lets mediaType be absent: tell by shape. */
	if (json_is_array(json_object_get(root, "manifests")))
		return MT_OCI_INDEX;
	if (json_is_array(json_object_get(root, "layers")))
		return MT_OCI_MANIFEST;
	return "(unknown)";
}

int oci_manifest_parse(const void *buf, size_t len, const char *content_type, const char *what,
		       struct oci_manifest *out, sm_error **err)
{
	json_error_t jerr;
	json_t *root;
	const char *mt;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		sm_error_set(err, SM_E_REGISTRY, 0, "%s is not valid JSON (line %d: %s)", what,
			     jerr.line, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		sm_error_set(err, SM_E_REGISTRY, 0, "%s is not a JSON object", what);
		goto out;
	}
	mt = manifest_type_of(root, content_type);
	out->media_type = strdup(mt);
	if (!out->media_type) {
		rc = -ENOMEM;
		goto out;
	}
	if (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST)) {
		json_t *ms = json_object_get(root, "manifests");
		out->kind = MANIFEST_INDEX;
		if (!json_is_array(ms)) {
			sm_error_set(err, SM_E_REGISTRY, 0, "%s: index without a manifests list",
				     what);
			goto out;
		}
		rc = desc_array_parse(ms, what, 4096, &out->manifests, &out->n_manifests, err);
	} else if (!strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST)) {
		json_t *ls = json_object_get(root, "layers");
		json_t *sv = json_object_get(root, "schemaVersion");
		out->kind = MANIFEST_IMAGE;
		if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
			sm_error_set(err, SM_E_REGISTRY, 0, "%s: schemaVersion is not 2", what);
			goto out;
		}
		if (!json_is_array(ls)) {
			sm_error_set(err, SM_E_REGISTRY, 0, "%s: manifest without a layers list",
				     what);
			goto out;
		}
		rc = desc_parse(json_object_get(root, "config"), what, 0, &out->config, err);
		if (rc == 0)
			rc = desc_array_parse(ls, what, OCI_LAYERS_MAX, &out->layers,
					      &out->n_layers, err);
	} else if (!strcmp(mt, MT_DOCKER_SCHEMA1) ||
		   !strcmp(mt, "application/vnd.docker.distribution.manifest.v1+json")) {
		sm_error_set(err, SM_E_UNSUPPORTED, 0,
			     "%s uses Docker schema 1, which is deprecated and not supported", what);
		rc = -ENOTSUP;
	} else {
		sm_error_set(err, SM_E_UNSUPPORTED, 0, "%s has unsupported media type '%.100s'",
			     what, mt);
		rc = -ENOTSUP;
	}
out:
	if (rc == -ENOMEM)
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "parse %s", what);
	json_decref(root);
	if (rc < 0)
		oci_manifest_free(out);
	return rc;
}

void oci_manifest_free(struct oci_manifest *m)
{
	free(m->media_type);
	desc_free(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		desc_free(&m->layers[i]);
	free(m->layers);
	for (size_t i = 0; i < m->n_manifests; i++)
		desc_free(&m->manifests[i]);
	free(m->manifests);
	memset(m, 0, sizeof(*m));
}

static bool platform_match(const struct oci_desc *d, const struct oci_platform *want,
			   bool need_empty_variant)
{
	if (!d->has_platform || strcmp(d->platform.os, want->os) ||
	    strcmp(d->platform.arch, want->arch))
		return false;
	if (want->variant[0])
		return !strcmp(d->platform.variant, want->variant);
	return !need_empty_variant || !d->platform.variant[0];
}

static bool is_manifest_type(const char *mt)
{
	return !strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST);
}

const struct oci_desc *oci_index_select(const struct oci_manifest *idx,
					const struct oci_platform *want, sm_error **err)
{
	char offered[512] = "";
	size_t off = 0;

	/* Prefer an entry without a variant when none was asked for, the way
	 * docker picks linux/amd64 over linux/amd64/v3. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < idx->n_manifests; i++) {
			const struct oci_desc *d = &idx->manifests[i];
			if (is_manifest_type(d->media_type) && platform_match(d, want, pass == 0))
				return d;
		}
	for (size_t i = 0; i < idx->n_manifests && off < sizeof(offered) - 100; i++) {
		const struct oci_desc *d = &idx->manifests[i];
		if (!d->has_platform)
			continue;
		off += (size_t)snprintf(offered + off, sizeof(offered) - off, "%s%s/%s%s%s",
					off ? ", " : "", d->platform.os, d->platform.arch,
					d->platform.variant[0] ? "/" : "", d->platform.variant);
	}
	sm_error_set(err, SM_E_NOT_FOUND, 0, "no image for platform %s/%s%s%s (the index has: %s)",
		     want->os, want->arch, want->variant[0] ? "/" : "", want->variant,
		     off ? offered : "no platforms");
	return NULL;
}

bool oci_layer_type_ok(const char *mt)
{
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.diff.tar.zstd",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strcmp(mt, ok[i]))
			return true;
	return false;
}

/* ---- image config ---- */

#define CONFIG_STRV_MAX 65536
#define CONFIG_STR_MAX 65536

static int strv_from_json(json_t *arr, const char *field, char ***out, sm_error **err)
{
	size_t n = json_array_size(arr);
	char **v;

	if (json_is_null(arr) || !arr) {
		*out = NULL;
		return 0;
	}
	if (!json_is_array(arr) || n > CONFIG_STRV_MAX) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config: %s is not a list of strings", field);
		return -EINVAL;
	}
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(arr, i);
		if (!json_clean_string(s) || json_string_length(s) > CONFIG_STR_MAX) {
			strv_free(v);
			sm_error_set(err, SM_E_IMAGE, 0, "image config: %s[%zu] is not a string",
				     field, i);
			return -EINVAL;
		}
		v[i] = strdup(json_string_value(s));
		if (!v[i]) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	*out = v;
	return 0;
}

static int str_from_json(json_t *obj, const char *key, char **out, sm_error **err)
{
	json_t *s = json_object_get(obj, key);

	*out = NULL;
	if (!s || json_is_null(s))
		return 0;
	if (!json_clean_string(s) || json_string_length(s) > CONFIG_STR_MAX) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config: %s is not a string", key);
		return -EINVAL;
	}
	*out = strdup(json_string_value(s));
	return *out ? 0 : -ENOMEM;
}

static int ports_from_json(json_t *obj, char ***out, sm_error **err)
{
	size_t n = json_object_size(obj), i = 0;
	const char *key;
	json_t *val;
	char **v;

	*out = NULL;
	if (!obj || json_is_null(obj))
		return 0;
	if (!json_is_object(obj) || n > CONFIG_STRV_MAX) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config: ExposedPorts is not an object");
		return -EINVAL;
	}
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	json_object_foreach(obj, key, val) {
		v[i] = strdup(key);
		if (!v[i++]) {
			strv_free(v);
			return -ENOMEM;
		}
	}
	*out = v;
	return 0;
}

static int config_runtime_parse(json_t *c, struct oci_image_config *out, sm_error **err)
{
	int rc = 0;

	if (!c || json_is_null(c))
		return 0;
	if (!json_is_object(c)) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config: config is not an object");
		return -EINVAL;
	}
	if (!rc)
		rc = strv_from_json(json_object_get(c, "Entrypoint"), "Entrypoint", &out->entrypoint,
				    err);
	if (!rc)
		rc = strv_from_json(json_object_get(c, "Cmd"), "Cmd", &out->cmd, err);
	if (!rc)
		rc = strv_from_json(json_object_get(c, "Env"), "Env", &out->env, err);
	if (!rc)
		rc = str_from_json(c, "WorkingDir", &out->working_dir, err);
	if (!rc)
		rc = str_from_json(c, "User", &out->user, err);
	if (!rc)
		rc = str_from_json(c, "StopSignal", &out->stop_signal, err);
	if (!rc)
		rc = ports_from_json(json_object_get(c, "ExposedPorts"), &out->exposed_ports, err);
	return rc;
}

int oci_config_parse(const void *buf, size_t len, struct oci_image_config *out,
		     char ***diff_ids, sm_error **err)
{
	json_error_t jerr;
	json_t *root, *rootfs;
	int rc = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (diff_ids)
		*diff_ids = NULL;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config is not valid JSON (line %d: %s)",
			     jerr.line, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		sm_error_set(err, SM_E_IMAGE, 0, "image config is not a JSON object");
		goto out;
	}
	rc = config_runtime_parse(json_object_get(root, "config"), out, err);
	if (!rc)
		rc = str_from_json(root, "created", &out->created, err);
	if (!rc)
		rc = str_from_json(root, "os", &out->os, err);
	if (!rc)
		rc = str_from_json(root, "architecture", &out->architecture, err);
	if (!rc)
		rc = str_from_json(root, "variant", &out->variant, err);
	rootfs = json_object_get(root, "rootfs");
	if (!rc && diff_ids) {
		if (!json_is_object(rootfs) ||
		    strcmp(json_str(rootfs, "type") ? json_str(rootfs, "type") : "", "layers")) {
			sm_error_set(err, SM_E_IMAGE, 0, "image config: rootfs.type is not 'layers'");
			rc = -EINVAL;
			goto out;
		}
		rc = strv_from_json(json_object_get(rootfs, "diff_ids"), "rootfs.diff_ids",
				    diff_ids, err);
		for (size_t i = 0; !rc && *diff_ids && (*diff_ids)[i]; i++)
			if (!digest_valid((*diff_ids)[i])) {
				sm_error_set(err, SM_E_IMAGE, 0,
					     "image config: rootfs.diff_ids[%zu] '%.80s' is not a "
					     "sha256 digest",
					     i, (*diff_ids)[i]);
				rc = -EINVAL;
			}
	}
out:
	if (rc == -ENOMEM)
		sm_error_set(err, SM_E_NOMEM, ENOMEM, "parse image config");
	json_decref(root);
	if (rc < 0) {
		oci_config_clear(out);
		if (diff_ids) {
			strv_free(*diff_ids);
			*diff_ids = NULL;
		}
	}
	return rc;
}

void oci_config_clear(struct oci_image_config *c)
{
	strv_free(c->entrypoint);
	strv_free(c->cmd);
	strv_free(c->env);
	strv_free(c->exposed_ports);
	free(c->working_dir);
	free(c->user);
	free(c->stop_signal);
	free(c->created);
	free(c->os);
	free(c->architecture);
	free(c->variant);
	memset(c, 0, sizeof(*c));
}
