/* supermachine check: can VMs run on this host, and if not, why and what to do. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <supermachine.h>

#include "cli/cli_vm.h"

static void check_usage(FILE *out)
{
	fprintf(out, "usage: supermachine check [--json] [--kvm-only]\n"
		     "\n"
		     "Report whether VMs can run on this host, one line per requirement (ok, warn\n"
		     "or FAIL), each with what was found or measured and what to do: /dev/kvm\n"
		     "(opens, API version, capabilities), how fast a tiny probe guest runs kernel\n"
		     "code on it and what an I/O exit costs (judged against hardware\n"
		     "virtualization), the guest kernel, initramfs and worker (where, and by which\n"
		     "rule), the store (writable, free space), transparent huge pages, memory\n"
		     "overcommit, seccomp, and which jail a worker gets (as root: namespaces and\n"
		     "whether a cgroup v2 leaf; otherwise whether user namespaces are possible).\n"
		     "Where VMs cannot run, says whether tests/nested\n"
		     "could (QEMU present). Exits 0 when VMs can run here, 1 otherwise.\n"
		     "\n"
		     "options:\n"
		     "  --json        the report as a JSON array of {name, status, detail, hint,\n"
		     "                value, unit} objects\n"
		     "  --kvm-only    only the /dev/kvm lines (what scripts/test uses to choose\n"
		     "                between running VMs here and inside tests/nested)\n"
		     "  -h, --help    this help\n");
}

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "kvm-only", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned flags = 0;
	bool json = false;
	sm_error *err = NULL;
	sm_host_report *r;
	char *out;
	int c, rc;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'k': flags |= SM_CHECK_KVM_ONLY; break;
		case 'h': check_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "check");
		}
	}
	if (optind != argc) {
		fprintf(stderr, "supermachine: check: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	r = sm_host_check(flags, &err);
	if (!r) {
		cli_error("check", err);
		return 1;
	}
	out = json ? sm_host_report_json(r) : sm_host_report_text(r);
	rc = sm_host_report_can_run(r) ? 0 : 1;
	if (!out || fputs(out, stdout) == EOF || (json && fputc('\n', stdout) == EOF)) {
		fprintf(stderr, "supermachine: check: could not write the report\n");
		rc = 1;
	}
	free(out);
	sm_host_report_free(r);
	return rc;
}
