/*
 * Pulls from a real docker-registry on 127.0.0.1: plain, htpasswd and token
 * auth, every manifest type, platform choice, and a proxy that tampers
 * with, truncates or drops blobs. After every failure the store must hold
 * nothing half-written or unverified.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fixtures/oci_fixture.h"
#include "oci/internal.h"

struct env {
	struct fx_server reg, aux, px;
	char *home;
	struct oci_store *st;
};

static struct env env_up(enum fx_auth auth)
{
	struct env e = { .home = fx_tmpdir() };
	sm_error *err = NULL;

	unsetenv("SUPERMACHINE_REGISTRY_USER");
	unsetenv("SUPERMACHINE_REGISTRY_PASSWORD");
	unsetenv("SUPERMACHINE_REGISTRY_HOST");
	/* no credentials from the machine running the tests */
	setenv("DOCKER_CONFIG", e.home, 1);
	fx_registry_start(auth, &e.reg, &e.aux);
	cr_assert(oci_store_open(e.home, &e.st, &err) == 0, "%s", sm_error_string(err));
	return e;
}

static void env_down(struct env *e)
{
	fx_server_stop(&e->px);
	fx_server_stop(&e->aux);
	fx_server_stop(&e->reg);
	oci_store_close(e->st);
	fx_rmrf(e->home);
	free(e->home);
}

static const struct oci_pull_opts fast = { .attempts = 3, .backoff_ms = 20 };

static int pull(struct env *e, int port, const char *repo, const struct oci_pull_opts *o,
		struct oci_image **img, sm_error **err)
{
	char ref[512];

	snprintf(ref, sizeof(ref), "127.0.0.1:%d/%s", port, repo);
	return oci_pull(e->st, ref, o ? o : &fast, img, err);
}

static void expect_pulled(struct env *e, const char *repo, const struct oci_pull_opts *o,
			  const char *want_config)
{
	struct oci_image *img = NULL;
	sm_error *err = NULL;
	char *out = NULL;

	cr_assert(pull(e, e->reg.port, repo, o, &img, &err) == 0, "pull %s: %s", repo,
		  sm_error_string(err));
	cr_expect_str_eq(img->config_digest, want_config, "%s", repo);
	cr_assert(img->rootfs_path);
	cr_expect(fx_sh(&out, NULL, "e2fsck -fn '%s' 2>&1", img->rootfs_path) == 0, "%s", out);
	free(out);
	oci_image_free(img);
}

/* Nothing unverified may remain: tmp/ empty, and every blob's name is its
 * content's digest. */
static void expect_store_clean(struct env *e)
{
	char *out = NULL, dir[4200];

	snprintf(dir, sizeof(dir), "%s/tmp", e->home);
	cr_expect_eq(fx_count_files(dir), 0, "leftovers in %s", dir);
	cr_expect(fx_sh(&out, NULL,
			"cd '%s/blobs/sha256' && for f in *; do [ -e \"$f\" ] || continue; "
			"[ \"$(sha256sum < \"$f\" | cut -c1-64)\" = \"$f\" ] || echo \"$f\"; done",
			e->home) == 0);
	cr_expect_str_empty(out, "blobs whose content is not their name: %s", out);
	free(out);
}

TestSuite(oci_registry, .timeout = 120);

