/*
 * supermachine run: boot an image as a VM and run a command in it.
 *
 * In the foreground the command (CMD, else the image's Entrypoint+Cmd)
 * runs as an exec, so its exit status and streams come back to us, and
 * the VM stops with it. Detached (-d), the command becomes the VM's
 * workload, supervised by /init, and the VM powers off when it exits; a
 * watcher process keeps -p ports open for as long as the VM runs,
 * restarts it (--restart) and records its end. Without --rm an ended VM
 * is kept, stopped, for ps -a, logs and inspect, until rm.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_vm.h"
#include "cli/progress.h"

#define RUN_MAX_VOLUMES 8
#define RUN_MAX_ENV_FILES 16

struct run_opts {
	struct cli_exec_opts x;
	struct cli_port ports[CLI_MAX_PORTS];
	size_t nports;
	sm_volume volumes[RUN_MAX_VOLUMES];
	char volume_buf[RUN_MAX_VOLUMES][4200];
	size_t nvolumes;
	struct cli_mounts mounts;
	bool rm, detach, net, net_given, snapshot;
	const char *entrypoint;  /* --entrypoint: NULL = the image's; "" = none */
	const char *env_files[RUN_MAX_ENV_FILES];
	size_t nenv_files;
	const char *name;
	const char *restart;   /* NULL: "no" */
	unsigned restart_max;  /* on-failure:N; 0: no limit */
	bool restart_on_failure;
	uint32_t stop_timeout_ms;
	uint32_t memory_mib;
	unsigned vcpus;
	const char *image;
	const char *pull;      /* --pull: missing (default), always or never */
	char **cmd; /* NULL: the image's */
	char **cmd_owned; /* cmd as --entrypoint made it */
};

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: supermachine run [OPTIONS] IMAGE [CMD...]\n"
		"\n"
		"Boot IMAGE (a pulled image, see 'supermachine images') as a microVM and\n"
		"run CMD in it, else the image's Entrypoint+Cmd. The exit status is the\n"
		"command's, else as docker's: 125 when supermachine fails (a bad option,\n"
		"a name taken, a VM that cannot start), 126 when CMD cannot be run,\n"
		"127 when it is not found.\n"
		"\n"
		"Without --rm a VM is kept when it ends, stopped, with its console and\n"
		"exit status, until 'supermachine rm' (see ps -a, logs, inspect).\n"
		"\n"
		"IMAGE may be a baked snapshot (pull --name, snapshot): it is restored\n"
		"instead of booted, its workload already running. CMD then runs as an\n"
		"exec; without CMD the VM runs (serving -p ports) until it ends or you\n"
		"interrupt it. Memory, vCPUs and network are the snapshot's; volumes must\n"
		"be given again (-v, the same guest paths), as they are not captured.\n"
		"\n"
		"options:\n"
		"  --name NAME          a unique name, usable wherever the ID is\n"
		"                       ([a-zA-Z0-9][a-zA-Z0-9_.-]+, at most 64 bytes)\n"
		"  --rm                 remove the VM when it ends (else it is kept, stopped)\n"
		"  -d, --detach         run CMD as the VM's workload in the background; print\n"
		"                       the VM's ID (see ps, exec, logs, stop, wait); a watcher\n"
		"                       process records its end, restarts it, removes it (--rm)\n"
		"  --restart POLICY     with -d: no (default), on-failure or on-failure:N (boot\n"
		"                       it again when its workload exits non-zero, at most N\n"
		"                       times); not with --rm, nor for a snapshot\n"
		"  --stop-timeout SECONDS\n"
		"                       grace a later 'stop' gives before it kills (default 10)\n"
		"  --pull POLICY        missing (default: pull IMAGE when the store has no such\n"
		"                       image or snapshot, as docker does), always, or never\n"
		"  --init               accepted for docker's sake: supermachine's own /init is\n"
		"                       always PID 1, reaping zombies and forwarding signals\n"
		"  -i, --interactive    stream stdin to the command\n"
		"  -t, --tty            a terminal for the command\n"
		"  -e, --env K=V        set an environment variable (-e K: this shell's value)\n"
		"  --env-file FILE      read variables from FILE: KEY=VALUE lines, KEY alone\n"
		"                       for this shell's value, # comments (before -e's)\n"
		"  --entrypoint CMD     run CMD instead of the image's Entrypoint, with CMD...\n"
		"                       as its arguments (the image's Cmd is not used; \"\":\n"
		"                       no entrypoint, CMD... else the image's Cmd alone)\n"
		"  -w, --workdir DIR    working directory in the guest\n"
		"  -u, --user USER      name, uid, name:group or uid:gid\n"
		"  -p, --publish [ADDR:]HOST:GUEST\n"
		"                       forward host TCP port HOST (on ADDR, default\n"
		"                       127.0.0.1; 0 = any) to GUEST in the VM (over vsock)\n"
		"  -v, --volume HOSTFILE:GUESTPATH[:SIZE]\n"
		"                       a persistent ext4 disk, made on first use (default 1G)\n"
		"  -v, --volume HOSTDIR:GUESTPATH[:ro]\n"
		"                       when HOSTDIR is a directory: as --mount\n"
		"  --mount HOSTDIR:GUESTPATH[:ro][,symlinks=deny|opaque|follow]\n"
		"                       share a host directory, live (virtio-fs); symlinks\n"
		"                       leading out of it are refused unless 'follow'\n"
		"  --memory MiB         guest memory (default 256)\n"
		"  --vcpus N            virtual CPUs (default 1)\n"
		"  --net, --network NET the guest's network: nat (the default: outbound NAT,\n"
		"                       DNS, the host's 127.0.0.1 at 10.0.2.2) or none (-p\n"
		"                       works without one); a snapshot keeps its own\n"
		"  --no-net             --net none\n"
		"  -h, --help           this help\n");
}

