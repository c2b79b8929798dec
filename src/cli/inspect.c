/* supermachine inspect: one stored image as JSON. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <supermachine.h>

static void inspect_usage(FILE *out)
{
	fprintf(out, "usage: supermachine inspect IMAGE\n"
		     "\n"
		     "Print a stored image as JSON: its digests, the runtime parts of its\n"
		     "config (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts,\n"
		     "StopSignal) and the path of its root filesystem image (built now if\n"
		     "missing). IMAGE is a name as pulled, or a manifest digest (prefix).\n");
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sm_oci_image *img = NULL;
	sm_error *err = NULL;
	char *j = NULL;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			inspect_usage(stdout);
			return 0;
		}
		inspect_usage(stderr);
		return 2;
	}
	if (optind != argc - 1) {
		inspect_usage(stderr);
		return 2;
	}
	img = sm_oci_image_get(argv[optind], &err);
	if (img) {
		j = sm_oci_image_json(img);
		if (j && printf("%s\n", j) >= 0) {
			rc = 0;
		} else {
			fprintf(stderr, "supermachine: inspect %s: cannot write JSON\n", argv[optind]);
		}
	} else {
		fprintf(stderr, "supermachine: inspect %s: %s\n", argv[optind], sm_error_string(err));
	}
	free(j);
	sm_oci_image_free(img);
	sm_error_free(err);
	return rc;
}
