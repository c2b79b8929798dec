/*
 * What `pull` shows while it pulls: on a terminal, a bar per layer
 * (bytes, rate, ETA) redrawn in place; otherwise one plain line per layer
 * as it is done. Fed by sm_oci_pull's progress callback.
 */
#ifndef SM_CLI_PROGRESS_H
#define SM_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <supermachine.h>

#define CLI_PROGRESS_MAX_BLOBS 128

struct cli_progress_blob {
	char digest[80];
	sm_pull_blob_state state;
	uint64_t done, total;
	double t_start, t_end; /* seconds on the view's clock: first bytes, and done */
	bool said;             /* its "done" line is out (plain mode) */
};

struct cli_progress {
	FILE *out;
	bool tty;
	double (*clock)(void); /* monotonic seconds */
	sm_pull_phase phase;
	double phase_t0, last_draw;
	bool building;         /* the build has started */
	uint64_t built;        /* building: bytes of tar read */
	unsigned layers;
	struct cli_progress_blob blobs[CLI_PROGRESS_MAX_BLOBS];
	size_t nblobs;
	unsigned drawn;        /* terminal lines of the last drawing, to redraw over */
};

/* clock NULL: CLOCK_MONOTONIC. */
void cli_progress_init(struct cli_progress *v, FILE *out, bool tty, double (*clock)(void));
/* An sm_pull_progress_fn; opaque is the struct cli_progress. Never cancels. */
int cli_progress_report(const sm_pull_progress *p, void *opaque);
/* The last drawing, whole (a terminal's bars at their final state). */
void cli_progress_finish(struct cli_progress *v);

/* sm_oci_pull with this view on stderr (bars on a terminal), or none when quiet. */
sm_oci_image *cli_pull_shown(const char *source, sm_pull_config *cfg, bool quiet, sm_error **err);

#endif
