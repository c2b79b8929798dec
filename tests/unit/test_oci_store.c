/* The content store: locations, verified blobs, names, removal and GC. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fixtures/oci_fixture.h"
#include "oci/internal.h"

TestSuite(oci_store, .timeout = 120);

Test(oci_store, default_location)
{
	struct oci_store *st;
	char *dir = fx_tmpdir(), want[4300];

	setenv("SUPERMACHINE_HOME", dir, 1);
	cr_assert(oci_store_open(NULL, &st, NULL) == 0);
	cr_expect_str_eq(oci_store_root(st), dir);
	oci_store_close(st);
	unsetenv("SUPERMACHINE_HOME");
	setenv("XDG_DATA_HOME", dir, 1);
	cr_assert(oci_store_open(NULL, &st, NULL) == 0);
	snprintf(want, sizeof(want), "%s/supermachine", dir);
	cr_expect_str_eq(oci_store_root(st), want);
	oci_store_close(st);
	unsetenv("XDG_DATA_HOME");
	setenv("HOME", dir, 1);
	cr_assert(oci_store_open(NULL, &st, NULL) == 0);
	snprintf(want, sizeof(want), "%s/.local/share/supermachine", dir);
	cr_expect_str_eq(oci_store_root(st), want);
	snprintf(want, sizeof(want), "%s/.local/share/supermachine/blobs/sha256", dir);
	cr_expect(fx_exists(want));
	oci_store_close(st);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_store, blobs_are_verified_on_read)
{
	char *dir = fx_tmpdir(), digest[OCI_DIGEST_SIZE], *buf = NULL, *path;
	struct oci_store *st;
	sm_error *err = NULL;
	size_t len;

	cr_assert(oci_store_open(dir, &st, NULL) == 0);
	cr_assert(store_blob_write(st, "hello", 5, digest, &err) == 0);
	cr_expect_str_eq(digest,
			 "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	cr_assert(store_blob_read(st, digest, 100, &buf, &len, &err) == 0);
	cr_expect_eq(len, 5);
	free(buf);
	/* bit rot after the fact is caught, not trusted */
	path = store_blob_path(st, digest);
	chmod(path, 0644);
	cr_assert(fx_sh(NULL, NULL, "printf jello > '%s'", path) == 0);
	cr_expect(store_blob_read(st, digest, 100, &buf, &len, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_DIGEST);
	cr_expect(strstr(sm_error_string(err), "corrupt"), "%s", sm_error_string(err));
	sm_error_free(err);
	free(path);
	oci_store_close(st);
	fx_rmrf(dir);
	free(dir);
}

static char *src_of(const char *what)
{
	char *s = NULL;

	cr_assert(asprintf(&s, "oci:%s/layout:%s", fx_images(), what) > 0);
	return s;
}

static void pull_ok(struct oci_store *st, const char *src)
{
	sm_error *err = NULL;

	cr_assert(oci_pull(st, src, NULL, NULL, &err) == 0, "pull %s: %s", src,
		  sm_error_string(err));
}

