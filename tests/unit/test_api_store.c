/*
 * The store's images through the public API (sm_oci_*): a pull from the
 * local docker-registry fixture with its progress reports and a cancel,
 * then list, get (inspect) and remove over what it stored.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <supermachine.h>

#include "../fixtures/oci_fixture.h"

TestSuite(api_store, .timeout = 120);

struct env {
	struct fx_server reg, aux;
	char *home;
	char ref[256];
};

static struct env env_up(void)
{
	struct env e = { .home = fx_tmpdir() };

	unsetenv("SUPERMACHINE_REGISTRY_USER");
	unsetenv("SUPERMACHINE_REGISTRY_PASSWORD");
	unsetenv("SUPERMACHINE_REGISTRY_HOST");
	setenv("DOCKER_CONFIG", e.home, 1); /* no credentials from the machine running the tests */
	setenv("SUPERMACHINE_HOME", e.home, 1);
	fx_registry_start(FX_PLAIN, &e.reg, &e.aux);
	snprintf(e.ref, sizeof(e.ref), "127.0.0.1:%d/test/busybox", e.reg.port);
	return e;
}

static void env_down(struct env *e)
{
	fx_server_stop(&e->aux);
	fx_server_stop(&e->reg);
	fx_rmrf(e->home);
	free(e->home);
}

/* What the progress callback saw. */
struct seen {
	unsigned phases[SM_PULL_DONE + 1];
	char layer_done[2][80];       /* digests reported SM_BLOB_DONE with done == total */
	unsigned nlayer_done;
	bool bad_blob;                /* a blob report past its total, or without a digest's shape */
	uint64_t last_done, last_total;
	unsigned last_blobs_done, last_blobs_total;
	int cancel_at_phase;          /* -1: never */
};

static void seen_blob(struct seen *s, const sm_pull_progress *p)
{
	if (p->done > p->total || strncmp(p->digest, "sha256:", 7))
		s->bad_blob = true;
	if (p->state == SM_BLOB_DONE && p->done == p->total && s->nlayer_done < 2 && p->total > 1000)
		snprintf(s->layer_done[s->nlayer_done++], sizeof(s->layer_done[0]), "%s", p->digest);
}

static int record(const sm_pull_progress *p, void *opaque)
{
	struct seen *s = opaque;

	cr_assert(p->phase <= SM_PULL_DONE);
	s->phases[p->phase]++;
	if (p->phase == SM_PULL_DOWNLOADING && p->digest) {
		seen_blob(s, p);
	} else if (p->phase == SM_PULL_DOWNLOADING) {
		s->last_done = p->bytes_done;
		s->last_total = p->bytes_total;
		s->last_blobs_done = p->blobs_done;
		s->last_blobs_total = p->blobs_total;
	}
	return (int)p->phase == s->cancel_at_phase;
}

static bool reported(const struct seen *s, const char *digest)
{
	for (unsigned i = 0; i < s->nlayer_done; i++)
		if (!strcmp(s->layer_done[i], digest))
			return true;
	return false;
}

