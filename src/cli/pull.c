/* supermachine pull: fetch or import an image and build its rootfs. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "oci/oci.h"

static void pull_usage(FILE *out)
{
	fprintf(out,
		"usage: supermachine pull [OPTIONS] IMAGE\n"
		"\n"
		"Pull IMAGE and build the root filesystem a VM boots from. IMAGE is a\n"
		"registry reference (busybox, ghcr.io/o/r:tag, host:5000/x@sha256:...),\n"
		"oci:DIR[:TAG] (an OCI image layout) or docker-archive:FILE[:TAG].\n"
		"\n"
		"options:\n"
		"  --platform OS/ARCH[/VARIANT]  which image of a multi-platform index\n"
		"                                (default linux/amd64)\n"
		"  -q, --quiet                   no progress; print only the image name\n"
		"  --plain-http                  talk http:// to the registry (automatic\n"
		"                                for localhost and 127.0.0.0/8)\n"
		"  --insecure                    https without certificate verification\n"
		"                                (localhost included)\n"
		"  -h, --help                    this help\n"
		"\n"
		"Credentials: SUPERMACHINE_REGISTRY_USER and SUPERMACHINE_REGISTRY_PASSWORD\n"
		"(for SUPERMACHINE_REGISTRY_HOST only, when set), else the auths of\n"
		"$DOCKER_CONFIG/config.json or ~/.docker/config.json. The store is\n"
		"$SUPERMACHINE_HOME, else $XDG_DATA_HOME/supermachine, else\n"
		"~/.local/share/supermachine.\n");
}

struct progress_view {
	const char *phase;
	struct timespec t0;
	bool shown;
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void human(char *buf, size_t n, double v)
{
	static const char *const units[] = { "B", "KB", "MB", "GB", "TB" };
	int u = 0;

	while (v >= 1000 && u < 4) {
		v /= 1000;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

/* One status line on the terminal, redrawn in place. */
static void progress_draw(const struct oci_progress *p, void *arg)
{
	struct progress_view *v = arg;
	char done[32], total[32], rate[32];
	double secs;

	if (!v->phase || strcmp(v->phase, p->phase)) {
		v->phase = p->phase;
		clock_gettime(CLOCK_MONOTONIC, &v->t0);
	}
	if (!strcmp(p->phase, "done")) {
		if (v->shown)
			fprintf(stderr, "\r\033[K");
		return;
	}
	secs = seconds_since(&v->t0);
	human(done, sizeof(done), (double)p->bytes_done);
	human(total, sizeof(total), (double)p->bytes_total);
	human(rate, sizeof(rate), secs > 0.05 ? (double)p->bytes_done / secs : 0);
	if (!strcmp(p->phase, "downloading"))
		fprintf(stderr, "\r\033[Kdownloading: %u/%u blobs, %s / %s, %s/s", p->layers_done,
			p->layers_total, done, total, rate);
	else if (!strcmp(p->phase, "building"))
		fprintf(stderr, "\r\033[Kbuilding rootfs: %u layers, %s of tar read, %s/s",
			p->layers_total, done, rate);
	else
		fprintf(stderr, "\r\033[K%s...", p->phase);
	v->shown = true;
}

int cmd_pull(int argc, char **argv)
{
	enum { OPT_PLATFORM = 256, OPT_PLAIN_HTTP, OPT_INSECURE };
	static const struct option longopts[] = {
		{ "platform", required_argument, NULL, OPT_PLATFORM },
		{ "quiet", no_argument, NULL, 'q' },
		{ "plain-http", no_argument, NULL, OPT_PLAIN_HTTP },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct oci_pull_opts opts = { 0 };
	struct progress_view view = { 0 };
	struct oci_store *st = NULL;
	struct oci_image *img = NULL;
	sm_error *err = NULL;
	bool quiet = false;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_PLATFORM:
			opts.platform = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case OPT_PLAIN_HTTP:
			opts.plain_http = true;
			break;
		case OPT_INSECURE:
			opts.insecure = true;
			break;
		case 'h':
			pull_usage(stdout);
			return 0;
		default:
			pull_usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		pull_usage(stderr);
		return 2;
	}
	if (!quiet && isatty(STDERR_FILENO)) {
		opts.progress = progress_draw;
		opts.progress_arg = &view;
	}
	if (oci_store_open(NULL, &st, &err) == 0 && oci_pull(st, argv[optind], &opts, &img, &err) == 0) {
		if (quiet)
			printf("%s\n", img->name);
		else
			printf("%s\n  digest: %s\n  rootfs: %s\n", img->name, img->manifest_digest,
			       img->rootfs_path ? img->rootfs_path : "(not built)");
		rc = 0;
	} else {
		if (view.shown)
			fprintf(stderr, "\n");
		fprintf(stderr, "supermachine: pull %s: %s\n", argv[optind], sm_error_string(err));
	}
	sm_error_free(err);
	oci_image_free(img);
	oci_store_close(st);
	return rc;
}
