/*
 * The VM object behind sm_vm (include/supermachine.h): one
 * supermachine-worker process per VM, its runtime directory, the agent
 * target for exec and files, and the pieces `supermachine run/ps/exec/
 * stop/logs` share: asset discovery, runtime directories and their
 * metadata, volumes.
 */
#ifndef SM_LIB_VM_H
#define SM_LIB_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <supermachine.h>

#include "lib/agent.h"
#include "proto/worker.h"

#define VM_ID_LEN 12
#define VM_DEFAULT_MEMORY_MIB 256u
#define VM_DEFAULT_BOOT_TIMEOUT_MS 120000u
#define VM_DEFAULT_GRACE_MS 10000u
#define VM_MAX_VOLUMES 8u
#define VM_PATH_MAX 108 /* every runtime path is a unix socket path or beside one */

struct sm_vm {
	char id[VM_ID_LEN + 1];
	char dir[VM_PATH_MAX];      /* runtime directory */
	char control[VM_PATH_MAX];  /* worker control socket */
	char vsock[VM_PATH_MAX];    /* worker hybrid vsock socket */
	char console[4096];         /* serial console log (sm_vm_config.console_log, else in dir) */
	pid_t pid;                  /* the worker */
	int pidfd;                  /* -1 when pidfd_open is unavailable */
	bool owned;                 /* our child: we reap it */
	bool detached;              /* outlives us: free() leaves it running */
	bool remove;                /* free() removes the runtime directory (not detached, or stopped) */
	bool exited;
	int exit_status;            /* worker status (enum worker_status, src/proto/worker.h) once exited */
	struct agent_target target;
	char **image_cmd;           /* the image's Entrypoint+Cmd */
	char **volumes;             /* host paths to fsync on a clean stop */
	unsigned nvolumes;
	bool restored;              /* started from a snapshot: sm_vm_reset() works */
	uint32_t balloon_target;    /* pages, from the snapshot: applied after each restore and reset */
	struct pool_slot *pool_slot; /* a pooled VM's place in its sm_pool (pool.c), else NULL */
};

/* ---- assets (vm_assets.c) ---- */

/*
 * Fills out's NULL fields by discovery (see sm_assets); each result is
 * written to the matching buffer. SM_E_NOT_FOUND names every place tried.
 */
struct vm_asset_paths {
	char kernel[4096], initramfs[4096], worker[4096];
	/* the rule each was found by ("$SUPERMACHINE_KERNEL_DIR", "the build tree", ...) */
	const char *kernel_from, *initramfs_from, *worker_from;
};
int vm_assets_find(const sm_assets *given, struct vm_asset_paths *out, sm_error **err);

/* ---- runtime directories (vm_runtime.c) ---- */

/* The directory holding every VM's runtime directory, created 0700 and checked to be ours. */
int vm_runtime_base(char *out, size_t len, sm_error **err);
/* A new ID and its directory (0700), with the paths in vm filled. */
int vm_runtime_create(struct sm_vm *vm, sm_error **err);
/* Fills vm's paths from an existing directory for id (or a unique prefix). */
int vm_runtime_open(struct sm_vm *vm, const char *id, sm_error **err);
void vm_runtime_remove(const struct sm_vm *vm);

struct vm_meta {
	char id[VM_ID_LEN + 1];
	pid_t pid;
	int64_t created;     /* unix time */
	char image[256];
	char command[512];
	char console[4096];
	bool detached;
};
int vm_meta_write(const struct sm_vm *vm, const struct vm_meta *m, sm_error **err);
int vm_meta_read(const char *dir, struct vm_meta *m, sm_error **err);
/* Every runtime directory's metadata; *n entries (free()). */
int vm_meta_list(struct vm_meta **out, size_t *n, sm_error **err);
/* True when pid is a running supermachine-worker (not a recycled pid). */
bool vm_pid_is_worker(pid_t pid);

/* One request on the worker's control socket (docs/vmm.md); reply without "ok ". */
int vm_control(const struct sm_vm *vm, const char *req, char *reply, size_t len, sm_error **err);
/* The same, waiting up to timeout_ms for the answer (a capture writes all of RAM). */
int vm_control_timeout(const struct sm_vm *vm, const char *req, char *reply, size_t len, int timeout_ms,
		       sm_error **err);

/* ---- the worker process (vm.c), shared with snapshot.c ---- */

struct sm_vm *vm_alloc(void);
/* Frees a VM that failed to come up: stopped and removed even when it was to be detached. */
void vm_discard(struct sm_vm *vm);
/* sm_vm_start() without the snapshot lookup: always a cold boot of image. */
struct sm_vm *vm_boot(const char *image, const sm_vm_config *cfg, sm_error **err);
/* Forks and execs argv (argv[0]: the worker) with its output in DIR/worker.log. */
/* Starts vm's worker (the binary exe) as l describes: the one place a worker's command line is made. */
int vm_spawn_launch(struct sm_vm *vm, const struct worker_launch *l, const char *exe, bool detached,
		    sm_error **err);
/* Writes meta.json for `ps`; command may be NULL. */
int vm_record_meta(struct sm_vm *vm, const char *label, const char *const *command, bool detached,
		   sm_error **err);
/* Waits up to ms for the worker to exit; true when it did. */
bool vm_wait_exit(struct sm_vm *vm, int ms);
/* The last cap-1 bytes of a file into buf, NUL-terminated; their count, or <= 0. */
ssize_t vm_file_tail(const char *path, char *buf, size_t cap);
/* The workload's exit status as init logged it on the console (128+N: signal N); -1 when it did not. */
int vm_console_workload_status(const char *console);
/* SM_E_VM_DIED when the worker is gone (with its last log line), else 0. */
int vm_check(struct sm_vm *vm, const char *during, sm_error **err);
/* After a failed call: the worker's death, if it died, else err wrapped with during. */
int vm_failed(struct sm_vm *vm, const char *during, sm_error **err);

/* sm_vm_free() of a pooled VM (pool.c): it goes back to its pool instead. */
void pool_vm_free(struct sm_vm *vm);

/* "SIGTERM", "TERM" or "15" as a signal number; 0 when unknown. */
int vm_signal_parse(const char *s);

/* ---- volumes (vm_volume.c) ---- */

/* sm_volume_parse() (include/supermachine.h) parses "HOSTFILE:GUESTPATH[:SIZE]". */
/* Creates and formats v->host_path (sparse, ext4) unless it exists; checks it is a regular file. */
int vm_volume_prepare(const sm_volume *v, sm_error **err);
/* "1G", "512M", "4096": bytes, or -1. */
int vm_size_parse(const char *s, uint64_t *bytes);

#endif
