/*
 * supermachine: run OCI/Docker images as KVM microVMs.
 *
 * This is the only installed header. Every public symbol is sm_*.
 *
 * Errors: a function that can fail takes a final `sm_error **err`. On
 * failure it returns NULL or a negative value and, when err is not NULL,
 * stores a new error there that the caller frees with sm_error_free().
 * Errors chain: sm_error_cause() walks from the outermost context ("pull
 * nginx") to the root cause ("connect 127.0.0.1:5000: refused").
 */
#ifndef SUPERMACHINE_H
#define SUPERMACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The library is built with hidden visibility: what this header declares
 * is its ABI and the only thing the shared library exports (docs/api.md).
 */
#pragma GCC visibility push(default)

#define SM_VERSION_MAJOR 0
#define SM_VERSION_MINOR 1
#define SM_VERSION_PATCH 0

/* The library's version as "MAJOR.MINOR.PATCH". */
const char *sm_version(void);

/* ---- errors ------------------------------------------------------------ */

typedef enum sm_code {
	SM_OK = 0,
	SM_E_INVALID,     /* a bad argument or configuration value */
	SM_E_NOT_FOUND,   /* an image, snapshot, file or tag does not exist */
	SM_E_IO,          /* a host file or socket operation failed */
	SM_E_NOMEM,       /* out of host memory */
	SM_E_KVM,         /* /dev/kvm is missing or a KVM call failed */
	SM_E_REGISTRY,    /* a registry answered with an error or garbage */
	SM_E_AUTH,        /* registry credentials were refused or missing */
	SM_E_DIGEST,      /* content did not match its digest */
	SM_E_IMAGE,       /* an image or layer is malformed or hostile */
	SM_E_SNAPSHOT,    /* a snapshot is malformed, stale or incompatible */
	SM_E_TIMEOUT,     /* an operation ran past its deadline */
	SM_E_VM_DIED,     /* the VM stopped while the call needed it */
	SM_E_PROTOCOL,    /* the guest agent sent something invalid */
	SM_E_BUSY,        /* a resource is in use (pool exhausted, lock held) */
	SM_E_UNSUPPORTED, /* valid, but not supported here */
	SM_E_INTERNAL,    /* a bug in supermachine */
	SM_E_CANCELED,    /* a callback asked the call to stop (sm_pull_config.progress) */
} sm_code;

typedef struct sm_error sm_error;

sm_code sm_error_code(const sm_error *e);
/* This level's message, without its causes. */
const char *sm_error_message(const sm_error *e);
/* The errno behind this level, or 0. */
int sm_error_errno(const sm_error *e);
/* The next error down the chain, or NULL. */
const sm_error *sm_error_cause(const sm_error *e);
/* The whole chain as "outer: inner: root". Owned by e. */
const char *sm_error_string(const sm_error *e);
/* Frees e and its causes. NULL is fine. */
void sm_error_free(sm_error *e);
/* A short name for a code ("not-found"). */
const char *sm_code_name(sm_code code);

/* ---- log: the library's diagnostics ------------------------------------- *
 *
 * The library never writes to stdout or stderr. What it has to say beyond
 * returned errors (a port forward that failed in its background thread,
 * ...) goes to the callback set here, one message per call, without a
 * trailing newline. Default: no callback, nothing said.
 */

typedef enum sm_log_level {
	SM_LOG_ERROR = 0,
	SM_LOG_WARN,
	SM_LOG_INFO,
	SM_LOG_DEBUG,
} sm_log_level;

typedef void (*sm_log_fn)(sm_log_level level, const char *message, void *opaque);

/*
 * Sends messages at level and below (SM_LOG_WARN: errors and warnings) to
 * fn; fn NULL silences the library again. Process-wide and thread-safe:
 * fn may run on any thread, never on two at once, and not after
 * sm_set_log() returns with another fn. fn must not call sm_set_log().
 */
void sm_set_log(sm_log_fn fn, void *opaque, sm_log_level level);
/* A ready fn: "supermachine: warning: MESSAGE\n" on stderr. */
void sm_log_stderr(sm_log_level level, const char *message, void *opaque);
/* "error", "warning", "info", "debug". */
const char *sm_log_level_name(sm_log_level level);

/* ---- exec: run commands in a VM ------------------------------------------ *
 *
 * An sm_exec describes one command (argv, env, cwd, user, tty, timeout,
 * staged files, chained commands); each sm_exec_output() or
 * sm_exec_spawn() runs it once, on its own connection to the guest agent,
 * so many can run at once. The setters return 0, or -1 for a bad value:
 * that error is kept and reported by the next output()/spawn().
 */

typedef struct sm_exec sm_exec;
typedef struct sm_child sm_child;

typedef struct sm_outcome {
	int status;            /* exit status 0..255; -1 when a signal ended it */
	int signal;            /* the signal that ended it, or 0 */
	bool timed_out;        /* the timeout fired and killed the exec's whole process tree */
	unsigned chain_index;  /* which command ended the exec: 0 = argv, 1 = first chain(), ... */
	uint64_t duration_us;  /* first command started -> last one ended, measured in the guest */
	uint64_t peak_rss_kib; /* largest resident set of any process of the exec */
	/* Collected output (sm_exec_output only; NUL-terminated; NULL when empty). */
	char *stdout_data;
	size_t stdout_len;
	char *stderr_data;
	size_t stderr_len;
	bool stdout_truncated, stderr_truncated; /* past sm_exec_output_limit(), dropped */
} sm_outcome;

void sm_exec_free(sm_exec *x);
/* The command: a NULL-terminated argv, argv[0] looked up in the exec's PATH. */
int sm_exec_argv(sm_exec *x, const char *const argv[]);
/* Adds KEY=VALUE to the image's environment (replacing the image's KEY). */
int sm_exec_env(sm_exec *x, const char *key, const char *value);
/* Absolute working directory; default: the image's WorkingDir, else /. */
int sm_exec_cwd(sm_exec *x, const char *dir);
/* "name", "uid", "name:group" or "uid:gid" from the image's passwd/group; default: the image's User. */
int sm_exec_user(sm_exec *x, const char *user);
/* A pty instead of pipes (stderr then arrives on stdout). */
int sm_exec_tty(sm_exec *x, bool tty);
int sm_exec_winsize(sm_exec *x, unsigned rows, unsigned cols);
/* Kills the exec's whole process tree after ms and reports timed_out; 0 = none. */
int sm_exec_timeout_ms(sm_exec *x, uint32_t ms);
/* A file written (mode 0644, owned by the exec's user) before the command runs; data is copied. */
int sm_exec_stage_file(sm_exec *x, const char *path, const void *data, size_t len);
int sm_exec_stage_file_mode(sm_exec *x, const char *path, const void *data, size_t len, unsigned mode);
/* Another command, run after the previous one if it exited 0 (like `a && b`, without a shell). */
int sm_exec_chain(sm_exec *x, const char *const argv[]);
/* Bytes fed to stdin by sm_exec_output() (then stdin is closed); default: empty. Copied. */
int sm_exec_stdin(sm_exec *x, const void *data, size_t len);
/* Most bytes sm_exec_output() keeps per stream (default 64 MiB); the rest is dropped. */
int sm_exec_output_limit(sm_exec *x, size_t max_bytes);

