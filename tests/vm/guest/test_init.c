/*
 * PID 1 of the vm tests' guest. It writes the boot marker first, then runs
 * the steps named in the kernel command line's smtest= (comma separated)
 * and reports each on the console as one line "SMTEST <step> key=value...":
 *
 *   info                      online CPUs, their APIC IDs, RAM in the e820 map
 *   blkwrite:DEV:SEED:BYTES   write pattern(SEED) to DEV, fsync, hash it
 *   blkread:DEV:BYTES         read DEV, hash it
 *   blkro:DEV                 try to write DEV; read its ro flag
 *   serial:NAME               /sys/block/NAME/serial (the virtio-blk ID)
 *   rng                       the hwrng in use and 64 bytes from /dev/hwrng
 *   virtio                    the device IDs of virtio0, virtio1, ... in order
 *   echo                      read one line from the console, print it back
 *   reboot | panic | hang     end: reboot(2), exit PID 1, or wait forever
 *
 * Without a final step it reboots.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devguest.h"
#include "pattern.h"

#define MARKER_PORT 0x0ff0
#define MARKER_INIT 1
#define CHUNK (64 * 1024)

static uint8_t buf[CHUNK];

static int marker(void)
{
	if (ioperm(MARKER_PORT, 1, 1) < 0)
		return -errno;
	outb(MARKER_INIT, MARKER_PORT);
	return 0;
}

static int read_text(const char *path, char *out, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, out, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

/* "0-3,5" -> 5 */
static int count_cpus(const char *list)
{
	int count = 0;

	while (*list) {
		char *end;
		long a = strtol(list, &end, 10), b = a;
		if (end == list)
			return -1;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		count += (int)(b - a + 1);
		list = *end == ',' ? end + 1 : end;
	}
	return count;
}

static unsigned long long iomem_ram_kib(void)
{
	FILE *f = fopen("/proc/iomem", "re");
	char line[256];
	unsigned long long total = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b;
		/* top-level entries only: nested ones are indented */
		if (line[0] == ' ' || !strstr(line, "System RAM"))
			continue;
		if (sscanf(line, "%llx-%llx", &a, &b) == 2)
			total += b - a + 1;
	}
	fclose(f);
	return total / 1024;
}

static void apic_ids(char *out, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	size_t n = 0;

	out[0] = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f) && n < len) {
		unsigned id;
		if (sscanf(line, "apicid : %u", &id) == 1 || sscanf(line, "apicid\t: %u", &id) == 1)
			n += (size_t)snprintf(out + n, len - n, "%s%u", n ? "," : "", id);
	}
	fclose(f);
}

static void step_info(void)
{
	char online[128] = "?", ids[256];

	read_text("/sys/devices/system/cpu/online", online, sizeof(online));
	apic_ids(ids, sizeof(ids));
	say("info cpus=%d apicids=%s ram_kib=%llu", count_cpus(online), ids, iomem_ram_kib());
}

static void step_blkwrite(const char *dev, uint64_t seed, uint64_t bytes)
{
	int fd = open(dev, O_WRONLY | O_CLOEXEC);
	uint64_t h = PATTERN_FNV_OFFSET;

	if (fd < 0) {
		say("blkwrite error=%d", errno);
		return;
	}
	for (uint64_t off = 0; off < bytes;) {
		size_t n = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
		pattern_fill(buf, n, seed, off);
		if (write(fd, buf, n) != (ssize_t)n) {
			say("blkwrite error=%d at=%llu", errno, (unsigned long long)off);
			close(fd);
			return;
		}
		h = pattern_hash(h, buf, n);
		off += n;
	}
	if (fsync(fd) < 0) {
		say("blkwrite error=%d fsync", errno);
		close(fd);
		return;
	}
	close(fd);
	say("blkwrite ok bytes=%llu hash=%016llx", (unsigned long long)bytes, (unsigned long long)h);
}

static void step_blkread(const char *dev, uint64_t bytes)
{
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	uint64_t h = PATTERN_FNV_OFFSET, off = 0;

	if (fd < 0) {
		say("blkread error=%d", errno);
		return;
	}
	while (off < bytes) {
		size_t want = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
		ssize_t n = read(fd, buf, want);
		if (n <= 0)
			break;
		h = pattern_hash(h, buf, (size_t)n);
		off += (uint64_t)n;
	}
	close(fd);
	say("blkread bytes=%llu hash=%016llx", (unsigned long long)off, (unsigned long long)h);
}

