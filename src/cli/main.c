/*
 * supermachine: the command-line front end. Each subcommand lives in its
 * own file and registers here.
 */
#include "cli/cli.h"
#include "cli/cli_vm.h"

#include <stdio.h>
#include <string.h>

#include <supermachine.h>

static void version_usage(FILE *out)
{
	fprintf(out, "usage: supermachine version\n\nPrint the version.\n");
}

static int cmd_version(int argc, char **argv)
{
	int rc;

	if (argc > 0 && !cli_help_only(argc, argv, "version", version_usage, &rc))
		return rc;
	printf("supermachine %s\n", sm_version());
	return 0;
}

static const struct cli_command commands[] = {
	{ "version", "print the version", cmd_version },
	{ "pull", "pull or import an image and build its root filesystem (--name: bake a snapshot)", cmd_pull },
	{ "images", "list stored images", cmd_images },
	{ "inspect", "show a VM or a stored image as JSON", cmd_inspect },
	{ "rm", "remove VMs, snapshots or images (and unused blobs)", cmd_rm },
	{ "run", "boot an image as a VM and run a command in it", cmd_run },
	{ "ps", "list VMs (-a: also those that ended)", cmd_ps },
	{ "exec", "run a command in a running VM", cmd_exec },
	{ "stop", "stop VMs cleanly (kept, stopped, unless run with --rm)", cmd_stop },
	{ "logs", "print a VM's console (-f: follow it)", cmd_logs },
	{ "wait", "wait for VMs to end and print their exit status", cmd_wait },
	{ "kill", "send a signal to a VM's workload", cmd_kill },
	{ "port", "list a VM's published ports", cmd_port },
	{ "stats", "CPU, memory and I/O of running VMs", cmd_stats },
	{ "cp", "copy files or directories between the host and a VM", cmd_cp },
	{ "snapshot", "capture a running VM as a snapshot (it keeps running)", cmd_snapshot },
	{ "check", "report whether VMs can run on this host, and what to fix", cmd_check },
	{ "system", "disk use of the store and VMs (df), and removing what nothing uses (prune)", cmd_system },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: supermachine COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'supermachine COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(0, NULL);
	/* the library is silent unless asked: its warnings (a refused forward, ...) go to our stderr */
	sm_set_log(sm_log_stderr, NULL, SM_LOG_WARN);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "supermachine: unknown command '%s' (see 'supermachine --help')\n", argv[1]);
	return 2;
}
