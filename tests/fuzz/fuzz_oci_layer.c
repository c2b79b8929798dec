/*
 * libFuzzer target: layer tarballs through the whole rootfs path
 * (src/oci: layer.c reads each entry through libarchive, tree.c applies it
 * with whiteouts, hardlinks and replacements, spool.c keeps the data,
 * ext4.c writes the image) into an ext4 image in a temp directory, which
 * is emptied after every input.
 *
 * Input: 'R' then one raw layer (tar, or gzip/zstd of one: libarchive's
 * reader and our header checks); otherwise up to LAYERS_MAX layers of
 * fuzz_host.h records (the tree's rules). An odd input length also checks
 * the first layer against its file's digest, so the hashing reader runs:
 * the diff_id of a plain tar, a mismatch for a compressed one.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_host.h"
#include "oci/internal.h"

#define LAYERS_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dir;

static void dir_remove(void)
{
	fuzz_dir_clear(dir);
	rmdir(dir);
}

static size_t layers_write(const uint8_t *data, size_t size, char path[][4096])
{
	size_t n = 0, off = 1;

	if (size && data[0] == 'R') {
		int fd = open(path[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
			abort();
		close(fd);
		return 1;
	}
	for (off = 0; n < LAYERS_MAX && (off < size || n == 0); n++)
		if (fuzz_tar_write(path[n], data, size, &off) < 0)
			abort();
	return n;
}

/* The first layer's real diff_id, so a good layer passes the check. */
static void diff_id(const char *path, char out[OCI_DIGEST_SIZE])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || sha256_file(fd, out, NULL) < 0)
		abort();
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[LAYERS_MAX][4096], out[4096], id[OCI_DIGEST_SIZE];
	struct oci_layer_src l[LAYERS_MAX] = { { 0 } };
	struct oci_rootfs_stats st;
	sm_error *err = NULL;
	struct stat s;
	size_t n;

	if (!dir) {
		dir = fuzz_tmpdir("fuzz-oci-layer");
		atexit(dir_remove);
	}
	for (size_t i = 0; i < LAYERS_MAX; i++) {
		snprintf(path[i], sizeof(path[i]), "%s/layer%zu.tar", dir, i);
		l[i] = (struct oci_layer_src){ .path = path[i], .label = "fuzz" };
	}
	n = layers_write(data, size, path);
	if (size % 2) {
		diff_id(path[0], id);
		l[0].diff_id = id;
	}
	snprintf(out, sizeof(out), "%s/rootfs.ext4", dir);
	if (oci_rootfs_write(l, n, out, "fuzz", NULL, NULL, &st, &err) == 0) {
		/* A built image is there, whole, with at least the root and lost+found. */
		if (stat(out, &s) < 0 || (uint64_t)s.st_size != st.image_bytes || st.files < 2)
			abort();
	} else if (!err || !*sm_error_string(err) || stat(out, &s) == 0) {
		/* A failure says why and leaves no image behind. */
		abort();
	}
	sm_error_free(err);
	/* Nothing but the layers and the image: no temp file left over. */
	unlink(out);
	for (size_t i = 0; i < LAYERS_MAX; i++)
		unlink(path[i]);
	if (fuzz_dir_clear(dir))
		abort();
	return 0;
}
