#include "worker_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WP_MAX_ARGS 40

static long wp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A fresh private directory and the paths in it. */
static bool wp_dirs(struct wproc *w)
{
	memset(w, 0, sizeof(*w));
	w->status = -1;
	w->pid = -1;
	snprintf(w->dir, sizeof(w->dir), "/tmp/sm-vmtest-XXXXXX");
	if (!mkdtemp(w->dir))
		return false;
	snprintf(w->console, sizeof(w->console), "%s/console.log", w->dir);
	snprintf(w->log, sizeof(w->log), "%s/worker.log", w->dir);
	snprintf(w->control, sizeof(w->control), "%s/ctl.sock", w->dir);
	snprintf(w->vsock, sizeof(w->vsock), "%s/v.sock", w->dir);
	return true;
}

/* Appends extra (a "--vsock" gets w->vsock) and runs argv with output to w->log. */
static bool wp_spawn(struct wproc *w, const char **argv, unsigned n, const char *const *extra)
{
	for (; extra && *extra && n < WP_MAX_ARGS - 2; extra++) {
		argv[n++] = *extra;
		if (strcmp(*extra, "--vsock") == 0)
			argv[n++] = w->vsock;
	}
	argv[n] = NULL;
	w->pid = fork();
	if (w->pid == 0) {
		int fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return w->pid > 0;
}

bool wproc_restore(struct wproc *w, const char *snapdir, const char *const *extra)
{
	const char *argv[WP_MAX_ARGS];
	unsigned n = 0;

	if (!wp_dirs(w))
		return false;
	argv[n++] = SM_TEST_WORKER;
	argv[n++] = "--restore", argv[n++] = snapdir;
	argv[n++] = "--console", argv[n++] = w->console;
	argv[n++] = "--control", argv[n++] = w->control;
	return wp_spawn(w, argv, n, extra);
}

bool wproc_start(struct wproc *w, const char *initramfs, const char *cmdline, unsigned mem_mib,
		 const char *const *extra)
{
	const char *kdir = getenv("SUPERMACHINE_KERNEL_DIR");
	const char *argv[WP_MAX_ARGS];
	char kernel[512], mem[16];
	unsigned n = 0;

	memset(w, 0, sizeof(*w));
	w->status = -1;
	w->pid = -1;
	if (!kdir)
		return false;
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", kdir);
	if (access(kernel, R_OK) < 0 || !wp_dirs(w))
		return false;
	snprintf(mem, sizeof(mem), "%u", mem_mib);
	argv[n++] = SM_TEST_WORKER;
	argv[n++] = "--kernel", argv[n++] = kernel;
	argv[n++] = "--initrd", argv[n++] = initramfs;
	argv[n++] = "--memory", argv[n++] = mem;
	argv[n++] = "--console", argv[n++] = w->console;
	argv[n++] = "--control", argv[n++] = w->control;
	argv[n++] = "--cmdline", argv[n++] = cmdline;
	return wp_spawn(w, argv, n, extra);
}

static bool wp_alive(struct wproc *w)
{
	int st;

	if (w->status >= 0)
		return false;
	if (waitpid(w->pid, &st, WNOHANG) != w->pid)
		return true;
	w->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return false;
}

/* The console line starting at w->con_off, if complete; advances past it. */
static bool wp_next_line(struct wproc *w, char *line, size_t len)
{
	FILE *f = fopen(w->console, "r");
	bool got = false;

	if (!f)
		return false;
	if (fseek(f, w->con_off, SEEK_SET) == 0 && fgets(line, (int)len, f) && strchr(line, '\n')) {
		w->con_off = ftell(f);
		line[strcspn(line, "\r\n")] = 0;
		got = true;
	}
	fclose(f);
	return got;
}

bool wproc_wait_line(struct wproc *w, const char *prefix, char *line, size_t len, int timeout_ms)
{
	long deadline = wp_now_ms() + timeout_ms;

	while (wp_now_ms() < deadline) {
		if (wp_next_line(w, line, len)) {
			if (strncmp(line, prefix, strlen(prefix)) == 0)
				return true;
			continue;
		}
		if (!wp_alive(w) && !wp_next_line(w, line, len))
			return false;
		usleep(20 * 1000);
	}
	return false;
}

bool wproc_control(struct wproc *w, const char *req, char *reply, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = 30 };
	size_t got = 0;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->control);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || write(fd, req, strlen(req)) < 0 ||
	    write(fd, "\n", 1) != 1) {
		close(fd);
		return false;
	}
	while (got + 1 < len) {
		ssize_t r = read(fd, reply + got, 1);
		if (r <= 0 || reply[got] == '\n')
			break;
		got++;
	}
	reply[got] = 0;
	close(fd);
	return got > 0;
}

long wproc_status_kib(struct wproc *w, const char *field)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)w->pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			kib = strtol(line + strlen(field), NULL, 10);
	fclose(f);
	return kib;
}

int wproc_wait(struct wproc *w, int timeout_ms)
{
	long deadline = wp_now_ms() + timeout_ms;

	while (wp_alive(w) && wp_now_ms() < deadline)
		usleep(20 * 1000);
	return w->status;
}

static void wp_tail(const char *path, const char *what)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	long size;
	size_t n;

	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	fprintf(stderr, "---- %s (%s), last %zu bytes ----\n%s\n", what, path, n, buf);
}

void wproc_dump(struct wproc *w)
{
	wp_tail(w->console, "guest console");
	wp_tail(w->log, "worker log");
}

int wproc_stop(struct wproc *w)
{
	char reply[128], path[160];

	if (w->pid <= 0)
		return -1;
	if (wp_alive(w)) {
		wproc_control(w, "stop", reply, sizeof(reply));
		if (wproc_wait(w, 10000) < 0) {
			kill(w->pid, SIGKILL);
			wproc_wait(w, 10000);
		}
	}
	const char *files[] = { w->console, w->log, w->control, w->vsock };
	for (unsigned i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	snprintf(path, sizeof(path), "%s", w->dir);
	rmdir(path);
	return w->status;
}
