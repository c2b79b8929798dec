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

#ifdef __cplusplus
}
#endif

#endif /* SUPERMACHINE_H */
