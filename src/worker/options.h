/* supermachine-worker's command line. */
#ifndef SM_WORKER_OPTIONS_H
#define SM_WORKER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/worker.h"

#define WORKER_MAX_DISKS 12
#define WORKER_DEFAULT_MEMORY_MIB 256
#define WORKER_DEFAULT_CMDLINE "quiet"

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
