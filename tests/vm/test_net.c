/*
 * virtio-net against a real Linux guest (tests/vm/guest/net_guest.c): the
 * guest fetches a page over HTTP from a server this test runs on the
 * host's 127.0.0.1, through slirp's gateway address 10.0.2.2.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker_proc.h"

#define BOOT_WAIT 600000 /* ms, hang guard only */
#define BODY_LEN (100 * 1024)

static uint8_t body[BODY_LEN];

struct http_server {
	int fd;
	uint16_t port;
	int served;
	char request[512];
};

static unsigned long long fnv1a(const uint8_t *p, size_t len)
{
	unsigned long long h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Serves one request with the body, HTTP/1.0 style, then returns. */
static void *http_serve_one(void *arg)
{
	struct http_server *s = arg;
	struct pollfd p = { .fd = s->fd, .events = POLLIN };
	char hdr[128];
	int c, n;

	if (poll(&p, 1, BOOT_WAIT) != 1 || (c = accept(s->fd, NULL, NULL)) < 0)
		return NULL;
	n = (int)read(c, s->request, sizeof(s->request) - 1);
	s->request[n > 0 ? n : 0] = 0;
	n = snprintf(hdr, sizeof(hdr), "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n", BODY_LEN);
	if (write(c, hdr, (size_t)n) == n && write(c, body, BODY_LEN) == BODY_LEN)
		s->served = 1;
	close(c);
	return NULL;
}

Test(vm_net, guest_fetches_a_page_from_the_host, .timeout = 900)
{
	static const char *const extra[] = { "--net", NULL };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct http_server srv = { 0 };
	struct wproc w;
	char cmdline[128], line[256], want[128];
	pthread_t t;

	for (size_t i = 0; i < BODY_LEN; i++)
		body[i] = (uint8_t)(i * 2654435761u >> 13);
	srv.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(srv.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(srv.fd, 4), 0);
	getsockname(srv.fd, (struct sockaddr *)&sa, &sl);
	srv.port = ntohs(sa.sin_port);
	pthread_create(&t, NULL, http_serve_one, &srv);

	snprintf(cmdline, sizeof(cmdline), "quiet smnet=fetch:%u:page", srv.port);
	if (!wproc_start(&w, SM_NET_GUEST_INITRAMFS, cmdline, 256, extra)) {
		shutdown(srv.fd, SHUT_RDWR);
		cr_skip_test("no guest kernel: set SUPERMACHINE_KERNEL_DIR (kernel/build --print-dir)");
	}
	if (!wproc_wait_line(&w, "SMTEST net fetch", line, sizeof(line), BOOT_WAIT)) {
		wproc_dump(&w);
		cr_assert_fail("the guest never reported its fetch");
	}
	snprintf(want, sizeof(want), "SMTEST net fetch status=200 bytes=%d fnv=%016llx", BODY_LEN,
		 fnv1a(body, BODY_LEN));
	cr_assert_str_eq(line, want);
	pthread_join(t, NULL);
	cr_assert(srv.served);
	cr_assert_eq(strncmp(srv.request, "GET /page HTTP/1.0", 18), 0, "request: %s", srv.request);
	cr_assert_eq(wproc_wait(&w, 60000), 0, "the guest did not reboot cleanly");
	wproc_stop(&w);
	close(srv.fd);
}
