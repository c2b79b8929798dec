/* supermachine wait: block until VMs end, print each one's exit status (docker wait). */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>

#include "cli/cli_vm.h"

static void wait_usage(FILE *out)
{
	fprintf(out, "usage: supermachine wait VM...\n"
		     "\n"
		     "Wait until each VM (an ID, a name or an ID prefix) ends and print its\n"
		     "exit status, one a line: its workload's, or its command's for a VM run\n"
		     "in the foreground (-1 when none was reported). The exit status is the\n"
		     "last VM's (255 when unknown); 1 when a VM does not exist.\n"
		     "\n"
		     "options:\n"
		     "  -h, --help  this help\n");
}

/* The exit code the VM's record holds once it ended; -1 unknown. */
static int wait_code(const char *id)
{
	sm_vm_list *l = sm_vm_list_load(NULL);
	const sm_vm_info *v = l ? sm_vm_list_find(l, id, NULL) : NULL;
	int code = v ? sm_vm_info_exit_code(v) : -1;

	sm_vm_list_free(l);
	return code;
}

static int wait_one(const char *name, int *code)
{
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_attach(name, &err);

	if (!vm)
		return cli_error("wait", err), -1;
	if (sm_vm_wait(vm, -1, NULL, &err) < 0) {
		sm_vm_free(vm);
		return cli_error("wait", err), -1;
	}
	*code = wait_code(sm_vm_id(vm));
	printf("%d\n", *code);
	fflush(stdout);
	sm_vm_free(vm);
	return 0;
}

int cmd_wait(int argc, char **argv)
{
	int rc = 0, code = -1;

	if (!cli_help_only(argc, argv, "wait", wait_usage, &rc))
		return rc;
	if (optind >= argc) {
		fprintf(stderr, "supermachine: wait: want at least one VM (see 'supermachine ps')\n");
		return CLI_EXIT_FAILED;
	}
	for (int i = optind; i < argc; i++)
		rc = wait_one(argv[i], &code) < 0 ? CLI_EXIT_ERROR : (code < 0 ? 255 : code);
	return rc;
}
