/*
 * supermachine inspect: a VM or a stored image as JSON, whichever the
 * name resolves to (a VM first, as docker's inspect looks at containers
 * before images).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli_vm.h"

static void inspect_usage(FILE *out)
{
	fprintf(out, "usage: supermachine inspect [--format json | --json] VM|IMAGE...\n"
		     "\n"
		     "Print each as JSON. A VM (an ID, a name or an ID prefix, see ps -a):\n"
		     "id, name, image, command, created, console, state (status, running,\n"
		     "pid, exit_code, started, finished, restarts) and config (memory_mib,\n"
		     "vcpus, network, volumes, mounts, ports, restart, stop_timeout_ms).\n"
		     "An image (a name as pulled, or a manifest digest prefix): its digests,\n"
		     "the runtime parts of its config (Entrypoint, Cmd, Env, WorkingDir,\n"
		     "User, ExposedPorts, StopSignal) and the path of its root filesystem\n"
		     "image (built now if missing). Exit status 1 when any one is neither.\n"
		     "\n"
		     "options:\n"
		     "  --format json, --json  JSON (the only format, so the default)\n"
		     "  -h, --help             this help\n");
}

/* The VM's JSON when name is a VM's: 1 printed, 0 not a VM, -1 failed (said). */
static int inspect_vm(const sm_vm_list *l, const char *name)
{
	const sm_vm_info *v = sm_vm_list_find(l, name, NULL);
	char *j;

	if (!v)
		return 0;
	j = sm_vm_info_json(v);
	if (!j || printf("%s\n", j) < 0) {
		fprintf(stderr, "supermachine: inspect %s: cannot write JSON\n", name);
		free(j);
		return -1;
	}
	free(j);
	return 1;
}

static int inspect_image(const char *name)
{
	sm_error *err = NULL;
	sm_oci_image *img = sm_oci_image_get(name, &err);
	char *j = img ? sm_oci_image_json(img) : NULL;
	int rc = -1;

	if (!img && sm_error_code(err) == SM_E_NOT_FOUND)
		fprintf(stderr, "supermachine: inspect: no such VM or image: %s\n", name);
	else if (!img)
		fprintf(stderr, "supermachine: inspect %s: %s\n", name, sm_error_string(err));
	else if (!j || printf("%s\n", j) < 0)
		fprintf(stderr, "supermachine: inspect %s: cannot write JSON\n", name);
	else
		rc = 0;
	free(j);
	sm_oci_image_free(img);
	sm_error_free(err);
	return rc;
}

/* --format json, --json and --help; -1 with *rc set when the command ends here. */
static int inspect_options(int argc, char **argv, int *rc)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = true;
	int c;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		if (c == 'j' || (c == 'f' && cli_format_json(optarg, &json, "inspect") == 0))
			continue;
		if (c == 'h') {
			inspect_usage(stdout);
			*rc = 0;
		} else {
			*rc = c == 'f' ? CLI_EXIT_FAILED : cli_bad_option(c, argv, "inspect");
		}
		return -1;
	}
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	sm_error *err = NULL;
	sm_vm_list *l;
	int rc = 0;

	if (inspect_options(argc, argv, &rc) < 0)
		return rc;
	if (optind >= argc) {
		inspect_usage(stderr);
		return CLI_EXIT_FAILED;
	}
	l = sm_vm_list_load(&err);
	if (!l) {
		cli_error("inspect", err);
		return CLI_EXIT_ERROR;
	}
	for (int i = optind; i < argc; i++) {
		int vm = inspect_vm(l, argv[i]);
		if (vm < 0 || (vm == 0 && inspect_image(argv[i]) < 0))
			rc = CLI_EXIT_ERROR;
	}
	sm_vm_list_free(l);
	return rc;
}
