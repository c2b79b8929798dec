#include "worker_run.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *wr_kernel_dir(void)
{
	static char dir[512];
	const char *env = getenv("SUPERMACHINE_KERNEL_DIR");
	const char *src = getenv("SUPERMACHINE_SOURCE_ROOT");

	if (env && *env)
		return env;
	if (!dir[0] && src) {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "%s/kernel/build --print-dir 2>/dev/null", src);
		FILE *p = popen(cmd, "r");
		if (p) {
			if (!fgets(dir, sizeof(dir), p))
				dir[0] = 0;
			dir[strcspn(dir, "\n")] = 0;
			if (pclose(p) != 0)
				dir[0] = 0;
		}
	}
	cr_assert(dir[0], "no guest kernel: set SUPERMACHINE_KERNEL_DIR or run kernel/build");
	return dir;
}

const char *wr_kernel(const char *name)
{
	static char path[600];

	snprintf(path, sizeof(path), "%s/%s", wr_kernel_dir(), name);
	cr_assert_eq(access(path, R_OK), 0, "%s: %s", path, strerror(errno));
	return path;
}

void wr_init(struct worker_run *w)
{
	memset(w, 0, sizeof(*w));
	w->status = -1;
	/* Sockets need a local filesystem (not 9p), so /tmp rather than the build tree. */
	strcpy(w->dir, "/tmp/sm-vmtest-XXXXXX");
	cr_assert_not_null(mkdtemp(w->dir));
	snprintf(w->console, sizeof(w->console), "%s/console.log", w->dir);
	snprintf(w->control, sizeof(w->control), "%s/control.sock", w->dir);
	snprintf(w->stderr_path, sizeof(w->stderr_path), "%s/worker.err", w->dir);
	w->stdin_fd = -1;
}

void wr_start(struct worker_run *w, const char *kernel, const char *const *extra)
{
	const char *argv[64];
	int n = 0;

	argv[n++] = SM_TEST_WORKER;
	argv[n++] = "--kernel";
	argv[n++] = kernel;
	argv[n++] = "--initrd";
	argv[n++] = SM_TEST_INITRAMFS;
	argv[n++] = "--console";
	argv[n++] = w->console_stdio ? "-" : w->console;
	argv[n++] = "--control";
	argv[n++] = w->control;
	for (int i = 0; extra && extra[i]; i++) {
		cr_assert_lt(n, 62);
		argv[n++] = extra[i];
	}
	argv[n] = NULL;
	int in[2] = { -1, -1 };
	if (w->console_stdio)
		cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
	fflush(NULL);
	w->pid = fork();
	cr_assert_geq(w->pid, 0);
	if (w->pid == 0) {
		int err = open(w->stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int null = open("/dev/null", O_RDWR);
		int out = w->console_stdio ? open(w->console, O_WRONLY | O_CREAT | O_TRUNC, 0644) : err;
		dup2(w->console_stdio ? in[0] : null, STDIN_FILENO);
		dup2(err, STDERR_FILENO);
		dup2(out, STDOUT_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (w->console_stdio) {
		close(in[0]);
		w->stdin_fd = in[1];
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void wr_wait(struct worker_run *w)
{
	double deadline = now_s() + WORKER_WAIT_S;
	int st;

	if (w->status >= 0 || w->signal)
		return;
	for (;;) {
		pid_t r = waitpid(w->pid, &st, WNOHANG);
		if (r == w->pid)
			break;
		if (now_s() > deadline) {
			kill(w->pid, SIGKILL);
			waitpid(w->pid, &st, 0);
			cr_assert_fail("worker still running after %d s; console:\n%s", WORKER_WAIT_S,
				       wr_read_file(w->console));
		}
		usleep(20000);
	}
	w->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	w->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

void wr_cleanup(struct worker_run *w)
{
	char cmd[128];

	if (w->stdin_fd >= 0)
		close(w->stdin_fd);
	if (w->pid > 0 && w->status < 0 && !w->signal) {
		kill(w->pid, SIGKILL);
		waitpid(w->pid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", w->dir);
	if (system(cmd) != 0) {
		/* a leftover temp dir is harmless */
	}
}

char *wr_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return strdup("");
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(m);
	fclose(f);
	return buf;
}

bool wr_wait_console(struct worker_run *w, const char *needle)
{
	double deadline = now_s() + WORKER_WAIT_S;

	while (now_s() < deadline) {
		char *log = wr_read_file(w->console);
		bool found = strstr(log, needle) != NULL;
		free(log);
		if (found)
			return true;
		int st;
		if (w->status < 0 && !w->signal && waitpid(w->pid, &st, WNOHANG) == w->pid) {
			w->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
			w->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
		}
		if (w->status >= 0 || w->signal) {
			log = wr_read_file(w->console);
			found = strstr(log, needle) != NULL;
			free(log);
			return found;
		}
		usleep(50000);
	}
	return false;
}

bool wr_smtest_line(struct worker_run *w, const char *step, char *buf, size_t len)
{
	char *log = wr_read_file(w->console);
	char prefix[64];
	bool found = false;

	snprintf(prefix, sizeof(prefix), "SMTEST %s", step);
	for (char *line = log; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		size_t pl = strlen(prefix);
		if (strncmp(line, prefix, pl) == 0 && (line[pl] == ' ' || line[pl] == '\r' || !line[pl])) {
			snprintf(buf, len, "%s", line);
			buf[strcspn(buf, "\r")] = 0;
			found = true;
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	free(log);
	return found;
}

bool wr_field(const char *line, const char *key, char *out, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s=", key);
	const char *p = strstr(line, pat);
	if (!p)
		return false;
	p += strlen(pat);
	size_t n = strcspn(p, " ");
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = 0;
	return true;
}

bool wr_control(struct worker_run *w, const char *request, char *reply, size_t len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t n = 0;

	if (strlen(w->control) >= sizeof(addr.sun_path))
		return false;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(addr.sun_path, w->control, strlen(w->control) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	char line[256];
	int l = snprintf(line, sizeof(line), "%s\n", request);
	if (write(fd, line, (size_t)l) != l) {
		close(fd);
		return false;
	}
	while (n + 1 < len) {
		ssize_t r = read(fd, reply + n, 1);
		if (r <= 0 || reply[n] == '\n')
			break;
		n++;
	}
	reply[n] = 0;
	close(fd);
	return n > 0;
}
