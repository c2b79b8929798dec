/*
 * snapshot_qemu_bench (bench/snapshot_qemu runs it): snapshot save and
 * restore of supermachine-worker against QEMU's own save/restore
 * (migration to a file, -incoming) of the same guest, in the same run.
 *
 * The guest, for both: the vm tests' kernel (SUPERMACHINE_KERNEL_DIR/vmlinux)
 * and tests/vm/guest/snap_guest.c's initramfs in its counting mode (it prints
 * "SMTEST count cpu=0 n=N" every 200 ms), cmdline "console=ttyS0 reboot=t
 * panic=-1 quiet", 1 vCPU, 256 MiB, no disk, no network. Each VMM boots it,
 * waits for its SETTLE_TICKS-th count line and saves right after one:
 *
 *   ours   control `snapshot DIR` (the worker pauses, writes, resumes)
 *   QEMU   QMP stop, getfd, migrate "fd:NAME" to a file (QEMU 7.2 has no
 *          file: URI), MIGRATION event "completed"
 *
 * then restores it --runs times (interleaved), each in a fresh process:
 *
 *   supermachine        supermachine-worker --restore DIR
 *   qemu-microvm        the boot's arguments plus -incoming fd:3 (the file
 *                       inherited as fd 3); the source ran with
 *                       migration.store-global-state=off, so QEMU starts
 *                       the guest by itself once the stream is loaded
 *   qemu-microvm+cont   the QMP way: -S -incoming defer, qmp_capabilities,
 *                       getfd, migrate-incoming "fd:NAME", MIGRATION event
 *                       "completed", cont
 *
 * and measures, per restore: wall time from fork() to the first console
 * line of the restored guest with a count beyond the captured one
 * (restore_to_line_ms), the process's CPU time, all threads, user+sys, at
 * that moment (restore_cpu_ms, its CPU clock read the moment the line is
 * seen). Consoles are files for all three, polled the same way every 1 ms.
 * Per VMM: save wall time (request sent -> saved; save_ms) and the snapshot's
 * allocated size on disk (st_blocks * 512; snapshot_disk_mib).
 *
 * One JSON line per figure, medians over the runs:
 *   {"bench":"snapshot_qemu","figure":...,"vmm":...,"value":...,"unit":...,"kvm":...}
 * with ratios under "vmm":"supermachine/qemu-microvm" (and "/qemu-microvm+cont").
 * Any failing step prints what failed (QEMU's stderr, the QMP reply, the
 * worker's logs) and exits 1; every wait has a time-out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "../tests/vm/worker_proc.h"

#define MAX_RUNS 64
#define MEM_MIB 256
#define SETTLE_TICKS 5		/* count lines before the save */
#define BOOT_WAIT_MS 600000	/* boot to the guest's first line */
#define LINE_WAIT_MS 120000	/* a running guest's next line */
#define RESTORE_WAIT_MS 300000	/* restore to the first new line */
#define QMP_WAIT_MS 60000	/* one QMP command */
#define MIGRATE_WAIT_MS 300000	/* save or load of the migration stream */
#define POLL_US 1000

/* The worker adds "console=ttyS0 reboot=t panic=-1" to its --cmdline. */
#define GUEST_CMDLINE "quiet"
#define QEMU_CMDLINE "console=ttyS0 reboot=t panic=-1 " GUEST_CMDLINE

struct opts {
	const char *qemu, *kernel, *accel, *kvm_kind;
	int runs;
	bool ours, qemu_on;
};

struct runfig {
	double line_ms, cpu_ms;
};

struct vmmfig {
	struct runfig r[MAX_RUNS];
	double save_ms, disk_mib, file_mib;
	long first_n; /* count of the first restored line, run 0 */
};

struct qemu {
	pid_t pid;
	char console[192], log[192], qmp[100];
	int qfd, confd;
	long con_off;
	char rbuf[65536];
	size_t rlen;
	int mig; /* MIGRATION event seen: 0 none, 1 completed, -1 failed */
};

/* What cleanup() takes down on any exit. */
static struct {
	char ours_dir[64], qemu_dir[64];
	struct wproc *w[2];
	struct qemu *q[2];
} live;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void rm_dir(const char *dir)
{
	char path[512];
	DIR *d;

	if (!dir[0] || !(d = opendir(dir)))
		return;
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void qemu_kill(struct qemu *q)
{
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		waitpid(q->pid, NULL, 0);
		q->pid = -1;
	}
	if (q->qfd >= 0)
		close(q->qfd);
	if (q->confd >= 0)
		close(q->confd);
	q->qfd = q->confd = -1;
}