/*
 * Runs the command to its end and collects everything. A command that
 * does not exist exits 127 (126: not executable) with the reason on
 * stderr, as in a shell. Fails (-1) when it could not start (unknown user,
 * missing cwd, a staged file that cannot be written: SM_E_NOT_FOUND or
 * SM_E_INVALID), when the VM died mid-exec (SM_E_VM_DIED), or when the
 * agent broke the protocol (SM_E_PROTOCOL).
 */
int sm_exec_output(sm_exec *x, sm_outcome *out, sm_error **err);
void sm_outcome_free(sm_outcome *out);

/*
 * Starts the command and returns once it runs, with pollable descriptors
 * for its stdin (write), stdout and stderr (read), owned by the child
 * (sm_child_free closes them). Read stdout and stderr to their end before
 * sm_child_wait(), as with any pipe, or shutdown(fd, SHUT_RD) one to drop
 * the rest of it.
 */
sm_child *sm_exec_spawn(sm_exec *x, sm_error **err);
int sm_child_stdin(const sm_child *c);  /* -1 once closed */
int sm_child_stdout(const sm_child *c);
int sm_child_stderr(const sm_child *c);
/* EOF on the command's stdin (in tty mode: the terminal's EOF character). */
int sm_child_close_stdin(sm_child *c);
int sm_child_resize(sm_child *c, unsigned rows, unsigned cols, sm_error **err);
/* Sends sig to the command's process group in the guest. */
int sm_child_signal(sm_child *c, int sig, sm_error **err);
/* Waits for the end; out gets everything but the output (which went to the descriptors). */
int sm_child_wait(sm_child *c, sm_outcome *out, sm_error **err);
/* Closes the descriptors; a command still running is killed with its tree. */
void sm_child_free(sm_child *c);


/* ---- configuration structs: how they grow --------------------------------- *
 *
 * Every config struct the caller fills in (sm_vm_config, sm_pool_config,
 * sm_bake_config, sm_pull_config) starts with `size_t size`: the size of
 * the struct the caller was compiled with. Set it with the struct's
 * SM_*_CONFIG_INIT, or leave it 0, which means the first layout (the
 * fields up to the one marked "end of the first layout"); fields added
 * after that are read only when size covers them. The library copies
 * the caller's size into a zeroed struct of its own, so a program built
 * against an older header keeps working with a newer library, and one
 * built against a newer header works with an older library as long as it
 * leaves the fields that library does not know zero (else SM_E_INVALID,
 * naming the struct and both sizes). New fields are only ever appended;
 * the structs never embed one another by value (docs/api.md, ABI policy).
 * The element structs of arrays (sm_volume, sm_mount) and sm_assets are frozen: a
 * new field there means a new struct.
 */

/* ---- VMs: boot an image and talk to it ------------------------------------ *
 *
 * sm_vm_start() boots an image as a microVM: one supermachine-worker
 * process (the VMM), a runtime directory holding its sockets, console log
 * and metadata ($XDG_RUNTIME_DIR/supermachine/ID, else
 * /tmp/supermachine-UID/ID, mode 0700), and returns once the guest's exec
 * agent answers. A worker that dies is noticed: every later call on that
 * VM fails with SM_E_VM_DIED instead of hanging.
 */

typedef struct sm_vm sm_vm;
typedef struct sm_forward sm_forward;

typedef enum sm_vm_profile {
	SM_PROFILE_LATENCY = 0, /* 1 vCPU by default: the fastest boot and exec round trip */
	SM_PROFILE_THROUGHPUT,  /* 4 vCPUs by default: parallel work inside one VM */
} sm_vm_profile;

/*
 * Where the guest kernel (vmlinux), the base initramfs (initramfs.cpio)
 * and the worker binary (supermachine-worker) are. Each is taken from the
 * first of:
 *   1. this struct: the file field, else dir/NAME when dir is set;
 *   2. $SUPERMACHINE_KERNEL, $SUPERMACHINE_INITRAMFS, $SUPERMACHINE_WORKER;
 *   3. $SUPERMACHINE_KERNEL_DIR/vmlinux (the kernel only);
 *   4. $SUPERMACHINE_ASSETS_DIR/NAME;
 *   5. the install prefix: DATADIR/supermachine/ for the kernel and the
 *      initramfs, LIBEXECDIR/supermachine/ for the worker;
 *   6. the build tree the library was built in, and for the kernel the
 *      kernel cache (kernel/build --print-dir).
 * A path named in 1 or 2 must exist: a miss there is an error, never a
 * fallback. A miss everywhere is SM_E_NOT_FOUND naming every place tried.
 */
typedef struct sm_assets {
	const char *kernel;
	const char *initramfs;
	const char *worker;
	const char *dir;       /* holds vmlinux, initramfs.cpio, supermachine-worker */
} sm_assets;

/* The files discovery settled on. */
typedef struct sm_asset_paths sm_asset_paths;

/* Resolves given (NULL = all discovered) as sm_vm_start() would; NULL on error. */
sm_asset_paths *sm_assets_find(const sm_assets *given, sm_error **err);
/* The paths found, owned by p. */
const char *sm_asset_paths_kernel(const sm_asset_paths *p);
const char *sm_asset_paths_initramfs(const sm_asset_paths *p);
const char *sm_asset_paths_worker(const sm_asset_paths *p);
/* NULL is fine. */
void sm_asset_paths_free(sm_asset_paths *p);

/* A persistent ext4 disk: a sparse host file made and formatted on first use. */
typedef struct sm_volume {
	const char *host_path;  /* created if missing */
	const char *guest_path; /* absolute mount point in the guest */
	uint64_t size_bytes;    /* for a new file; 0 = SM_VOLUME_DEFAULT_SIZE */
	bool read_only;
} sm_volume;
#define SM_VOLUME_DEFAULT_SIZE (1ull << 30)

/*
 * What the guest may do with symbolic links under a host-directory mount
 * (docs/mounts.md). In every policy a host symlink is never followed out
 * of the shared directory unless the policy is SM_SYMLINKS_FOLLOW.
 */
