/*
 * bench/fs: a host directory in the guest, supermachine's virtio-fs
 * against QEMU's virtio-9p (-virtfs) serving the same kind of directory
 * to the same kernel and the same guest program (bench/fs_guest.c as
 * /init). The guest times each phase; the host samples the VMM process's
 * CPU as each phase starts and ends (the guest's console lines), which
 * gives host CPU per operation. One JSON line per figure, and a ratio
 * supermachine/qemu-9p per phase (below 1: supermachine is faster).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#define NPHASE 6
#define RUN_TIMEOUT_S 3000

static const char *const phases[NPHASE] = { "create", "stat", "unlink", "seq_write", "seq_read", "tar_x" };
static const char *const units[NPHASE] = { "file", "file", "file", "MiB", "MiB", "tree" };

struct result {
	double guest_s[NPHASE];
	double cpu_s[NPHASE];
	long ops[NPHASE];
	bool ok;
};

struct opts {
	const char *worker, *kernel, *initrd, *qemu, *dir;
	long files, mib;
};

static int phase_index(const char *name)
{
	for (int i = 0; i < NPHASE; i++)
		if (strcmp(phases[i], name) == 0)
			return i;
	return -1;
}

/* One console line: a phase starting or done; the VMM's CPU is read at each. */
static void on_line(const char *line, pid_t pid, double *cpu_at_start, struct result *r)
{
	char name[32];
	double s;
	long ops;

	if (sscanf(line, "FSBENCH start %31s", name) == 1) {
		*cpu_at_start = bench_proc_cpu_s(pid);
	} else if (sscanf(line, "FSBENCH done %31s %lf %ld", name, &s, &ops) == 3) {
		int i = phase_index(name);
		if (i >= 0) {
			r->cpu_s[i] = bench_proc_cpu_s(pid) - *cpu_at_start;
			r->guest_s[i] = s;
			r->ops[i] = ops;
		}
	} else if (strncmp(line, "FSBENCH end", 11) == 0) {
		r->ok = true;
	} else if (strncmp(line, "FSBENCH fail", 12) == 0) {
		fprintf(stderr, "fs_bench: guest: %s\n", line);
	}
}

