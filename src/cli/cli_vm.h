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
void cli_exec_opts_free(struct cli_exec_opts *o);
/* A number 1..max for option what of cmd. 0, or -1 with a message on stderr. */
int cli_number(const char *s, unsigned long max, unsigned long *v, const char *cmd, const char *what);
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
bool cli_help_only(int argc, char **argv, void (*usage)(FILE *out), int *rc);

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