Test(oci_registry, every_manifest_type_and_platform)
{
	struct env e = env_up(FX_PLAIN);
	char *cfg = fx_info("busybox", "config", -1), *arm = fx_info("arm", "config", -1);
	char *digest = fx_info("busybox", "digest", -1), repo[300];
	struct oci_pull_opts armopts = fast;

	expect_pulled(&e, "test/busybox", NULL, cfg);       /* OCI manifest, by tag */
	expect_pulled(&e, "test/busybox-v2", NULL, cfg);    /* Docker v2 manifest */
	expect_pulled(&e, "test/busybox-zstd", NULL, cfg);  /* zstd layers */
	expect_pulled(&e, "test/multi", NULL, cfg);         /* OCI index -> amd64 */
	expect_pulled(&e, "test/multi-v2", NULL, cfg);      /* Docker list -> amd64 */
	armopts.platform = "linux/arm64";
	expect_pulled(&e, "test/multi", &armopts, arm);
	expect_pulled(&e, "test/multi-v2", &armopts, arm);
	snprintf(repo, sizeof(repo), "test/busybox@%s", digest); /* by digest */
	expect_pulled(&e, repo, NULL, cfg);
	expect_store_clean(&e);

	/* A platform the index does not have. */
	sm_error *err = NULL;
	armopts.platform = "linux/riscv64";
	cr_expect(pull(&e, e.reg.port, "test/multi", &armopts, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "linux/riscv64") &&
			  strstr(sm_error_string(err), "linux/arm64"),
		  "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	/* An image for another architecture, pulled by its own manifest. */
	char *armd = fx_info("arm", "digest", -1);
	snprintf(repo, sizeof(repo), "test/multi@%s", armd);
	cr_expect(pull(&e, e.reg.port, repo, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "linux/arm64, not linux/amd64"), "%s",
		  sm_error_string(err));
	sm_error_free(err);
	free(armd);
	free(cfg);
	free(arm);
	free(digest);
	env_down(&e);
}

struct seen {
	unsigned calls;
	uint64_t done, total;
	unsigned layers_done, layers_total;
	bool built;
};

static int record(const struct oci_progress *p, void *arg)
{
	struct seen *s = arg;

	if (!strcmp(p->phase, "downloading") && !p->digest) {
		s->calls++;
		cr_assert(p->bytes_done <= p->bytes_total);
		s->done = p->bytes_done;
		s->total = p->bytes_total;
		s->layers_done = p->layers_done;
		s->layers_total = p->layers_total;
	}
	s->built |= !strcmp(p->phase, "building");
	return 0;
}

Test(oci_registry, progress_reports_bytes_and_layers)
{
	struct env e = env_up(FX_PLAIN);
	struct seen s = { 0 };
	struct oci_pull_opts o = fast;
	char *l0 = fx_info("busybox", "layer_sizes", 0), *l1 = fx_info("busybox", "layer_sizes", 1);

	o.progress = record;
	o.progress_arg = &s;
	cr_assert(pull(&e, e.reg.port, "test/busybox", &o, NULL, NULL) == 0);
	cr_expect(s.calls >= 2);
	cr_expect_eq(s.total, strtoull(l0, NULL, 10) + strtoull(l1, NULL, 10));
	cr_expect_eq(s.done, s.total);
	cr_expect_eq(s.layers_total, 2);
	cr_expect_eq(s.layers_done, 2);
	cr_expect(s.built);
	free(l0);
	free(l1);
	env_down(&e);
}

Test(oci_registry, missing_tag_and_digest)
{
	struct env e = env_up(FX_PLAIN);
	sm_error *err = NULL;

	cr_expect(pull(&e, e.reg.port, "test/busybox:nope", NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(strstr(sm_error_string(err), "test/busybox:nope not found"), "%s",
		  sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	cr_expect(pull(&e, e.reg.port,
		       "test/busybox@sha256:"
		       "0000000000000000000000000000000000000000000000000000000000000000",
		       NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	cr_expect(pull(&e, e.reg.port, "test/no-such-repo", NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND, "%s", sm_error_string(err));
	sm_error_free(err);
	expect_store_clean(&e);
	env_down(&e);
}

static void auth_checks(enum fx_auth mode)
{
	struct env e = env_up(mode);
	char *cfg = fx_info("busybox", "config", -1), path[4200];
	sm_error *err = NULL;
	FILE *f;

	/* anonymous */
	cr_expect(pull(&e, e.reg.port, "test/busybox", NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_AUTH, "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	/* wrong password */
	setenv("SUPERMACHINE_REGISTRY_USER", "testuser", 1);
	setenv("SUPERMACHINE_REGISTRY_PASSWORD", "wrong", 1);
	cr_expect(pull(&e, e.reg.port, "test/busybox", NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_AUTH, "%s", sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), "refused the credentials of user 'testuser'"),
		  "%s", sm_error_string(err));
	sm_error_free(err);
	expect_store_clean(&e);
	/* right password, from the environment */
	setenv("SUPERMACHINE_REGISTRY_PASSWORD", "testpass", 1);
	expect_pulled(&e, "test/multi", NULL, cfg);
	unsetenv("SUPERMACHINE_REGISTRY_USER");
	unsetenv("SUPERMACHINE_REGISTRY_PASSWORD");
	/* right password, from docker's config.json ("testuser:testpass") */
	snprintf(path, sizeof(path), "%s/config.json", e.home);
	f = fopen(path, "w");
	cr_assert(f);
	fprintf(f, "{\"auths\": {\"127.0.0.1:%d\": {\"auth\": \"dGVzdHVzZXI6dGVzdHBhc3M=\"}}}",
		e.reg.port);
	fclose(f);
	expect_pulled(&e, "test/busybox-v2", NULL, cfg);
	expect_store_clean(&e);
	free(cfg);
	env_down(&e);
}

Test(oci_registry, htpasswd_auth) { auth_checks(FX_HTPASSWD); }

Test(oci_registry, tls_registry_with_insecure)
{
	struct env e = env_up(FX_TLS);
	char *cfg = fx_info("busybox", "config", -1);
	struct oci_pull_opts o = fast;
	sm_error *err = NULL;

	/* localhost means plain HTTP by default: a TLS-only registry refuses it */
	cr_expect(pull(&e, e.reg.port, "test/busybox", NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "HTTP 400"), "%s", sm_error_string(err));
	sm_error_free(err);
	/* --insecure: TLS, self-signed certificate accepted */
	o.insecure = true;
	expect_pulled(&e, "test/busybox", &o, cfg);
	expect_store_clean(&e);
	free(cfg);
	env_down(&e);
}

Test(oci_registry, token_auth) { auth_checks(FX_TOKEN); }

/* Pulls through a proxy that misbehaves on the big layer. */
static struct env faulty(const char *mode, int count)
{
	struct env e = env_up(FX_PLAIN);
	char *layer = fx_info("busybox", "layers", 0);

	fx_proxy_start(e.reg.port, layer, mode, count, &e.px);
	free(layer);
	return e;
}

static void expect_fault(const char *mode, sm_code code, const char *says)
{
	struct env e = faulty(mode, -1);
	char *layer = fx_info("busybox", "layers", 0);
	sm_error *err = NULL;

	cr_expect(pull(&e, e.px.port, "test/busybox", NULL, NULL, &err) < 0, "%s: pulled", mode);
	cr_expect_eq(sm_error_code(err), code, "%s: %s", mode, sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), says), "%s: error does not say '%s': %s", mode,
		  says, sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), layer), "%s: error names no blob: %s", mode,
		  sm_error_string(err));
	cr_expect(!store_blob_has(e.st, layer, -1), "%s: the bad blob was stored", mode);
	expect_store_clean(&e);
	sm_error_free(err);
	free(layer);
	env_down(&e);
}

Test(oci_registry, tampered_blob) { expect_fault("tamper", SM_E_DIGEST, "tampered"); }

Test(oci_registry, truncated_blob) { expect_fault("truncate", SM_E_DIGEST, "truncated"); }

Test(oci_registry, oversized_blob) { expect_fault("oversize", SM_E_DIGEST, "more than"); }

Test(oci_registry, connection_dropped_every_time)
{
	expect_fault("drop", SM_E_REGISTRY, "gave up after retries");
}

Test(oci_registry, server_errors_every_time)
{
	expect_fault("status500", SM_E_REGISTRY, "HTTP 500");
}

Test(oci_registry, transient_failures_are_retried)
{
	static const char *const modes[] = { "drop", "status500" };

	for (int i = 0; i < 2; i++) {
		struct env e = faulty(modes[i], 1);
		char *cfg = fx_info("busybox", "config", -1);
		struct oci_image *img = NULL;
		sm_error *err = NULL;
		cr_expect(pull(&e, e.px.port, "test/busybox", NULL, &img, &err) == 0,
			  "%s once: %s", modes[i], sm_error_string(err));
		cr_expect(img && !strcmp(img->config_digest, cfg));
		cr_expect_eq(fx_proxy_count(&e.px), 2, "%s: %d requests for the blob", modes[i],
			     fx_proxy_count(&e.px));
		expect_store_clean(&e);
		oci_image_free(img);
		sm_error_free(err);
		free(cfg);
		env_down(&e);
	}
}

Test(oci_registry, concurrent_pulls_of_one_image)
{
	struct env e = env_up(FX_PLAIN);
	char ref[300], *o1 = NULL, *o2 = NULL, *e1 = NULL, *e2 = NULL;
	int rc;

	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/busybox", e.reg.port);
	/* two processes, started together, same store */
	rc = fx_sh(&o1, &e1,
		   "export SUPERMACHINE_HOME='%s'; ('%s' pull -q %s > %s/a.out 2>&1; echo $? > "
		   "%s/a.rc) & ('%s' pull -q %s > %s/b.out 2>&1; echo $? > %s/b.rc) & wait; "
		   "cat %s/a.rc %s/b.rc",
		   e.home, fx_cli(), ref, e.home, e.home, fx_cli(), ref, e.home, e.home, e.home,
		   e.home);
	cr_assert(rc == 0);
	cr_expect_str_eq(o1, "0\n0\n", "both pulls must succeed: %s", o1);
	fx_sh(&o2, &e2, "cat %s/a.out %s/b.out; e2fsck -fn %s/rootfs/*.ext4 >/dev/null 2>&1 && "
			"echo fsck-ok; ls %s/rootfs | grep -c ext4",
	      e.home, e.home, e.home, e.home);
	cr_expect(strstr(o2, "fsck-ok\n1\n"), "%s", o2);
	expect_store_clean(&e);
	free(o1), free(o2), free(e1), free(e2);
	env_down(&e);
}

Test(oci_registry, interrupted_pull_leaves_nothing_trusted)
{
	struct env e = faulty("stall", 1);
	char *layer = fx_info("busybox", "layers", 0), *cfg = fx_info("busybox", "config", -1);
	char ref[300], tmpdir[4200], *out = NULL;
	struct oci_image *img = NULL;
	sm_error *err = NULL;

	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/busybox", e.px.port);
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", e.home);
	/* A pull that stalls halfway through the layer is killed. */
	cr_assert(fx_sh(&out, NULL,
			"SUPERMACHINE_HOME='%s' '%s' pull -q %s & p=$!; "
			"for i in $(seq 200); do [ -n \"$(find '%s' -type f -size +1k)\" ] && break; "
			"sleep 0.05; done; kill -9 $p; wait $p; echo killed",
			e.home, fx_cli(), ref, tmpdir) == 0);
	free(out);
	cr_expect(fx_count_files(tmpdir) > 0, "the stalled download should have left a part");
	cr_expect(!store_blob_has(e.st, layer, -1), "a half blob was trusted");
	/* The next pull (the proxy now behaves) starts over and succeeds. */
	cr_assert(pull(&e, e.px.port, "test/busybox", NULL, &img, &err) == 0, "%s",
		  sm_error_string(err));
	cr_expect_str_eq(img->config_digest, cfg);
	cr_expect(store_blob_has(e.st, layer, -1));
	/* and GC removes the leftover part */
	uint64_t freed = 0;
	cr_assert(oci_store_gc(e.st, true, &freed, &err) == 0, "%s", sm_error_string(err));
	expect_store_clean(&e);
	cr_expect(store_blob_has(e.st, layer, -1), "GC removed a blob in use");
	oci_image_free(img);
	free(layer);
	free(cfg);
	env_down(&e);
}