/* Runs argv (the VMM), feeding each console line on its stdout to on_line() until it exits. */
static void run_vmm(char *const *argv, struct result *r)
{
	char buf[65536];
	size_t len = 0;
	double cpu0 = 0, t0 = bench_now_s();
	int out[2], st;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (pipe2(out, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		perror("fs_bench: start the VMM");
		exit(1);
	}
	if (pid == 0) {
		dup2(out[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(out[1]);
	for (;;) {
		struct pollfd p = { .fd = out[0], .events = POLLIN };
		if (bench_now_s() - t0 > RUN_TIMEOUT_S) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(&p, 1, 1000) <= 0)
			continue;
		ssize_t n = read(out[0], buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			on_line(buf, pid, &cpu0, r);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len + 1);
		}
		if (len == sizeof(buf) - 1)
			len = 0; /* a line longer than the buffer is no FSBENCH line */
	}
	close(out[0]);
	waitpid(pid, &st, 0);
	if (!r->ok)
		fprintf(stderr, "fs_bench: %s did not finish (status %d)\n", argv[0],
			WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* A fresh, empty directory to share. */
static void fresh_dir(const char *dir)
{
	char cmd[4300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "fs_bench: cannot make %s\n", dir);
		exit(1);
	}
}

static void run_ours(const struct opts *o, struct result *r)
{
	char fs[4300], cmdline[256];

	snprintf(fs, sizeof(fs), "bench,%s", o->dir);
	snprintf(cmdline, sizeof(cmdline), "quiet fsbench=virtiofs files=%ld mib=%ld", o->files, o->mib);
	char *argv[] = { (char *)o->worker, "--kernel", (char *)o->kernel, "--initrd", (char *)o->initrd,
			 "--memory", "512", "--vcpus", "1", "--console", "-", "--fs", fs, "--cmdline", cmdline, NULL };
	fresh_dir(o->dir);
	run_vmm(argv, r);
}

static void run_qemu(const struct opts *o, struct result *r)
{
	char fsdev[4400], cmdline[256];

	snprintf(fsdev, sizeof(fsdev), "local,id=bench,path=%s,security_model=none", o->dir);
	snprintf(cmdline, sizeof(cmdline), "console=ttyS0 reboot=t panic=-1 quiet fsbench=9p files=%ld mib=%ld",
		 o->files, o->mib);
	char *argv[] = { (char *)o->qemu, "-M", "microvm,x-option-roms=off,rtc=off,acpi=off", "-accel", "kvm", "-cpu", "host",
			 "-m", "512", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
			 "-serial", "stdio", "-fsdev", fsdev, "-device", "virtio-9p-device,fsdev=bench,mount_tag=bench",
			 "-kernel", (char *)o->kernel, "-initrd", (char *)o->initrd, "-append", cmdline, NULL };
	fresh_dir(o->dir);
	run_vmm(argv, r);
}

static void emit(const char *vmm, const struct result *r)
{
	char name[96];

	for (int i = 0; i < NPHASE; i++) {
		if (!r->ops[i])
			continue;
		snprintf(name, sizeof(name), "%s_%s_s", vmm, phases[i]);
		bench_figure("fs", name, r->guest_s[i], "s");
		snprintf(name, sizeof(name), "%s_%s_host_cpu_us_per_%s", vmm, phases[i], units[i]);
		bench_figure("fs", name, r->cpu_s[i] * 1e6 / (double)r->ops[i], "us");
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "worker", required_argument, NULL, 'w' }, { "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' }, { "qemu", required_argument, NULL, 'q' },
		{ "dir", required_argument, NULL, 'd' },    { "files", required_argument, NULL, 'f' },
		{ "mib", required_argument, NULL, 'm' },    { NULL, 0, NULL, 0 },
	};
	struct opts o = { .qemu = "/usr/bin/qemu-system-x86_64", .dir = "/var/tmp/sm-fs-bench", .files = 10000,
			  .mib = 256 };
	struct result ours, qemu;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'w': o.worker = optarg; break;
		case 'k': o.kernel = optarg; break;
		case 'i': o.initrd = optarg; break;
		case 'q': o.qemu = optarg; break;
		case 'd': o.dir = optarg; break;
		case 'f': o.files = atol(optarg); break;
		case 'm': o.mib = atol(optarg); break;
		default: return 2;
		}
	}
	if (!o.worker || !o.kernel || !o.initrd || o.files <= 0 || o.mib <= 0) {
		fprintf(stderr, "usage: fs_bench --worker W --kernel VMLINUX --initrd CPIO [--qemu PATH] [--dir DIR] "
				"[--files N] [--mib N]\n");
		return 2;
	}
	run_ours(&o, &ours);
	if (!ours.ok)
		return 1;
	emit("supermachine", &ours);
	if (access(o.qemu, X_OK) < 0)
		return 0;
	run_qemu(&o, &qemu);
	if (!qemu.ok)
		return 1;
	emit("qemu-9p", &qemu);
	for (int i = 0; i < NPHASE; i++) {
		char name[64];
		if (!ours.ops[i] || !qemu.ops[i] || qemu.guest_s[i] <= 0)
			continue;
		snprintf(name, sizeof(name), "%s_time_ratio", phases[i]);
		bench_figure("fs", name, ours.guest_s[i] / qemu.guest_s[i], "ratio");
		snprintf(name, sizeof(name), "%s_host_cpu_ratio", phases[i]);
		if (qemu.cpu_s[i] > 0)
			bench_figure("fs", name, ours.cpu_s[i] / qemu.cpu_s[i], "ratio");
	}
	fresh_dir(o.dir);
	return 0;
}