typedef enum sm_symlinks {
	SM_SYMLINKS_OPAQUE = 0, /* the guest may create symlinks; targets are stored verbatim, never resolved by the host */
	SM_SYMLINKS_DENY,       /* the guest cannot create symlinks (EPERM) */
	SM_SYMLINKS_FOLLOW,     /* existing host symlinks out of the directory are followed: a trusted tenant only */
} sm_symlinks;

/*
 * A live host directory in the guest (virtio-fs). The guest sees the
 * host's files as they change; nothing of it is part of a snapshot.
 */
typedef struct sm_mount {
	const char *host_dir;   /* an existing directory */
	const char *guest_path; /* absolute; /init mounts it there. NULL: mount the tag by hand */
	const char *tag;        /* virtio-fs tag, 1..SM_MOUNT_TAG_MAX bytes; NULL = "smN", N its index */
	bool read_only;         /* every write from the guest fails with EROFS */
	sm_symlinks symlinks;
} sm_mount;
#define SM_MAX_MOUNTS 16
#define SM_MOUNT_TAG_MAX 36

/*
 * Parses "HOSTDIR:GUESTPATH[:ro|:rw][,symlinks=deny|opaque|follow]" (the
 * CLI's --mount) into m; the strings point into buf. 0, or -1 with
 * SM_E_INVALID saying what is wrong. It does not look at the host.
 */
int sm_mount_parse(const char *spec, char *buf, size_t buflen, sm_mount *m, sm_error **err);

/*
 * Parses a volume as `run -v` takes it: "HOSTFILE:GUESTPATH[:SIZE]" (SIZE
 * in bytes or with K, M, G, T; at least 1M). The strings of *v point
 * into buf, which must hold strlen(spec) + 1 bytes. 0, or -1
 * (SM_E_INVALID saying what is wrong).
 */
int sm_volume_parse(const char *spec, char *buf, size_t buflen, sm_volume *v, sm_error **err);

typedef struct sm_vm_config {
	size_t size;               /* sizeof(sm_vm_config), or 0: see "configuration structs" */
	uint32_t memory_mib;       /* 0 = 256 */
	unsigned vcpus;            /* 0 = the profile's default */
	sm_vm_profile profile;
	const sm_assets *assets;   /* NULL = all discovered */
	const sm_volume *volumes;  /* nvolumes entries, mounted in order */
	size_t nvolumes;
	bool network;              /* a NIC with user-mode NAT (slirp) */
	const char *console_log;   /* copy of the serial console; NULL = only in the runtime dir */
	const char *const *env;    /* "KEY=VALUE" added to the image's Env; NULL-terminated */
	/*
	 * The workload /init starts and supervises: NULL = none (the VM only
	 * serves execs).
	 */
	const char *const *workload;
	bool image_workload;       /* no workload given: the image's Entrypoint+Cmd is the workload */
	/*
	 * The VM ends when the workload exits. A workload that ends before
	 * the VM is up (`true`) does not fail sm_vm_start(): it returns the
	 * VM, which is then no longer running (sm_vm_running() is false).
	 */
	bool power_off_on_exit;
	const char *workdir;       /* NULL = the image's WorkingDir */
	const char *user;          /* NULL = the image's User */
	const char *hostname;      /* NULL = the VM's ID */
	uint32_t boot_timeout_ms;  /* agent must answer by then; 0 = 120000 */
	/*
	 * The VM outlives this process (`run -d`). Otherwise its worker is
	 * killed when this process ends, however it ends; any thread may
	 * start it, and that thread may exit before the VM does.
	 */
	bool detached;
	const char *label;         /* shown by `supermachine ps`; NULL = the image name */
	/* end of the first layout (size 0) */
	/*
	 * Host directories shared into the guest, at most SM_MAX_MOUNTS. A
	 * restore takes the snapshot's own when none are given; given, they
	 * must have the snapshot's guest paths, tags and modes, and may name
	 * other host directories.
	 */
	const sm_mount *mounts;
	size_t nmounts;
	/*
	 * A name unique among this user's VMs, usable wherever the ID is
	 * (sm_vm_attach, sm_vm_remove, sm_vm_list_find): [A-Za-z0-9] then
	 * [A-Za-z0-9_.-], 2 to 64 bytes (sm_vm_name_valid). SM_E_BUSY when
	 * another VM holds it. NULL = none.
	 */
	const char *name;
	/*
	 * Keep the VM's record (metadata, console log, the way it ended) after
	 * it ends, until sm_vm_remove(), as `docker run` without --rm does:
	 * stopping it records the end instead of removing it.
	 */
	bool keep;
	uint32_t stop_timeout_ms;  /* the grace sm_vm_stop(vm, 0) gives, also when attached later; 0 = 10000 */
	/*
	 * The restart policy shown by ps and inspect ("no", "on-failure",
	 * "on-failure:N"; sm_restart_parse). Whoever watches the VM acts on it
	 * with sm_vm_restart(). NULL = "no".
	 */
	const char *restart;
	/*
	 * A host directory as the guest's root filesystem instead of an
	 * image's ext4 file: served over virtio-fs (tag "root", so no mount
	 * may use that tag, and one fewer mount fits) and mounted by /init
	 * as /, live, so what the guest writes lands in the directory
	 * (unless root_read_only). sm_vm_start()'s image is then only a
	 * label (may be NULL); Env, WorkingDir, User and the workload come
	 * from this config alone. Such a VM cannot be snapshotted
	 * (SM_E_UNSUPPORTED). What an OCI runtime serves a bundle's rootfs
	 * with (docs/kubernetes.md).
	 */
	const char *root_dir;
	bool root_read_only;
} sm_vm_config;
#define SM_VM_CONFIG_INIT { .size = sizeof(sm_vm_config) }

/*
 * Boots image: the name of a pulled image (see `supermachine images`) or
 * the path of an existing ext4 root filesystem image file. cfg may be NULL.
 */
sm_vm *sm_vm_start(const char *image, const sm_vm_config *cfg, sm_error **err);
/* A VM started detached, by the ID sm_vm_id() gave (or a unique prefix). */
sm_vm *sm_vm_attach(const char *id, sm_error **err);
const char *sm_vm_id(const sm_vm *vm);
/* The serial console log in the runtime directory. */
const char *sm_vm_console_path(const sm_vm *vm);
/* The image's Entrypoint+Cmd (NULL-terminated; owned by vm; NULL when it has none). */
const char *const *sm_vm_image_command(const sm_vm *vm);
/* True while the worker runs. */
bool sm_vm_running(sm_vm *vm);
/*
 * A pidfd of the VM's worker (owned by vm; do not close it): poll() it
 * for POLLIN, which comes when the worker exits, to wait for the VM in an
 * event loop. -1 when the kernel has no pidfd_open (before Linux 5.3) or
 * the worker had already exited when vm was attached.
 */
