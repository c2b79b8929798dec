/*
 * boot_bench: cold boot of supermachine-worker against QEMU microvm booting
 * the same kernel and initramfs (the vm tests' init, which writes the boot
 * marker, prints "SMTEST start" and reboots) in the same run.
 *
 * Per VMM, median over --runs boots at 1 vCPU / 256 MiB:
 *   spawn_to_init_line_ms  fork() to the init's first console line arriving
 *                          on the pipe: measured the same way for both
 *   spawn_to_exit_ms       fork() to the process exiting after the guest reboot
 *   cpu_ms                 user+system CPU of the whole process (wait4)
 *   kvm_exits_to_init      VM exits (KVM's per-VM debugfs count, in-kernel exits
 *                          included) when the init line arrived, if readable
 * Ours only: process_to_init_ms and kvm_run_to_init_ms from the marker port,
 * user-space exits, the backing of guest RAM (on stderr; GUEST_MEM_ENV in
 * the bench's environment picks one: SUPERMACHINE_GUEST_RAM=memfd is the
 * 4 KiB baseline), and in a separate run on the memfd the worker's
 * resident memory beyond guest RAM (VmRSS - RssShmem) with the guest idle
 * at /init.
 *
 * One JSON line per figure: {"bench":"boot","figure":...,"vmm":...,"value":...,"unit":...,"kvm":...}
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/guest_mem.h"
#include "bench_util.h"

#define MAX_RUNS 64
#define RUN_TIMEOUT_S 600
#define KVM_DEBUGFS "/sys/kernel/debug/kvm"

struct opts {
	const char *worker, *kernel, *initrd, *qemu;
	int runs;
	const char *kvm_kind;
};

struct run {
	double to_line_ms, to_exit_ms, cpu_ms;
	long long kvm_exits; /* at the init line; -1: not readable */
	/* ours only */
	double marker_process_ms, marker_kvm_ms;
	long long user_exits;
	int status;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * VM exits of process pid's VM so far: KVM's per-VM debugfs directory
 * "<pid>-<fd>" sums every vCPU's exits, in-kernel ones included. It goes
 * away with the VM, so callers sample it while the VM runs. -1 if unreadable.
 */
