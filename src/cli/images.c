/* supermachine images: list what the store holds. */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <supermachine.h>

#include "oci/oci.h"

static void images_usage(FILE *out)
{
	fprintf(out, "usage: supermachine images [--json] [--snapshots]\n"
		     "\n"
		     "List stored images: name, manifest digest, size of their blobs, and\n"
		     "when the image was created; then the baked snapshots (pull --name,\n"
		     "snapshot): name, image, memory, vCPUs, disk space, warmup tag.\n"
		     "\n"
		     "  --json       one JSON array of objects instead of a table\n"
		     "  --snapshots  only the snapshots\n"
		     "  -h, --help  this help\n");
}

static json_t *image_json(const struct oci_image *img)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:s?, s:I, s:s?, s:I}", "name", img->name,
			 "manifest_digest", img->manifest_digest, "config_digest",
			 img->config_digest, "size", (json_int_t)img->size, "rootfs",
			 img->rootfs_path, "rootfs_size", (json_int_t)img->rootfs_size, "created",
			 img->config.created, "pulled", (json_int_t)img->pulled);
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

static int images_print(struct oci_image **list, size_t n, bool json)
{
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, image_json(list[i]));
		if (!arr || json_dumpf(arr, stdout, JSON_INDENT(2)) < 0) {
			json_decref(arr);
			return -1;
		}
		putchar('\n');
		json_decref(arr);
		return 0;
	}
	printf("%-50s %-12s %10s  %s\n", "NAME", "DIGEST", "SIZE", "CREATED");
	for (size_t i = 0; i < n; i++) {
		char size[32];
		const char *created = list[i]->config.created ? list[i]->config.created : "-";
		size_human(size, sizeof(size), list[i]->size);
		printf("%-50s %.12s %10s  %.19s\n", list[i]->name, list[i]->manifest_digest + 7, size,
		       created);
	}
	return 0;
}

static json_t *snapshot_json(const sm_snapshot_info *i)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "name", i->name, "path", i->path, "image",
			 i->image, "image_digest", i->image_digest, "warmup_tag", i->warmup_tag, "memory_mib",
			 (json_int_t)i->memory_mib, "vcpus", (json_int_t)i->vcpus, "created", (json_int_t)i->created,
			 "disk_bytes", (json_int_t)i->disk_bytes);
}

/* The snapshots, as a table (headed, none: nothing) or a JSON array. */
static int snapshots_print(bool json)
{
	sm_snapshot_info *list = NULL;
	sm_error *err = NULL;
	size_t n = 0;

	if (sm_snapshot_list(&list, &n, &err) < 0) {
		fprintf(stderr, "supermachine: images: %s\n", sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			json_array_append_new(arr, snapshot_json(&list[i]));
		if (arr)
			json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	} else if (n) {
		printf("\n%-24s %-40s %8s %5s %10s  %s\n", "SNAPSHOT", "IMAGE", "MEMORY", "VCPUS", "DISK", "WARMUP TAG");
		for (size_t i = 0; i < n; i++) {
			char size[32], mem[32];
			size_human(size, sizeof(size), list[i].disk_bytes);
			snprintf(mem, sizeof(mem), "%u MiB", list[i].memory_mib);
			printf("%-24s %-40.40s %8s %5u %10s  %s\n", list[i].name, list[i].image, mem, list[i].vcpus, size,
			       list[i].warmup_tag[0] ? list[i].warmup_tag : "-");
		}
	}
	free(list);
	return 0;
}

int cmd_images(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "snapshots", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct oci_store *st = NULL;
	struct oci_image **list = NULL;
	sm_error *err = NULL;
	size_t n = 0;
	bool json = false, only_snapshots = false;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 's') {
			only_snapshots = true;
		} else if (c == 'h') {
			images_usage(stdout);
			return 0;
		} else {
			images_usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		images_usage(stderr);
		return 2;
	}
	if (only_snapshots)
		return snapshots_print(json) < 0 ? 1 : 0;
	if (oci_store_open(NULL, &st, &err) == 0 && oci_image_list(st, &list, &n, &err) == 0) {
		rc = images_print(list, n, json) < 0 ? 1 : 0;
		if (rc == 0 && !json)
			rc = snapshots_print(false) < 0 ? 1 : 0;
		if (rc)
			fprintf(stderr, "supermachine: images: cannot write the list\n");
	} else {
		fprintf(stderr, "supermachine: images: %s\n", sm_error_string(err));
	}
	oci_image_list_free(list, n);
	sm_error_free(err);
	oci_store_close(st);
	return rc;
}