int sm_vm_pidfd(const sm_vm *vm);
/*
 * Waits up to timeout_ms (-1: for ever, 0: just look) for the VM to end.
 * 1 when it still runs, 0 once it ended, with *status (may be NULL) the
 * workload's exit status as the guest's init reported it (128+N when
 * signal N ended it), or -1 when none was reported (no workload, a
 * worker that died, a VM stopped from outside). -1 on error.
 */
int sm_vm_wait(sm_vm *vm, int timeout_ms, int *status, sm_error **err);
/*
 * Clean stop: the guest syncs, unmounts and powers off within grace_ms
 * (0 = 10000), then the worker is asked to stop, then killed; volumes are
 * flushed to the host's disk. 0, or -1 when it had to be killed.
 */
int sm_vm_stop(sm_vm *vm, uint32_t grace_ms, sm_error **err);
/* Frees vm; a VM still running that is not detached is stopped (killed if need be). */
void sm_vm_free(sm_vm *vm);

/* A command in this VM (see the exec section); NULL only when out of memory. */
sm_exec *sm_exec_new(sm_vm *vm);
int sm_vm_write_file(sm_vm *vm, const char *path, const void *data, size_t len, unsigned mode,
		     sm_error **err);
/* Reads a whole guest file (at most max bytes) into *data (NUL-terminated; free()). */
int sm_vm_read_file(sm_vm *vm, const char *path, size_t max, void **data, size_t *len, sm_error **err);
/* A connected stream to 127.0.0.1:guest_port in the guest (over vsock, no guest network needed). */
int sm_vm_connect(sm_vm *vm, uint16_t guest_port, sm_error **err);
/*
 * Sends sig to the workload /init supervises. SIGKILL and SIGTERM end a
 * kept VM on request: sm_vm_restart() then refuses it, as docker's
 * restart policies leave a killed container be.
 */
int sm_vm_workload_signal(sm_vm *vm, int sig, sm_error **err);
/* The VM's name (sm_vm_config.name), "" when it has none. */
const char *sm_vm_name(const sm_vm *vm);
/*
 * The exit code the VM's record reports once it ends, for a kept VM
 * whose command ran as an exec (`supermachine run` in the foreground);
 * otherwise the workload's status as the guest's init reported it.
 */
void sm_vm_set_exit_code(sm_vm *vm, int code);
/*
 * Boots a kept VM again that was booted (not restored) and has ended,
 * in place: the same ID, name, disks and guest configuration; its
 * restart count goes up. Returns once its agent answers, or its
 * workload already ended. SM_E_INVALID for a running or restored VM, and
 * for one stopped, killed or removed on request (sm_vm_stop,
 * sm_vm_workload_signal, sm_vm_remove), which a restart policy must leave
 * stopped.
 */
int sm_vm_restart(sm_vm *vm, sm_error **err);
/* "SIGTERM", "TERM" or "15": the signal number, or 0 when it is none. */
int sm_signal_parse(const char *s);
/*
 * A restart policy (sm_vm_config.restart): 0 for "no", 1 for "on-failure"
 * or "on-failure:N" with *max_retries N (0: no limit), -1 when s is
 * neither. max_retries may be NULL.
 */
int sm_restart_parse(const char *s, unsigned *max_retries);

/*
 * What a VM's worker reports (sm_vm_stats): the counters its devices keep
 * and its process's usage. Set size to sizeof(sm_vm_stats_out) (or
 * SM_VM_STATS_OUT_INIT); fields past a caller's size are not written.
 */
typedef struct sm_vm_stats_out {
	size_t size;
	uint64_t cpu_ns;           /* the worker's CPU time (user + system, every vCPU) */
	uint64_t rss_bytes;        /* the worker's resident memory */
	uint64_t memory_bytes;     /* guest RAM (the VM's memory limit) */
	uint64_t blk_read_bytes;   /* every disk */
	uint64_t blk_write_bytes;
	uint64_t net_rx_bytes;     /* into the guest */
	uint64_t net_tx_bytes;     /* out of the guest */
	uint64_t vsock_rx_bytes;   /* to the guest over vsock (exec, ports) */
	uint64_t vsock_tx_bytes;   /* from the guest */
} sm_vm_stats_out;
#define SM_VM_STATS_OUT_INIT { .size = sizeof(sm_vm_stats_out) }
int sm_vm_stats(sm_vm *vm, sm_vm_stats_out *out, sm_error **err);

/*
 * Forwards a host TCP listener on host_addr:host_port (NULL = 127.0.0.1;
 * port 0 = any) to guest_port, each connection over its own vsock stream,
 * until sm_forward_stop().
 */
sm_forward *sm_vm_expose_tcp(sm_vm *vm, const char *host_addr, uint16_t host_port, uint16_t guest_port,
			     sm_error **err);
/* The host port actually bound. */
uint16_t sm_forward_port(const sm_forward *f);
/* Closes the listener and every relayed connection, and frees f. NULL is fine. */
void sm_forward_stop(sm_forward *f);

/* ---- the VMs on this host: what `supermachine ps` lists ------------------ *
 *
 * Every VM of this user that still has a runtime directory: running, or
 * ended and not yet removed (a detached VM whose workload ended, one whose
 * owner was killed). A snapshot of the directories taken when the list is
 * loaded; sorted by creation time, newest first (as `docker ps`).
 */
typedef struct sm_vm_list sm_vm_list;
typedef struct sm_vm_info sm_vm_info;

typedef enum sm_vm_status {
	SM_VM_RUNNING = 0, /* its worker runs */
	SM_VM_EXITED,      /* its worker is gone */
} sm_vm_status;

sm_vm_list *sm_vm_list_load(sm_error **err);
size_t sm_vm_list_count(const sm_vm_list *l);
/* Entry i (< count), owned by l. */
const sm_vm_info *sm_vm_list_at(const sm_vm_list *l, size_t i);
/*
 * The list as `supermachine ps --format json` prints it: an array of
 * objects (id, image, command, created, pid, status "running"/"exited",
 * exit_code or null, detached, console); later versions add fields, never
 * remove or retype one. free() it; NULL when out of memory.
 */
char *sm_vm_list_json(const sm_vm_list *l);
void sm_vm_list_free(sm_vm_list *l);

