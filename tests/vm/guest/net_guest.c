/*
 * PID 1 for the virtio-net vm test: brings up lo and eth0 with the fixed
 * slirp addressing (10.0.2.15/24, gateway 10.0.2.2), then for
 * smnet=fetch:PORT[:PATH] fetches http://10.0.2.2:PORT/PATH and reports
 *
 *   SMTEST net fetch status=CODE bytes=N fnv=HEX     (N, HEX: of the body)
 *
 * and reboots.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "devguest.h"

static char resp[1 << 20];

static void fetch(unsigned port, const char *path)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[256];
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
	char *body;

	inet_pton(AF_INET, "10.0.2.2", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		say("net fetch error=connect:%d", errno);
		return;
	}
	int n = snprintf(req, sizeof(req), "GET /%s HTTP/1.0\r\nHost: 10.0.2.2\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		say("net fetch error=write:%d", errno);
		return;
	}
	for (;;) {
		ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	resp[got] = 0;
	sscanf(resp, "HTTP/1.%*d %d", &status);
	body = strstr(resp, "\r\n\r\n");
	body = body ? body + 4 : resp + got;
	say("net fetch status=%d bytes=%zu fnv=%016llx", status, (size_t)(resp + got - body),
	    fnv1a(FNV_INIT, body, (size_t)(resp + got - body)));
}

int main(void)
{
	char spec[256], *path;
	unsigned port;
	int rc;

	guest_mounts();
	rc = guest_net_setup();
	say("net up rc=%d", rc);
	if (rc == 0 && guest_param("smnet", spec, sizeof(spec)) && strncmp(spec, "fetch:", 6) == 0) {
		port = (unsigned)strtoul(spec + 6, &path, 10);
		fetch(port, *path == ':' ? path + 1 : "");
	}
	guest_reboot();
}
