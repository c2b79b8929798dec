/* supermachine kill: send a signal to a VM's workload (docker kill). */
#include "cli/cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "cli/cli_vm.h"

static void kill_usage(FILE *out)
{
	fprintf(out, "usage: supermachine kill [-s SIGNAL] VM...\n"
		     "\n"
		     "Send SIGNAL to each VM's workload (the command run -d started), which\n"
		     "init supervises: a workload that ends powers its VM off. A VM run in\n"
		     "the foreground has no workload: stop it instead.\n"
		     "\n"
		     "options:\n"
		     "  -s, --signal SIGNAL  a name (KILL, SIGTERM) or number (default KILL)\n"
		     "  -h, --help           this help\n");
}

static int kill_one(const char *name, int sig)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_attach(name, &err);

	if (!vm)
		return cli_error("kill", err), -1;
	if (!sm_vm_running(vm)) {
		fprintf(stderr, "supermachine: kill: VM %s is not running\n", name);
		sm_vm_free(vm);
		return -1;
	}
	if (sm_vm_workload_signal(vm, sig, &err) < 0) {
		sm_vm_free(vm);
		return cli_error("kill", err), -1;
	}
	printf("%s\n", name);
	sm_vm_free(vm);
	return 0;
}

int cmd_kill(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "signal", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, rc = 0, sig = SIGKILL;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sig = sm_signal_parse(optarg);
			if (!sig) {
				fprintf(stderr, "supermachine: kill: invalid signal: %s\n", optarg);
				return CLI_EXIT_FAILED;
			}
			break;
		case 'h': kill_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "kill");
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "supermachine: kill: want at least one VM (see 'supermachine ps')\n");
		return CLI_EXIT_FAILED;
	}
	for (int i = optind; i < argc; i++)
		if (kill_one(argv[i], sig) < 0)
			rc = CLI_EXIT_ERROR;
	return rc;
}
