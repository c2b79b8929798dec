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
#define VM_NAME_MAX 64
#define VM_MAX_PORTS 16
#define VM_RESTART_MAX 32

struct spare;

struct sm_vm {
	char id[VM_ID_LEN + 1];
	char dir[VM_PATH_MAX];      /* runtime directory */
	char control[VM_PATH_MAX];  /* worker control socket */
	char vsock[VM_PATH_MAX];    /* worker hybrid vsock socket */
	char console[4096];         /* serial console log (sm_vm_config.console_log, else in dir) */
	char name[VM_NAME_MAX + 1]; /* sm_vm_config.name, "" when none */
	pid_t pid;                  /* the worker */
	int pidfd;                  /* -1 when pidfd_open is unavailable */
	bool owned;                 /* our child: we reap it */
	bool remove;                /* free() removes the runtime directory (not detached, or stopped) */
	bool keep;                  /* sm_vm_config.keep: stopping records the end instead of removing */
	bool exit_code_set;         /* sm_vm_set_exit_code() was called */
	int exit_code;              /* what it set */
	uint32_t stop_timeout_ms;   /* sm_vm_config.stop_timeout_ms */
	bool exited;
	int exit_status;            /* worker status (enum worker_status, src/proto/worker.h) once exited */
	struct agent_target target;
	char **image_cmd;           /* the image's Entrypoint+Cmd */
	char **volumes;             /* host paths to fsync on a clean stop */
	unsigned nvolumes;
	uint32_t balloon_target;    /* pages, from the snapshot: applied after each restore and reset */
	bool jailed;                /* its worker runs in a jail (vm_jail.c) as jail_uid:jail_gid */
	uint32_t jail_uid, jail_gid;
	const struct vm_kind *kind; /* booted, restored, detached, pooled: what free and reset do */
	void *kind_data;            /* the kind's own (a pooled VM's place in its pool), else NULL */
	/*
	 * Borrowed for its start: a spare worker (spare.h) that takes the
	 * worker's command line unless it is jailed or detached; used or
	 * not, the start leaves it empty or untouched, never half-used.
	 */
	struct spare *spare;
	bool spare_used;            /* its worker was a spare */
};

/*
 * What differs between the kinds of VM. Each file that makes a kind
 * defines its table: vm.c booted and detached (started detached, or
 * attached), snapshot.c restored (detached or not), pool.c pooled. So
 * sm_vm_free() and sm_vm_reset() ask the VM's kind instead of testing
 * flags that only the snapshot or pool code understands.
 */
struct vm_kind {
	/* sm_vm_free(): vm_stop_and_destroy(), vm_destroy(), or back to its pool */
	void (*free)(struct sm_vm *vm);
	/* sm_vm_reset(): back to its snapshot, or SM_E_INVALID */
	int (*reset)(struct sm_vm *vm, sm_error **err);
};

/* Booted by sm_vm_start(): stopped when freed; nothing to reset to. */
extern const struct vm_kind vm_kind_booted;
/* Booted detached, or attached (sm_vm_attach): freeing it leaves the worker running. */
extern const struct vm_kind vm_kind_detached;

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
/*
 * Reserves name for vm (whose ID and directory exist): a link
 * BASE/names/NAME -> ID, made atomically; a link whose VM is gone is
 * taken over. SM_E_BUSY when another VM holds it.
 */
int vm_runtime_name(struct sm_vm *vm, const char *name, sm_error **err);
/*
 * Fills vm's paths from an existing directory for an ID, a name or a
 * unique ID prefix, in that order (docker's).
 */
int vm_runtime_open(struct sm_vm *vm, const char *id_or_name, sm_error **err);
/* The runtime directory, its files and its name link. */
void vm_runtime_remove(const struct sm_vm *vm);
/* The same for a runtime directory by path (what `system prune` removes). */
void vm_runtime_remove_dir(const char *dir);
/* A kept VM that ended: what only a running worker needs goes (sockets, the initrd unless restartable). */
void vm_runtime_prune(const struct sm_vm *vm, bool keep_initrd);

