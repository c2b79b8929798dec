/* supermachine ps: list VMs started with run -d (their runtime directories). */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli/cli_vm.h"

static void ps_usage(FILE *out)
{
	fprintf(out, "usage: supermachine ps [-a] [-q]\n"
		     "\n"
		     "List running VMs (with -a also those that ended and were not\n"
		     "removed with 'supermachine stop').\n"
		     "\n"
		     "options:\n"
		     "  -a, --all    include ended VMs\n"
		     "  -q, --quiet  print only IDs\n"
		     "  -h, --help   this help\n");
}

static void ps_age(int64_t created, char *buf, size_t len)
{
	int64_t s = (int64_t)time(NULL) - created;

	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, len, "%llds ago", (long long)s);
	else if (s < 7200)
		snprintf(buf, len, "%lldm ago", (long long)(s / 60));
	else
		snprintf(buf, len, "%lldh ago", (long long)(s / 3600));
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
	sm_vm_list *list;
	sm_error *err = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "aqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': all = true; break;
		case 'q': quiet = true; break;
		case 'h': ps_usage(stdout); return 0;
		default: ps_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "supermachine: ps: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	list = sm_vm_list_load(&err);
	if (!list) {
		cli_error("ps", err);
		return 1;
	}
	if (!quiet)
		printf("%-12s  %-8s  %-10s  %-24s  %s\n", "ID", "STATUS", "CREATED", "IMAGE", "COMMAND");
	for (size_t i = 0; i < sm_vm_list_count(list); i++) {
		const sm_vm_info *v = sm_vm_list_at(list, i);
		bool running = sm_vm_info_status(v) == SM_VM_RUNNING;
		char age[32];
		if (!running && !all)
			continue;
		if (quiet) {
			printf("%s\n", sm_vm_info_id(v));
			continue;
		}
		ps_age(sm_vm_info_created(v), age, sizeof(age));
		printf("%-12s  %-8s  %-10s  %-24s  %s\n", sm_vm_info_id(v), running ? "running" : "exited", age,
		       sm_vm_info_image(v), sm_vm_info_command(v));
	}
	sm_vm_list_free(list);
	return 0;
}
