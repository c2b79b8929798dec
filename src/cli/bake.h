/*
 * `pull IMAGE --name NAME`: bake the pulled image into a snapshot
 * (sm_bake) with progress lines on stderr.
 */
#ifndef SM_CLI_BAKE_H
#define SM_CLI_BAKE_H

#include <stdbool.h>
#include <stdint.h>

#include <supermachine.h>

#include "cli/cli_vm.h"

#define CLI_MAX_WARMUP 32

struct cli_bake_opts {
	const char *name;                  /* NULL: no bake */
	uint32_t memory_mib;
	unsigned vcpus;
	bool network, network_given, force, quiet;
	sm_bake_trigger trigger;
	uint32_t trigger_value;
	const char *warmup[CLI_MAX_WARMUP]; /* each run as sh -c CMD */
	size_t nwarmup;
	const char *warmup_tag;
	struct cli_mounts mounts;
};

/* Parses --snapshot-on's value: listener[=PORT], after=MS, heartbeat=N. 0 or -1 (said on stderr). */
int cli_bake_trigger(struct cli_bake_opts *o, const char *spec);
/* Bakes image into o->name; the exit status for the shell. */
int cli_bake(const char *image, const struct cli_bake_opts *o);

#endif
