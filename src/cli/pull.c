/* supermachine pull: fetch or import an image and build its rootfs. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <supermachine.h>

#include "cli/bake.h"
#include "cli/cli_vm.h"

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
		"Baking a snapshot (docs/snapshots.md): with --name, the image is then\n"
		"booted, warmed and captured as snapshot NAME, which 'supermachine run NAME'\n"
		"restores in milliseconds. An up-to-date snapshot NAME is kept.\n"
		"  --name NAME                   bake into snapshot NAME\n"
		"  --memory MiB, --vcpus N       the baked VM's size (default 256, 1)\n"
		"  --net                         give the baked VM a network (NAT)\n"
		"  --mount HOSTDIR:GUESTPATH[:ro][,symlinks=deny|opaque|follow]\n"
		"                                share a host directory (virtio-fs); a\n"
		"                                restore serves it again (run --mount\n"
		"                                may name another host directory)\n"
		"  --snapshot-on WHEN            capture when: ready (the agent answers;\n"
		"                                default), listener[=PORT] (the workload\n"
		"                                listens on a TCP port), after=MS,\n"
		"                                heartbeat=N (the workload wrote N bytes to\n"
		"                                /run/supermachine/heartbeat)\n"
		"  --warmup CMD                  run sh -c CMD before the capture (repeatable;\n"
		"                                each must exit 0)\n"
		"  --warmup-tag TAG              changing it bakes again\n"
		"  --force                       bake even when NAME is up to date\n"
		"\n"
		"Credentials: SUPERMACHINE_REGISTRY_USER and SUPERMACHINE_REGISTRY_PASSWORD\n"
		"(for SUPERMACHINE_REGISTRY_HOST only, when set), else the auths of\n"
		"$DOCKER_CONFIG/config.json or ~/.docker/config.json. The store is\n"
		"$SUPERMACHINE_HOME, else $XDG_DATA_HOME/supermachine, else\n"
		"~/.local/share/supermachine.\n");
}

struct progress_view {
	sm_pull_phase phase;
	bool started;
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

/*
 * One status line on the terminal, redrawn in place, from the reports on
 * the whole phase (a report on one blob has its digest set).
 */
static int progress_draw(const sm_pull_progress *p, void *arg)
{
	struct progress_view *v = arg;
	char done[32], total[32], rate[32];
	double secs;

	if (p->digest)
		return 0;
	if (!v->started || v->phase != p->phase) {
		v->phase = p->phase;
		v->started = true;
		clock_gettime(CLOCK_MONOTONIC, &v->t0);
	}
	if (p->phase == SM_PULL_DONE) {
		if (v->shown)
			fprintf(stderr, "\r\033[K");
		return 0;
	}
	secs = seconds_since(&v->t0);
	human(done, sizeof(done), (double)p->bytes_done);
	human(total, sizeof(total), (double)p->bytes_total);
	human(rate, sizeof(rate), secs > 0.05 ? (double)p->bytes_done / secs : 0);
	if (p->phase == SM_PULL_DOWNLOADING)
		fprintf(stderr, "\r\033[Kdownloading: %u/%u blobs, %s / %s, %s/s", p->blobs_done,
			p->blobs_total, done, total, rate);
	else if (p->phase == SM_PULL_BUILDING)
		fprintf(stderr, "\r\033[Kbuilding rootfs: %u layers, %s of tar read, %s/s",
			p->blobs_total, done, rate);
	else
		fprintf(stderr, "\r\033[Kresolving...");
	v->shown = true;
	return 0;
}

/* The bake options; 0, or -1 after saying what is wrong. */
static int pull_bake_opt(struct cli_bake_opts *b, int c, const char *arg)
{
	unsigned long v;

	switch (c) {
	case 'n':
		b->name = arg;
		return 0;
	case 'm':
		if (cli_number(arg, 1u << 20, &v, "pull", "--memory") < 0)
			return -1;
		b->memory_mib = (uint32_t)v;
		return 0;
	case 'c':
		if (cli_number(arg, 32, &v, "pull", "--vcpus") < 0)
			return -1;
		b->vcpus = (unsigned)v;
		return 0;
	case 's':
		return cli_bake_trigger(b, arg);
	case 'w':
		if (b->nwarmup == CLI_MAX_WARMUP) {
			fprintf(stderr, "supermachine: pull: more than %d --warmup\n", CLI_MAX_WARMUP);
			return -1;
		}
		b->warmup[b->nwarmup++] = arg;
		return 0;
	case 't':
		b->warmup_tag = arg;
		return 0;
	case 'N':
		b->network = true;
		return 0;
	case 'f':
		b->force = true;
		return 0;
	case 'M':
		return cli_mount_add(&b->mounts, arg, "pull");
	}
	return -1;
}

int cmd_pull(int argc, char **argv)
{
	enum { OPT_PLATFORM = 256, OPT_PLAIN_HTTP, OPT_INSECURE };
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "snapshot-on", required_argument, NULL, 's' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "warmup-tag", required_argument, NULL, 't' },
		{ "net", no_argument, NULL, 'N' },
		{ "force", no_argument, NULL, 'f' },
		{ "mount", required_argument, NULL, 'M' },
		{ "platform", required_argument, NULL, OPT_PLATFORM },
		{ "quiet", no_argument, NULL, 'q' },
		{ "plain-http", no_argument, NULL, OPT_PLAIN_HTTP },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sm_pull_config opts = SM_PULL_CONFIG_INIT;
	struct cli_bake_opts bake = { 0 };
	struct progress_view view = { 0 };
	sm_oci_image *img = NULL;
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
		case '?':
			pull_usage(stderr);
			return 2;
		default:
			if (pull_bake_opt(&bake, c, optarg) < 0)
				return 2;
		}
	}
	if (optind != argc - 1) {
		pull_usage(stderr);
		return 2;
	}
	if (!bake.name && (bake.memory_mib || bake.vcpus || bake.nwarmup || bake.warmup_tag || bake.network ||
			   bake.trigger || bake.force || bake.mounts.n)) {
		fprintf(stderr, "supermachine: pull: --memory, --vcpus, --net, --mount, --snapshot-on, --warmup, "
				"--warmup-tag and --force bake a snapshot: give --name NAME too\n");
		return 2;
	}
	bake.quiet = quiet;
	if (!quiet && isatty(STDERR_FILENO)) {
		opts.progress = progress_draw;
		opts.progress_opaque = &view;
	}
	img = sm_oci_pull(argv[optind], &opts, &err);
	if (img) {
		const char *name = sm_oci_image_name(img), *rootfs = sm_oci_image_rootfs(img);
		if (quiet && !bake.name)
			printf("%s\n", name);
		else if (!quiet)
			printf("%s\n  digest: %s\n  rootfs: %s\n", name, sm_oci_image_manifest_digest(img),
			       rootfs ? rootfs : "(not built)");
		fflush(stdout);
		rc = bake.name ? cli_bake(name, &bake) : 0;
	} else {
		if (view.shown)
			fprintf(stderr, "\n");
		fprintf(stderr, "supermachine: pull %s: %s\n", argv[optind], sm_error_string(err));
	}
	sm_error_free(err);
	sm_oci_image_free(img);
	return rc;
}
