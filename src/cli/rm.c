/*
 * supermachine rm: remove VMs (docker rm), snapshots and images (docker
 * rmi), whatever each name resolves to, in that order, and collect the
 * blobs nothing uses any more.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_vm.h"

static void rm_usage(FILE *out)
{
	fprintf(out, "usage: supermachine rm [-f] VM|SNAPSHOT|IMAGE...\n"
		     "\n"
		     "Remove each VM (an ID, a name or an ID prefix: a VM that ended, or with\n"
		     "-f a running one, killed first), else the baked snapshot of that name,\n"
		     "else the image from the store, then delete the blobs and root filesystem\n"
		     "images no remaining image uses. Exit status 1 when any one failed.\n"
		     "\n"
		     "options:\n"
		     "  -f, --force  remove running VMs too (killed, as docker rm -f)\n"
		     "  -h, --help   this help\n");
}

/* 1 when name is a VM's (ID, name or prefix), 0 when not, -1 when ambiguous (said). */
static int rm_is_vm(const sm_vm_list *l, const char *name)
{
	sm_error *err = NULL;

	if (sm_vm_list_find(l, name, &err))
		return 1;
	if (sm_error_code(err) == SM_E_NOT_FOUND) {
		sm_error_free(err);
		return 0;
	}
	cli_error("rm", err);
	return -1;
}

static int rm_one(const sm_vm_list *l, const char *name, bool force)
{
	sm_error *err = NULL;
	uint64_t freed = 0;
	int vm = rm_is_vm(l, name);

	if (vm < 0)
		return -1;
	if (vm) {
		if (sm_vm_remove(name, force, &err) < 0)
			return cli_error("rm", err), -1;
		printf("%s\n", name);
		return 0;
	}
	if (sm_snapshot_exists(name) && !strchr(name, '/')) {
		if (sm_snapshot_remove(name, &err) < 0)
			return cli_error("rm", err), -1;
		printf("removed snapshot %s\n", name);
		return 0;
	}
	if (sm_oci_image_remove(name, &freed, &err) < 0) {
		if (sm_error_code(err) == SM_E_NOT_FOUND) {
			fprintf(stderr, "supermachine: rm: no such VM, snapshot or image: %s\n", name);
			sm_error_free(err);
			return -1;
		}
		return cli_error("rm", err), -1;
	}
	printf("removed %s (%.1f MB freed)\n", name, (double)freed / 1e6);
	return 0;
}

int cmd_rm(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sm_error *err = NULL;
	bool force = false;
	sm_vm_list *l;
	int c, rc = 0;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': force = true; break;
		case 'h': rm_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "rm");
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "supermachine: rm: want at least one VM, snapshot or image (see 'supermachine rm --help')\n");
		return CLI_EXIT_FAILED;
	}
	l = sm_vm_list_load(&err);
	if (!l) {
		cli_error("rm", err);
		return CLI_EXIT_ERROR;
	}
	for (int i = optind; i < argc; i++)
		if (rm_one(l, argv[i], force) < 0)
			rc = CLI_EXIT_ERROR;
	sm_vm_list_free(l);
	return rc;
}
