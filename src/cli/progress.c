/* pull's progress view (progress.h): layer bars on a terminal, plain lines elsewhere. */
#include "cli/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 20
#define REDRAW_S 0.1 /* a terminal is redrawn at most this often, but at once on a layer's end */

static double clock_monotonic(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void cli_progress_init(struct cli_progress *v, FILE *out, bool tty, double (*clock)(void))
{
	memset(v, 0, sizeof(*v));
	v->out = out;
	v->tty = tty;
	v->clock = clock ? clock : clock_monotonic;
	v->last_draw = -1;
}

/* Decimal units, as docker pull shows them. */
static void human(char *buf, size_t n, double bytes)
{
	static const char *const units[] = { "B", "kB", "MB", "GB", "TB" };
	int u = 0;

	while (bytes >= 1000 && u < 4) {
		bytes /= 1000;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

static void duration(char *buf, size_t n, double s)
{
	unsigned long t = s < 0 ? 0 : (unsigned long)(s + 0.5);

	int w = t >= 3600 ? snprintf(buf, n, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60)
			  : snprintf(buf, n, "%lu:%02lu", t / 60, t % 60);

	if (w < 0 && n)
		buf[0] = 0;
}

static struct cli_progress_blob *blob_of(struct cli_progress *v, const char *digest)
{
	for (size_t i = 0; i < v->nblobs; i++)
		if (!strcmp(v->blobs[i].digest, digest))
			return &v->blobs[i];
	if (v->nblobs == CLI_PROGRESS_MAX_BLOBS)
		return NULL; /* past the table: still counted in the totals, not drawn */
	struct cli_progress_blob *b = &v->blobs[v->nblobs++];
	snprintf(b->digest, sizeof(b->digest), "%s", digest);
	return b;
}

/* The 12 hex digits docker shows of a digest. */
static const char *short_digest(const char *d)
{
	const char *colon = strchr(d, ':');

	return colon ? colon + 1 : d;
}

static void blob_line(const struct cli_progress *v, const struct cli_progress_blob *b, double now)
{
	char done[16], total[16], rate[16], eta[16], bar[BAR_WIDTH + 1];
	double secs = now - b->t_start, bps;
	unsigned fill;

	human(done, sizeof(done), (double)b->done);
	human(total, sizeof(total), (double)b->total);
	if (b->state == SM_BLOB_CACHED) {
		fprintf(v->out, "%.12s  already stored\n", short_digest(b->digest));
	} else if (b->state == SM_BLOB_DONE) {
		fprintf(v->out, "%.12s  done  %s in %.1f s\n", short_digest(b->digest), total, b->t_end - b->t_start);
	} else if (b->state == SM_BLOB_WAITING || !b->total) {
		fprintf(v->out, "%.12s  waiting\n", short_digest(b->digest));
	} else {
		bps = secs > 0.05 ? (double)b->done / secs : 0;
		fill = (unsigned)((double)BAR_WIDTH * (double)b->done / (double)b->total);
		memset(bar, ' ', BAR_WIDTH);
		memset(bar, '=', fill > BAR_WIDTH ? BAR_WIDTH : fill);
		if (fill < BAR_WIDTH)
			bar[fill] = '>';
		bar[BAR_WIDTH] = 0;
		human(rate, sizeof(rate), bps);
		if (bps > 0)
			duration(eta, sizeof(eta), (double)(b->total - b->done) / bps);
		fprintf(v->out, "%.12s  [%s] %s / %s  %s/s  ETA %s\n", short_digest(b->digest), bar, done, total, rate,
			bps > 0 ? eta : "-");
	}
}

static void build_line(const struct cli_progress *v, double now)
{
	char done[16], rate[16];
	double secs = now - v->phase_t0;

	human(done, sizeof(done), (double)v->built);
	human(rate, sizeof(rate), secs > 0.05 ? (double)v->built / secs : 0);
	if (v->layers)
		fprintf(v->out, "building root filesystem: %u layers, %s of tar read, %s/s\n", v->layers, done, rate);
	else
		fprintf(v->out, "building root filesystem...\n");
}

/* The terminal view: every layer's line, then the building line, over the last drawing. */
static void draw(struct cli_progress *v, double now)
{
	if (v->drawn)
		fprintf(v->out, "\033[%uA", v->drawn);
	v->drawn = 0;
	for (size_t i = 0; i < v->nblobs; i++, v->drawn++) {
		fputs("\r\033[K", v->out);
		blob_line(v, &v->blobs[i], now);
	}
	if (v->building) {
		fputs("\r\033[K", v->out);
		build_line(v, now);
		v->drawn++;
	}
	fflush(v->out);
	v->last_draw = now;
}

/* Takes a blob's report; true when it ended just now. */
static bool blob_update(struct cli_progress *v, const sm_pull_progress *p, double now)
{
	struct cli_progress_blob *b = blob_of(v, p->digest);
	bool ended;

	if (!b)
		return false;
	if (b->state == SM_BLOB_WAITING && p->state != SM_BLOB_WAITING)
		b->t_start = now;
	ended = b->state != p->state && (p->state == SM_BLOB_DONE || p->state == SM_BLOB_CACHED);
	if (ended)
		b->t_end = now;
	b->state = p->state;
	b->done = p->done;
	b->total = p->total;
	if (ended && !v->tty && !b->said) {
		blob_line(v, b, now);
		b->said = true;
	}
	return ended;
}

/* A new phase; true when the view changed. */
static bool phase_update(struct cli_progress *v, const sm_pull_progress *p, double now)
{
	if (p->phase == SM_PULL_BUILDING) {
		v->building = true;
		v->built = p->bytes_done;
		v->layers = p->blobs_total;
	}
	if (p->phase == v->phase)
		return false;
	v->phase = p->phase;
	v->phase_t0 = now;
	if (p->phase == SM_PULL_BUILDING && !v->tty)
		fprintf(v->out, "building root filesystem\n");
	return true;
}

int cli_progress_report(const sm_pull_progress *p, void *opaque)
{
	struct cli_progress *v = opaque;
	double now = v->clock();
	bool changed;

	if (p->digest)
		changed = blob_update(v, p, now);
	else
		changed = phase_update(v, p, now);
	if (v->tty && p->phase != SM_PULL_DONE && (changed || now - v->last_draw >= REDRAW_S))
		draw(v, now);
	return 0;
}

void cli_progress_finish(struct cli_progress *v)
{
	if (v->tty && (v->nblobs || v->building))
		draw(v, v->clock());
	if (!v->tty)
		fflush(v->out);
}

sm_oci_image *cli_pull_shown(const char *source, sm_pull_config *cfg, bool quiet, sm_error **err)
{
	struct cli_progress view;
	sm_oci_image *img;

	cli_progress_init(&view, stderr, isatty(STDERR_FILENO), NULL);
	if (!quiet) {
		cfg->progress = cli_progress_report;
		cfg->progress_opaque = &view;
	}
	img = sm_oci_pull(source, cfg, err);
	cli_progress_finish(&view);
	cfg->progress = NULL;
	cfg->progress_opaque = NULL;
	return img;
}
