/* supermachine port: a VM's published ports (docker port). */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_vm.h"

static void port_usage(FILE *out)
{
	fprintf(out, "usage: supermachine port VM [GUEST_PORT[/tcp]]\n"
		     "\n"
		     "List the ports VM publishes (run -p) as 'GUEST/tcp -> ADDR:HOST', or\n"
		     "with GUEST_PORT the host addresses of that one. Exit status 1 when the\n"
		     "VM does not exist or does not publish GUEST_PORT.\n"
		     "\n"
		     "options:\n"
		     "  -h, --help  this help\n");
}

/* GUEST_PORT[/tcp] as a number; 0 when it is not one. */
static unsigned port_guest(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (end == s || (*end && strcmp(end, "/tcp")) || v == 0 || v > 65535 || s[0] == '-')
		return 0;
	return (unsigned)v;
}

static int port_list(const sm_vm_info *v, unsigned want)
{
	int shown = 0;

	for (size_t i = 0; i < sm_vm_info_port_count(v); i++) {
		const char *addr;
		uint16_t host, guest;
		sm_vm_info_port(v, i, &addr, &host, &guest);
		if (want && guest != want)
			continue;
		if (want)
			printf("%s:%u\n", addr, host);
		else
			printf("%u/tcp -> %s:%u\n", guest, addr, host);
		shown++;
	}
	return shown;
}

int cmd_port(int argc, char **argv)
{
	const sm_vm_info *v;
	sm_error *err = NULL;
	unsigned want = 0;
	sm_vm_list *l;
	int rc = 0;

	if (!cli_help_only(argc, argv, "port", port_usage, &rc))
		return rc;
	if (argc - optind < 1 || argc - optind > 2 || (argc - optind == 2 && !(want = port_guest(argv[optind + 1])))) {
		port_usage(stderr);
		return CLI_EXIT_FAILED;
	}
	l = sm_vm_list_load(&err);
	v = l ? sm_vm_list_find(l, argv[optind], &err) : NULL;
	if (!v) {
		cli_error("port", err);
		sm_vm_list_free(l);
		return CLI_EXIT_ERROR;
	}
	if (port_list(v, want) == 0 && want) {
		fprintf(stderr, "supermachine: port: no public port '%u/tcp' published for %s\n", want, argv[optind]);
		rc = CLI_EXIT_ERROR;
	}
	sm_vm_list_free(l);
	return rc;
}