Test(oci_store, names_digests_and_rebuild)
{
	char *dir = fx_tmpdir(), *busy = src_of("busybox"), *digest = fx_info("busybox", "digest", -1);
	struct oci_store *st;
	struct oci_image *img = NULL, **list = NULL;
	sm_error *err = NULL;
	size_t n = 0;

	cr_assert(oci_store_open(dir, &st, NULL) == 0);
	pull_ok(st, busy);
	/* by name, by full digest, by a 12-digit prefix */
	cr_assert(oci_image_resolve(st, busy, &img, &err) == 0, "%s", sm_error_string(err));
	cr_expect_str_eq(img->manifest_digest, digest);
	cr_expect_str_eq(img->config.working_dir, "/tmp");
	cr_expect_str_eq(img->config.stop_signal, "SIGINT");
	cr_expect_str_eq(img->config.exposed_ports[0], "8080/tcp");
	cr_expect_str_eq(img->config.entrypoint[0], "/bin/sh");
	cr_expect_str_eq(img->config.env[1], "GREETING=hello");
	cr_expect_str_eq(img->config.user, "0:0");
	char *rootfs = strdup(img->rootfs_path);
	oci_image_free(img);
	cr_assert(oci_image_resolve(st, digest, &img, &err) == 0, "%s", sm_error_string(err));
	oci_image_free(img);
	char prefix[20];
	snprintf(prefix, sizeof(prefix), "%.12s", digest + 7);
	cr_assert(oci_image_resolve(st, prefix, &img, &err) == 0, "%s", sm_error_string(err));
	oci_image_free(img);
	/* a missing rootfs is rebuilt on resolve */
	cr_assert(unlink(rootfs) == 0);
	cr_assert(oci_image_resolve(st, busy, &img, &err) == 0, "%s", sm_error_string(err));
	cr_expect(fx_exists(rootfs));
	oci_image_free(img);
	/* unknown names are a clear not-found */
	cr_expect(oci_image_resolve(st, "never-pulled", &img, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	cr_expect(strstr(sm_error_string(err), "never-pulled"), "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	cr_assert(oci_image_list(st, &list, &n, &err) == 0);
	cr_expect_eq(n, 1);
	cr_expect_str_eq(list[0]->name, busy);
	oci_image_list_free(list, n);
	free(rootfs);
	free(busy);
	free(digest);
	oci_store_close(st);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_store, remove_collects_only_unshared)
{
	char *dir = fx_tmpdir(), *busy = src_of("busybox"), *base = src_of("base");
	char *l1 = fx_info("busybox", "layers", 0), *l2 = fx_info("busybox", "layers", 1);
	char rootfs_dir[4200];
	struct oci_store *st;
	sm_error *err = NULL;
	uint64_t freed = 0;

	snprintf(rootfs_dir, sizeof(rootfs_dir), "%s/rootfs", dir);
	cr_assert(oci_store_open(dir, &st, NULL) == 0);
	pull_ok(st, busy);
	pull_ok(st, base);
	cr_assert(store_blob_has(st, l1, -1) && store_blob_has(st, l2, -1));
	cr_assert(oci_image_remove(st, busy, &freed, &err) == 0, "%s", sm_error_string(err));
	cr_expect(freed > 0);
	cr_expect(store_blob_has(st, l1, -1), "a layer the other image uses was collected");
	cr_expect(!store_blob_has(st, l2, -1), "an unused layer survived");
	cr_expect_eq(fx_count_files(rootfs_dir), 2, "base's rootfs and its lock remain");
	cr_expect(oci_image_remove(st, busy, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_NOT_FOUND);
	sm_error_free(err);
	err = NULL;
	cr_assert(oci_image_remove(st, base, NULL, &err) == 0);
	char blobs[4200];
	snprintf(blobs, sizeof(blobs), "%s/blobs/sha256", dir);
	cr_expect_eq(fx_count_files(blobs), 0);
	cr_expect_eq(fx_count_files(rootfs_dir), 0);
	free(busy), free(base), free(l1), free(l2);
	oci_store_close(st);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_store, gc_waits_for_pulls)
{
	char *dir = fx_tmpdir();
	struct oci_store *st;
	sm_error *err = NULL;
	uint64_t freed = 1;
	char junk[4300];
	int lock;

	cr_assert(oci_store_open(dir, &st, NULL) == 0);
	snprintf(junk, sizeof(junk), "%s/tmp/blob-partial", dir);
	cr_assert(fx_sh(NULL, NULL, "echo partial > '%s'", junk) == 0);
	/* while a pull holds the store, GC does not touch it */
	lock = store_pull_lock(st, &err);
	cr_assert(lock >= 0);
	cr_assert(oci_store_gc(st, false, &freed, &err) == 0);
	cr_expect_eq(freed, 0);
	cr_expect(fx_exists(junk), "GC ran under a pull");
	store_pull_unlock(lock);
	cr_assert(oci_store_gc(st, false, &freed, &err) == 0);
	cr_expect(!fx_exists(junk));
	oci_store_close(st);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_store, corrupt_index_is_reported)
{
	char *dir = fx_tmpdir(), path[4200];
	struct oci_store *st;
	struct oci_image **list = NULL;
	sm_error *err = NULL;
	size_t n;

	cr_assert(oci_store_open(dir, &st, NULL) == 0);
	snprintf(path, sizeof(path), "%s/index.json", dir);
	cr_assert(fx_sh(NULL, NULL, "echo '{\"images\": [' > '%s'", path) == 0);
	cr_expect(oci_image_list(st, &list, &n, &err) < 0);
	cr_expect(strstr(sm_error_string(err), path), "%s", sm_error_string(err));
	sm_error_free(err);
	oci_store_close(st);
	fx_rmrf(dir);
	free(dir);
}

Test(oci_store, local_sources_are_verified)
{
	char *dir = fx_tmpdir(), *copy = fx_tmpdir(), src[4300];
	char *l2 = fx_info("busybox", "layers", 1);
	struct oci_store *st;
	sm_error *err = NULL;

	/* a layout whose layer blob was altered */
	cr_assert(fx_sh(NULL, NULL, "cp -r '%s/layout/.' '%s/' && chmod -R u+w '%s' && "
				    "printf x >> '%s/blobs/sha256/%s'",
			fx_images(), copy, copy, copy, l2 + 7) == 0);
	snprintf(src, sizeof(src), "oci:%s:busybox", copy);
	cr_assert(oci_store_open(dir, &st, NULL) == 0);
	cr_expect(oci_pull(st, src, NULL, NULL, &err) < 0);
	cr_expect_eq(sm_error_code(err), SM_E_DIGEST, "%s", sm_error_string(err));
	cr_expect(strstr(sm_error_string(err), "layer 2"), "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	cr_expect(!store_blob_has(st, l2, -1));
	/* a tag the layout lacks */
	snprintf(src, sizeof(src), "oci:%s/layout:nope", fx_images());
	cr_expect(oci_pull(st, src, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "no tag 'nope'") &&
			  strstr(sm_error_string(err), "busybox"),
		  "%s", sm_error_string(err));
	sm_error_free(err);
	err = NULL;
	/* several images and no tag */
	snprintf(src, sizeof(src), "oci:%s/layout", fx_images());
	cr_expect(oci_pull(st, src, NULL, NULL, &err) < 0);
	cr_expect(strstr(sm_error_string(err), "TAG"), "%s", sm_error_string(err));
	sm_error_free(err);
	free(l2);
	oci_store_close(st);
	fx_rmrf(dir);
	fx_rmrf(copy);
	free(dir);
	free(copy);
}