struct vm_meta_port {
	char addr[64];
	uint16_t host, guest;
};

struct vm_meta_volume {
	char host[4096];
	char guest[256];
	bool read_only;
};

struct vm_meta {
	char id[VM_ID_LEN + 1];
	char name[VM_NAME_MAX + 1];
	pid_t pid;
	int64_t created;     /* unix time */
	int64_t started;     /* the worker's last start (a restart sets it again) */
	int64_t finished;    /* 0 until the end is recorded */
	int exit_code;       /* recorded with finished; -1 unknown */
	char image[256];
	char command[512];
	char console[4096];
	bool detached, keep, network, restartable;
	bool stopping;       /* stopped or removed on request: not to be restarted */
	uint32_t memory_mib;
	unsigned vcpus;
	uint32_t stop_timeout_ms;
	char restart[VM_RESTART_MAX];
	unsigned restarts;
	struct vm_meta_port ports[VM_MAX_PORTS];
	unsigned nports;
	struct vm_meta_volume volumes[VM_MAX_VOLUMES];
	unsigned nvolumes;
};
int vm_meta_write(const struct sm_vm *vm, const struct vm_meta *m, sm_error **err);
int vm_meta_read(const char *dir, struct vm_meta *m, sm_error **err);
/*
 * Read, change, write meta.json under a lock on the runtime directory,
 * so two processes (a watcher adding ports, a stop recording the end)
 * never lose each other's change. fn returns 0, or -1 to write nothing.
 */
int vm_meta_update(const struct sm_vm *vm, int (*fn)(struct vm_meta *m, void *arg), void *arg, sm_error **err);
/* meta.json's text for m (free()), and m from that text: what write and read do, without the file. */
char *vm_meta_dump(const struct vm_meta *m);
int vm_meta_parse(const char *text, struct vm_meta *m, const char **why);
/* Every runtime directory's metadata; *n entries (free()). */
int vm_meta_list(struct vm_meta **out, size_t *n, sm_error **err);
/* True when pid is a running supermachine-worker (not a recycled pid). */
bool vm_pid_is_worker(pid_t pid);

/* One request on the worker's control socket (docs/vmm.md); reply without "ok ". */
int vm_control(const struct sm_vm *vm, const char *req, char *reply, size_t len, sm_error **err);
/* The same, waiting up to timeout_ms for the answer (a capture writes all of RAM). */
int vm_control_timeout(const struct sm_vm *vm, const char *req, char *reply, size_t len, int timeout_ms,
		       sm_error **err);
/* vm_control_timeout() sending fd with the request (SCM_RIGHTS) when it is not -1; fd stays the caller's. */
int vm_control_fd(const struct sm_vm *vm, const char *req, int fd, char *reply, size_t len, int timeout_ms,
		  sm_error **err);

/* ---- the worker process (vm.c), shared with snapshot.c ---- */

/* A VM of kind vm_kind_booted until its maker says otherwise. */
struct sm_vm *vm_alloc(void);
/* Frees a VM that failed to come up: stopped and removed whatever its kind. */
void vm_discard(struct sm_vm *vm);
/* Stops the worker if it runs, then vm_destroy(): the free of VMs that die with their sm_vm. */
void vm_stop_and_destroy(struct sm_vm *vm);
/* Frees vm, leaving its worker as it is; its runtime directory goes when vm->remove says so. */
void vm_destroy(struct sm_vm *vm);
/* sm_vm_start() without the snapshot lookup: always a cold boot of image. */
struct sm_vm *vm_boot(const char *image, const sm_vm_config *cfg, sm_error **err);
/*
 * Starts vm's worker (the binary exe) as l describes, with its output in
 * DIR/worker.log, through the launcher (launcher.h): the one place a
 * worker's command line is made.
 */
int vm_spawn_launch(struct sm_vm *vm, const struct worker_launch *l, const char *exe, bool detached,
		    sm_error **err);
