/* supermachine system df | prune: the store's and the runtime directories' disk use, and collecting. */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_vm.h"

static void system_usage(FILE *out)
{
	fprintf(out,
		"usage: supermachine system df [--format json | --json]\n"
		"       supermachine system prune [-f]\n"
		"\n"
		"df: what the store holds (images, their blobs and root filesystems,\n"
		"snapshots, downloads left in tmp/) and the VMs' runtime directories,\n"
		"with the disk space each takes.\n"
		"\n"
		"prune: removes the runtime directories of VMs that ended (started over a\n"
		"minute ago), the blobs and root filesystems no image name or snapshot\n"
		"uses, and tmp/; then says what it freed. It asks first on a terminal.\n"
		"\n"
		"options:\n"
		"  -f, --force            prune without asking\n"
		"  --format json, --json  df as a JSON object\n"
		"  -h, --help             this help\n");
}

static void size_human(char *buf, size_t n, uint64_t v)
{
	static const char *const units[] = { "B", "kB", "MB", "GB", "TB" };
	double d = (double)v;
	int u = 0;

	while (d >= 1000 && u < 4)
		d /= 1000, u++;
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", d, units[u]);
}

static void df_row(const char *type, uint64_t count, const char *note, uint64_t bytes)
{
	char size[32];

	size_human(size, sizeof(size), bytes);
	printf("%-20s %8llu %-14s %10s\n", type, (unsigned long long)count, note, size);
}

static int df_json(const sm_store_usage *u)
{
	json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "images", (json_int_t)u->images,
			      "blobs", (json_int_t)u->blobs, "blob_bytes", (json_int_t)u->blob_bytes, "rootfs",
			      (json_int_t)u->rootfs, "rootfs_bytes", (json_int_t)u->rootfs_bytes, "snapshots",
			      (json_int_t)u->snapshots, "snapshot_bytes", (json_int_t)u->snapshot_bytes, "vms",
			      (json_int_t)u->vms, "vms_running", (json_int_t)u->vms_running, "runtime_bytes",
			      (json_int_t)u->runtime_bytes, "tmp_bytes", (json_int_t)u->tmp_bytes);
	int rc = j && json_dumpf(j, stdout, JSON_INDENT(2)) == 0 && putchar('\n') != EOF ? 0 : 1;

	json_decref(j);
	return rc;
}

static int system_df(bool json)
{
	sm_store_usage u = SM_STORE_USAGE_INIT;
	sm_error *err = NULL;
	char running[32];

	if (sm_store_usage_get(&u, &err) < 0) {
		cli_error("system df", err);
		return 1;
	}
	if (json)
		return df_json(&u);
	snprintf(running, sizeof(running), "%llu running", (unsigned long long)u.vms_running);
	printf("%-20s %8s %-14s %10s\n", "TYPE", "COUNT", "", "SIZE");
	df_row("images (blobs)", u.images, "", u.blob_bytes);
	df_row("root filesystems", u.rootfs, "", u.rootfs_bytes);
	df_row("snapshots", u.snapshots, "", u.snapshot_bytes);
	df_row("VMs (runtime dirs)", u.vms, running, u.runtime_bytes);
	df_row("tmp/", 0, "", u.tmp_bytes);
	return 0;
}

/* Asked on a terminal: true to go on. */
static bool prune_confirmed(void)
{
	char answer[16];

	fprintf(stderr, "This removes the runtime directories of ended VMs, the blobs and root filesystems\n"
			"no image or snapshot uses, and the store's tmp/. Continue? [y/N] ");
	return fgets(answer, sizeof(answer), stdin) && (answer[0] == 'y' || answer[0] == 'Y');
}

static int system_prune(bool force)
{
	sm_prune_report r = SM_PRUNE_REPORT_INIT;
	sm_error *err = NULL;
	char vm[32], store[32];

	if (!force && isatty(STDIN_FILENO) && !prune_confirmed()) {
		fprintf(stderr, "supermachine: system prune: nothing removed\n");
		return 1;
	}
	if (sm_store_prune(&r, &err) < 0) {
		cli_error("system prune", err);
		return 1;
	}
	size_human(vm, sizeof(vm), r.vm_bytes);
	size_human(store, sizeof(store), r.store_bytes);
	printf("removed %llu ended VM%s (%s); freed %s of the store\n", (unsigned long long)r.vms,
	       r.vms == 1 ? "" : "s", vm, store);
	return 0;
}

int cmd_system(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "format", required_argument, NULL, 'F' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool force = false, json = false;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': force = true; break;
		case 'j': json = true; break;
		case 'F':
			if (cli_format_json(optarg, &json, "system") < 0)
				return 2;
			break;
		case 'h': system_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "system");
		}
	}
	if (optind == argc - 1 && !strcmp(argv[optind], "df") && !force)
		return system_df(json);
	if (optind == argc - 1 && !strcmp(argv[optind], "prune") && !json)
		return system_prune(force);
	fprintf(stderr, "supermachine: system: want 'df [--format json]' or 'prune [-f]' (see 'supermachine system "
			"--help')\n");
	return 2;
}