Test(api_store, pull_reports_each_layer_then_list_get_remove)
{
	struct env e = env_up();
	struct seen s = { .cancel_at_phase = -1 };
	sm_pull_config cfg = SM_PULL_CONFIG_INIT;
	char *l0 = fx_info("busybox", "layers", 0), *l1 = fx_info("busybox", "layers", 1);
	char *manifest = fx_info("busybox", "digest", -1);
	sm_error *err = NULL;

	cfg.progress = record;
	cfg.progress_opaque = &s;
	sm_oci_image *img = sm_oci_pull(e.ref, &cfg, &err);
	cr_assert(img, "%s", sm_error_string(err));
	cr_expect(s.phases[SM_PULL_RESOLVING] == 1 && s.phases[SM_PULL_BUILDING] >= 1 && s.phases[SM_PULL_DONE] == 1);
	cr_expect(!s.bad_blob);
	cr_expect(reported(&s, l0) && reported(&s, l1), "no done report for layers %s and %s", l0, l1);
	cr_expect_eq(s.last_done, s.last_total);
	cr_expect_eq(s.last_blobs_done, 2);
	cr_expect_eq(s.last_blobs_total, 2);
	cr_expect_str_eq(sm_oci_image_manifest_digest(img), manifest);
	cr_expect(sm_oci_image_rootfs(img) && fx_exists(sm_oci_image_rootfs(img)));
	sm_oci_image_free(img);

	sm_oci_image_list *l = sm_oci_image_list_load(&err);
	cr_assert(l, "%s", sm_error_string(err));
	cr_assert_eq(sm_oci_image_list_count(l), 1);
	const sm_oci_image *one = sm_oci_image_list_at(l, 0);
	cr_expect(strstr(sm_oci_image_name(one), "/test/busybox:latest"), "%s", sm_oci_image_name(one));
	cr_expect_null(sm_oci_image_list_at(l, 1));
	char *text = sm_oci_image_list_json(l);
	json_t *arr = json_loads(text, 0, NULL);
	cr_expect(json_is_array(arr) && json_array_size(arr) == 1, "%s", text);
	json_decref(arr);
	free(text);
	sm_oci_image_list_free(l);

	img = sm_oci_image_get(manifest + 7, &err); /* by its digest's hex */
	cr_assert(img, "%s", sm_error_string(err));
	cr_expect_str_eq(sm_oci_image_os(img), "linux");
	cr_expect(sm_oci_image_cmd(img) || sm_oci_image_entrypoint(img), "busybox has a command");
	text = sm_oci_image_json(img);
	json_t *j = json_loads(text, 0, NULL);
	cr_expect_str_eq(json_string_value(json_object_get(j, "manifest_digest")), manifest);
	cr_expect(json_is_object(json_object_get(j, "config")), "%s", text);
	json_decref(j);
	free(text);
	sm_oci_image_free(img);

	uint64_t freed = 0;
	cr_assert(sm_oci_image_remove(e.ref, &freed, &err) == 0, "%s", sm_error_string(err));
	cr_expect(freed > 0);
	cr_expect_null(sm_oci_image_get(e.ref, &err));
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err), err = NULL;
	cr_expect(sm_oci_image_remove(e.ref, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err);
	free(l0);
	free(l1);
	free(manifest);
	env_down(&e);
}

/* A nonzero return cancels: SM_E_CANCELED, and nothing is stored under the name. */
static void expect_cancel_at(sm_pull_phase phase)
{
	struct env e = env_up();
	struct seen s = { .cancel_at_phase = (int)phase };
	sm_pull_config cfg = { .progress = record, .progress_opaque = &s }; /* size 0: the first layout */
	sm_error *err = NULL;

	cr_expect_null(sm_oci_pull(e.ref, &cfg, &err));
	cr_expect_eq(sm_error_code(err), SM_E_CANCELED, "phase %d: %s", phase, sm_error_string(err));
	cr_expect_eq(s.phases[SM_PULL_DONE], 0);
	sm_error_free(err), err = NULL;
	sm_oci_image_list *l = sm_oci_image_list_load(&err);
	cr_assert(l, "%s", sm_error_string(err));
	cr_expect_eq(sm_oci_image_list_count(l), 0, "a canceled pull was stored");
	sm_oci_image_list_free(l);
	env_down(&e);
}

Test(api_store, progress_can_cancel_each_phase)
{
	expect_cancel_at(SM_PULL_RESOLVING);
	expect_cancel_at(SM_PULL_DOWNLOADING);
	expect_cancel_at(SM_PULL_BUILDING);
}

Test(api_store, bad_arguments_and_newer_config)
{
	struct env e = env_up();
	struct { sm_pull_config c; char newer[8]; } big = { .c = { .size = sizeof(big) } };
	sm_error *err = NULL;

	cr_expect_null(sm_oci_pull("", NULL, &err));
	cr_expect_eq(sm_error_code(err), SM_E_INVALID);
	sm_error_free(err), err = NULL;
	big.newer[3] = 1; /* a field this library does not know, set */
	cr_expect_null(sm_oci_pull(e.ref, &big.c, &err));
	cr_expect_eq(sm_error_code(err), SM_E_INVALID);
	cr_expect(strstr(sm_error_string(err), "sm_pull_config.size"), "%s", sm_error_string(err));
	sm_error_free(err), err = NULL;
	big.newer[3] = 0; /* unknown but zero: accepted */
	sm_oci_image *img = sm_oci_pull(e.ref, &big.c, &err);
	cr_expect(img, "%s", sm_error_string(err));
	sm_oci_image_free(img);
	sm_error_free(err);
	env_down(&e);
}