/* A read-only disk: writes fail in the guest (EPERM from the block layer), BLKROGET says 1. */
static void step_blkro(const char *dev)
{
	int fd = open(dev, O_WRONLY | O_CLOEXEC);
	int open_errno = fd < 0 ? errno : 0, write_errno = -1, ro = -1;

	if (fd >= 0) {
		memset(buf, 0x5a, 512);
		write_errno = write(fd, buf, 512) < 0 ? errno : 0;
		if (write_errno == 0 && fsync(fd) < 0)
			write_errno = errno;
		ioctl(fd, BLKROGET, &ro);
		close(fd);
	}
	say("blkro open_errno=%d write_errno=%d ro=%d", open_errno, write_errno, ro);
}

static void step_serial(const char *name)
{
	char path[128], serial[64] = "";

	snprintf(path, sizeof(path), "/sys/block/%s/serial", name);
	int rc = read_text(path, serial, sizeof(serial));
	say("serial name=%s rc=%d serial=%s", name, rc, serial);
}

static void step_rng(void)
{
	char cur[64] = "";
	int fd, got = -1;

	read_text("/sys/class/misc/hw_random/rng_current", cur, sizeof(cur));
	fd = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		got = (int)read(fd, buf, 64);
		close(fd);
	}
	say("rng current=%s bytes=%d", cur, got);
}

/* The host's console input, through the UART's receive interrupt and the tty. */
static void step_echo(void)
{
	char line[128];

	say("echo waiting");
	ssize_t n = read(STDIN_FILENO, line, sizeof(line) - 1);
	if (n < 0) {
		say("echo error=%d", errno);
		return;
	}
	line[n] = 0;
	line[strcspn(line, "\r\n")] = 0;
	say("echo got %s", line);
}

static void step_virtio(void)
{
	char ids[256] = "", path[96], id[32];
	size_t n = 0;

	for (int i = 0; i < 64; i++) {
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/virtio%d/device", i);
		if (read_text(path, id, sizeof(id)) < 0)
			break;
		n += (size_t)snprintf(ids + n, sizeof(ids) - n, "%s%lu", n ? "," : "",
				      strtoul(id, NULL, 16));
	}
	say("virtio ids=%s", ids);
}

/* One step of smtest=. */
static void run_step(char *step)
{
	char *arg[4] = { 0 };
	int n = 0;

	for (char *p = step; p && n < 4; n++) {
		arg[n] = p;
		p = strchr(p, ':');
		if (p)
			*p++ = 0;
	}
	if (strcmp(arg[0], "info") == 0)
		step_info();
	else if (strcmp(arg[0], "blkwrite") == 0 && n == 4)
		step_blkwrite(arg[1], strtoull(arg[2], NULL, 0), strtoull(arg[3], NULL, 0));
	else if (strcmp(arg[0], "blkread") == 0 && n == 3)
		step_blkread(arg[1], strtoull(arg[2], NULL, 0));
	else if (strcmp(arg[0], "blkro") == 0 && n == 2)
		step_blkro(arg[1]);
	else if (strcmp(arg[0], "serial") == 0 && n == 2)
		step_serial(arg[1]);
	else if (strcmp(arg[0], "rng") == 0)
		step_rng();
	else if (strcmp(arg[0], "virtio") == 0)
		step_virtio();
	else if (strcmp(arg[0], "echo") == 0)
		step_echo();
	else if (strcmp(arg[0], "reboot") == 0)
		guest_reboot();
	else if (strcmp(arg[0], "panic") == 0) {
		say("panic exiting-pid1");
		exit(1);
	} else if (strcmp(arg[0], "hang") == 0) {
		say("hang waiting");
		for (;;)
			pause();
	} else
		say("unknown-step %s", arg[0]);
}

int main(void)
{
	int marker_rc = marker();
	char steps[1024];

	guest_mounts();
	say("start marker=%d", marker_rc);

	snprintf(steps, sizeof(steps), "%s", getenv("smtest") ? getenv("smtest") : "info");
	for (char *save = NULL, *s = strtok_r(steps, ",", &save); s; s = strtok_r(NULL, ",", &save))
		run_step(s);
	guest_reboot();
	return 0;
}
