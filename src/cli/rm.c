/* supermachine rm: remove images and collect what nothing uses any more. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <supermachine.h>

static void rm_usage(FILE *out)
{
	fprintf(out, "usage: supermachine rm IMAGE|SNAPSHOT...\n"
		     "\n"
		     "Remove images from the store, then delete the blobs and root\n"
		     "filesystem images no remaining image uses. A name of a baked\n"
		     "snapshot removes that snapshot.\n");
}

int cmd_rm(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sm_error *err = NULL;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			rm_usage(stdout);
			return 0;
		}
		rm_usage(stderr);
		return 2;
	}
	if (optind >= argc) {
		rm_usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		uint64_t freed = 0;
		if (sm_snapshot_exists(argv[i]) && !strchr(argv[i], '/')) {
			if (sm_snapshot_remove(argv[i], &err) == 0) {
				printf("removed snapshot %s\n", argv[i]);
				continue;
			}
			fprintf(stderr, "supermachine: rm %s: %s\n", argv[i], sm_error_string(err));
			sm_error_free(err);
			err = NULL;
			rc = 1;
			continue;
		}
		if (sm_oci_image_remove(argv[i], &freed, &err) < 0) {
			fprintf(stderr, "supermachine: rm %s: %s\n", argv[i], sm_error_string(err));
			sm_error_free(err);
			err = NULL;
			rc = 1;
			continue;
		}
		printf("removed %s (%.1f MB freed)\n", argv[i], (double)freed / 1e6);
	}
	return rc;
}
