/* supermachine snapshot: capture a running (detached) VM; it keeps running. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>

#include <supermachine.h>

#include "cli/cli_vm.h"

static void snapshot_usage(FILE *out)
{
	fprintf(out, "usage: supermachine snapshot ID NAME\n"
		     "\n"
		     "Capture the running VM ID (see 'supermachine ps') as snapshot NAME\n"
		     "([A-Za-z0-9][A-Za-z0-9._-]*, kept in the store) or, when NAME holds a\n"
		     "'/', as that directory. The VM keeps running. NAME must not exist yet.\n"
		     "Volumes are not captured: a restore must be given them again.\n"
		     "'supermachine run NAME' restores it; 'supermachine rm NAME' removes it.\n"
		     "\n"
		     "  -h, --help  this help\n");
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sm_error *err = NULL;
	sm_vm *vm;
	int c, rc = 1;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c == 'h') {
			snapshot_usage(stdout);
			return 0;
		}
		return cli_bad_option(c, argv, "snapshot");
	}
	if (optind != argc - 2) {
		snapshot_usage(stderr);
		return 2;
	}
	vm = sm_vm_attach(argv[optind], &err);
	if (!vm) {
		cli_error("snapshot", err);
		return 1;
	}
	if (sm_vm_snapshot(vm, argv[optind + 1], &err) < 0) {
		cli_error("snapshot", err);
	} else {
		printf("%s\n", argv[optind + 1]);
		rc = 0;
	}
	sm_vm_free(vm);
	return rc;
}