static long long kvm_exits(pid_t pid)
{
	char pattern[64], path[PATH_MAX];
	long long v = -1;
	DIR *d = opendir(KVM_DEBUGFS);

	if (!d)
		return -1;
	snprintf(pattern, sizeof(pattern), "%d-", (int)pid);
	for (struct dirent *e; (e = readdir(d));) {
		if (strncmp(e->d_name, pattern, strlen(pattern)) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s/exits", KVM_DEBUGFS, e->d_name);
		FILE *f = fopen(path, "r");
		if (f) {
			if (fscanf(f, "%lld", &v) != 1)
				v = -1;
			fclose(f);
		}
	}
	closedir(d);
	return v;
}

static void die(const char *what)
{
	fprintf(stderr, "boot_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Appends what is readable on fd to buf (NUL-terminated, capped). */
static bool drain(int fd, char *buf, size_t *len, size_t cap)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n <= 0)
		return false;
	size_t take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
	memcpy(buf + *len, tmp, take);
	*len += take;
	buf[*len] = 0;
	return true;
}

/*
 * Runs argv with stdout and stderr on pipes; notes when `line` shows up on
 * stdout; returns when the process exits. err gets its stderr.
 */
static void run_one(char *const *argv, const char *line, struct run *r, char *err, size_t errcap)
{
	int out[2], errp[2];
	static char outbuf[1 << 20];
	size_t outlen = 0, errlen = 0;
	struct rusage ru;
	int st;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
		die("pipe");
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(errp[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	close(errp[1]);
	r->to_line_ms = -1;
	r->kvm_exits = -1;
	err[0] = 0;
	outbuf[0] = 0;
	struct pollfd p[2] = { { .fd = out[0], .events = POLLIN }, { .fd = errp[0], .events = POLLIN } };
	int open_fds = 2;
	while (open_fds && now_ms() - t0 < RUN_TIMEOUT_S * 1e3) {
		long long exits = r->to_line_ms < 0 ? kvm_exits(pid) : -1;
		if (poll(p, 2, r->to_line_ms < 0 ? 10 : 1000) <= 0)
			continue;
		if (p[0].revents && !drain(out[0], outbuf, &outlen, sizeof(outbuf))) {
			p[0].fd = -1;
			open_fds--;
		}
		if (r->to_line_ms < 0 && strstr(outbuf, line)) {
			r->to_line_ms = now_ms() - t0;
			r->kvm_exits = exits;
		}
		if (p[1].revents && !drain(errp[0], err, &errlen, errcap)) {
			p[1].fd = -1;
			open_fds--;
		}
	}
	if (open_fds)
		kill(pid, SIGKILL);
	if (wait4(pid, &st, 0, &ru) < 0)
		die("wait4");
	r->to_exit_ms = now_ms() - t0;
	r->cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
		    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	close(out[0]);
	close(errp[0]);
}

static const char cmdline_reboot[] = "console=ttyS0 reboot=t panic=-1 quiet smtest=reboot";

static void run_ours(const struct opts *o, struct run *r)
{
	char err[16384];
	char *argv[] = { (char *)o->worker, "--kernel", (char *)o->kernel, "--initrd",
			 (char *)o->initrd, "--memory", "256", "--vcpus", "1", "--console", "-",
			 "--cmdline", "quiet smtest=reboot", NULL };

	run_one(argv, "SMTEST start", r, err, sizeof(err));
	const char *m = strstr(err, "guest /init reached after ");
	r->marker_process_ms = r->marker_kvm_ms = -1;
	if (m)
		sscanf(m, "guest /init reached after %lf ms (process start), %lf ms", &r->marker_process_ms,
		       &r->marker_kvm_ms);
	const char *b = strstr(err, "guest RAM: ");
	if (b)
		fprintf(stderr, "boot_bench: %.*s\n", (int)strcspn(b, "\n"), b);
	const char *s = strstr(err, "stats: exits=");
	r->user_exits = s ? atoll(s + strlen("stats: exits=")) : -1;
	if (r->status != 0 || r->to_line_ms < 0) {
		fprintf(stderr, "boot_bench: worker run failed (status %d):\n%s\n", r->status, err);
		exit(1);
	}
}

static void run_qemu(const struct opts *o, struct run *r)
{
	char err[16384];
	char *argv[] = { (char *)o->qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm",
			 "-cpu", "host", "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config",
			 "-nographic", "-no-reboot", "-serial", "stdio", "-device", "virtio-rng-device",
			 "-kernel", (char *)o->kernel, "-initrd", (char *)o->initrd, "-append",
			 (char *)cmdline_reboot, NULL };

	run_one(argv, "SMTEST start", r, err, sizeof(err));
	if (r->to_line_ms < 0) {
		fprintf(stderr, "boot_bench: qemu run failed (status %d):\n%s\n", r->status, err);
		exit(1);
	}
}

/* Median of field `off` (a double) over runs. */
static double median(const struct run *runs, int n, size_t off)
{
	double v[MAX_RUNS];
	for (int i = 0; i < n; i++)
		v[i] = *(const double *)((const char *)&runs[i] + off);
	qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double median_ll(const struct run *runs, int n, size_t off)
{
	double v[MAX_RUNS];
	for (int i = 0; i < n; i++) {
		long long x = *(const long long *)((const char *)&runs[i] + off);
		if (x < 0)
			return -1;
		v[i] = (double)x;
	}
	qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void emit(const struct opts *o, const char *figure, const char *vmm, double value,
		 const char *unit)
{
	if (value < 0)
		printf("{\"bench\":\"boot\",\"figure\":\"%s\",\"vmm\":\"%s\",\"value\":null,\"unit\":\"%s\","
		       "\"kvm\":\"%s\"}\n", figure, vmm, unit, o->kvm_kind);
	else
		printf("{\"bench\":\"boot\",\"figure\":\"%s\",\"vmm\":\"%s\",\"value\":%.3f,\"unit\":\"%s\","
		       "\"kvm\":\"%s\",\"runs\":%d}\n", figure, vmm, value, unit, o->kvm_kind, o->runs);
	fflush(stdout);
}

struct medians {
	double line, cpu, exits;
};

/* The figures both VMMs have, measured the same way. */
static struct medians emit_common(const struct opts *o, const char *vmm, const struct run *r, int n)
{
	struct medians m = {
		.line = median(r, n, offsetof(struct run, to_line_ms)),
		.cpu = median(r, n, offsetof(struct run, cpu_ms)),
		.exits = median_ll(r, n, offsetof(struct run, kvm_exits)),
	};

	emit(o, "spawn_to_init_line", vmm, m.line, "ms");
	emit(o, "spawn_to_exit", vmm, median(r, n, offsetof(struct run, to_exit_ms)), "ms");
	emit(o, "cpu", vmm, m.cpu, "ms");
	emit(o, "kvm_exits_to_init", vmm, m.exits, "exits");
	return m;
}

static long status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	long v = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			v = atol(line + strlen(field));
	fclose(f);
	return v;
}

/* Boots to an idle /init and reads the worker's memory there. */
static void memory_run(const struct opts *o)
{
	char dir[] = "/tmp/sm-bootbench-XXXXXX", console[96], ctl[96];
	if (!mkdtemp(dir))
		die("mkdtemp");
	snprintf(console, sizeof(console), "%s/console", dir);
	snprintf(ctl, sizeof(ctl), "%s/ctl", dir);
	char *argv[] = { (char *)o->worker, "--kernel", (char *)o->kernel, "--initrd",
			 (char *)o->initrd, "--memory", "256", "--console", console, "--control", ctl,
			 "--cmdline", "quiet smtest=hang", NULL };
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		setenv(GUEST_MEM_ENV, "memfd", 1); /* guest RAM is then RssShmem, apart from the worker's own */
		execv(argv[0], argv);
		_exit(127);
	}
	double t0 = now_ms();
	bool up = false;
	while (!up && now_ms() - t0 < RUN_TIMEOUT_S * 1e3) {
		char buf[8192] = "";
		FILE *f = fopen(console, "r");
		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = 0;
			fclose(f);
		}
		up = strstr(buf, "SMTEST hang") != NULL;
		if (!up)
			usleep(50000);
	}
	if (up) {
		usleep(500000); /* let the guest settle into idle */
		long rss = status_kib(pid, "VmRSS:"), shmem = status_kib(pid, "RssShmem:");
		emit(o, "guest_touched_ram", "supermachine", (double)shmem / 1024, "MiB");
		emit(o, "worker_rss_beyond_guest_ram", "supermachine", (double)(rss - shmem) / 1024, "MiB");
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(sa.sun_path, ctl, strlen(ctl) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(fd, "stop\n", 5) == 5) {
		char c;
		while (read(fd, &c, 1) == 1 && c != '\n')
			;
	}
	close(fd);
	waitpid(pid, NULL, 0);
	unlink(console);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "worker", required_argument, NULL, 'w' }, { "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' }, { "qemu", required_argument, NULL, 'q' },
		{ "runs", required_argument, NULL, 'r' },   { NULL, 0, NULL, 0 },
	};
	struct opts o = { .qemu = "/usr/bin/qemu-system-x86_64", .runs = 5 };
	static struct run ours[MAX_RUNS], qemu[MAX_RUNS];
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'w': o.worker = optarg; break;
		case 'k': o.kernel = optarg; break;
		case 'i': o.initrd = optarg; break;
		case 'q': o.qemu = optarg; break;
		case 'r': o.runs = atoi(optarg); break;
		default: return 2;
		}
	}
	if (!o.worker || !o.kernel || !o.initrd || o.runs < 1 || o.runs > MAX_RUNS) {
		fprintf(stderr, "usage: boot_bench --worker W --kernel VMLINUX --initrd CPIO "
				"[--qemu PATH|none] [--runs N]\n");
		return 2;
	}
	o.kvm_kind = getenv("SUPERMACHINE_NESTED") ? "nested" : "native";
	bool with_qemu = strcmp(o.qemu, "none") != 0 && access(o.qemu, X_OK) == 0;

	/* Interleaved, so a change in machine load hits both alike. */
	for (int i = 0; i < o.runs; i++) {
		run_ours(&o, &ours[i]);
		if (with_qemu)
			run_qemu(&o, &qemu[i]);
	}
	int n = o.runs;
	emit(&o, "process_to_init", "supermachine", median(ours, n, offsetof(struct run, marker_process_ms)), "ms");
	emit(&o, "kvm_run_to_init", "supermachine", median(ours, n, offsetof(struct run, marker_kvm_ms)), "ms");
	emit(&o, "user_space_exits", "supermachine", median_ll(ours, n, offsetof(struct run, user_exits)), "exits");
	struct medians om = emit_common(&o, "supermachine", ours, n);
	if (with_qemu) {
		struct medians qm = emit_common(&o, "qemu-microvm", qemu, n);
		emit(&o, "spawn_to_init_line_ratio", "supermachine/qemu-microvm", om.line / qm.line, "ratio");
		emit(&o, "cpu_ratio", "supermachine/qemu-microvm", om.cpu / qm.cpu, "ratio");
		if (om.exits >= 0 && qm.exits > 0)
			emit(&o, "kvm_exits_ratio", "supermachine/qemu-microvm", om.exits / qm.exits, "ratio");
	}
	memory_run(&o);
	return 0;
}
