/*
 * libFuzzer target: the library <-> worker contract's parsers
 * (src/proto/worker.c) on arbitrary bytes: a control request line as the
 * worker reads it, a reply line as the library reads it (and its
 * KEY=NUMBER fields), and a command line as the worker parses it (the
 * input split at NUL bytes into argv), and a spare's handoff message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/worker.h"

#define MAX_ARGS 64

static void fuzz_lines(const char *s)
{
	struct worker_request req;
	struct worker_reply rep;
	uint64_t v;

	if (worker_request_parse(s, &req) == 0 && strlen(req.name) >= WORKER_CTL_NAME_MAX)
		abort();
	if (worker_reply_parse(s, &rep) == 0) {
		(void)worker_reply_u64(rep.text, "target", &v);
		(void)worker_reply_u64(rep.text, "actual", &v);
		(void)worker_reply_u64(rep.text, "", &v);
	}
}

static void fuzz_argv(char *buf, size_t len)
{
	char *argv[MAX_ARGS + 2] = { "supermachine-worker" }, err[256], **back = NULL;
	struct worker_launch l;
	int argc = 1;

	for (size_t i = 0; i < len && argc < MAX_ARGS; i += strlen(buf + i) + 1)
		argv[argc++] = buf + i;
	argv[argc] = NULL;
	if (worker_launch_parse(argc, argv, &l, err, sizeof(err)) == 0 &&
	    worker_launch_argv(&l, "supermachine-worker", &back, err, sizeof(err)) == 0)
		worker_argv_free(back);
	worker_launch_free(&l);
}

/* A handoff as a spare decodes it, then parses it as its command line. */
static void fuzz_handoff(char *buf, size_t len)
{
	char *argv[MAX_ARGS + 1], err[256];
	struct worker_launch l;
	int argc = worker_handoff_decode(buf, len, argv, MAX_ARGS + 1);

	if (argc <= 0)
		return;
	worker_launch_parse(argc, argv, &l, err, sizeof(err));
	worker_launch_free(&l); /* after a failed parse too, as its contract says */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	fuzz_lines(s);
	fuzz_argv(s, size);
	memcpy(s, data, size); /* the split wrote NULs nowhere, but getopt may have permuted */
	fuzz_handoff(s, size);
	free(s);
	return 0;
}
