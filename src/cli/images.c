/* supermachine images: list what the store holds. */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <supermachine.h>

#include "cli/cli_vm.h"

static void images_usage(FILE *out)
{
	fprintf(out, "usage: supermachine images [--format json | --json] [--snapshots]\n"
		     "\n"
		     "List stored images: name, manifest digest, size of their blobs, and\n"
		     "when the image was created; then the baked snapshots (pull --name,\n"
		     "snapshot): name, image, memory, vCPUs, disk space, warmup tag.\n"
		     "\n"
		     "  --format json, --json\n"
		     "               one JSON array of objects instead of a table\n"
		     "  --snapshots  only the snapshots\n"
		     "  -h, --help  this help\n");
}

static void size_human(char *buf, size_t n, uint64_t v)
{
	if (v >= 1000000000)
		snprintf(buf, n, "%.1f GB", (double)v / 1e9);
	else if (v >= 1000000)
		snprintf(buf, n, "%.1f MB", (double)v / 1e6);
	else
		snprintf(buf, n, "%.1f kB", (double)v / 1e3);
}

static int images_print(const sm_oci_image_list *l, bool json)
{
	if (json) {
		char *text = sm_oci_image_list_json(l);
		if (!text)
			return -1;
		printf("%s\n", text);
		free(text);
		return 0;
	}
	printf("%-50s %-12s %10s  %s\n", "NAME", "DIGEST", "SIZE", "CREATED");
	for (size_t i = 0; i < sm_oci_image_list_count(l); i++) {
		const sm_oci_image *img = sm_oci_image_list_at(l, i);
		const char *created = sm_oci_image_created(img);
		char size[32];
		size_human(size, sizeof(size), sm_oci_image_size(img));
		printf("%-50s %.12s %10s  %.19s\n", sm_oci_image_name(img), sm_oci_image_manifest_digest(img) + 7,
		       size, created ? created : "-");
	}
	return 0;
}

static json_t *snapshot_json(const sm_snapshot_info *i)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "name", sm_snapshot_info_name(i), "path",
			 sm_snapshot_info_path(i), "image", sm_snapshot_info_image(i), "image_digest",
			 sm_snapshot_info_image_digest(i), "warmup_tag", sm_snapshot_info_warmup_tag(i), "memory_mib",
			 (json_int_t)sm_snapshot_info_memory_mib(i), "vcpus", (json_int_t)sm_snapshot_info_vcpus(i),
			 "created", (json_int_t)sm_snapshot_info_created(i), "disk_bytes",
			 (json_int_t)sm_snapshot_info_disk_bytes(i));
}

static void snapshot_row(const sm_snapshot_info *i)
{
	const char *tag = sm_snapshot_info_warmup_tag(i);
	char size[32], mem[32];

	size_human(size, sizeof(size), sm_snapshot_info_disk_bytes(i));
	snprintf(mem, sizeof(mem), "%u MiB", sm_snapshot_info_memory_mib(i));
	printf("%-24s %-40.40s %8s %5u %10s  %s\n", sm_snapshot_info_name(i), sm_snapshot_info_image(i), mem,
	       sm_snapshot_info_vcpus(i), size, tag[0] ? tag : "-");
}

/* The snapshots, as a table (headed, none: nothing) or a JSON array. */
static int snapshots_print(bool json)
{
	sm_error *err = NULL;
	sm_snapshot_list *list = sm_snapshot_list_load(&err);
	size_t n = sm_snapshot_list_count(list);

	if (!list) {
		fprintf(stderr, "supermachine: images: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, snapshot_json(sm_snapshot_list_at(list, i)));
		if (arr)
			json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	} else if (n) {
		printf("\n%-24s %-40s %8s %5s %10s  %s\n", "SNAPSHOT", "IMAGE", "MEMORY", "VCPUS", "DISK", "WARMUP TAG");
		for (size_t i = 0; i < n; i++)
			snapshot_row(sm_snapshot_list_at(list, i));
	}
	sm_snapshot_list_free(list);
	return 0;
}

int cmd_images(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "format", required_argument, NULL, 'f' },
		{ "snapshots", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sm_oci_image_list *list = NULL;
	sm_error *err = NULL;
	bool json = false, only_snapshots = false;
	int c, rc = 1;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'f') {
			if (cli_format_json(optarg, &json, "images") < 0)
				return 2;
		} else if (c == 's') {
			only_snapshots = true;
		} else if (c == 'h') {
			images_usage(stdout);
			return 0;
		} else {
			return cli_bad_option(c, argv, "images");
		}
	}
	if (optind != argc) {
		images_usage(stderr);
		return 2;
	}
	if (only_snapshots)
		return snapshots_print(json) < 0 ? 1 : 0;
	list = sm_oci_image_list_load(&err);
	if (list) {
		rc = images_print(list, json) < 0 ? 1 : 0;
		if (rc == 0 && !json)
			rc = snapshots_print(false) < 0 ? 1 : 0;
		if (rc)
			fprintf(stderr, "supermachine: images: cannot write the list\n");
	} else {
		fprintf(stderr, "supermachine: images: %s\n", sm_error_string(err));
	}
	sm_oci_image_list_free(list);
	sm_error_free(err);
	return rc;
}
