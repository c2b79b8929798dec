/*
 * libFuzzer target: what a registry or an image layout sends as JSON
 * (src/oci/manifest.c): a manifest or an index, parsed under each
 * Content-Type a registry may claim, the platform picked from an index,
 * and the image config with its diff_ids. Whatever parses must hold what
 * the parser promises: valid digests, bounded counts, clean strings.
 *
 * Input: u8 selector (Content-Type and platform), then the JSON document.
 */
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const content_types[] = {
	NULL, MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_DOCKER_SCHEMA1,
	"application/json", "text/plain; charset=utf-8",
};
static const char *const platforms[] = { "linux/amd64", "linux/arm64/v8", "linux/arm/v7", "windows/amd64" };

static void desc_check(const struct oci_desc *d)
{
	if (!d->media_type || !digest_valid(d->digest) || d->size < 0 ||
	    (d->has_platform && (!d->platform.os[0] || !d->platform.arch[0])))
		abort();
}

static void manifest_check(const struct oci_manifest *m)
{
	if (m->kind == MANIFEST_IMAGE) {
		if (m->n_layers > OCI_LAYERS_MAX)
			abort();
		desc_check(&m->config);
		for (size_t i = 0; i < m->n_layers; i++)
			desc_check(&m->layers[i]);
		return;
	}
	for (size_t i = 0; i < m->n_manifests; i++)
		desc_check(&m->manifests[i]);
}

static void fuzz_manifest(const uint8_t *json, size_t len, uint8_t sel)
{
	const char *ct = content_types[sel % (sizeof(content_types) / sizeof(content_types[0]))];
	struct oci_platform plat;
	struct oci_manifest m;
	sm_error *err = NULL;

	if (oci_platform_parse(platforms[(sel >> 3) % 4], &plat, NULL) < 0)
		abort();
	if (oci_manifest_parse(json, len, ct, "fuzz", &m, &err) == 0) {
		manifest_check(&m);
		if (m.kind == MANIFEST_INDEX) {
			const struct oci_desc *d = oci_index_select(&m, &plat, &err);
			if (d && (d < m.manifests || d >= m.manifests + m.n_manifests))
				abort();
		}
		oci_manifest_free(&m);
	} else if (!err) {
		abort();
	}
	sm_error_free(err);
}

static void fuzz_config(const uint8_t *json, size_t len)
{
	struct oci_image_config c;
	sm_error *err = NULL;
	char **diff_ids;

	if (oci_config_parse(json, len, &c, &diff_ids, &err) == 0) {
		for (size_t i = 0; diff_ids && diff_ids[i]; i++)
			if (!digest_valid(diff_ids[i]))
				abort();
		oci_config_clear(&c);
		strv_free(diff_ids);
	} else if (!err) {
		abort();
	}
	sm_error_free(err);
	/* Without diff_ids, as a stored image's config is read back. */
	if (oci_config_parse(json, len, &c, NULL, NULL) == 0)
		oci_config_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fuzz_manifest(data + 1, size - 1, data[0]);
	fuzz_config(data + 1, size - 1);
	return 0;
}
