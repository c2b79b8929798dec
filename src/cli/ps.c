/* supermachine ps: the VMs of this user, running ones or (-a) all kept ones. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_vm.h"

static void ps_usage(FILE *out)
{
	fprintf(out, "usage: supermachine ps [-a] [-q]\n"
		     "\n"
		     "List running VMs; with -a also those that ended and are kept (run\n"
		     "without --rm) until 'supermachine rm'. Columns as docker's: ID, NAME,\n"
		     "IMAGE, COMMAND, CREATED, STATUS (Up 3 minutes, Exited (N) 2 minutes\n"
		     "ago, with restarts), PORTS (-p).\n"
		     "\n"
		     "options:\n"
		     "  -a, --all    include ended VMs\n"
		     "  -q, --quiet  print only IDs\n"
		     "  -h, --help   this help\n");
}

static void ps_row(const sm_vm_info *v, int64_t now)
{
	char created[48], status[80], ports[512], age[32];

	cli_human_duration(now - sm_vm_info_created(v), age, sizeof(age));
	snprintf(created, sizeof(created), "%s ago", age);
	cli_status_string(v, now, status, sizeof(status));
	if (sm_vm_info_restarts(v)) {
		size_t n = strlen(status);
		snprintf(status + n, sizeof(status) - n, " (restarts: %u)", sm_vm_info_restarts(v));
	}
	cli_ports_string(v, ports, sizeof(ports));
	printf("%-12s  %-16s  %-24s  %-24.24s  %-16s  %-30s  %s\n", sm_vm_info_id(v), sm_vm_info_name(v),
	       sm_vm_info_image(v), sm_vm_info_command(v), created, status, ports);
}

int cmd_ps(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool all = false, quiet = false;
	int64_t now = (int64_t)time(NULL);
	sm_vm_list *list;
	sm_error *err = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "aqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': all = true; break;
		case 'q': quiet = true; break;
		case 'h': ps_usage(stdout); return 0;
		default: ps_usage(stderr); return CLI_EXIT_FAILED;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "supermachine: ps: unexpected argument '%s'\n", argv[optind]);
		return CLI_EXIT_FAILED;
	}
	list = sm_vm_list_load(&err);
	if (!list) {
		cli_error("ps", err);
		return CLI_EXIT_ERROR;
	}
	if (!quiet)
		printf("%-12s  %-16s  %-24s  %-24s  %-16s  %-30s  %s\n", "ID", "NAME", "IMAGE", "COMMAND", "CREATED",
		       "STATUS", "PORTS");
	for (size_t i = 0; i < sm_vm_list_count(list); i++) {
		const sm_vm_info *v = sm_vm_list_at(list, i);
		if (sm_vm_info_status(v) != SM_VM_RUNNING && !all)
			continue;
		if (quiet)
			printf("%s\n", sm_vm_info_id(v));
		else
			ps_row(v, now);
	}
	sm_vm_list_free(list);
	return 0;
}