/* Its ID (sm_vm_attach() takes it). */
const char *sm_vm_info_id(const sm_vm_info *v);
/* sm_vm_config.label, else the image it was started from. */
const char *sm_vm_info_image(const sm_vm_info *v);
/* Its workload's command line, space-separated; "" when it has none. */
const char *sm_vm_info_command(const sm_vm_info *v);
int64_t sm_vm_info_created(const sm_vm_info *v);   /* unix time */
int sm_vm_info_pid(const sm_vm_info *v);           /* of its worker */
sm_vm_status sm_vm_info_status(const sm_vm_info *v);
/* Exited: the workload's exit status as init reported it (128+N: signal N); -1 when unknown or running. */
int sm_vm_info_exit_code(const sm_vm_info *v);
bool sm_vm_info_detached(const sm_vm_info *v);
/* The serial console log. */
const char *sm_vm_info_console(const sm_vm_info *v);
/* sm_vm_config.name, "" when it has none. */
const char *sm_vm_info_name(const sm_vm_info *v);
/* When its worker last started (a restart sets it again), unix time. */
int64_t sm_vm_info_started(const sm_vm_info *v);
/* When it ended (unix time), 0 while it runs or when no end was recorded. */
int64_t sm_vm_info_finished(const sm_vm_info *v);
unsigned sm_vm_info_restarts(const sm_vm_info *v);
const char *sm_vm_info_restart_policy(const sm_vm_info *v); /* "no", "on-failure[:N]" */
bool sm_vm_info_kept(const sm_vm_info *v);                   /* sm_vm_config.keep */
uint32_t sm_vm_info_stop_timeout_ms(const sm_vm_info *v);    /* 0 = the default */
/* Published ports (sm_vm_expose_tcp): their count, and entry i as host address, host port, guest port. */
size_t sm_vm_info_port_count(const sm_vm_info *v);
int sm_vm_info_port(const sm_vm_info *v, size_t i, const char **host_addr, uint16_t *host_port,
		    uint16_t *guest_port);
/*
 * The entry for an ID, a name or a unique ID prefix (the ID first, then
 * the name, then the prefix, as docker resolves them). SM_E_NOT_FOUND or
 * SM_E_INVALID (an ambiguous prefix).
 */
const sm_vm_info *sm_vm_list_find(const sm_vm_list *l, const char *id_or_name, sm_error **err);
/*
 * The VM as JSON (free()): id, name, image, command, created, state
 * (status, running, pid, exit_code, started, finished, restarts), config
 * (memory_mib, vcpus, network, volumes, mounts, ports, restart policy,
 * stop timeout). NULL when out of memory.
 */
char *sm_vm_info_json(const sm_vm_info *v);
/* True when name may name a VM (sm_vm_config.name). */
bool sm_vm_name_valid(const char *name);
/*
 * Removes a VM's record by ID, name or prefix. A running VM needs force,
 * which kills it first (as `docker rm -f`); else SM_E_BUSY.
 */
int sm_vm_remove(const char *id_or_name, bool force, sm_error **err);

/* ---- snapshots: capture, restore, bake ------------------------------------ *
 *
 * A snapshot is a directory (docs/snapshots.md): the worker's state and
 * memory files and metadata.json, written last, so a directory without
 * it is not a snapshot. A NAME ([A-Za-z0-9][A-Za-z0-9._-]*, at most 128
 * bytes) lives in the store, $SUPERMACHINE_HOME (else
 * $XDG_DATA_HOME/supermachine, else ~/.local/share/supermachine)
 * /snapshots/NAME; anything holding a '/' is a directory path.
 * Volumes are never captured: they stay the host's files, and a restore
 * must be given the same volumes (guest paths, order) again.
 */

/*
 * Captures vm into name_or_dir, which must not exist yet; the VM keeps
 * running. The guest syncs its disks and is sealed first (its workload
 * and execs frozen), and is resumed afterwards, whether the capture
 * worked or not, with the clock and fresh entropy a clone gets
 * (docs/snapshots.md). 0 or -1.
 */
int sm_vm_snapshot(sm_vm *vm, const char *name_or_dir, sm_error **err);

/*
 * Starts a VM from a snapshot: checks it (format version, every file
 * present and of the right size, the kernel and initramfs that
 * cfg->assets discovery finds and the rootfs still match their digests:
 * SM_E_SNAPSHOT otherwise, before any guest code runs), restores it in a
 * new worker, sets the guest clock to now, adds fresh entropy and has
 * the guest's CRNG reseeded from it before its workload or any exec runs
 * again (clones never share random numbers), and applies the balloon
 * target. Memory, vCPUs, network, env and workload come from
 * the snapshot: cfg (NULL = defaults) may repeat them but not change
 * them; its volumes, assets, console_log, detached, label and
 * boot_timeout_ms apply. sm_vm_start() restores too when its image is the
 * name of a snapshot in the store.
 */
sm_vm *sm_vm_restore(const char *name_or_dir, const sm_vm_config *cfg, sm_error **err);

/*
 * Puts a VM that was restored back to its snapshot in place (its copied
 * pages dropped, all state reloaded, clock, entropy and CRNG fresh): what a
 * pool does between users. SM_E_INVALID for a VM that was booted.
 */
int sm_vm_reset(sm_vm *vm, sm_error **err);

/* True when name_or_dir is a complete snapshot (has its metadata.json). */
bool sm_snapshot_exists(const char *name_or_dir);

typedef struct sm_snapshot_list sm_snapshot_list;
typedef struct sm_snapshot_info sm_snapshot_info;

/* The store's snapshots (complete ones only), in directory order. */
sm_snapshot_list *sm_snapshot_list_load(sm_error **err);
size_t sm_snapshot_list_count(const sm_snapshot_list *l);
/* Entry i (< count), owned by l. */
const sm_snapshot_info *sm_snapshot_list_at(const sm_snapshot_list *l, size_t i);
void sm_snapshot_list_free(sm_snapshot_list *l);

const char *sm_snapshot_info_name(const sm_snapshot_info *s);
const char *sm_snapshot_info_path(const sm_snapshot_info *s);
/* The image it was baked from (for a bare rootfs: its path). */
const char *sm_snapshot_info_image(const sm_snapshot_info *s);
const char *sm_snapshot_info_image_digest(const sm_snapshot_info *s);
const char *sm_snapshot_info_warmup_tag(const sm_snapshot_info *s); /* "" when none */
/* The root filesystem file it boots from (`system prune` keeps it). */
const char *sm_snapshot_info_rootfs(const sm_snapshot_info *s);
uint32_t sm_snapshot_info_memory_mib(const sm_snapshot_info *s);
unsigned sm_snapshot_info_vcpus(const sm_snapshot_info *s);
int64_t sm_snapshot_info_created(const sm_snapshot_info *s);     /* unix time */
uint64_t sm_snapshot_info_disk_bytes(const sm_snapshot_info *s); /* blocks the memory and state files occupy */
/* Removes a snapshot of the store by name. */
int sm_snapshot_remove(const char *name, sm_error **err);

