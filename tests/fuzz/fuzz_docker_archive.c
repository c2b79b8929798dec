/*
 * libFuzzer target: `docker save` tarballs (src/oci/local.c): the member
 * scan with its symlinks, manifest.json and the image it picks, the config
 * through oci_config_parse, and every wanted member streamed into a store
 * in a temp directory. Between inputs the store is collected empty; an
 * import must leave no temporary file behind, failed or not.
 *
 * Input: u8 selector (which image the source names), then fuzz_host.h
 * records: the archive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_host.h"
#include "oci/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const tags[] = { NULL, "@0", "@1", "test/busybox:latest", "busybox", "@x" };

struct fuzz_store {
	char *dir;
	char tar[4096];
	char tmp[4096];
	struct oci_store *st;
};

static struct fuzz_store fs;

static void store_remove(void)
{
	char cmd[4200];

	oci_store_close(fs.st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fs.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz-docker_archive: could not remove %s\n", fs.dir);
}

static void store_setup(void)
{
	char root[4096];

	fs.dir = fuzz_tmpdir("fuzz-docker-archive");
	snprintf(fs.tar, sizeof(fs.tar), "%s/image.tar", fs.dir);
	snprintf(root, sizeof(root), "%s/store", fs.dir);
	snprintf(fs.tmp, sizeof(fs.tmp), "%s/tmp", root);
	if (oci_store_open(root, &fs.st, NULL) < 0)
		abort();
	atexit(store_remove);
}

/* What an import leaves in the store's tmp/: nothing, ever. */
static void tmp_check(void)
{
	if (fuzz_dir_clear(fs.tmp))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oci_source src = { .kind = SRC_DOCKER_ARCHIVE };
	struct oci_platform plat;
	struct store_record rec;
	sm_error *err = NULL;
	size_t off = 1;

	if (size < 1)
		return 0;
	if (!fs.st)
		store_setup();
	memset(&rec, 0, sizeof(rec));
	if (fuzz_tar_write(fs.tar, data, size, &off) < 0 || oci_platform_parse("linux/amd64", &plat, NULL) < 0)
		abort();
	src.path = fs.tar;
	src.tag = (char *)tags[data[0] % (sizeof(tags) / sizeof(tags[0]))];
	if (local_import(fs.st, &src, &plat, &rec, &err) == 0) {
		if (!digest_valid(rec.manifest) || !digest_valid(rec.config) ||
		    !store_blob_has(fs.st, rec.manifest, -1) || !store_blob_has(fs.st, rec.config, -1))
			abort();
	} else if (!err) {
		abort();
	}
	sm_error_free(err);
	err = NULL;
	tmp_check();
	unlink(fs.tar);
	if (oci_store_gc(fs.st, true, NULL, &err) < 0)
		abort();
	return 0;
}