static int run_volume(struct run_opts *o, const char *spec)
{
	sm_error *err = NULL;

	if (o->nvolumes == RUN_MAX_VOLUMES) {
		fprintf(stderr, "supermachine: run: more than %d volumes\n", RUN_MAX_VOLUMES);
		return -1;
	}
	if (sm_volume_parse(spec, o->volume_buf[o->nvolumes], sizeof(o->volume_buf[0]), &o->volumes[o->nvolumes],
			    &err) < 0) {
		cli_error("run", err);
		return -1;
	}
	o->nvolumes++;
	return 0;
}

static int run_net(struct run_opts *o, const char *value)
{
	o->net_given = true;
	return cli_net_value(value, &o->net, "run");
}

/* The --env-file variables come first, so -e overrides them whatever the order given (as Docker). */
static int run_env_files(struct run_opts *o)
{
	const char *given[CLI_MAX_ENV];
	size_t n = o->x.nenv;

	if (!o->nenv_files)
		return 0;
	memcpy(given, o->x.env, n * sizeof(given[0]));
	o->x.nenv = 0;
	for (size_t i = 0; i < o->nenv_files; i++)
		if (cli_env_file(&o->x, o->env_files[i], "run") < 0)
			return -1;
	for (size_t i = 0; i < n; i++) {
		if (o->x.nenv == CLI_MAX_ENV) {
			fprintf(stderr, "supermachine: run: more than %d variables (-e and --env-file)\n", CLI_MAX_ENV);
			return -1;
		}
		o->x.env[o->x.nenv++] = given[i];
	}
	o->x.env[o->x.nenv] = NULL;
	return 0;
}

/* The image's Cmd, for --entrypoint "" without CMD; NULL (said on stderr) when there is none. */
static char **run_image_cmd(const struct run_opts *o, sm_oci_image **img)
{
	sm_error *err = NULL;
	const char *const *cmd;

	*img = o->snapshot ? NULL : sm_oci_image_get(o->image, &err);
	if (!*img && !o->snapshot) {
		cli_error("run", err);
		return NULL;
	}
	cmd = *img ? sm_oci_image_cmd(*img) : NULL;
	if (!cmd || !cmd[0])
		fprintf(stderr, "supermachine: run: --entrypoint \"\": %s has no Cmd; give a command\n", o->image);
	return cmd && cmd[0] ? (char **)cmd : NULL;
}

/*
 * --entrypoint E: the command is E with CMD as its arguments, the image's
 * Entrypoint and Cmd both set aside (as Docker does); --entrypoint "":
 * CMD alone, else the image's Cmd alone.
 */
