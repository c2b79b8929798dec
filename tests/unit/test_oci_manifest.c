/* Manifests, indexes and image configs, including hostile ones. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/internal.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static int parse(const char *json, const char *ct, struct oci_manifest *m, sm_error **err)
{
	return oci_manifest_parse(json, strlen(json), ct, "test manifest", m, err);
}

Test(oci_manifest, oci_and_docker_manifests)
{
	static const char *const types[] = { MT_OCI_MANIFEST, MT_DOCKER_MANIFEST };

	for (int i = 0; i < 2; i++) {
		char buf[2048];
		struct oci_manifest m;
		sm_error *err = NULL;
		snprintf(buf, sizeof(buf),
			 "{\"schemaVersion\":2,\"mediaType\":\"%s\","
			 "\"config\":{\"mediaType\":\"%s\",\"digest\":\"" D1 "\",\"size\":100},"
			 "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
			 "\"digest\":\"" D2 "\",\"size\":5},"
			 "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\","
			 "\"digest\":\"" D3 "\",\"size\":0}]}",
			 types[i], i ? MT_DOCKER_CONFIG : MT_OCI_CONFIG);
		cr_assert(parse(buf, NULL, &m, &err) == 0, "%s", sm_error_string(err));
		cr_expect_eq(m.kind, MANIFEST_IMAGE);
		cr_expect_str_eq(m.config.digest, D1);
		cr_expect_eq(m.n_layers, 2);
		cr_expect_str_eq(m.layers[1].digest, D3);
		cr_expect(oci_layer_type_ok(m.layers[0].media_type));
		oci_manifest_free(&m);
	}
}

Test(oci_manifest, media_type_from_header_or_shape)
{
	struct oci_manifest m;
	const char *idx = "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST
			  "\",\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"os\":\"linux\","
			  "\"architecture\":\"amd64\"}}]}";

	cr_assert(parse(idx, MT_DOCKER_LIST, &m, NULL) == 0);
	cr_expect_eq(m.kind, MANIFEST_INDEX);
	oci_manifest_free(&m);
	cr_assert(parse(idx, "application/json", &m, NULL) == 0);
	cr_expect_eq(m.kind, MANIFEST_INDEX);
	cr_expect(m.manifests[0].has_platform);
	oci_manifest_free(&m);
}

Test(oci_manifest, platform_selection)
{
	struct oci_manifest m;
	struct oci_platform p;
	sm_error *err = NULL;
	const char *idx =
		"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":["
		"{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
		"\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}},"
		"{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\",\"variant\":\"v3\"}},"
		"{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D3 "\",\"size\":1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
		"{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"digest\":\"" D1 "\",\"size\":1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}]}";

	cr_assert(parse(idx, NULL, &m, NULL) == 0);
	oci_platform_parse("linux/amd64", &p, NULL);
	cr_expect_str_eq(oci_index_select(&m, &p, NULL)->digest, D3, "plain amd64 preferred");
	oci_platform_parse("linux/amd64/v3", &p, NULL);
	cr_expect_str_eq(oci_index_select(&m, &p, NULL)->digest, D2);
	oci_platform_parse("linux/arm64", &p, NULL);
	cr_expect_str_eq(oci_index_select(&m, &p, NULL)->digest, D1);
	oci_platform_parse("linux/s390x", &p, NULL);
	cr_expect_null(oci_index_select(&m, &p, &err));
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(strstr(sm_error_string(err), "linux/s390x") &&
			  strstr(sm_error_string(err), "linux/arm64/v8"),
		  "%s", sm_error_string(err));
	sm_error_free(err);
	oci_manifest_free(&m);
}

Test(oci_manifest, hostile_documents)
{
	static const struct {
		const char *json;
		const char *says;
	} bad[] = {
		{ "not json", "not valid JSON" },
		{ "[1,2]", "not a JSON object" },
		{ "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\"}", "layers" },
		{ "{\"schemaVersion\":1,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"layers\":[]}",
		  "schemaVersion" },
		{ "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"layers\":[],"
		  "\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:../../etc\",\"size\":1}}",
		  "digest" },
		{ "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"layers\":[],"
		  "\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1 "\",\"size\":-1}}",
		  "size" },
		{ "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"layers\":[],"
		  "\"config\":{\"mediaType\":\"x\",\"digest\":\"sha512:abcd\",\"size\":1}}",
		  "unsupported digest" },
		{ "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"layers\":[],"
		  "\"config\":{\"mediaType\":\"x\\u0000y\",\"digest\":\"" D1 "\",\"size\":1}}",
		  "\\u0000" },
		{ "{\"schemaVersion\":1,\"mediaType\":\"" MT_DOCKER_SCHEMA1 "\"}", "schema 1" },
		{ "{\"mediaType\":\"application/vnd.cncf.helm.config.v1+json\"}", "unsupported" },
		{ "{\"a\":1,\"a\":2}", "JSON" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_manifest m;
		sm_error *err = NULL;
		cr_expect(parse(bad[i].json, NULL, &m, &err) < 0, "accepted %s", bad[i].json);
		cr_expect(err && strstr(sm_error_string(err), bad[i].says),
			  "%s: error '%s' does not mention '%s'", bad[i].json,
			  sm_error_string(err), bad[i].says);
		sm_error_free(err);
	}
}

Test(oci_manifest, too_many_layers)
{
	size_t n = OCI_LAYERS_MAX + 1, len = 0;
	char *buf = malloc(200 * n + 400);
	struct oci_manifest m;
	sm_error *err = NULL;

	len += (size_t)sprintf(buf, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
				    "\",\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1
				    "\",\"size\":1},\"layers\":[");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len, "%s{\"mediaType\":\"x\",\"digest\":\"" D2
						  "\",\"size\":1}",
				       i ? "," : "");
	strcpy(buf + len, "]}");
	cr_expect(parse(buf, NULL, &m, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "more than"), "%s", sm_error_string(err));
	sm_error_free(err);
	free(buf);
}

Test(oci_manifest, image_config)
{
	const char *cfg =
		"{\"created\":\"2024-01-02T03:04:05Z\",\"architecture\":\"amd64\",\"os\":\"linux\","
		"\"config\":{\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":null,\"Env\":[\"A=1\"],"
		"\"WorkingDir\":\"/w\",\"User\":\"1000:1000\",\"ExposedPorts\":{\"80/tcp\":{}},"
		"\"StopSignal\":\"SIGQUIT\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1
		"\"]}}";
	struct oci_image_config c;
	char **diffs = NULL;
	sm_error *err = NULL;

	cr_assert(oci_config_parse(cfg, strlen(cfg), &c, &diffs, &err) == 0, "%s",
		  sm_error_string(err));
	cr_expect_str_eq(c.entrypoint[1], "-c");
	cr_expect_null(c.cmd);
	cr_expect_str_eq(c.env[0], "A=1");
	cr_expect_str_eq(c.working_dir, "/w");
	cr_expect_str_eq(c.user, "1000:1000");
	cr_expect_str_eq(c.exposed_ports[0], "80/tcp");
	cr_expect_str_eq(c.stop_signal, "SIGQUIT");
	cr_expect_str_eq(c.created, "2024-01-02T03:04:05Z");
	cr_expect_str_eq(diffs[0], D1);
	cr_expect_null(diffs[1]);
	oci_config_clear(&c);
	strv_free(diffs);

	const char *bad[] = {
		"{\"config\":{\"Cmd\":\"not a list\"},\"rootfs\":{\"type\":\"layers\"}}",
		"{\"config\":{\"Env\":[1]},\"rootfs\":{\"type\":\"layers\"}}",
		"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:zz\"]}}",
		"{\"rootfs\":{\"type\":\"other\"}}",
		"{\"config\":{\"User\":\"a\\u0000b\"},\"rootfs\":{\"type\":\"layers\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		cr_expect(oci_config_parse(bad[i], strlen(bad[i]), &c, &diffs, &err) < 0,
			  "accepted %s", bad[i]);
		cr_expect(strstr(sm_error_string(err), "image config"), "%s", sm_error_string(err));
		sm_error_free(err);
	}
}
