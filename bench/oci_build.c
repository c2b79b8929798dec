/*
 * oci_build OUT.ext4 LAYER[=DIFF_ID] [...]: applies tar layers (plain, gzip or
 * zstd) into an ext4 image with the rootfs builder, checking each layer's
 * uncompressed digest when given (as a pull does), and prints one JSON line
 * with what it did and how long it took. bench/oci_rootfs drives it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oci/oci.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct oci_layer_src *ls;
	struct oci_rootfs_stats st = { 0 };
	sm_error *err = NULL;
	double t0, secs;

	if (argc < 3) {
		fprintf(stderr, "usage: oci_build OUT.ext4 LAYER[=DIFF_ID]...\n");
		return 2;
	}
	ls = calloc((size_t)argc, sizeof(*ls));
	if (!ls)
		return 1;
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (eq)
			*eq = '\0';
		ls[i - 2] = (struct oci_layer_src){ .path = argv[i], .label = argv[i],
						    .diff_id = eq ? eq + 1 : NULL };
	}
	t0 = now_s();
	if (oci_rootfs_write(ls, (size_t)argc - 2, argv[1], "bench", NULL, NULL, &st, &err) < 0) {
		fprintf(stderr, "oci_build: %s\n", sm_error_string(err));
		sm_error_free(err);
		free(ls);
		return 1;
	}
	secs = now_s() - t0;
	printf("{\"tool\": \"supermachine\", \"seconds\": %.3f, \"tar_bytes\": %llu, "
	       "\"entries\": %llu, \"inodes\": %llu, \"data_bytes\": %llu, \"image_bytes\": %llu}\n",
	       secs, (unsigned long long)st.tar_bytes, (unsigned long long)st.entries,
	       (unsigned long long)st.files, (unsigned long long)st.data_bytes,
	       (unsigned long long)st.image_bytes);
	free(ls);
	return 0;
}