/* When a bake captures, once the VM booted and its agent answered. */
typedef enum sm_bake_trigger {
	SM_BAKE_READY = 0,    /* right away */
	SM_BAKE_LISTENER,     /* the workload's first listening TCP socket (value: port, 0 = any) */
	SM_BAKE_AFTER_MS,     /* value ms later */
	SM_BAKE_HEARTBEAT,    /* the value-th heartbeat (a byte written to /run/supermachine/heartbeat) */
} sm_bake_trigger;

typedef struct sm_bake_config {
	size_t size;                      /* sizeof(sm_bake_config), or 0: see "configuration structs" */
	/*
	 * The VM baked: memory, vCPUs, assets, network, env, workload, ...
	 * (NULL = defaults). No workload given: the image's Entrypoint+Cmd
	 * runs as the workload.
	 */
	const sm_vm_config *vm;
	sm_bake_trigger trigger;
	uint32_t trigger_value;
	uint32_t trigger_timeout_ms;      /* 0 = 120000 */
	/* Commands run in order in the VM before the capture; each must exit 0. NULL-terminated. */
	const char *const *const *warmup;
	/* Changing it (or anything else baked in) invalidates a snapshot baked before. */
	const char *warmup_tag;
	uint32_t settle_ms;               /* the guest syncs, waits this long, syncs again */
	/*
	 * After each restore the guest's virtio-balloon driver is asked to
	 * give back this much RAM, which leaves the worker's memory: for
	 * clones that stay idle. 0 = none. Less than the VM's memory.
	 */
	uint32_t balloon_target_mib;
	bool force;                       /* bake even when an up-to-date snapshot exists */
	/* Called as each step starts (elapsed_us 0, done false) and ends; may be NULL. */
	void (*progress)(const char *step, bool done, uint64_t elapsed_us, void *opaque);
	void *progress_opaque;
	/*
	 * A warmup in code, after the warmup commands and before the capture:
	 * exec, write files, connect... in vm. Returning -1 (with *err set,
	 * or not) fails the bake. Change warmup_tag when its behaviour
	 * changes: the bake cannot see inside it. May be NULL.
	 */
	int (*warmup_fn)(sm_vm *vm, void *opaque, sm_error **err);
	void *warmup_opaque;
	/* end of the first layout (size 0) */
} sm_bake_config;
#define SM_BAKE_CONFIG_INIT { .size = sizeof(sm_bake_config) }

/*
 * Bakes image (a pulled image, pulled now when missing, or an ext4 file)
 * into the snapshot name_or_dir: boots it, waits for the trigger, runs
 * the warmup, quiesces, captures, stops the VM. Returns 0 when it baked,
 * 1 when an up-to-date snapshot was already there (same image digest,
 * kernel, initramfs, settings, warmup and warmup_tag), -1 on error.
 */
int sm_bake(const char *image, const char *name_or_dir, const sm_bake_config *cfg, sm_error **err);

/* ---- pool: warm VMs restored from one snapshot ----------------------------- *
 *
 * A pool hands out VMs restored from one snapshot. It spawns lazily up to
 * max, keeps at least min ready, evicts idle VMs beyond min after
 * idle_timeout_ms, and replaces a worker that dies. Every function is
 * safe to call from any thread; a pooled VM is used by one thread at a
 * time (its owner's).
 *
 * Workers are restored, reset and stopped by the pool's own threads
 * (at most 8), never on the caller's time. A warm acquire is a mutex, a
 * list pop and a poll() of the worker's pidfd.
 */
typedef struct sm_pool sm_pool;

typedef struct sm_pool_config {
	size_t size;                  /* sizeof(sm_pool_config), or 0: see "configuration structs" */
	unsigned min;                 /* VMs kept ready (spawned at sm_pool_new) */
	unsigned max;                 /* 0 = 4 */
	uint32_t idle_timeout_ms;     /* idle VMs beyond min are stopped after it; 0 = 60000 */
	uint32_t acquire_timeout_ms;  /* 0 = 30000 */
	/*
	 * A released VM is reset to the snapshot (sm_vm_reset(), on a pool
	 * thread, so the release itself is cheap) before its next user: the
	 * default. keep_state_on_release skips that: the next user sees the
	 * last one's files and processes, and a warm guest page cache.
	 */
	bool keep_state_on_release;
	/*
	 * As for sm_vm_restore() (NULL = defaults); detached is ignored. The
	 * pool copies this struct but not what its pointers point to
	 * (volumes, assets, env, workload, label, console_log): those must
	 * outlive the pool.
	 */
	const sm_vm_config *vm;
	/* end of the first layout (size 0) */
} sm_pool_config;
#define SM_POOL_CONFIG_INIT { .size = sizeof(sm_pool_config) }

typedef struct sm_pool_stats {
	unsigned idle;                /* ready, waiting for an acquire */
	unsigned busy;                /* handed out */
	unsigned starting;            /* being restored, or reset after a release */
	uint64_t spawned;             /* restores that succeeded */
	uint64_t evicted;             /* idle VMs stopped after idle_timeout_ms */
	uint64_t died;                /* workers found dead (killed, crashed, stopped by their owner, failed reset) */
	uint64_t waits;               /* acquires that found no idle VM and waited */
	uint64_t acquires;            /* acquires that returned a VM */
	uint64_t acquire_timeouts;    /* acquires that gave up at acquire_timeout_ms */
	uint64_t acquire_p50_us, acquire_p99_us, acquire_max_us; /* over the last 4096 acquires */
	/* restores whose worker was a spare: exec'd and linked ahead of need (SUPERMACHINE_SPARE=0: none) */
	uint64_t spare_restores;
} sm_pool_stats;

/*
 * A pool over the snapshot name_or_dir; cfg may be NULL. Waits until min
 * VMs are ready; a restore that fails then fails the pool, naming the
 * snapshot and why.
 */
sm_pool *sm_pool_new(const char *name_or_dir, const sm_pool_config *cfg, sm_error **err);
/*
 * A ready VM: an idle one at once, else (below max) one restored for this
 * call by a pool thread; at max, waits up to acquire_timeout_ms for a
 * release, then fails with SM_E_BUSY ("all N VMs busy for T ms"); a
 * restore that failed meanwhile fails it with that error. Give it back
 * with sm_pool_release(); every sm_vm_* call works on it, sm_vm_free()
 * gives it back too, and sm_vm_stop() retires it (released, it is then
 * replaced).
 */
