/*
 * /init. As PID 1 it boots the guest (pid1.c) and serves the agent on
 * vsock; with --agent-only it is just the agent, on any listener, for
 * running the real agent on a host (tests) without touching the system.
 */
#include "guest/init.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void usage(FILE *to)
{
	fprintf(to,
		"usage: init                      (as PID 1: boot the VM, agent on vsock:%u)\n"
		"       init --agent-only --listen unix:PATH|vsock:PORT [options]\n"
		"  --config FILE     a guest configuration (image env, workload, ...)\n"
		"  --heartbeat PATH  count bytes written to this FIFO as heartbeats\n"
		"  --cgroup DIR      run each exec in a cgroup v2 under DIR (cgroup.kill)\n"
		"  --ready-fd N      write one byte to fd N once listening\n"
		"  --allow-clock     let set-time change this machine's clock\n"
		"  --test-resume     resume only thaws and unseals: this machine's clock and RNG stay as they are\n"
		"  --seal-wait-ms N  how long a request waits for a resume while sealed (default %u)\n",
		PROTO_AGENT_PORT, SEAL_WAIT_MS);
}

static int load_config_file(struct init_state *st, const char *path)
{
	struct proto_frame f;
	size_t len, used;
	int rc = init_read_file(path, PROTO_MAX_PAYLOAD + PROTO_HDR_SIZE, &st->config_raw, &len);

	if (rc < 0) {
		fprintf(stderr, "init: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	if (proto_frame_parse(st->config_raw, len, &f, &used) != 1 || used != len ||
	    proto_decode_config(&f, &st->cfg) < 0) {
		fprintf(stderr, "init: %s is not a valid guest configuration\n", path);
		return -EINVAL;
	}
	return 0;
}

static int parse_args(struct init_state *st, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agent-only", no_argument, NULL, 'a' },
		{ "listen", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "heartbeat", required_argument, NULL, 'b' },
		{ "cgroup", required_argument, NULL, 'g' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "allow-clock", no_argument, NULL, 'k' },
		{ "test-resume", no_argument, NULL, 't' },
		{ "seal-wait-ms", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool agent_only = false;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a': agent_only = true; break;
		case 'l': st->listen = optarg; break;
		case 'c': if (load_config_file(st, optarg) < 0) return -1; break;
		case 'b': st->heartbeat_path = optarg; break;
		case 'g': snprintf(st->cgroup_root, sizeof(st->cgroup_root), "%s", optarg); break;
		case 'r': st->ready_fd = atoi(optarg); break;
		case 'k': st->allow_clock = true; break;
		case 't': st->test_resume = true; break;
		case 'w': st->seal_wait_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!agent_only || !st->listen || optind != argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* The image's Env, with a default PATH when it has none (as docker does). */
static int build_image_env(struct init_state *st)
{
	const struct proto_config *cfg = &st->cfg;
	bool has_path = false;
	uint32_t n = 0;

	st->image_env = calloc((size_t)cfg->nenv + 2, sizeof(char *));
	if (!st->image_env)
		return -ENOMEM;
	for (uint32_t i = 0; i < cfg->nenv; i++) {
		has_path |= !strncmp(cfg->env[i], "PATH=", 5);
		st->image_env[n++] = cfg->env[i];
	}
	if (!has_path)
		st->image_env[n++] = INIT_DEFAULT_PATH;
	return 0;
}

int main(int argc, char **argv)
{
	char listen[32];
	int rc;
	struct init_state st = {
		.listen_fd = -1, .sig_fd = -1, .ctl_rd = -1, .ctl_wr = -1, .heartbeat_fd = -1, .ready_fd = -1,
		.seal_wait_ms = SEAL_WAIT_MS,
	};

	st.start_ns = init_now_ns();
	st.pid1 = getpid() == 1;
	/* Shared with the session processes: the heartbeat count, the workload's pid, the seal. */
	st.shared = mmap(NULL, sizeof(*st.shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (st.shared == MAP_FAILED) {
		perror("init: mmap");
		return 1;
	}
	if (!st.pid1 && parse_args(&st, argc, argv) < 0)
		return 2;
	if (st.pid1) {
		/* The kernel hands init unknown command-line words as arguments: ignore them. */
		if (pid1_boot(&st) < 0) {
			agent_log("boot failed; powering off");
			pid1_poweroff(&st);
		}
		snprintf(listen, sizeof(listen), "vsock:%u", st.cfg.agent_port ? st.cfg.agent_port : PROTO_AGENT_PORT);
		st.listen = listen;
	}
	if (build_image_env(&st) < 0 || agent_listen(&st) < 0) {
		if (st.pid1)
			pid1_poweroff(&st);
		return 1;
	}
	if (st.pid1)
		boot_marker(WORKER_MARKER_AGENT);
	rc = agent_run(&st);
	free(st.image_env);
	proto_config_release(&st.cfg);
	free(st.config_raw);
	return rc < 0 ? 1 : 0;
}
