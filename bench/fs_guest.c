/*
 * The guest side of bench/fs: /init of a small initramfs booted by both
 * VMMs on the same kernel. It mounts the host directory (virtio-fs tag
 * "bench", or 9p tag "bench" under QEMU), runs each phase and prints
 *   FSBENCH start NAME
 *   FSBENCH done NAME SECONDS OPS
 * on the console, so the host can read the guest's time and sample the
 * VMM's CPU at the same lines, then reboots (both VMMs end on it). Phases: create, stat and
 * unlink of FILES files; sequential write and read of MIB MiB (the page
 * cache dropped in between); `tar x` of /src.tar with busybox.
 * Kernel command line: fsbench=virtiofs|9p [files=N] [mib=N].
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double t0;

static void start(const char *name)
{
	printf("FSBENCH start %s\n", name);
	t0 = now();
}

static void done(const char *name, long ops)
{
	printf("FSBENCH done %s %.6f %ld\n", name, now() - t0, ops);
}

static void fail(const char *what)
{
	printf("FSBENCH fail %s: %m\n", what);
	reboot(RB_AUTOBOOT);
	_exit(1);
}

/* The value of key=N on the kernel command line, else def. */
static long arg(const char *cmdline, const char *key, long def)
{
	const char *p = strstr(cmdline, key);

	return p ? atol(p + strlen(key)) : def;
}

static void metadata(long files)
{
	char name[64];
	struct stat st;

	if (mkdir("/mnt/meta", 0755) < 0)
		fail("mkdir /mnt/meta");
	start("create");
	for (long i = 0; i < files; i++) {
		snprintf(name, sizeof(name), "/mnt/meta/f%06ld", i);
		int fd = open(name, O_CREAT | O_WRONLY | O_EXCL, 0644);
		if (fd < 0)
			fail(name);
		close(fd);
	}
	done("create", files);
	start("stat");
	for (long i = 0; i < files; i++) {
		snprintf(name, sizeof(name), "/mnt/meta/f%06ld", i);
		if (stat(name, &st) < 0)
			fail(name);
	}
	done("stat", files);
	start("unlink");
	for (long i = 0; i < files; i++) {
		snprintf(name, sizeof(name), "/mnt/meta/f%06ld", i);
		if (unlink(name) < 0)
			fail(name);
	}
	done("unlink", files);
}

static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd < 0 || write(fd, "3", 1) != 1)
		fail("drop_caches");
	close(fd);
}

static void sequential(long mib)
{
	static char buf[1 << 20];
	int fd;

	memset(buf, 0x5a, sizeof(buf));
	start("seq_write");
	fd = open("/mnt/big", O_CREAT | O_WRONLY | O_TRUNC, 0644);
	for (long i = 0; fd >= 0 && i < mib; i++)
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			fail("write /mnt/big");
	if (fd < 0 || fsync(fd) < 0)
		fail("write /mnt/big");
	close(fd);
	done("seq_write", mib);
	drop_caches();
	start("seq_read");
	fd = open("/mnt/big", O_RDONLY);
	for (long i = 0; fd >= 0 && i < mib; i++)
		if (read(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			fail("read /mnt/big");
	if (fd < 0)
		fail("read /mnt/big");
	close(fd);
	done("seq_read", mib);
	unlink("/mnt/big");
}

static void untar(void)
{
	int st;
	pid_t pid;

	if (mkdir("/mnt/tree", 0755) < 0)
		fail("mkdir /mnt/tree");
	start("tar_x");
	pid = fork();
	if (pid == 0) {
		execl("/bin/busybox", "tar", "xf", "/src.tar", "-C", "/mnt/tree", (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		fail("tar x");
	sync();
	done("tar_x", 1);
}

int main(void)
{
	char cmdline[1024] = { 0 };
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	mount("proc", "/proc", "proc", 0, NULL);
	fd = open("/proc/cmdline", O_RDONLY);
	if (fd < 0 || read(fd, cmdline, sizeof(cmdline) - 1) < 0)
		fail("/proc/cmdline");
	close(fd);
	int p9 = strstr(cmdline, "fsbench=9p") != NULL;
	if (mount("bench", "/mnt", p9 ? "9p" : "virtiofs", 0, p9 ? "trans=virtio,version=9p2000.L,msize=512000" : NULL) < 0)
		fail("mount the share");
	metadata(arg(cmdline, "files=", 10000));
	sequential(arg(cmdline, "mib=", 256));
	untar();
	printf("FSBENCH end\n");
	sync();
	reboot(RB_AUTOBOOT);
	return 0;
}