sm_vm *sm_pool_acquire(sm_pool *p, sm_error **err);
/*
 * Back to its pool (NULL is fine): reset in the background (unless
 * keep_state_on_release) and handed out again; a VM whose worker died is
 * discarded and, below min, replaced.
 */
void sm_pool_release(sm_vm *vm);
void sm_pool_get_stats(sm_pool *p, sm_pool_stats *s);
/*
 * Stops every worker and waits for them; no call on p may start once it
 * has. VMs still acquired are killed too, with a warning naming them
 * through the log callback, and their owners' later calls fail with
 * SM_E_VM_DIED; they must still be released, which frees them: the pool's
 * memory lives until the last one is. NULL is fine.
 */
void sm_pool_free(sm_pool *p);

/* ---- OCI images: pull, list, inspect, remove ------------------------------- *
 *
 * The image store ($SUPERMACHINE_HOME, else $XDG_DATA_HOME/supermachine,
 * else ~/.local/share/supermachine) holds pulled images by name: their
 * blobs and the ext4 root filesystem a VM boots from. These are what
 * `supermachine pull`, `images`, `inspect` and `rm` do. Safe from any
 * thread; pulls of one store run one at a time (a lock in the store).
 */
typedef struct sm_oci_image sm_oci_image;
typedef struct sm_oci_image_list sm_oci_image_list;

typedef enum sm_pull_phase {
	SM_PULL_RESOLVING = 0, /* the reference to a manifest */
	SM_PULL_DOWNLOADING,   /* blobs (the config, then the layers) */
	SM_PULL_BUILDING,      /* the root filesystem from the layers */
	SM_PULL_DONE,          /* stored under its name */
} sm_pull_phase;

/* Where one blob of a download stands. */
typedef enum sm_pull_blob_state {
	SM_BLOB_WAITING = 0,   /* not started (or waiting to retry) */
	SM_BLOB_DOWNLOADING,
	SM_BLOB_DONE,          /* fetched and its digest checked */
	SM_BLOB_CACHED,        /* already in the store: not fetched */
} sm_pull_blob_state;

/*
 * One progress report. Filled by the library, which may append fields:
 * read it through the pointer, do not copy it.
 */
typedef struct sm_pull_progress {
	sm_pull_phase phase;
	/*
	 * Downloading: the blob this report is about, or NULL for a report on
	 * the whole download (one comes at least every 100 ms while bytes
	 * move, each blob's when its bytes or state change).
	 */
	const char *digest;
	sm_pull_blob_state state;   /* of that blob */
	uint64_t done, total;       /* that blob's bytes */
	/*
	 * The whole phase: downloading, the bytes and blobs of this batch
	 * (the config, then the layers); building, the bytes of tar read
	 * (total 0: not known ahead) and blobs_total the layers.
	 */
	uint64_t bytes_done, bytes_total;
	unsigned blobs_done, blobs_total;
} sm_pull_progress;

/*
 * Called on the pulling thread (the caller's) as the pull moves; return
 * 0 to go on, anything else to cancel: the pull then fails with
 * SM_E_CANCELED and stores nothing new under the name.
 */
typedef int (*sm_pull_progress_fn)(const sm_pull_progress *p, void *opaque);

typedef struct sm_pull_config {
	size_t size;                  /* sizeof(sm_pull_config), or 0: see "configuration structs" */
	const char *platform;         /* "os/arch[/variant]"; NULL = "linux/amd64" */
	bool plain_http;              /* http:// to the registry (always so for localhost) */
	bool insecure;                /* https without certificate verification */
	bool no_rootfs;               /* store the image without building its root filesystem */
	sm_pull_progress_fn progress; /* may be NULL */
	void *progress_opaque;
	/* end of the first layout (size 0) */
} sm_pull_config;
#define SM_PULL_CONFIG_INIT { .size = sizeof(sm_pull_config) }

/*
 * Pulls source into the store and builds its root filesystem: a registry
 * reference as docker resolves it ("busybox", "ghcr.io/o/r:tag",
 * "host:5000/x@sha256:...", optionally "docker://..."), "oci:DIR[:TAG]"
 * (an OCI image layout) or "docker-archive:FILE[:TAG]". Credentials:
 * SUPERMACHINE_REGISTRY_USER / _PASSWORD (for SUPERMACHINE_REGISTRY_HOST
 * only, when set), else the docker config's auths. cfg may be NULL.
 * Returns the stored image.
 */
sm_oci_image *sm_oci_pull(const char *source, const sm_pull_config *cfg, sm_error **err);
/*
 * A stored image by name ("busybox" is docker.io/library/busybox:latest),
 * by manifest digest or by a unique prefix of at least 12 of its hex
 * digits; builds its root filesystem when it is missing.
 */
sm_oci_image *sm_oci_image_get(const char *name, sm_error **err);
/*
 * Removes the image's name from the store, then deletes the blobs and
 * root filesystems no remaining name uses; *freed (may be NULL) gets the
 * bytes freed. SM_E_NOT_FOUND for a name the store does not hold.
 */
int sm_oci_image_remove(const char *name, uint64_t *freed, sm_error **err);
void sm_oci_image_free(sm_oci_image *img);

/* Every stored image, sorted by name. */
sm_oci_image_list *sm_oci_image_list_load(sm_error **err);
size_t sm_oci_image_list_count(const sm_oci_image_list *l);
/* Entry i (< count), owned by l: not to be freed. */
const sm_oci_image *sm_oci_image_list_at(const sm_oci_image_list *l, size_t i);
/* The list as `supermachine images --json` prints it (an array of objects); free() it. */
char *sm_oci_image_list_json(const sm_oci_image_list *l);
void sm_oci_image_list_free(sm_oci_image_list *l);

/* What an image holds; strings are owned by img, NULL when the image has none. */
const char *sm_oci_image_name(const sm_oci_image *img);            /* as stored */
const char *sm_oci_image_manifest_digest(const sm_oci_image *img); /* "sha256:..." */
const char *sm_oci_image_config_digest(const sm_oci_image *img);
const char *sm_oci_image_rootfs(const sm_oci_image *img);          /* the ext4 file; NULL if not built */
uint64_t sm_oci_image_size(const sm_oci_image *img);               /* bytes of its blobs */
uint64_t sm_oci_image_rootfs_size(const sm_oci_image *img);
int64_t sm_oci_image_pulled(const sm_oci_image *img);              /* unix time it was stored */
const char *sm_oci_image_created(const sm_oci_image *img);         /* RFC 3339, as the image says */
const char *sm_oci_image_os(const sm_oci_image *img);
const char *sm_oci_image_architecture(const sm_oci_image *img);
/* Its config's runtime parts; string vectors are NULL-terminated. */
const char *const *sm_oci_image_entrypoint(const sm_oci_image *img);
const char *const *sm_oci_image_cmd(const sm_oci_image *img);
const char *const *sm_oci_image_env(const sm_oci_image *img);         /* "KEY=value" */
const char *const *sm_oci_image_exposed_ports(const sm_oci_image *img); /* "80/tcp" */
const char *sm_oci_image_working_dir(const sm_oci_image *img);
const char *sm_oci_image_user(const sm_oci_image *img);
const char *sm_oci_image_stop_signal(const sm_oci_image *img);
/* The image as `supermachine inspect` prints it (a JSON object); free() it. */
char *sm_oci_image_json(const sm_oci_image *img);

