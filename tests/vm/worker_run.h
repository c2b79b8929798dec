/*
 * Running supermachine-worker from the vm tests: the guest is the test
 * init (tests/vm/guest), its console goes to a file the test reads, and
 * the worker's stderr is captured for its log lines.
 */
#ifndef SM_TESTS_WORKER_RUN_H
#define SM_TESTS_WORKER_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Hang guard for one boot under nested emulation; never a timing check. */
#define WORKER_WAIT_S 900

struct worker_run {
	pid_t pid;
	char dir[64];        /* private temp dir: console log, sockets, disks */
	char console[128];
	char control[128];
	char stderr_path[128];
	int status;          /* exit status once reaped, -1 before */
	int signal;          /* terminating signal, 0 if it exited */
	/* Set before wr_start: --console - with stdin a pipe (stdin_fd) and
	 * stdout going to the console log. */
	bool console_stdio;
	int stdin_fd;
};

/* The directory holding vmlinux and bzImage (SUPERMACHINE_KERNEL_DIR or kernel/build). */
const char *wr_kernel_dir(void);
/* "<kernel dir>/<name>" in a static buffer. */
const char *wr_kernel(const char *name);

/* Makes the temp dir and fills in the paths. */
void wr_init(struct worker_run *w);
/*
 * Starts the worker with --console and --control set to w's paths, the
 * test initramfs, and extra arguments (NULL-terminated).
 */
void wr_start(struct worker_run *w, const char *kernel, const char *const *extra);
/* Waits for the worker to end (WORKER_WAIT_S at most, then SIGKILL and fail). */
void wr_wait(struct worker_run *w);
/* Removes the temp dir. */
void wr_cleanup(struct worker_run *w);

/* Whole console log / worker stderr (malloc'd, NUL-terminated). */
char *wr_read_file(const char *path);
/* Waits until the console log contains needle (hang guard: WORKER_WAIT_S). */
bool wr_wait_console(struct worker_run *w, const char *needle);
/* The console line starting with "SMTEST <step>" (copied into buf); false if absent. */
bool wr_smtest_line(struct worker_run *w, const char *step, char *buf, size_t len);
/* Value of key=... in a line (copied into out); false if absent. */
bool wr_field(const char *line, const char *key, char *out, size_t len);

/* Sends one control request and reads the reply line into reply. */
bool wr_control(struct worker_run *w, const char *request, char *reply, size_t len);

#endif
