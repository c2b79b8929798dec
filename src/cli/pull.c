/* supermachine pull: fetch or import an image and build its rootfs. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include <supermachine.h>

#include "cli/bake.h"
#include "cli/cli_vm.h"
#include "cli/progress.h"

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
		"                                (else, on a terminal, a bar per layer with\n"
		"                                bytes, rate and ETA; elsewhere a line per\n"
		"                                layer done)\n"
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
		"  --net, --network NET          the baked VM's network: nat (the default:\n"
		"                                outbound NAT) or none\n"
		"  --no-net                      --net none\n"
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

/* The bake options; 0, or -1 after saying what is wrong. */
static int pull_bake_opt(struct cli_bake_opts *b, int c, const char *arg, int argc, char **argv)
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
	case 'X':
	case 'O':
		b->network_given = true;
		return cli_net_value(c == 'X' ? "none" : cli_net_arg(c == 'N', argc, argv), &b->network, "pull");
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
		{ "net", optional_argument, NULL, 'N' },
		{ "network", required_argument, NULL, 'O' },
		{ "no-net", no_argument, NULL, 'X' },
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
	struct cli_bake_opts bake = { .network = true }; /* as run: outbound NAT unless --net none */
	sm_oci_image *img = NULL;
	sm_error *err = NULL;
	bool quiet = false;
	int c, rc = 1;

	optind = 1;
	opterr = 0; /* one line of ours instead of getopt's and the usage */
	while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
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
		case ':':
			return cli_bad_option(c, argv, "pull");
		default:
			if (pull_bake_opt(&bake, c, optarg, argc, argv) < 0)
				return 2;
		}
	}
	if (optind != argc - 1) {
		pull_usage(stderr);
		return 2;
	}
	if (!bake.name && (bake.memory_mib || bake.vcpus || bake.nwarmup || bake.warmup_tag || bake.network_given ||
			   bake.trigger || bake.force || bake.mounts.n)) {
		fprintf(stderr, "supermachine: pull: --memory, --vcpus, --net, --mount, --snapshot-on, --warmup, "
				"--warmup-tag and --force bake a snapshot: give --name NAME too\n");
		return 2;
	}
	bake.quiet = quiet;
	img = cli_pull_shown(argv[optind], &opts, quiet, &err);
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
		fprintf(stderr, "supermachine: pull %s: %s\n", argv[optind], sm_error_string(err));
	}
	sm_error_free(err);
	sm_oci_image_free(img);
	return rc;
}
