/*
 * What the device tests' guest programs (vsock_guest.c, net_guest.c,
 * balloon_guest.c) share as PID 1 of their own initramfs: the basic
 * mounts, reading a smX= key from the kernel command line, reporting
 * "SMTEST <name> key=value..." lines on the console, and ending the VM.
 */
#ifndef SM_TESTS_DEVGUEST_H
#define SM_TESTS_DEVGUEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
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

static inline int guest_if_up(int s, const char *name, const char *addr, const char *mask)
{
	struct ifreq ifr = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (addr) {
		sin->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &sin->sin_addr);
		if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
			return -errno;
		inet_pton(AF_INET, mask, &sin->sin_addr);
		if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
			return -errno;
	}
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static inline int guest_default_route(int s, const char *gw)
{
	struct rtentry rt = { 0 };
	struct sockaddr_in *g = (struct sockaddr_in *)&rt.rt_gateway;
	struct sockaddr_in *d = (struct sockaddr_in *)&rt.rt_dst;
	struct sockaddr_in *m = (struct sockaddr_in *)&rt.rt_genmask;

	g->sin_family = d->sin_family = m->sin_family = AF_INET;
	inet_pton(AF_INET, gw, &g->sin_addr);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	return ioctl(s, SIOCADDRT, &rt) < 0 ? -errno : 0;
}

/* lo, and eth0 with slirp's fixed addressing (10.0.2.15/24 via 10.0.2.2). */
static inline int guest_net_setup(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc;

	if (s < 0)
		return -errno;
	rc = guest_if_up(s, "lo", NULL, NULL);
	if (rc == 0)
		rc = guest_if_up(s, "eth0", "10.0.2.15", "255.255.255.0");
	if (rc == 0)
		rc = guest_default_route(s, "10.0.2.2");
	close(s);
	return rc;
}

#endif
