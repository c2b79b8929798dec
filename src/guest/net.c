/*
 * lo and eth0 with ioctls (no netlink library in a static init): the
 * address, the netmask, up, and a default route. Defaults are slirp's:
 * 10.0.2.15/24, gateway 10.0.2.2.
 */
#include "guest/init.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_sin(struct sockaddr *sa, const uint8_t ip[4])
{
	struct sockaddr_in sin = { .sin_family = AF_INET };

	memcpy(&sin.sin_addr, ip, 4);
	memcpy(sa, &sin, sizeof(sin));
}

static int if_up(int s, const char *name)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static int if_addr(int s, const char *name, const uint8_t ip[4], uint8_t prefix)
{
	struct ifreq ifr = { 0 };
	uint32_t mask = prefix ? htonl(~0u << (32 - prefix)) : 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	set_sin(&ifr.ifr_addr, ip);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
		return -errno;
	set_sin(&ifr.ifr_netmask, (const uint8_t *)&mask);
	return ioctl(s, SIOCSIFNETMASK, &ifr) < 0 ? -errno : 0;
}

static int route_default(int s, const uint8_t gw[4])
{
	static const uint8_t any[4];
	struct rtentry rt = { 0 };

	set_sin(&rt.rt_dst, any);
	set_sin(&rt.rt_genmask, any);
	set_sin(&rt.rt_gateway, gw);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	return ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST ? -errno : 0;
}

int net_loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc;

	if (s < 0)
		return -errno;
	rc = if_up(s, "lo");
	close(s);
	if (rc < 0)
		agent_log("bringing lo up: %s", strerror(-rc));
	return rc;
}

int net_setup(const struct proto_config *cfg)
{
	static const uint8_t def_ip[4] = { 10, 0, 2, 15 }, def_gw[4] = { 10, 0, 2, 2 };
	const uint8_t *ip = cfg->ip[0] ? cfg->ip : def_ip;
	const uint8_t *gw = cfg->gateway[0] ? cfg->gateway : def_gw;
	uint8_t prefix = cfg->ip[0] ? cfg->prefix_len : 24;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc;

	if (s < 0)
		return -errno;
	rc = if_addr(s, "eth0", ip, prefix);
	if (rc == 0)
		rc = if_up(s, "eth0");
	if (rc == 0)
		rc = route_default(s, gw);
	close(s);
	if (rc < 0)
		agent_log("configuring eth0: %s", strerror(-rc));
	return rc;
}
