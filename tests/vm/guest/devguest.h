/*
 * What the device tests' guest programs (vsock_guest.c, net_guest.c,
 * balloon_guest.c) share as PID 1 of their own initramfs: the basic
 * mounts, reading a smX= key from the kernel command line, reporting
 * "SMTEST <name> key=value..." lines on the console, and ending the VM.
 */
#ifndef SM_TESTS_DEVGUEST_H
#define SM_TESTS_DEVGUEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>

__attribute__((format(printf, 1, 2))) static inline void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n = snprintf(line, sizeof(line), "SMTEST ");

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDOUT_FILENO, line, (size_t)n) < 0) {
		/* no console: nothing to report to */
	}
}

static inline void guest_mounts(void)
{
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
}

/* The value of "key=" on the kernel command line, or NULL. */
static inline const char *guest_param(const char *key, char *buf, size_t len)
{
	char cmdline[2048];
	size_t klen = strlen(key);
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, cmdline, sizeof(cmdline) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return NULL;
	cmdline[n] = 0;
	for (char *p = strtok(cmdline, " \n"); p; p = strtok(NULL, " \n")) {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			snprintf(buf, len, "%s", p + klen + 1);
			return buf;
		}
	}
	return NULL;
}

static inline void guest_reboot(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	say("reboot error=%d", errno);
	for (;;)
		pause();
}

/* 64-bit FNV-1a, to report what arrived in one line. */
static inline unsigned long long fnv1a(unsigned long long h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

#endif
