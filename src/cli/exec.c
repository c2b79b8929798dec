/* supermachine exec: run a command in a running VM (one started with run -d). */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>

#include "cli/cli_vm.h"

static void exec_usage(FILE *out)
{
	fprintf(out, "usage: supermachine exec [OPTIONS] VM CMD...\n"
		     "\n"
		     "Run CMD in the running VM (an ID, a name or an ID prefix, see\n"
		     "'supermachine ps'); the exit status is the command's, else as docker's:\n"
		     "125 when supermachine fails (a bad option, no such VM, one not\n"
		     "running), 126 when CMD cannot be run, 127 when it is not found.\n"
		     "\n"
		     "options:\n"
		     "  -i, --interactive    stream stdin to the command\n"
		     "  -t, --tty            a terminal for the command\n"
		     "  -e, --env K=V        set an environment variable\n"
		     "  -w, --workdir DIR    working directory\n"
		     "  -u, --user USER      name, uid, name:group or uid:gid\n"
		     "  -h, --help           this help\n");
}

int cmd_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "interactive", no_argument, NULL, 'i' }, { "tty", no_argument, NULL, 't' },
		{ "env", required_argument, NULL, 'e' },   { "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },  { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_exec_opts o = { 0 };
	sm_error *err = NULL;
	int c, rc = CLI_EXIT_FAILED;
	sm_vm *vm;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, "+:ite:w:u:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': o.interactive = true; break;
		case 't': o.tty = true; break;
		case 'e':
			if (cli_env_add(&o, optarg, "exec") < 0)
				goto out;
			break;
		case 'w': o.workdir = optarg; break;
		case 'u': o.user = optarg; break;
		case 'h': exec_usage(stdout); rc = 0; goto out;
		default: rc = cli_bad_option(c, argv, "exec"); goto out;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "supermachine: exec: want an ID and a command (see 'supermachine exec --help')\n");
		goto out;
	}
	vm = sm_vm_attach(argv[optind], &err);
	if (!vm) {
		cli_error("exec", err);
		rc = 125;
		goto out;
	}
	if (!sm_vm_running(vm)) {
		fprintf(stderr, "supermachine: exec: VM %s is not running\n", sm_vm_id(vm));
		rc = 125;
	} else {
		rc = cli_exec_stream(vm, (const char *const *)argv + optind + 1, &o, "exec");
	}
	sm_vm_free(vm);
out:
	cli_exec_opts_free(&o);
	return rc;
}
