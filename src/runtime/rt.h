/*
 * supermachine-runtime: an OCI runtime (runtime-spec 1.1, runc's command
 * line) that runs each container as a microVM. Built on the public
 * header alone, as the CLI is (tests/build/test_source_lint.c).
 */
#ifndef SM_RUNTIME_RT_H
#define SM_RUNTIME_RT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <supermachine.h>

#define RT_DEFAULT_ROOT "/run/supermachine-runtime"
#define RT_OCI_VERSION "1.1.0"
#define RT_WHY 1024              /* room for an error message */
#define RT_MAX_MOUNTS (SM_MAX_MOUNTS - 1) /* the root directory is a share too */
#define RT_MIN_MEMORY_MIB 128u   /* below it the guest kernel itself does not fit well */

/* ---- config.json (spec.c) ---- */

struct rt_process {
	char **args;       /* NULL-terminated, at least one */
	char **env;        /* "KEY=VALUE", NULL-terminated */
	char *cwd;         /* absolute */
	uint32_t uid, gid;
	bool terminal;
	unsigned rows, cols; /* consoleSize; 0 = unknown */
};

struct rt_bind {
	char *source;      /* an existing host directory */
	char *destination; /* absolute, no "." or ".." */
	bool read_only;
};

struct rt_spec {
	char *rootfs;      /* absolute host directory */
	bool root_read_only;
	char *hostname;    /* NULL: the container ID */
	struct rt_process proc;
	struct rt_bind binds[RT_MAX_MOUNTS];
	size_t nbinds;
	uint32_t memory_mib; /* 0: the library's default */
	unsigned vcpus;      /* 0: the library's default */
	bool sandbox;        /* a CRI pod sandbox (pause): no VM */
	json_t *annotations; /* an object, never NULL once loaded */
	char *warnings;      /* what is not applied, one line each; NULL when all is */
};

/* Parses BUNDLE/config.json. 0, or -1 with why saying what and where. */
int rt_spec_load(const char *bundle, struct rt_spec *s, char *why, size_t len);
/* A process object (config.json's "process", or exec --process FILE's). */
int rt_process_parse(const json_t *o, struct rt_process *p, char *why, size_t len);
int rt_process_load(const char *path, struct rt_process *p, char *why, size_t len);
void rt_process_free(struct rt_process *p);
void rt_spec_free(struct rt_spec *s);
/* Fills cfg (and mounts[], which cfg points to) from s. */
void rt_spec_vm_config(const struct rt_spec *s, const char *id, sm_vm_config *cfg, sm_mount *mounts);

/* ---- state under --root (state.c) ---- */

typedef enum rt_status {
	RT_CREATING = 0, /* create has not finished */
	RT_CREATED,      /* the VM is up, the process not started */
	RT_RUNNING,
	RT_STOPPED,
} rt_status;

struct rt_state {
	char id[256];
	char dir[4096];    /* ROOT/ID */
	char bundle[4096];
	char vm_id[128];   /* "" for a sandbox */
	pid_t pid;         /* the supervisor: its life is the container's */
	uint64_t pid_start;/* its start time (clock ticks since boot), against pid reuse */
	char created[40];  /* RFC 3339 */
	json_t *annotations;
};

/* [A-Za-z0-9][A-Za-z0-9_.+-]*, at most 255 bytes: a plain directory name. */
bool rt_id_ok(const char *id);
/* Start time of pid (field 22 of /proc/PID/stat), 0 when it is gone or a zombie. */
uint64_t rt_pid_start(pid_t pid);
int rt_state_write(const struct rt_state *st, char *why, size_t len);
/* 0, -1 with why (ENOENT: no such container; missing state.json: an interrupted create). */
int rt_state_read(const char *root, const char *id, struct rt_state *st, char *why, size_t len);
void rt_state_free(struct rt_state *st);
rt_status rt_state_status(const struct rt_state *st);
const char *rt_status_name(rt_status s);
/* The runtime-spec state object, as `state` prints it; free(). */
char *rt_state_json(const struct rt_state *st);
/* mkdir -p: path and its missing parents (containerd and dockerd give a --root whose parent may not exist yet). */
int rt_mkdir_parents(const char *path, mode_t mode);
/* Removes ROOT/ID and everything in it. */
int rt_state_remove(const char *dir);
/* Writes text to path through a temporary file and a rename, so a reader never sees half of it. */
int rt_write_file(const char *path, const char *text, char *why, size_t len);

#define RT_STATE_FILE "state.json"
#define RT_START_FIFO "start.fifo"
#define RT_STARTED_FILE "started"

/* ---- the processes that stand for a container or an exec (supervisor.c) ---- */

struct rt_run {
	const char *state_dir;
	const char *console_socket; /* NULL: stdio is fds 0-2 */
	int ready_fd;               /* "ok VMID\n" or "error MESSAGE\n" goes there; -1: none */
};

/* The container's supervisor (after fork, in its own session): never returns. */
void rt_supervise(const struct rt_spec *s, const char *id, const struct rt_run *r) __attribute__((noreturn));
/* Runs p in the VM vm_id, relaying stdio; returns the exit status to exit with. */
int rt_exec(const char *vm_id, const struct rt_process *p, const struct rt_run *r);

/* ---- main.c ---- */

/* "supermachine-runtime: MESSAGE" on stderr, and to --log as runc writes it. */
void rt_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
