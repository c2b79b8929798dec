/* supermachine ps: the VMs of this user, running ones or (-a) all kept ones. */
#include "cli/cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
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
		     "  --format json, --json\n"
		     "               a JSON array of objects (fields are only ever added)\n"
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

/* The VMs as a JSON array: all of them with -a, else the running ones. */
static int ps_json(sm_vm_list *list, bool all)
{
	char *text = sm_vm_list_json(list);
	json_t *arr = text ? json_loads(text, 0, NULL) : NULL;
	size_t i = 0;
	int rc = 1;

	while (!all && json_is_array(arr) && i < json_array_size(arr)) {
		const char *st = json_string_value(json_object_get(json_array_get(arr, i), "status"));
		if (st && !strcmp(st, "running"))
			i++;
		else
			json_array_remove(arr, i);
	}
	if (json_is_array(arr) && json_dumpf(arr, stdout, JSON_INDENT(2)) == 0 && putchar('\n') != EOF)
		rc = 0;
	else
		fprintf(stderr, "supermachine: ps: cannot write the list as JSON\n");
	json_decref(arr);
	free(text);
	sm_vm_list_free(list);
	return rc;
}

int cmd_ps(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool all = false, quiet = false, json = false;
	int64_t now = (int64_t)time(NULL);
	sm_vm_list *list;
	sm_error *err = NULL;
	int c;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":aqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': all = true; break;
		case 'q': quiet = true; break;
		case 'j': json = true; break;
		case 'f':
			if (cli_format_json(optarg, &json, "ps") < 0)
				return 2;
			break;
		case 'h': ps_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "ps");
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
	if (json)
		return ps_json(list, all);
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
