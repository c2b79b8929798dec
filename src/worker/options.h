/* supermachine-worker's command line. */
#ifndef SM_WORKER_OPTIONS_H
#define SM_WORKER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORKER_MAX_DISKS 12
#define WORKER_DEFAULT_MEMORY_MIB 256
#define WORKER_DEFAULT_CMDLINE "quiet"

/* Exit statuses (docs/vmm.md). 128+N: ended by host signal N. */
enum worker_status {
	WORKER_EXIT_REBOOT = 0,  /* the guest rebooted (or reset) */
	WORKER_EXIT_ERROR = 1,   /* KVM or the VMM failed */
	WORKER_EXIT_USAGE = 2,   /* bad command line or setup, before any guest code ran */
	WORKER_EXIT_PANIC = 3,   /* the guest kernel panicked */
	WORKER_EXIT_STOP = 4,    /* stopped on request (control socket, console escape) */
	WORKER_EXIT_SANDBOX = 5, /* the worker made a system call its sandbox forbids */
	WORKER_EXIT_SIGNAL_BASE = 128,
};

struct worker_disk {
	char *path;
	bool read_only;
	char *id;
};

struct worker_options {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint64_t memory_mib;
	unsigned vcpus;
	struct worker_disk disks[WORKER_MAX_DISKS];
	unsigned ndisks;
	bool net;
	const char *vsock;
	bool balloon;
	const char *console;
	const char *control;
	const char *restore; /* snapshot directory: RAM, vCPUs and state come from it */
	bool help;
	/* given on the command line (restore refuses them) */
	bool memory_set, vcpus_set;
};

/*
 * Parses argv. Returns 0, or -1 with one line in err saying what is wrong.
 * Disk specs are copied; free them with worker_options_free().
 */
int worker_options_parse(int argc, char **argv, struct worker_options *o, char *err, size_t errlen);
void worker_options_free(struct worker_options *o);

/* The --help text. */
extern const char worker_usage[];

#endif
