/* supermachine inspect: one stored image as JSON. */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "oci/oci.h"

static void inspect_usage(FILE *out)
{
	fprintf(out, "usage: supermachine inspect IMAGE\n"
		     "\n"
		     "Print a stored image as JSON: its digests, the runtime parts of its\n"
		     "config (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts,\n"
		     "StopSignal) and the path of its root filesystem image (built now if\n"
		     "missing). IMAGE is a name as pulled, or a manifest digest (prefix).\n");
}

static json_t *strv_json(char **v)
{
	json_t *a;

	if (!v)
		return json_null();
	a = json_array();
	for (; a && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

static json_t *inspect_json(const struct oci_image *img)
{
	const struct oci_image_config *c = &img->config;
	json_t *cfg = json_pack("{s:o, s:o, s:o, s:s?, s:s?, s:o, s:s?}", "Entrypoint",
				strv_json(c->entrypoint), "Cmd", strv_json(c->cmd), "Env",
				strv_json(c->env), "WorkingDir", c->working_dir, "User", c->user,
				"ExposedPorts", strv_json(c->exposed_ports), "StopSignal",
				c->stop_signal);

	return json_pack("{s:s, s:s, s:s, s:s?, s:I, s:I, s:I, s:s?, s:s?, s:s?, s:o}", "name",
			 img->name, "manifest_digest", img->manifest_digest, "config_digest",
			 img->config_digest, "rootfs", img->rootfs_path, "rootfs_size",
			 (json_int_t)img->rootfs_size, "size", (json_int_t)img->size, "pulled",
			 (json_int_t)img->pulled, "created", c->created, "os", c->os,
			 "architecture", c->architecture, "config", cfg);
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct oci_store *st = NULL;
	struct oci_image *img = NULL;
	sm_error *err = NULL;
	json_t *j = NULL;
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
	if (oci_store_open(NULL, &st, &err) == 0 &&
	    oci_image_resolve(st, argv[optind], &img, &err) == 0) {
		j = inspect_json(img);
		if (j && json_dumpf(j, stdout, JSON_INDENT(2)) == 0) {
			putchar('\n');
			rc = 0;
		} else {
			fprintf(stderr, "supermachine: inspect %s: cannot write JSON\n", argv[optind]);
		}
	} else {
		fprintf(stderr, "supermachine: inspect %s: %s\n", argv[optind], sm_error_string(err));
	}
	json_decref(j);
	oci_image_free(img);
	sm_error_free(err);
	oci_store_close(st);
	return rc;
}
