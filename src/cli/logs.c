/* supermachine logs: a VM's serial console (kernel and workload output). */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_vm.h"

#define LOGS_POLL_US 100000

static void logs_usage(FILE *out)
{
	fprintf(out, "usage: supermachine logs [-f] VM\n"
		     "\n"
		     "Print the console of VM (an ID, a name or an ID prefix; running, or\n"
		     "ended and kept): the workload's output and the guest's messages.\n"
		     "\n"
		     "options:\n"
		     "  -f, --follow  keep printing what comes until the VM ends\n"
		     "  -h, --help    this help\n");
}

/* Copies from fd to stdout until EOF; false on a write error. */
static bool logs_drain(int fd)
{
	char buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return false;
	fflush(stdout);
	return true;
}

int cmd_logs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool follow = false;
	sm_error *err = NULL;
	int c, fd, rc = 0;
	sm_vm *vm;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': follow = true; break;
		case 'h': logs_usage(stdout); return 0;
		default: return cli_bad_option(c, argv, "logs");
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "supermachine: logs: want one VM (see 'supermachine ps')\n");
		return CLI_EXIT_FAILED;
	}
	vm = sm_vm_attach(argv[optind], &err);
	if (!vm) {
		cli_error("logs", err);
		return 1;
	}
	fd = open(sm_vm_console_path(vm), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "supermachine: logs: %s: %s\n", sm_vm_console_path(vm), strerror(errno));
		rc = 1;
		goto out;
	}
	for (;;) {
		if (!logs_drain(fd)) {
			rc = 1;
			break;
		}
		if (!follow || !sm_vm_running(vm))
			break;
		usleep(LOGS_POLL_US);
	}
	logs_drain(fd); /* what came between the last read and the end */
	close(fd);
out:
	sm_vm_free(vm);
	return rc;
}