static int run_entrypoint(struct run_opts *o)
{
	sm_oci_image *img = NULL;
	char **args = o->cmd;
	size_t n = 0, i = 0;

	if (!o->entrypoint[0] && !args && !(args = run_image_cmd(o, &img)))
		return -1;
	while (args && args[n])
		n++;
	o->cmd_owned = calloc(n + 2, sizeof(char *));
	if (!o->cmd_owned) {
		sm_oci_image_free(img);
		return -1;
	}
	if (o->entrypoint[0] && !(o->cmd_owned[i++] = strdup(o->entrypoint)))
		n = 0;
	for (size_t k = 0; k < n; k++)
		if (!(o->cmd_owned[i++] = strdup(args[k])))
			break;
	sm_oci_image_free(img);
	o->cmd = o->cmd_owned;
	if (o->cmd[0] && o->cmd[i - 1])
		return 0;
	fprintf(stderr, "supermachine: run: --entrypoint: out of memory\n");
	return -1;
}

/* The long options without a letter. */
enum run_opt { OPT_RM = 256, OPT_MEMORY, OPT_VCPUS, OPT_NET, OPT_NO_NET, OPT_NETWORK, OPT_ENV_FILE, OPT_ENTRYPOINT,
	       OPT_MOUNT, OPT_NAME, OPT_RESTART, OPT_STOP_TIMEOUT, OPT_INIT, OPT_PULL };

/* --name, --restart, --stop-timeout: 0, or -1 said on stderr. */
static int run_lifecycle_opt(struct run_opts *o, int c, const char *arg)
{
	unsigned long v;
	char *end;

	if (c == OPT_NAME) {
		if (!sm_vm_name_valid(arg)) {
			fprintf(stderr, "supermachine: run: --name '%s': want [a-zA-Z0-9][a-zA-Z0-9_.-]+, 2 to 64 bytes\n",
				arg);
			return -1;
		}
		o->name = arg;
		return 0;
	}
	if (c == OPT_RESTART) {
		int kind = sm_restart_parse(arg, &o->restart_max);
		if (kind < 0) {
			fprintf(stderr, "supermachine: run: --restart '%s': want no, on-failure or on-failure:N\n", arg);
			return -1;
		}
		o->restart = arg;
		o->restart_on_failure = kind == 1;
		return 0;
	}
	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || !*arg || *end || arg[0] == '-' || v > 3600) {
		fprintf(stderr, "supermachine: run: --stop-timeout '%s': want seconds from 0 to 3600\n", arg);
		return -1;
	}
	o->stop_timeout_ms = v ? (uint32_t)v * 1000u : 1; /* 0 s: no grace (1 ms), not the default */
	return 0;
}

/* docker's rules for --restart: not with --rm; here also only detached, and never for a snapshot. */
static int run_restart_check(const struct run_opts *o)
{
	if (!o->restart_on_failure)
		return 0;
	if (o->rm) {
		fprintf(stderr, "supermachine: run: conflicting options: --restart and --rm\n");
		return -1;
	}
	if (!o->detach || o->snapshot) {
		fprintf(stderr, "supermachine: run: --restart applies to a VM booted with -d, not %s\n",
			o->snapshot ? "a snapshot" : "one in the foreground");
		return -1;
	}
	return 0;
}

/*
 * --pull: an image the store lacks is pulled first, with pull's progress
 * on stderr, as `docker run` does; "always" pulls again (a moved tag),
 * "never" leaves the start to say it is missing.
 */
static int run_pull(const struct run_opts *o)
{
	sm_pull_config pc = SM_PULL_CONFIG_INIT;
	const char *policy = o->pull ? o->pull : "missing";
	sm_error *err = NULL;
	sm_oci_image *img;

	if (strcmp(policy, "never") == 0)
		return 0;
	if (strcmp(policy, "missing") == 0) {
		img = sm_oci_image_get(o->image, &err);
		if (img || sm_error_code(err) != SM_E_NOT_FOUND) {
			sm_oci_image_free(img); /* another error: the start says it, with its context */
			sm_error_free(err);
			return 0;
		}
		sm_error_free(err);
		err = NULL;
		fprintf(stderr, "Unable to find image '%s' in the store: pulling it\n", o->image);
	}
	img = cli_pull_shown(o->image, &pc, false, &err);
	if (!img) {
		fprintf(stderr, "supermachine: run: pull %s: %s\n", o->image, sm_error_string(err));
		sm_error_free(err);
		return -1;
	}
	sm_oci_image_free(img);
	return 0;
}

