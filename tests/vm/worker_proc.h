/*
 * Runs supermachine-worker for a vm test: a private directory for its
 * console log, control socket and vsock socket; waiting for "SMTEST" lines
 * the guest prints; control requests; stopping it; its RSS.
 */
#ifndef SM_TESTS_WORKER_PROC_H
#define SM_TESTS_WORKER_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct wproc {
	pid_t pid;
	int status; /* exit status once reaped, -1 before */
	char dir[64];
	char console[96], log[96], control[96], vsock[96];
	long con_off;
};

/*
 * Starts the worker with the test kernel (SUPERMACHINE_KERNEL_DIR/vmlinux),
 * initramfs, guest cmdline, memory, plus extra options (NULL-terminated;
 * "--vsock" gets w->vsock appended). Returns false (test skipped by the
 * caller) when no kernel is available.
 */
bool wproc_start(struct wproc *w, const char *initramfs, const char *cmdline, unsigned mem_mib,
		 const char *const *extra);
/*
 * Starts the worker restoring the snapshot in snapdir (--restore), with its
 * own console, control socket and vsock paths, plus extra options as for
 * wproc_start. False if it could not be started.
 */
bool wproc_restore(struct wproc *w, const char *snapdir, const char *const *extra);
/* Next console line starting with prefix, within timeout_ms. */
bool wproc_wait_line(struct wproc *w, const char *prefix, char *line, size_t len, int timeout_ms);
/* One control request; the reply line without its newline. */
bool wproc_control(struct wproc *w, const char *req, char *reply, size_t len);
/* Resident memory of the worker in KiB: field is "VmRSS:", "RssShmem:", ... */
long wproc_status_kib(struct wproc *w, const char *field);
/* Waits for the worker to exit by itself; its exit status, -1 on timeout. */
int wproc_wait(struct wproc *w, int timeout_ms);
/* Stops it (control "stop", then SIGKILL), removes its directory; exit status. */
int wproc_stop(struct wproc *w);
/* The tails of the console and worker logs on stderr, for a failing test. */
void wproc_dump(struct wproc *w);

#endif
