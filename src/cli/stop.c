/* supermachine stop: power a detached VM off cleanly and remove it. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli_vm.h"

static void stop_usage(FILE *out)
{
	fprintf(out, "usage: supermachine stop [-t SECONDS] ID...\n"
		     "\n"
		     "Shut each VM down cleanly (its disks synced and unmounted), killing it\n"
		     "after the grace time, and remove its runtime directory. An ID of a VM\n"
		     "that already ended just removes it.\n"
		     "\n"
		     "options:\n"
		     "  -t, --time SECONDS  grace time before the VM is killed (default 10)\n"
		     "  -h, --help          this help\n");
}

int cmd_stop(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "time", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long grace_s = 10;
	char *end;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			errno = 0;
			grace_s = strtoul(optarg, &end, 10);
			if (errno || !*optarg || *end || grace_s == 0 || grace_s > 3600) {
				fprintf(stderr, "supermachine: stop: -t '%s': want seconds from 1 to 3600\n", optarg);
				return 2;
			}
			break;
		case 'h': stop_usage(stdout); return 0;
		default: stop_usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "supermachine: stop: no ID given (see 'supermachine ps')\n");
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		sm_error *err = NULL;
		sm_vm *vm = sm_vm_attach(argv[i], &err);
		if (!vm) {
			cli_error("stop", err);
			rc = 1;
			continue;
		}
		if (sm_vm_stop(vm, (uint32_t)grace_s * 1000u, &err) < 0) {
			cli_error("stop", err);
			rc = 1;
		}
		printf("%s\n", sm_vm_id(vm));
		sm_vm_free(vm); /* ended: its runtime directory goes */
	}
	return rc;
}