/* 0 parsed, 1 --help shown, -1 bad usage (said on stderr). */
static int run_parse(int argc, char **argv, struct run_opts *o)
{
	static const struct option longopts[] = {
		{ "rm", no_argument, NULL, OPT_RM },           { "detach", no_argument, NULL, 'd' },
		{ "interactive", no_argument, NULL, 'i' },     { "tty", no_argument, NULL, 't' },
		{ "env", required_argument, NULL, 'e' },       { "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },      { "publish", required_argument, NULL, 'p' },
		{ "volume", required_argument, NULL, 'v' },    { "memory", required_argument, NULL, OPT_MEMORY },
		{ "vcpus", required_argument, NULL, OPT_VCPUS }, { "net", optional_argument, NULL, OPT_NET },
		{ "no-net", no_argument, NULL, OPT_NO_NET },   { "help", no_argument, NULL, 'h' },
		{ "network", required_argument, NULL, OPT_NETWORK }, { "env-file", required_argument, NULL, OPT_ENV_FILE },
		{ "entrypoint", required_argument, NULL, OPT_ENTRYPOINT },
		{ "mount", required_argument, NULL, OPT_MOUNT },
		{ "name", required_argument, NULL, OPT_NAME }, { "restart", required_argument, NULL, OPT_RESTART },
		{ "stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT }, { "init", no_argument, NULL, OPT_INIT },
		{ "pull", required_argument, NULL, OPT_PULL },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long v;
	int c;

	optind = 1;
	opterr = 0;
	o->net = true; /* as in Docker: outbound network unless --net none */
	/* "+": options end at IMAGE, so CMD keeps its own (run img ls -l); ":": a missing value is ':' */
	while ((c = getopt_long(argc, argv, "+:dite:w:u:p:v:h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_RM: o->rm = true; break;
		case 'd': o->detach = true; break;
		case 'i': o->x.interactive = true; break;
		case 't': o->x.tty = true; break;
		case 'e':
			if (cli_env_add(&o->x, optarg, "run") < 0)
				return -1;
			break;
		case 'w': o->x.workdir = optarg; break;
		case 'u': o->x.user = optarg; break;
		case 'p':
			if (o->nports == CLI_MAX_PORTS) {
				fprintf(stderr, "supermachine: run: more than %d -p\n", CLI_MAX_PORTS);
				return -1;
			}
			if (cli_port_parse(optarg, &o->ports[o->nports++], "run") < 0)
				return -1;
			break;
		case 'v':
			if ((cli_volume_is_dir(optarg) ? cli_mount_add(&o->mounts, optarg, "run") : run_volume(o, optarg)) < 0)
				return -1;
			break;
		case OPT_MOUNT:
			if (cli_mount_add(&o->mounts, optarg, "run") < 0)
				return -1;
			break;
		case OPT_MEMORY:
			if (cli_number(optarg, 1u << 20, &v, "run", "--memory") < 0)
				return -1;
			o->memory_mib = (uint32_t)v;
			break;
		case OPT_VCPUS:
			if (cli_number(optarg, 64, &v, "run", "--vcpus") < 0)
				return -1;
			o->vcpus = (unsigned)v;
			break;
		case OPT_NET:
		case OPT_NETWORK:
		case OPT_NO_NET:
			if (run_net(o, c == OPT_NO_NET ? "none" : cli_net_arg(c == OPT_NET, argc, argv)) < 0)
				return -1;
			break;
		case OPT_ENV_FILE:
			if (o->nenv_files == RUN_MAX_ENV_FILES) {
				fprintf(stderr, "supermachine: run: more than %d --env-file\n", RUN_MAX_ENV_FILES);
				return -1;
			}
			o->env_files[o->nenv_files++] = optarg;
			break;
		case OPT_ENTRYPOINT: o->entrypoint = optarg; break;
		case OPT_INIT: break; /* always so */
		case OPT_PULL:
			if (strcmp(optarg, "missing") && strcmp(optarg, "always") && strcmp(optarg, "never")) {
				fprintf(stderr, "supermachine: run: --pull '%s': want missing, always or never\n", optarg);
				return -1;
			}
			o->pull = optarg;
			break;
		case OPT_NAME:
		case OPT_RESTART:
		case OPT_STOP_TIMEOUT:
			if (run_lifecycle_opt(o, c, optarg) < 0)
				return -1;
			break;
		case 'h': run_usage(stdout); return 1;
		default: cli_bad_option(c, argv, "run"); return -1;
		}
	}
	if (run_env_files(o) < 0)
		return -1;
	if (optind >= argc) {
		fprintf(stderr, "supermachine: run: no IMAGE given (see 'supermachine run --help')\n");
		return -1;
	}
	o->image = argv[optind];
	if (optind + 1 < argc)
		o->cmd = argv + optind + 1;
	o->snapshot = sm_snapshot_exists(o->image);
	if (!o->snapshot && run_pull(o) < 0)
		return -1;
	if (o->snapshot && !o->net_given)
		o->net = false; /* the snapshot's own setting: a restore refuses only to add a network */
	if (o->entrypoint && run_entrypoint(o) < 0)
		return -1;
	if (o->snapshot && o->detach && o->cmd) {
		fprintf(stderr, "supermachine: run: %s is a snapshot: its workload is baked in; run -d takes no CMD "
				"(use exec)\n", o->image);
		return -1;
	}
	if (o->detach && (o->x.interactive || o->x.tty)) {
		fprintf(stderr, "supermachine: run: -d cannot be combined with -i or -t\n");
		return -1;
	}
	return run_restart_check(o);
}

static void run_config(const struct run_opts *o, sm_vm_config *cfg)
{
	*cfg = (sm_vm_config){
		.size = sizeof(sm_vm_config),
		.memory_mib = o->memory_mib,
		.vcpus = o->vcpus,
		.volumes = o->volumes,
		.nvolumes = o->nvolumes,
		.mounts = o->mounts.m,
		.nmounts = o->mounts.n,
		.network = o->net,
		.env = o->x.env,
		.workdir = o->x.workdir,
		.user = o->x.user,
		.label = o->image,
		.detached = o->detach,
		.name = o->name,
		.keep = !o->rm,
		.stop_timeout_ms = o->stop_timeout_ms,
		.restart = o->restart,
	};
	if (getenv("SUPERMACHINE_BOOT_TIMEOUT_MS"))
		cfg->boot_timeout_ms = (uint32_t)strtoul(getenv("SUPERMACHINE_BOOT_TIMEOUT_MS"), NULL, 10);
	if (o->snapshot) {
		/* baked in; -e, -w and -u still apply to CMD, as exec options */
		cfg->env = NULL;
		cfg->workdir = NULL;
		cfg->user = NULL;
	}
}

static volatile sig_atomic_t run_interrupted;

static void run_on_signal(int sig)
{
	(void)sig;
	run_interrupted = 1;
}

/* A restored snapshot without CMD: its workload serves until the VM ends or we are interrupted. */
static int run_snapshot_wait(sm_vm *vm)
{
	struct sigaction sa = { .sa_handler = run_on_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	while (!run_interrupted && sm_vm_running(vm)) {
		struct pollfd p = { .fd = sm_vm_pidfd(vm), .events = POLLIN };
		poll(&p, 1, p.fd >= 0 ? 1000 : 200);
	}
	return run_interrupted ? 130 : 0;
}

static sm_forward **run_forwards(sm_vm *vm, const struct run_opts *o)
{
	sm_forward **f = calloc(o->nports + 1, sizeof(*f));
	sm_error *err = NULL;

	for (size_t i = 0; f && i < o->nports; i++) {
		f[i] = sm_vm_expose_tcp(vm, o->ports[i].addr, o->ports[i].host_port, o->ports[i].guest_port, &err);
		if (!f[i]) {
			cli_error("run: -p", err);
			while (i--)
				sm_forward_stop(f[i]);
			free(f);
			return NULL;
		}
	}
	return f;
}

static void run_forwards_stop(sm_forward **f)
{
	for (size_t i = 0; f && f[i]; i++)
		sm_forward_stop(f[i]);
	free(f);
}

static void run_wait_worker(sm_vm *vm)
{
	while (sm_vm_running(vm)) {
		/* the pidfd turns readable when the worker exits; without one, look every second */
		struct pollfd p = { .fd = sm_vm_pidfd(vm), .events = POLLIN };
		poll(&p, 1, p.fd >= 0 ? -1 : 1000);
	}
}

/*
 * The watcher's life: boot the VM again while --restart allows (the
 * library refuses a VM stopped or removed on request), then record its
 * end, or remove it with --rm (stopping an ended VM does either).
 */
static void run_watch(sm_vm *vm, const struct run_opts *o)
{
	unsigned restarts = 0;

	for (;;) {
		int status = -1;
		run_wait_worker(vm);
		sm_vm_wait(vm, 0, &status, NULL);
		if (!o->restart_on_failure || status == 0 || (o->restart_max && restarts >= o->restart_max))
			break;
		restarts++;
		if (sm_vm_restart(vm, NULL) < 0)
			break;
	}
	sm_vm_stop(vm, 0, NULL);
}

/*
 * -d: a process of its own, in its own session, outlives us, as docker's
 * shim does: it holds the -p listeners, restarts the VM (--restart),
 * and records its end or removes it (--rm) once its worker exits.
 */
static int run_watcher_detach(const char *id, const struct run_opts *o)
{
	sm_forward **f = NULL;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid > 0)
		return 0;
	setsid();
	sm_error *err = NULL;
	sm_vm *vm = sm_vm_attach(id, &err);
	if (!vm || (o->nports && !(f = run_forwards(vm, o)))) {
		sm_error_free(err);
		_exit(1);
	}
	if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) ||
	    !freopen("/dev/null", "w", stderr))
		_exit(1);
	run_watch(vm, o);
	run_forwards_stop(f);
	sm_vm_free(vm);
	_exit(0);
}

static int run_detached(struct run_opts *o, sm_vm_config *cfg)
{
	sm_error *err = NULL;
	sm_vm *vm;

	if (!o->snapshot) {
		cfg->power_off_on_exit = true;
		cfg->workload = (const char *const *)o->cmd;
		cfg->image_workload = true;
	}
	vm = sm_vm_start(o->image, cfg, &err);
	if (!vm) {
		cli_error("run", err);
		return CLI_EXIT_FAILED;
	}
	if (!sm_vm_running(vm)) {
		/* The workload ended, and the VM with it, before the start returned: record it, or remove it. */
		sm_vm_stop(vm, 0, NULL);
	} else if (run_watcher_detach(sm_vm_id(vm), o) < 0) {
		fprintf(stderr, "supermachine: run: cannot start the process that watches the VM\n");
		sm_vm_stop(vm, 0, NULL);
		sm_vm_free(vm);
		return CLI_EXIT_FAILED;
	}
	printf("%s\n", sm_vm_id(vm));
	sm_vm_free(vm);
	return 0;
}

static int run_foreground(struct run_opts *o, sm_vm_config *cfg)
{
	const char *const *argv = (const char *const *)o->cmd;
	sm_forward **fwd = NULL;
	sm_error *err = NULL;
	int status = CLI_EXIT_FAILED;
	sm_vm *vm;

	vm = sm_vm_start(o->image, cfg, &err);
	if (!vm) {
		cli_error("run", err);
		return CLI_EXIT_FAILED;
	}
	if (!argv && o->snapshot) {
		fwd = run_forwards(vm, o);
		if (fwd)
			status = run_snapshot_wait(vm);
		goto out;
	}
	if (!argv)
		argv = sm_vm_image_command(vm);
	if (!argv) {
		fprintf(stderr, "supermachine: run: image %s has no Entrypoint or Cmd; give a command\n", o->image);
		goto out;
	}
	fwd = run_forwards(vm, o);
	if (!fwd)
		goto out;
	status = cli_exec_stream(vm, argv, &o->x, "run");
out:
	sm_vm_set_exit_code(vm, status); /* what ps -a and inspect show of a kept VM */
	run_forwards_stop(fwd);
	if (sm_vm_stop(vm, 0, &err) < 0)
		cli_error("run: stop", err);
	sm_vm_free(vm);
	return status;
}

int cmd_run(int argc, char **argv)
{
	struct run_opts *o = calloc(1, sizeof(*o));
	sm_vm_config cfg;
	int rc;

	if (!o)
		return CLI_EXIT_FAILED;
	rc = run_parse(argc, argv, o);
	if (rc == 0) {
		run_config(o, &cfg);
		rc = o->detach ? run_detached(o, &cfg) : run_foreground(o, &cfg);
	} else {
		rc = rc > 0 ? 0 : CLI_EXIT_FAILED; /* as Docker: 125 for an error of the runner itself, bad usage included */
	}
	for (size_t i = 0; o->cmd_owned && o->cmd_owned[i]; i++)
		free(o->cmd_owned[i]);
	free(o->cmd_owned);
	cli_exec_opts_free(&o->x);
	free(o);
	return rc;
}