/* What meta.json records of a VM's machine, beside its config. */
struct vm_machine {
	uint32_t memory_mib;
	unsigned vcpus;
	bool network;
	bool restartable; /* booted, its worker's command line kept: sm_vm_restart() can boot it again */
};

/* ---- the worker's jail (vm_jail.c, docs/security.md) ---- */

#define VM_JAIL_DIR "jail" /* in the runtime directory: the worker's root once jailed */

/* What a jailed launch adds to the worker's command line and to its start. */
struct vm_jail {
	char root[VM_PATH_MAX + 8];
	unsigned long namespaces;   /* 0: no jail */
	int cgroup_fd;              /* its cgroup v2 leaf (vm_cgroup.h), or -1: none */
};

/*
 * When the library runs as root and SUPERMACHINE_JAIL=1: fills
 * l->jail and j for vm's worker, makes its cgroup leaf where the host
 * allows one, and marks vm jailed. 0 (also when no jail applies), or -1
 * with err set; j->cgroup_fd is the caller's to close.
 */
int vm_jail_prepare(struct sm_vm *vm, struct worker_launch *l, struct vm_jail *j, sm_error **err);
/*
 * The store's snapshots directory into out, made if missing (in
 * vm_jail.c; snapshot.c and snapshot_list.c name snapshots in it).
 */
int snapshot_base(char *out, size_t len, sm_error **err);
/* Whether a worker started now would be jailed: root, and SUPERMACHINE_JAIL=1. */
bool vm_jail_wanted(void);
/* Writes meta.json for `ps`; command may be NULL. */
int vm_record_meta(struct sm_vm *vm, const sm_vm_config *cfg, const char *label, const char *const *command,
		   const struct vm_machine *mach, sm_error **err);
/* Records in meta.json that vm is being stopped on request (kept VMs only): sm_vm_restart() then refuses. */
void vm_mark_stopping(struct sm_vm *vm);
/* The name, keep flag and stop grace of cfg into vm, the name reserved (vm_runtime_name). */
int vm_take_config(struct sm_vm *vm, const sm_vm_config *cfg, sm_error **err);
/* The stats reply of the worker's WORKER_CTL_USAGE into out (fields up to out->size). */
void vm_usage_parse(const char *text, sm_vm_stats_out *out);
/* Waits up to ms for the worker to exit; true when it did. */
bool vm_wait_exit(struct sm_vm *vm, int ms);
/* The last cap-1 bytes of a file into buf, NUL-terminated; their count, or <= 0. */
ssize_t vm_file_tail(const char *path, char *buf, size_t cap);
/* The workload's exit status as init logged it on the console (128+N: signal N); -1 when it did not. */
int vm_console_workload_status(const char *console);
void vm_console_panic(const char *console, char *out, size_t len);
struct snap_meta;
/* boot.json in the runtime directory: what a capture of vm records (src/lib/snapshot.h). */
int vm_write_boot_record(const struct sm_vm *vm, const struct snap_meta *m, sm_error **err);
/* SM_E_VM_DIED when the worker is gone (with its last log line), else 0. */
int vm_check(struct sm_vm *vm, const char *during, sm_error **err);
/* After a failed call: the worker's death, if it died, else err wrapped with during. */
int vm_failed(struct sm_vm *vm, const char *during, sm_error **err);


/* ---- volumes (vm_volume.c) ---- */

/* sm_volume_parse() (include/supermachine.h) parses "HOSTFILE:GUESTPATH[:SIZE]". */
/* Creates and formats v->host_path (sparse, ext4) unless it exists; checks it is a regular file. */
int vm_volume_prepare(const sm_volume *v, sm_error **err);
/* "1G", "512M", "4096": bytes, or -1. */
int vm_size_parse(const char *s, uint64_t *bytes);

/*
 * sm_vm_restore() whose worker may be the spare (spare.h; NULL: none):
 * the pool's restores (pool.c). vm->spare_used says whether it was.
 */
sm_vm *vm_restore_spare(const char *name_or_dir, const sm_vm_config *cfg, struct spare *spare, sm_error **err);

#endif
