/* supermachine stop: power VMs off cleanly; kept ones stay, stopped, others go. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli_vm.h"

static void stop_usage(FILE *out)
{
	fprintf(out, "usage: supermachine stop [-t SECONDS] VM...\n"
		     "\n"
		     "Shut each VM (an ID, a name or an ID prefix) down cleanly (its disks\n"
		     "synced and unmounted), killing it after the grace time. A VM run\n"
		     "without --rm is kept, stopped, with its exit status (ps -a, rm); one run\n"
		     "with --rm is removed. A VM stopped this way is not restarted (--restart).\n"
		     "\n"
		     "options:\n"
		     "  -t, --time SECONDS  grace time before the VM is killed (default: the VM's\n"
		     "                      run --stop-timeout, else 10)\n"
		     "  -h, --help          this help\n");
}

int cmd_stop(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "time", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long grace_s = 0; /* the VM's own */
	char *end;
	int c, rc = 0;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			errno = 0;
			grace_s = strtoul(optarg, &end, 10);
			if (errno || !*optarg || *end || grace_s == 0 || grace_s > 3600) {
				fprintf(stderr, "supermachine: stop: -t '%s': want seconds from 1 to 3600\n", optarg);
				return CLI_EXIT_FAILED;
			}
			break;
		case 'h': stop_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "stop");
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "supermachine: stop: no VM given (see 'supermachine ps')\n");
		return CLI_EXIT_FAILED;
	}
	for (int i = optind; i < argc; i++) {
		sm_error *err = NULL;
		sm_vm *vm = sm_vm_attach(argv[i], &err);
		if (!vm) {
			cli_error("stop", err);
			rc = CLI_EXIT_ERROR;
			continue;
		}
		if (sm_vm_stop(vm, (uint32_t)grace_s * 1000u, &err) < 0) {
			cli_error("stop", err);
			rc = CLI_EXIT_ERROR;
		}
		printf("%s\n", argv[i]);
		sm_vm_free(vm); /* ended: its runtime directory goes unless it is kept */
	}
	return rc;
}
