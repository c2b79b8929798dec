/*
 * What run, exec, ps, stop and logs share: option values (-e, -p, -v) and
 * streaming a command's terminal through sm_exec_spawn.
 */
#ifndef SM_CLI_VM_H
#define SM_CLI_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <supermachine.h>

#define CLI_MAX_ENV 256
#define CLI_MAX_PORTS 16

struct cli_port {
	char addr[64];      /* host address to bind */
	uint16_t host_port;
	uint16_t guest_port;
};

/* Command options run and exec both take. */
struct cli_exec_opts {
	const char *env[CLI_MAX_ENV + 1]; /* "K=V", NULL-terminated */
	size_t nenv;
	char *env_owned[CLI_MAX_ENV];     /* "K=V" made from a bare -e K and the host's value */
	size_t nenv_owned;
	const char *workdir;
	const char *user;
	bool interactive, tty;
};

/* -e K=V (or -e K: K's value here). 0, or -1 with a message on stderr. */
int cli_env_add(struct cli_exec_opts *o, const char *spec, const char *cmd);
/*
 * --env-file FILE, in Docker's format: a KEY=VALUE line each (VALUE as
 * written, to the end of the line), KEY alone takes this shell's value
 * (none when unset), lines starting with # and blank lines are skipped.
 * 0, or -1 with one line on stderr (a file that cannot be read, a line
 * without a name, a name with whitespace).
 */
int cli_env_file(struct cli_exec_opts *o, const char *path, const char *cmd);
/*
 * A --net/--network value: "none" is off; "nat", "slirp", "bridge" and
 * "default" are the outbound NAT network. 0 with *on set, or -1 with a
 * message on stderr ("host" and anything else are not networks a VM has).
 */
int cli_net_value(const char *v, bool *on, const char *cmd);
/*
 * --format's value: only "json" (a JSON array, as --json), since Go
 * templates are Docker's own. 0, or -1 with a message on stderr.
 */
int cli_format_json(const char *v, bool *json, const char *cmd);
/* True when v is a --net value: `--net none` takes it as the option's, not as IMAGE. */
bool cli_net_is_value(const char *v);
/*
 * The value of the --net (optional: a getopt optional_argument) or
 * --network option getopt_long just returned: --net=V, --network V, and
 * a bare --net takes the next argument when it is a network name (so
 * `--net none` works and `--net IMAGE` keeps meaning NAT), else "nat".
 */
const char *cli_net_arg(bool optional, int argc, char **argv);
/*
 * The option getopt_long (optstring starting with ':', after any '+';
 * opterr 0) refused with c ('?': unknown, ':': its value missing): one
 * line naming it, as Docker says it. Every command's parser ends so;
 * returns CLI_EXIT_FAILED, the status for it.
 */
int cli_bad_option(int c, char **argv, const char *cmd);
void cli_exec_opts_free(struct cli_exec_opts *o);
/* A number 1..max for option what of cmd. 0, or -1 with a message on stderr. */
int cli_number(const char *s, unsigned long max, unsigned long *v, const char *cmd, const char *what);
/* Host directories given with --mount (or -v HOSTDIR:...), as sm_mount_parse reads them. */
struct cli_mounts {
	sm_mount m[SM_MAX_MOUNTS];
	char buf[SM_MAX_MOUNTS][4200];
	size_t n;
};
/* --mount SPEC. 0, or -1 with a message on stderr. */
int cli_mount_add(struct cli_mounts *ms, const char *spec, const char *cmd);
/* Whether -v SPEC names an existing host directory (a share), not a volume file. */
bool cli_volume_is_dir(const char *spec);
/* -p [ADDR:]HOST:GUEST. 0, or -1 with a message on stderr. */
int cli_port_parse(const char *spec, struct cli_port *p, const char *cmd);

/*
 * Runs argv in vm with o's settings, its stdout/stderr on ours (and our
 * stdin with -i, a raw terminal with -t); SIGINT/SIGTERM/SIGHUP go to the
 * command. Returns the exit status for the shell: status, 128+signal, or
 * 125 when it could not run (with the reason on stderr).
 */
int cli_exec_stream(sm_vm *vm, const char *const *argv, const struct cli_exec_opts *o, const char *cmd);

/* "supermachine: CMD: message" with the error's whole chain; frees err. */
void cli_error(const char *cmd, sm_error *err);

/*
 * Docker's exit statuses: 125 when supermachine itself fails (a bad flag,
 * no such VM, a name taken, a VM that cannot start); 126 and 127 are a
 * command that cannot run or is not found, which the guest reports as the
 * command's own status (src/guest/run.c).
 */
#define CLI_EXIT_FAILED 125
/* Docker's for a command that is not `run`: its own failures are 1, a bad flag 125 as for run. */
#define CLI_EXIT_ERROR 1

/*
 * The options of a command that has none but -h/--help ("+": they end at
 * the first operand). true: go on from optind; false: return *rc (help
 * shown: 0, a bad option: CLI_EXIT_FAILED).
 */
bool cli_help_only(int argc, char **argv, const char *cmd, void (*usage)(FILE *out), int *rc);

/* Docker's duration words (go-units HumanDuration): "Less than a second", "3 minutes", "About an hour". */
void cli_human_duration(int64_t seconds, char *out, size_t len);
/* `ps`'s STATUS: "Up 3 minutes", "Exited (1) 2 minutes ago", "Restarting (1) ..." as docker words it. */
void cli_status_string(const sm_vm_info *v, int64_t now, char *out, size_t len);
/* `ps`'s PORTS: "127.0.0.1:8080->80/tcp, ..." */
void cli_ports_string(const sm_vm_info *v, char *out, size_t len);

/* A cp operand: VM:PATH (vm set, path into the guest) or a host path (vm NULL). */
struct cli_cp_spec {
	char vm[128];      /* "" for a host path */
	const char *path;  /* into the spec string */
};
/* 0, or -1 when a VM: part is not followed by a path (said on stderr). */
int cli_cp_parse(const char *spec, struct cli_cp_spec *out);
/*
 * The guest path, made absolute (relative to /) and with its ".", ".."
 * and empty components resolved, into out; -1 when ".." would leave the
 * guest's root (a path that means to escape is refused, not clamped).
 */
int cli_guest_path(const char *path, char *out, size_t len);

#endif
