/* pull --name: bake a snapshot, saying which step runs and how long it took. */
#include "cli/bake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_vm.h"

static int parse_u32(const char *s, uint32_t max, uint32_t *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || !*s || *end || s[0] == '-' || n > max)
		return -1;
	*v = (uint32_t)n;
	return 0;
}

int cli_bake_trigger(struct cli_bake_opts *o, const char *spec)
{
	const char *eq = strchr(spec, '=');
	size_t klen = eq ? (size_t)(eq - spec) : strlen(spec);

	o->trigger_value = 0;
	if (!strncmp(spec, "listener", klen) && klen == 8) {
		o->trigger = SM_BAKE_LISTENER;
		if (!eq || parse_u32(eq + 1, 65535, &o->trigger_value) == 0)
			return 0;
	} else if (!strncmp(spec, "after", klen) && klen == 5 && eq) {
		o->trigger = SM_BAKE_AFTER_MS;
		if (parse_u32(eq + 1, 3600000, &o->trigger_value) == 0)
			return 0;
	} else if (!strncmp(spec, "heartbeat", klen) && klen == 9 && eq) {
		o->trigger = SM_BAKE_HEARTBEAT;
		if (parse_u32(eq + 1, UINT32_MAX, &o->trigger_value) == 0 && o->trigger_value > 0)
			return 0;
	} else if (!strcmp(spec, "ready")) {
		o->trigger = SM_BAKE_READY;
		return 0;
	}
	fprintf(stderr, "supermachine: pull: --snapshot-on '%s': want listener[=PORT], after=MS, heartbeat=N "
			"(N >= 1) or ready\n", spec);
	return -1;
}

static void bake_progress(const char *step, bool done, uint64_t elapsed_us, void *opaque)
{
	const struct cli_bake_opts *o = opaque;

	if (o->quiet)
		return;
	if (done)
		fprintf(stderr, "bake %s: %s done in %.2f s\n", o->name, step, (double)elapsed_us / 1e6);
	else
		fprintf(stderr, "bake %s: %s...\n", o->name, step);
}

int cli_bake(const char *image, const struct cli_bake_opts *o)
{
	const char *argv[CLI_MAX_WARMUP][4];
	const char *const *warmup[CLI_MAX_WARMUP + 1];
	sm_vm_config vm = { .size = sizeof(vm), .memory_mib = o->memory_mib, .vcpus = o->vcpus, .network = o->network,
			     .mounts = o->mounts.m, .nmounts = o->mounts.n };
	sm_bake_config cfg = {
		.size = sizeof(cfg),
		.vm = &vm,
		.trigger = o->trigger,
		.trigger_value = o->trigger_value,
		.warmup = warmup,
		.warmup_tag = o->warmup_tag,
		.force = o->force,
		.progress = bake_progress,
		.progress_opaque = (void *)o,
	};
	sm_error *err = NULL;
	int rc;

	for (size_t i = 0; i < o->nwarmup; i++) {
		argv[i][0] = "/bin/sh", argv[i][1] = "-c", argv[i][2] = o->warmup[i], argv[i][3] = NULL;
		warmup[i] = argv[i];
	}
	warmup[o->nwarmup] = NULL;
	if (getenv("SUPERMACHINE_BOOT_TIMEOUT_MS"))
		vm.boot_timeout_ms = (uint32_t)strtoul(getenv("SUPERMACHINE_BOOT_TIMEOUT_MS"), NULL, 10);
	rc = sm_bake(image, o->name, &cfg, &err);
	if (rc < 0) {
		cli_error("pull", err);
		return 1;
	}
	if (!o->quiet)
		fprintf(stderr, "bake %s: %s\n", o->name,
			rc == 1 ? "an up-to-date snapshot is already there (--force bakes again)" : "snapshot ready");
	printf("%s\n", o->name);
	return 0;
}