static void cleanup(void)
{
	for (int i = 0; i < 2; i++) {
		if (live.w[i])
			wproc_stop(live.w[i]);
		if (live.q[i])
			qemu_kill(live.q[i]);
		live.w[i] = NULL;
		live.q[i] = NULL;
	}
	rm_dir(live.ours_dir);
	rm_dir(live.qemu_dir);
	live.ours_dir[0] = live.qemu_dir[0] = 0;
}

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "snapshot_qemu: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	cleanup();
	exit(1);
}

/* True while pid has not exited (it is not reaped here: WNOWAIT). */
static bool alive(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return false;
	return si.si_pid == 0;
}

/* CPU time of process pid so far, all threads (exited ones too), user+sys. */
static double proc_cpu_ms(pid_t pid)
{
	struct timespec ts;
	clockid_t cid;

	if (clock_getcpuclockid(pid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
		return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
	/* Fallback: clock ticks of /proc/PID/stat (fields 14 and 15). */
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1e3 / (double)sysconf(_SC_CLK_TCK);
}

/* Allocated bytes (st_blocks * 512) and apparent size of the files in dir, or of one file. */
static void disk_use(const char *path, double *alloc, double *size)
{
	char p[512];
	struct stat st;
	DIR *d = opendir(path);

	*alloc = *size = 0;
	if (!d) {
		if (stat(path, &st) == 0) {
			*alloc = (double)st.st_blocks * 512;
			*size = (double)st.st_size;
		}
		return;
	}
	for (struct dirent *e; (e = readdir(d));) {
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			*alloc += (double)st.st_blocks * 512;
			*size += (double)st.st_size;
		}
	}
	closedir(d);
}

/*
 * The next complete console line at *off of path (kept open in *fd), if
 * there is one; advances *off past it.
 */
static bool con_next(const char *path, int *fd, long *off, char *line, size_t cap)
{
	if (*fd < 0 && (*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return false;
	ssize_t n = pread(*fd, line, cap - 1, *off);
	if (n <= 0)
		return false;
	line[n] = 0;
	char *nl = memchr(line, '\n', (size_t)n);
	if (!nl) {
		if ((size_t)n == cap - 1)
			*off += n; /* an overlong line: skip it */
		return false;
	}
	*nl = 0;
	*off += nl - line + 1;
	line[strcspn(line, "\r")] = 0;
	return true;
}

/*
 * Waits (POLL_US steps) for a count line with n > after_n on pid's console;
 * *n_out its count, *cpu_ms pid's CPU time when it was seen. False when pid
 * exits first or on time-out.
 */
static bool wait_count(const char *path, int *fd, long *off, pid_t pid, long after_n, int timeout_ms,
		       long *n_out, double *cpu_ms)
{
	double deadline = now_ms() + timeout_ms;
	char line[512];

	for (;;) {
		while (con_next(path, fd, off, line, sizeof(line))) {
			long n;
			if (sscanf(line, "SMTEST count cpu=%*d n=%ld", &n) == 1 && n > after_n) {
				if (cpu_ms)
					*cpu_ms = proc_cpu_ms(pid);
				*n_out = n;
				return true;
			}
		}
		if (!alive(pid)) {
			while (con_next(path, fd, off, line, sizeof(line)))
				;
			return false;
		}
		if (now_ms() > deadline)
			return false;
		usleep(POLL_US);
	}
}

/* ---- supermachine-worker ---------------------------------------------- */

static void ours_run(const struct opts *o, struct vmmfig *f, long *n_cap)
{
	static struct wproc orig;
	char req[128], reply[512], line[256];
	int fd = -1;

	snprintf(live.ours_dir, sizeof(live.ours_dir), "/tmp/sm-bench-qsnap-ours-XXXXXX");
	if (!mkdtemp(live.ours_dir))
		fail("mkdtemp: %s", strerror(errno));
	if (!wproc_start(&orig, SM_SNAP_GUEST_INITRAMFS, GUEST_CMDLINE, MEM_MIB, NULL))
		fail("no kernel (SUPERMACHINE_KERNEL_DIR=%s) or worker did not start",
		     getenv("SUPERMACHINE_KERNEL_DIR") ? getenv("SUPERMACHINE_KERNEL_DIR") : "");
	live.w[0] = &orig;
	if (!wproc_wait_line(&orig, "SMTEST snap ready", line, sizeof(line), BOOT_WAIT_MS)) {
		wproc_dump(&orig);
		fail("worker boot: no \"SMTEST snap ready\" (worker %s)",
		     alive(orig.pid) ? "still running: time-out" : "exited");
	}
	if (!wait_count(orig.console, &fd, &orig.con_off, orig.pid, SETTLE_TICKS - 1, LINE_WAIT_MS, n_cap,
			NULL)) {
		wproc_dump(&orig);
		fail("worker boot: no count line %d (worker %s)", SETTLE_TICKS,
		     alive(orig.pid) ? "still running: time-out" : "exited");
	}
	snprintf(req, sizeof(req), "snapshot %s", live.ours_dir);
	double t = now_ms();
	bool ok = wproc_control(&orig, req, reply, sizeof(reply));
	f->save_ms = now_ms() - t;
	if (!ok || strncmp(reply, "ok", 2) != 0) {
		wproc_dump(&orig);
		fail("worker `%s`: %s", req, ok ? reply : "no reply");
	}
	fprintf(stderr, "snapshot_qemu: supermachine saved after count %ld: %s\n", *n_cap, reply);
	double alloc, size;
	disk_use(live.ours_dir, &alloc, &size);
	f->disk_mib = alloc / (1 << 20);
	f->file_mib = size / (1 << 20);
	fprintf(stderr, "snapshot_qemu: supermachine save %.1f ms, %.2f MiB allocated\n", f->save_ms, f->disk_mib);
	close(fd);
	wproc_stop(&orig);
	live.w[0] = NULL;
	(void)o;
}

static void ours_restore(const struct opts *o, struct vmmfig *f, int i, long n_cap)
{
	static struct wproc c;
	int fd = -1;
	long n;

	double t0 = now_ms();
	if (!wproc_restore(&c, live.ours_dir, NULL))
		fail("worker --restore %s: could not start", live.ours_dir);
	live.w[1] = &c;
	if (!wait_count(c.console, &fd, &c.con_off, c.pid, n_cap, RESTORE_WAIT_MS, &n, &f->r[i].cpu_ms)) {
		wproc_dump(&c);
		fail("worker restore %d: no count line after %ld (worker %s)", i, n_cap,
		     alive(c.pid) ? "still running: time-out" : "exited");
	}
	f->r[i].line_ms = now_ms() - t0;
	fprintf(stderr, "snapshot_qemu: supermachine restore %d: line n=%ld after %.1f ms, cpu %.1f ms\n", i, n,
		f->r[i].line_ms, f->r[i].cpu_ms);
	if (i == 0)
		f->first_n = n;
	close(fd);
	wproc_stop(&c);
	live.w[1] = NULL;
	(void)o;
}

/* ---- QEMU --------------------------------------------------------------- */

static void qemu_dump(const struct qemu *q)
{
	char buf[4096];
	const char *paths[] = { q->log, q->console };
	const char *what[] = { "qemu stderr", "guest console" };

	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(paths[i], "r");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		long size = ftell(f);
		fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = 0;
		fclose(f);
		fprintf(stderr, "---- %s (%s), last %zu bytes ----\n%s\n", what[i], paths[i], n, buf);
	}
}

__attribute__((format(printf, 2, 3), noreturn))
static void qemu_fail(struct qemu *q, const char *fmt, ...)
{
	va_list ap;

	qemu_dump(q);
	fprintf(stderr, "snapshot_qemu: qemu: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	cleanup();
	exit(1);
}

/*
 * Starts QEMU with the boot's arguments plus extra (NULL-terminated);
 * in_fd >= 0 becomes its fd 3. Console, stderr and QMP socket go to
 * live.qemu_dir/TAG.*.
 */
static void qemu_spawn(const struct opts *o, struct qemu *q, const char *tag, int in_fd,
		       const char *const *extra)
{
	const char *argv[64];
	char serial[256], qmparg[256];
	unsigned n = 0;

	memset(q, 0, sizeof(*q));
	q->pid = -1;
	q->qfd = q->confd = -1;
	snprintf(q->console, sizeof(q->console), "%s/%s.console", live.qemu_dir, tag);
	snprintf(q->log, sizeof(q->log), "%s/%s.log", live.qemu_dir, tag);
	snprintf(q->qmp, sizeof(q->qmp), "%s/%s.qmp", live.qemu_dir, tag);
	snprintf(serial, sizeof(serial), "file:%s", q->console);
	snprintf(qmparg, sizeof(qmparg), "unix:%s,server=on,wait=off", q->qmp);
	argv[n++] = o->qemu;
	argv[n++] = "-M", argv[n++] = "microvm,x-option-roms=off,rtc=off";
	argv[n++] = "-accel", argv[n++] = o->accel;
	argv[n++] = "-cpu", argv[n++] = strcmp(o->accel, "kvm") == 0 ? "host" : "max";
	argv[n++] = "-m", argv[n++] = "256";
	argv[n++] = "-smp", argv[n++] = "1";
	argv[n++] = "-nodefaults", argv[n++] = "-no-user-config";
	argv[n++] = "-display", argv[n++] = "none";
	argv[n++] = "-no-reboot";
	argv[n++] = "-serial", argv[n++] = serial;
	argv[n++] = "-device", argv[n++] = "virtio-rng-device";
	argv[n++] = "-kernel", argv[n++] = o->kernel;
	argv[n++] = "-initrd", argv[n++] = SM_SNAP_GUEST_INITRAMFS;
	argv[n++] = "-append", argv[n++] = QEMU_CMDLINE;
	argv[n++] = "-qmp", argv[n++] = qmparg;
	/* A stream saved while paused then starts by itself where it is loaded. */
	argv[n++] = "-global", argv[n++] = "migration.store-global-state=off";
	for (; extra && *extra && n < sizeof(argv) / sizeof(argv[0]) - 1; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;

	q->pid = fork();
	if (q->pid < 0)
		fail("fork: %s", strerror(errno));
	if (q->pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		int log = open(q->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (null < 0 || log < 0)
			_exit(126);
		dup2(null, 0);
		dup2(log, 1);
		dup2(log, 2);
		if (in_fd >= 0) {
			if (in_fd == 3)
				fcntl(3, F_SETFD, 0);
			else
				dup2(in_fd, 3);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
}

static bool qmp_line(struct qemu *q, char *line, size_t cap, double deadline)
{
	for (;;) {
		char *nl = memchr(q->rbuf, '\n', q->rlen);
		if (nl) {
			size_t len = (size_t)(nl - q->rbuf);
			size_t take = len < cap - 1 ? len : cap - 1;
			memcpy(line, q->rbuf, take);
			line[take] = 0;
			line[strcspn(line, "\r")] = 0;
			q->rlen -= len + 1;
			memmove(q->rbuf, nl + 1, q->rlen);
			/* Migration outcomes are noted whenever they pass by. */
			if (strstr(line, "\"event\"") && strstr(line, "\"MIGRATION\"")) {
				if (strstr(line, "\"completed\""))
					q->mig = 1;
				else if (strstr(line, "\"failed\"") || strstr(line, "\"cancelled\""))
					q->mig = -1;
			}
			return true;
		}
		if (q->rlen == sizeof(q->rbuf))
			q->rlen = 0; /* an overlong line: drop it */
		double left = deadline - now_ms();
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = q->qfd, .events = POLLIN };
		int r = poll(&p, 1, left > 100 ? 100 : (int)left + 1);
		if (r < 0 && errno != EINTR)
			return false;
		if (r > 0) {
			ssize_t got = read(q->qfd, q->rbuf + q->rlen, sizeof(q->rbuf) - q->rlen);
			if (got <= 0)
				return false;
			q->rlen += (size_t)got;
		} else if (r == 0 && !alive(q->pid)) {
			return false;
		}
	}
}

/* Connects to QEMU's QMP socket (it may not exist yet) and reads the greeting. */
static void qmp_connect(struct qemu *q)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	double deadline = now_ms() + QMP_WAIT_MS;
	char line[1024];

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", q->qmp);
	for (;;) {
		q->qfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->qfd < 0)
			fail("socket: %s", strerror(errno));
		if (connect(q->qfd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(q->qfd);
		q->qfd = -1;
		if (!alive(q->pid))
			qemu_fail(q, "exited before its QMP socket %s was up", q->qmp);
		if (now_ms() > deadline)
			qemu_fail(q, "QMP socket %s: no connection within %d s", q->qmp, QMP_WAIT_MS / 1000);
		usleep(POLL_US);
	}
	if (!qmp_line(q, line, sizeof(line), now_ms() + QMP_WAIT_MS) || !strstr(line, "\"QMP\""))
		qemu_fail(q, "no QMP greeting (got \"%s\")", line);
}

/*
 * One QMP command (a JSON object); fd >= 0 goes along as SCM_RIGHTS (getfd).
 * Fails the bench with QEMU's reply unless it is a "return".
 */
static void qmp_cmd(struct qemu *q, const char *cmd, int fd)
{
	char msg[1024], line[4096];
	int len = snprintf(msg, sizeof(msg), "%s\n", cmd);
	struct iovec iov = { .iov_base = msg, .iov_len = (size_t)len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(q->qfd, &mh, MSG_NOSIGNAL) != len)
		qemu_fail(q, "QMP %s: send: %s", cmd, strerror(errno));
	double deadline = now_ms() + QMP_WAIT_MS;
	for (;;) {
		if (!qmp_line(q, line, sizeof(line), deadline))
			qemu_fail(q, "QMP %s: no reply within %d s (qemu %s)", cmd, QMP_WAIT_MS / 1000,
				  alive(q->pid) ? "running" : "exited");
		if (strncmp(line, "{\"return\"", 9) == 0)
			return;
		if (strncmp(line, "{\"error\"", 8) == 0)
			qemu_fail(q, "QMP %s: %s", cmd, line);
	}
}

/* Waits for the MIGRATION event "completed"; fails with query-migrate's answer otherwise. */
static void qmp_wait_migration(struct qemu *q, const char *what)
{
	double deadline = now_ms() + MIGRATE_WAIT_MS;
	char line[4096];

	while (q->mig == 0)
		if (!qmp_line(q, line, sizeof(line), deadline))
			qemu_fail(q, "%s: not completed within %d s (qemu %s)", what, MIGRATE_WAIT_MS / 1000,
				  alive(q->pid) ? "running" : "exited");
	if (q->mig < 0) {
		const char *cmd = "{\"execute\":\"query-migrate\"}\n";
		if (write(q->qfd, cmd, strlen(cmd)) > 0)
			while (qmp_line(q, line, sizeof(line), now_ms() + QMP_WAIT_MS))
				if (strncmp(line, "{\"return\"", 9) == 0 || strncmp(line, "{\"error\"", 8) == 0)
					break;
		qemu_fail(q, "%s failed: query-migrate: %s", what, line);
	}
}

static void qmp_setup(struct qemu *q)
{
	qmp_connect(q);
	qmp_cmd(q, "{\"execute\":\"qmp_capabilities\"}", -1);
	qmp_cmd(q, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
		   "[{\"capability\":\"events\",\"state\":true}]}}", -1);
}

static void qemu_run(const struct opts *o, struct vmmfig *f, long *n_cap, const char *snap)
{
	static struct qemu src;

	qemu_spawn(o, &src, "boot", -1, NULL);
	live.q[0] = &src;
	qmp_setup(&src);
	/* QEMU 7.2 throttles migration to 32 MiB/s by default; a snapshot is not throttled. */
	qmp_cmd(&src, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":1099511627776}}",
		-1);
	if (!wait_count(src.console, &src.confd, &src.con_off, src.pid, SETTLE_TICKS - 1, BOOT_WAIT_MS, n_cap,
			NULL))
		qemu_fail(&src, "boot: no count line %d within %d s", SETTLE_TICKS, BOOT_WAIT_MS / 1000);

	double t = now_ms();
	int fd = open(snap, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fail("%s: %s", snap, strerror(errno));
	qmp_cmd(&src, "{\"execute\":\"stop\"}", -1);
	qmp_cmd(&src, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"snap\"}}", fd);
	qmp_cmd(&src, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:snap\"}}", -1);
	qmp_wait_migration(&src, "migrate to file");
	f->save_ms = now_ms() - t;
	close(fd);
	double alloc, size;
	disk_use(snap, &alloc, &size);
	f->disk_mib = alloc / (1 << 20);
	f->file_mib = size / (1 << 20);
	fprintf(stderr, "snapshot_qemu: qemu-microvm saved after count %ld in %.1f ms, %.2f MiB allocated\n",
		*n_cap, f->save_ms, f->disk_mib);
	qemu_kill(&src);
	live.q[0] = NULL;
}

/* One restore; qmp: the -S -incoming defer / migrate-incoming / cont way. */
static void qemu_restore(const struct opts *o, struct vmmfig *f, int i, long n_cap, const char *snap,
			 bool qmp)
{
	static struct qemu dst;
	static const char *const auto_args[] = { "-incoming", "fd:3", NULL };
	static const char *const qmp_args[] = { "-S", "-incoming", "defer", NULL };
	char tag[32];
	long n;

	snprintf(tag, sizeof(tag), "%s%d", qmp ? "qmp" : "in", i);
	double t0 = now_ms();
	int fd = open(snap, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("%s: %s", snap, strerror(errno));
	qemu_spawn(o, &dst, tag, qmp ? -1 : fd, qmp ? qmp_args : auto_args);
	live.q[1] = &dst;
	if (qmp) {
		qmp_setup(&dst);
		qmp_cmd(&dst, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"snap\"}}", fd);
		qmp_cmd(&dst, "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"fd:snap\"}}", -1);
		qmp_wait_migration(&dst, "migrate-incoming");
		qmp_cmd(&dst, "{\"execute\":\"cont\"}", -1);
	}
	close(fd);
	if (!wait_count(dst.console, &dst.confd, &dst.con_off, dst.pid, n_cap, RESTORE_WAIT_MS, &n,
			&f->r[i].cpu_ms))
		qemu_fail(&dst, "restore %s: no count line after %ld (qemu %s)", tag, n_cap,
			  alive(dst.pid) ? "still running: time-out" : "exited");
	f->r[i].line_ms = now_ms() - t0;
	fprintf(stderr, "snapshot_qemu: qemu %s: line n=%ld after %.1f ms, cpu %.1f ms\n", tag, n,
		f->r[i].line_ms, f->r[i].cpu_ms);
	if (i == 0)
		f->first_n = n;
	qemu_kill(&dst);
	live.q[1] = NULL;
}

/* ---- figures ------------------------------------------------------------- */

static double median(const struct vmmfig *f, int n, bool cpu)
{
	double v[MAX_RUNS];

	for (int i = 0; i < n; i++)
		v[i] = cpu ? f->r[i].cpu_ms : f->r[i].line_ms;
	qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void emit(const struct opts *o, const char *figure, const char *vmm, double value, const char *unit)
{
	printf("{\"bench\":\"snapshot_qemu\",\"figure\":\"%s\",\"vmm\":\"%s\",\"value\":%.3f,\"unit\":\"%s\","
	       "\"kvm\":\"%s\",\"runs\":%d}\n",
	       figure, vmm, value, unit, o->kvm_kind, o->runs);
	fflush(stdout);
}

struct meds {
	double line, cpu, save, disk;
};

static struct meds emit_vmm(const struct opts *o, const char *vmm, const struct vmmfig *f, bool saved)
{
	struct meds m = { median(f, o->runs, false), median(f, o->runs, true), f->save_ms, f->disk_mib };

	for (int i = 0; i < o->runs; i++)
		fprintf(stderr, "snapshot_qemu: %s restore %d: to line %.1f ms, cpu %.1f ms\n", vmm, i,
			f->r[i].line_ms, f->r[i].cpu_ms);
	emit(o, "restore_to_line_ms", vmm, m.line, "ms");
	emit(o, "restore_cpu_ms", vmm, m.cpu, "ms");
	if (saved) {
		emit(o, "save_ms", vmm, m.save, "ms");
		emit(o, "snapshot_disk_mib", vmm, m.disk, "MiB");
		emit(o, "snapshot_file_mib", vmm, f->file_mib, "MiB");
	}
	return m;
}

static void emit_ratios(const struct opts *o, const char *vmm, struct meds a, struct meds b, bool saved)
{
	emit(o, "restore_to_line_ratio", vmm, a.line / b.line, "ratio");
	emit(o, "restore_cpu_ratio", vmm, a.cpu / b.cpu, "ratio");
	if (saved) {
		emit(o, "save_ratio", vmm, a.save / b.save, "ratio");
		emit(o, "snapshot_disk_ratio", vmm, a.disk / b.disk, "ratio");
	}
}

static void on_signal(int sig)
{
	(void)sig;
	fail("interrupted");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "runs", required_argument, NULL, 'r' },  { "qemu", required_argument, NULL, 'q' },
		{ "kernel", required_argument, NULL, 'k' }, { "accel", required_argument, NULL, 'a' },
		{ "only", required_argument, NULL, 'o' },  { NULL, 0, NULL, 0 },
	};
	static struct vmmfig ours, qemu, qemu_qmp;
	struct opts o = { .qemu = "/usr/bin/qemu-system-x86_64", .accel = "kvm", .runs = 5,
			  .ours = true, .qemu_on = true };
	char kernel[512], snap[128];
	long ours_cap = 0, qemu_cap = 0;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'r': o.runs = atoi(optarg); break;
		case 'q': o.qemu = optarg; break;
		case 'k': o.kernel = optarg; break;
		case 'a': o.accel = optarg; break;
		case 'o':
			o.ours = strcmp(optarg, "supermachine") == 0;
			o.qemu_on = strcmp(optarg, "qemu") == 0;
			break;
		default: return 2;
		}
	}
	if (o.runs < 1 || o.runs > MAX_RUNS || optind != argc) {
		fprintf(stderr, "usage: snapshot_qemu_bench [--runs N (1-%d, default 5)] [--qemu PATH] "
				"[--kernel VMLINUX] [--accel kvm|tcg] [--only supermachine|qemu]\n"
				"  the kernel defaults to $SUPERMACHINE_KERNEL_DIR/vmlinux\n",
			MAX_RUNS);
		return 2;
	}
	if (!o.kernel) {
		const char *kdir = getenv("SUPERMACHINE_KERNEL_DIR");
		if (!kdir) {
			fprintf(stderr, "snapshot_qemu: set SUPERMACHINE_KERNEL_DIR (kernel/build prints it)\n");
			return 2;
		}
		snprintf(kernel, sizeof(kernel), "%s/vmlinux", kdir);
		o.kernel = kernel;
	}
	if (access(o.kernel, R_OK) < 0) {
		fprintf(stderr, "snapshot_qemu: kernel %s: %s\n", o.kernel, strerror(errno));
		return 2;
	}
	if (o.qemu_on && access(o.qemu, X_OK) < 0) {
		fprintf(stderr, "snapshot_qemu: %s: %s (--qemu PATH)\n", o.qemu, strerror(errno));
		return 1;
	}
	o.kvm_kind = getenv("SUPERMACHINE_NESTED") ? "nested" : strcmp(o.accel, "kvm") ? "tcg" : "native";
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	/* Boot and save, one VMM at a time. */
	if (o.ours)
		ours_run(&o, &ours, &ours_cap);
	if (o.qemu_on) {
		snprintf(live.qemu_dir, sizeof(live.qemu_dir), "/tmp/sm-bench-qsnap-qemu-XXXXXX");
		if (!mkdtemp(live.qemu_dir))
			fail("mkdtemp: %s", strerror(errno));
		snprintf(snap, sizeof(snap), "%s/vm.mig", live.qemu_dir);
		qemu_run(&o, &qemu, &qemu_cap, snap);
		qemu_qmp.save_ms = qemu.save_ms;
		qemu_qmp.disk_mib = qemu.disk_mib;
	}
	/* Restores interleaved, so a change in machine load hits all alike. */
	for (int i = 0; i < o.runs; i++) {
		if (o.ours)
			ours_restore(&o, &ours, i, ours_cap);
		if (o.qemu_on) {
			qemu_restore(&o, &qemu, i, qemu_cap, snap, false);
			qemu_restore(&o, &qemu_qmp, i, qemu_cap, snap, true);
		}
	}
	if (o.ours)
		fprintf(stderr, "snapshot_qemu: supermachine: captured after count %ld, first restored line %ld\n",
			ours_cap, ours.first_n);
	if (o.qemu_on)
		fprintf(stderr, "snapshot_qemu: qemu-microvm: captured after count %ld, first restored line %ld (+cont: %ld)\n",
			qemu_cap, qemu.first_n, qemu_qmp.first_n);

	struct meds om = { 0 }, qm = { 0 }, pm = { 0 };
	if (o.ours)
		om = emit_vmm(&o, "supermachine", &ours, true);
	if (o.qemu_on) {
		qm = emit_vmm(&o, "qemu-microvm", &qemu, true);
		pm = emit_vmm(&o, "qemu-microvm+cont", &qemu_qmp, false);
	}
	if (o.ours && o.qemu_on) {
		emit_ratios(&o, "supermachine/qemu-microvm", om, qm, true);
		emit_ratios(&o, "supermachine/qemu-microvm+cont", om, pm, false);
	}
	cleanup();
	return 0;
}