/* ---- the store and the runtime directories: `system df`, `system prune` -- *
 *
 * What the store ($SUPERMACHINE_HOME, ...) and the VMs' runtime
 * directories hold, and collecting what nothing uses. Each figure is
 * bytes on disk (allocated blocks), so sparse files count what they use.
 */
typedef struct sm_store_usage {
	size_t size;                /* sizeof(sm_store_usage): the library fills the fields it covers */
	uint64_t images;            /* names in the store */
	uint64_t blobs, blob_bytes; /* manifests, configs and layers */
	uint64_t rootfs, rootfs_bytes;       /* built root filesystems (their .ext4 files) */
	uint64_t snapshots, snapshot_bytes;  /* complete snapshots: memory and state files */
	uint64_t vms, vms_running, runtime_bytes; /* runtime directories, and the VMs whose worker runs */
	uint64_t tmp_bytes;         /* tmp/: downloads in progress or left by an interrupted pull */
	/* end of the first layout */
} sm_store_usage;
#define SM_STORE_USAGE_INIT { .size = sizeof(sm_store_usage) }

/* Fills u (its size set: SM_STORE_USAGE_INIT) with what the store and runtime directories hold. 0 or -1. */
int sm_store_usage_get(sm_store_usage *u, sm_error **err);

typedef struct sm_prune_report {
	size_t size;                /* sizeof(sm_prune_report) */
	uint64_t vms;               /* runtime directories of ended VMs removed */
	uint64_t vm_bytes;
	uint64_t store_bytes;       /* blobs, root filesystems, tmp/ files and half-written snapshots freed */
	/* end of the first layout */
} sm_prune_report;
#define SM_PRUNE_REPORT_INIT { .size = sizeof(sm_prune_report) }

/*
 * Removes the runtime directories of VMs whose worker is gone (started
 * more than a minute ago, so a VM being started is never caught), then
 * the blobs and root filesystems no stored name or snapshot uses and
 * tmp/ (waiting for pulls in progress to finish), and the half-written
 * snapshots a killed capture left (untouched for 10 minutes). r (may be NULL; its
 * size set) says what went. 0 or -1.
 */
int sm_store_prune(sm_prune_report *r, sm_error **err);

/* ---- images: a baked snapshot, opened once ---------------------------------- *
 *
 * What a program keeps for the snapshot it starts VMs from: one at a time
 * (sm_image_start), from a pool it configures (sm_image_pool), or from
 * the image's own pool (sm_image_acquire: made on first use, min 0, max
 * one VM per host CPU, idle VMs stopped after a minute). Safe to use from
 * any thread.
 */
typedef struct sm_image sm_image;

/* Checks that name_or_dir is a snapshot (its metadata.json parses); SM_E_NOT_FOUND or SM_E_SNAPSHOT otherwise. */
sm_image *sm_image_open(const char *name_or_dir, sm_error **err);
/* The snapshot's directory. */
const char *sm_image_path(const sm_image *img);
/* sm_vm_restore() of the image. */
sm_vm *sm_image_start(sm_image *img, const sm_vm_config *cfg, sm_error **err);
/* sm_pool_new() over the image: the caller frees the pool. */
sm_pool *sm_image_pool(sm_image *img, const sm_pool_config *cfg, sm_error **err);
/* A VM from the image's own pool; give it back with sm_pool_release(). */
sm_vm *sm_image_acquire(sm_image *img, sm_error **err);
/* Frees img and its own pool (see sm_pool_free() for VMs still acquired). NULL is fine. */
void sm_image_free(sm_image *img);

/* ---- host check (`supermachine check`) --------------------------------- */

/*
 * Whether VMs can run on this host, one line per requirement: /dev/kvm
 * (opens, API version, capabilities), what a tiny probe guest can do on
 * it (guest kernel-mode instructions/s and the I/O exit round trip,
 * judged against hardware virtualization), the guest kernel, initramfs
 * and worker (which paths, from which rule), the store (writable, free
 * space), transparent huge pages, memory overcommit and seccomp. A
 * /dev/kvm that emulates guest kernel code (a software hypervisor, broken
 * nested virtualization) opens and answers every capability, yet cannot
 * run the guest kernel: only the probe tells. Takes well under a second
 * on a good host; the probe guest is cut off after about half a second
 * on any host.
 */
typedef enum sm_check_status {
	SM_CHECK_OK = 0,
	SM_CHECK_WARN,  /* VMs run, but something is slow or risky */
	SM_CHECK_FAIL,  /* VMs cannot run here until this is fixed */
} sm_check_status;

typedef struct sm_host_report sm_host_report;

#define SM_CHECK_KVM_ONLY 1u /* only the /dev/kvm lines (and the tests/nested hint) */

/* The report; NULL only when out of memory. flags: SM_CHECK_*. */
sm_host_report *sm_host_check(unsigned flags, sm_error **err);
size_t sm_host_report_count(const sm_host_report *r);
/* Line i: its name ("kvm.speed"), status, what was found or measured, and what to do (NULL: nothing). */
const char *sm_host_report_name(const sm_host_report *r, size_t i);
sm_check_status sm_host_report_status(const sm_host_report *r, size_t i);
const char *sm_host_report_detail(const sm_host_report *r, size_t i);
const char *sm_host_report_hint(const sm_host_report *r, size_t i);
/* The figure line i measured and its unit ("M instructions/s", "us", "GiB"); NULL when it has none. */
const char *sm_host_report_figure(const sm_host_report *r, size_t i, double *value);
/* True when no line is SM_CHECK_FAIL. */
bool sm_host_report_can_run(const sm_host_report *r);
/* The report as text (a line each, "ok", "warn" or "FAIL" first) or as a JSON array; free() it. */
char *sm_host_report_text(const sm_host_report *r);
char *sm_host_report_json(const sm_host_report *r);
const char *sm_check_status_name(sm_check_status s);
void sm_host_report_free(sm_host_report *r);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* SUPERMACHINE_H */
