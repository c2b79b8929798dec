/*
 * virtio-net on libslirp, driven by a synthetic guest that writes raw
 * Ethernet frames: ARP with the gateway, UDP and TCP NAT to servers on the
 * host's 127.0.0.1, a host forward into the guest, malformed frames, and
 * the bound on frames waiting for guest buffers.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "virtio_driver.h"

#define RXQ 0
#define TXQ 1
#define T_WAIT 5000
#define HDR 12
#define RXBUF (HDR + 1526)

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t slirp_mac[6] = { 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02 };

static struct vdrv d;
static struct virtio_dev *dev;

static void post_rx(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = vdrv_add_inbuf(&d, RXQ, RXBUF);
		cr_assert_neq(gpa, 0);
	}
	vdrv_kick(&d, RXQ);
}

static void up(unsigned rx_bufs)
{
	uint32_t st;

	vdrv_mem_init(&d, 32ull << 20, false);
	vdrv_loop_start(&d);
	dev = virtio_net_create(&d.mem, d.loop, NULL);
	cr_assert_not_null(dev, "virtio_net_create: %s", strerror(errno));
	st = vdrv_attach(&d, dev, (1ull << 5) | (1ull << 16) | (1ull << VIRTIO_F_EVENT_IDX), 2);
	cr_assert(st & VIRTIO_STATUS_DRIVER_OK);
	post_rx(rx_bufs);
}

static void setup(void) { up(64); }

/* Every tx chain comes back, each once, with an id that is one of ours
 * (vdrv_used aborts otherwise). */
static void drain_tx(int timeout_ms)
{
	struct vdrv_q *q = &d.q[TXQ];

	while (q->nfree < q->size && vdrv_wait_used(&d, TXQ, NULL, NULL, timeout_ms) >= 0)
		;
}

static void teardown(void)
{
	if (!vdrv_needs_reset(&d)) {
		drain_tx(T_WAIT);
		cr_expect_eq(d.q[TXQ].nfree, d.q[TXQ].size, "tx chains never returned");
	}
	vdrv_loop_stop(&d);
	vdrv_detach(&d);
	virtio_dev_free(dev);
	vdrv_fini(&d);
}

static struct virtio_net_stats nstats(void)
{
	struct virtio_net_stats s;

	virtio_net_get_stats(dev, &s);
	return s;
}

/* ---- frame building ---------------------------------------------------------------- */

static uint16_t csum(const void *data, size_t len, uint32_t sum)
{
	const uint8_t *p = data;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t ip4(const char *s)
{
	struct in_addr a;

	inet_pton(AF_INET, s, &a);
	return ntohl(a.s_addr);
}

/* Sends one frame behind a zeroed virtio-net header. */
static void send_frame(const uint8_t *frame, size_t len)
{
	uint8_t buf[2048] = { 0 };

	cr_assert_leq(len + HDR, sizeof(buf));
	memcpy(buf + HDR, frame, len);
	cr_assert_geq(vdrv_add_outbuf(&d, TXQ, buf, (uint32_t)(len + HDR)), 0);
	vdrv_kick(&d, TXQ);
}

static size_t eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, guest_mac, 6);
	put16(f + 12, type);
	return 14;
}

static void send_arp_request(const char *target)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t f[64] = { 0 };
	size_t n = eth(f, bcast, 0x0806);

	put16(f + n, 1);          /* Ethernet */
	put16(f + n + 2, 0x0800); /* IPv4 */
	f[n + 4] = 6;
	f[n + 5] = 4;
	put16(f + n + 6, 1);      /* request */
	memcpy(f + n + 8, guest_mac, 6);
	put32(f + n + 14, ip4(VIRTIO_NET_GUEST_ADDR));
	put32(f + n + 24, ip4(target));
	send_frame(f, 60);
}

/* IPv4 header + L4 segment; the L4 checksum is filled with the pseudo-header. */
static void send_ip(uint8_t proto, uint32_t dst, const uint8_t *l4, size_t l4len, size_t csum_off)
{
	uint8_t f[1600] = { 0 }, pseudo[12];
	size_t n = eth(f, slirp_mac, 0x0800);
	uint8_t *ip = f + n, *seg = ip + 20;
	uint32_t src = ip4(VIRTIO_NET_GUEST_ADDR), sum = 0;

	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + l4len));
	put16(ip + 4, 1);
	ip[8] = 64;
	ip[9] = proto;
	put32(ip + 12, src);
	put32(ip + 16, dst);
	put16(ip + 10, csum(ip, 20, 0));
	memcpy(seg, l4, l4len);
	put32(pseudo, src);
	put32(pseudo + 4, dst);
	pseudo[8] = 0;
	pseudo[9] = proto;
	put16(pseudo + 10, (uint16_t)l4len);
	for (int i = 0; i < 12; i += 2)
		sum += (uint32_t)(pseudo[i] << 8 | pseudo[i + 1]);
	put16(seg + csum_off, csum(seg, l4len, sum));
	send_frame(f, n + 20 + l4len);
}

static void send_udp(uint16_t sport, uint32_t dst, uint16_t dport, const void *data, size_t len)
{
	uint8_t u[512] = { 0 };

	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + len));
	memcpy(u + 8, data, len);
	send_ip(17, dst, u, 8 + len, 6);
}

static void send_tcp_syn(uint16_t sport, uint32_t dst, uint16_t dport)
{
	uint8_t t[20] = { 0 };

	put16(t, sport);
	put16(t + 2, dport);
	put32(t + 4, 1000);
	t[12] = 5 << 4;
	t[13] = 0x02; /* SYN */
	put16(t + 14, 65535);
	send_ip(6, dst, t, sizeof(t), 16);
}

/* ---- frame receiving ----------------------------------------------------------------- */

struct frame {
	uint8_t data[1600];
	uint32_t len;
};

static bool recv_frame(struct frame *fr, int timeout_ms)
{
	uint32_t len;
	uint64_t gpa;
	int head = vdrv_wait_used(&d, RXQ, &len, &gpa, timeout_ms);

	if (head < 0)
		return false;
	drain_tx(0);
	cr_assert_geq(len, HDR + 14);
	fr->len = len - HDR;
	memcpy(fr->data, vdrv_ptr(&d, gpa + HDR), fr->len);
	cr_assert_eq(*(uint16_t *)vdrv_ptr(&d, gpa + 10), 1, "num_buffers (le16) must be 1");
	cr_assert_geq(vdrv_add(&d, RXQ, &(struct vdrv_buf){ .gpa = gpa, .len = RXBUF, .write = true }, 1), 0);
	vdrv_kick(&d, RXQ);
	return true;
}

static uint16_t frame_type(const struct frame *f) { return get16(f->data + 12); }
static const uint8_t *frame_ip(const struct frame *f) { return f->data + 14; }

/* Waits for an IPv4 frame of protocol proto (skipping anything else). */
static bool recv_ip(struct frame *f, uint8_t proto)
{
	while (recv_frame(f, T_WAIT))
		if (frame_type(f) == 0x0800 && frame_ip(f)[9] == proto)
			return true;
	return false;
}

static void arp_gateway(void)
{
	struct frame f;

	send_arp_request(VIRTIO_NET_GATEWAY_ADDR);
	while (recv_frame(&f, T_WAIT))
		if (frame_type(&f) == 0x0806 && get16(f.data + 20) == 2)
			return;
	cr_assert_fail("no ARP reply from the gateway");
}

static int host_socket(int type, uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (type == SOCK_STREAM)
		cr_assert_eq(listen(fd, 4), 0);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*port = ntohs(sa.sin_port);
	return fd;
}

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

TestSuite(net, .init = setup, .fini = teardown, .timeout = 60);

Test(net, config_has_mac_and_link_up)
{
	uint8_t cfg[8];

	for (int i = 0; i < 8; i++)
		virtio_mmio_read(dev, VIRTIO_MMIO_CONFIG + (uint64_t)i, &cfg[i], 1);
	cr_assert_eq(memcmp(cfg, guest_mac, 6), 0);
	cr_assert_eq(cfg[6] | cfg[7] << 8, 1, "link is not up");
}

Test(net, gateway_answers_arp)
{
	struct frame f;

	send_arp_request(VIRTIO_NET_GATEWAY_ADDR);
	cr_assert(recv_frame(&f, T_WAIT), "no frame came back");
	cr_assert_eq(frame_type(&f), 0x0806);
	cr_assert_eq(get16(f.data + 20), 2, "not an ARP reply");
	cr_assert_eq(memcmp(f.data + 22, slirp_mac, 6), 0);
	cr_assert_eq(memcmp(f.data, guest_mac, 6), 0, "reply not addressed to the guest");
}

Test(net, udp_is_natted_to_host_loopback_and_back)
{
	uint16_t port;
	int fd = host_socket(SOCK_DGRAM, &port);
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	char buf[16] = { 0 };
	struct frame f;
	const uint8_t *ip, *udp;

	arp_gateway();
	send_udp(5555, ip4(VIRTIO_NET_GATEWAY_ADDR), port, "ping", 4);
	cr_assert(readable(fd, T_WAIT), "the datagram never reached the host");
	cr_assert_eq(recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl), 4);
	cr_assert_str_eq(buf, "ping");
	cr_assert_eq(sendto(fd, "pong", 4, 0, (struct sockaddr *)&from, fl), 4);
	cr_assert(recv_ip(&f, 17), "the reply never reached the guest");
	ip = frame_ip(&f);
	udp = ip + (ip[0] & 15) * 4;
	cr_assert_eq(get16(udp), port);
	cr_assert_eq(get16(udp + 2), 5555);
	cr_assert_eq(memcmp(udp + 8, "pong", 4), 0);
	cr_assert_eq(memcmp(ip + 16, (uint8_t[]){ 10, 0, 2, 15 }, 4), 0);
	close(fd);
}

Test(net, tcp_connect_reaches_host_listener)
{
	uint16_t port;
	int lfd = host_socket(SOCK_STREAM, &port), fd;
	struct frame f;
	const uint8_t *tcp;

	arp_gateway();
	send_tcp_syn(40000, ip4(VIRTIO_NET_GATEWAY_ADDR), port);
	cr_assert(readable(lfd, T_WAIT), "slirp did not connect to the host listener");
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	cr_assert(recv_ip(&f, 6), "no SYN-ACK for the guest");
	tcp = frame_ip(&f) + (frame_ip(&f)[0] & 15) * 4;
	cr_assert_eq(tcp[13] & 0x12, 0x12, "flags %#x are not SYN|ACK", tcp[13]);
	cr_assert_eq(get16(tcp + 2), 40000);
	close(fd);
	close(lfd);
}

Test(net, host_forward_reaches_guest_port)
{
	uint16_t port;
	int probe = host_socket(SOCK_STREAM, &port), fd;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct frame f;
	const uint8_t *tcp;

	close(probe); /* a port that was free a moment ago */
	arp_gateway();
	cr_assert_eq(virtio_net_add_hostfwd(dev, false, NULL, port, 80), 0);
	sa.sin_port = htons(port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	cr_assert(recv_ip(&f, 6), "no SYN reached the guest");
	tcp = frame_ip(&f) + (frame_ip(&f)[0] & 15) * 4;
	cr_assert_eq(get16(tcp + 2), 80);
	cr_assert_eq(tcp[13] & 0x02, 0x02, "not a SYN");
	close(fd);
	cr_assert_eq(virtio_net_remove_hostfwd(dev, false, NULL, port), 0);
	cr_assert_eq(virtio_net_add_hostfwd(dev, false, "not-an-address", port, 80), -EINVAL);
}

Test(net, malformed_frames_are_dropped)
{
	uint8_t buf[HDR + 64] = { 0 };
	uint64_t big = vdrv_alloc(&d, 70000);
	struct vdrv_buf b = { .gpa = big, .len = 70000 };

	/* No room for an Ethernet header. */
	cr_assert_geq(vdrv_add_outbuf(&d, TXQ, buf, HDR + 10), 0);
	/* Asks for segmentation offload, never negotiated. */
	buf[1] = 1;
	cr_assert_geq(vdrv_add_outbuf(&d, TXQ, buf, sizeof(buf)), 0);
	/* Longer than any frame. */
	memset(vdrv_ptr(&d, big), 0, 70000);
	cr_assert_geq(vdrv_add(&d, TXQ, &b, 1), 0);
	vdrv_kick(&d, TXQ);
	for (int i = 0; i < 3; i++)
		cr_assert_geq(vdrv_wait_used(&d, TXQ, NULL, NULL, T_WAIT), 0);
	cr_assert_eq(nstats().tx_dropped, 3);
	cr_assert_eq(nstats().tx_frames, 0);
	cr_assert_not(vdrv_needs_reset(&d));
	arp_gateway(); /* still works */
}

/* More frames in one kick than the device takes per wakeup: the rest must
 * still go out without another kick. */
Test(net, burst_beyond_one_turn_is_finished_without_a_kick)
{
	enum { N = 400 };
	struct virtio_net_stats s;

	for (int i = 0; i < N; i++) {
		uint8_t f[60] = { 0 }, buf[HDR + 60] = { 0 };
		memcpy(f, (uint8_t[]){ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 6);
		memcpy(f + 6, guest_mac, 6);
		put16(f + 12, 0x88b5); /* local experimental ethertype: slirp ignores it */
		memcpy(buf + HDR, f, sizeof(f));
		cr_assert_geq(vdrv_add_outbuf(&d, TXQ, buf, sizeof(buf)), 0);
	}
	vdrv_reg_write(&d, VIRTIO_MMIO_QUEUE_NOTIFY, TXQ); /* one kick for all */
	for (int i = 0; i < T_WAIT / 5; i++) {
		s = nstats();
		if (s.tx_frames == N)
			break;
		usleep(5000);
	}
	cr_assert_eq(nstats().tx_frames, N, "only %llu of %d frames went out",
		     (unsigned long long)nstats().tx_frames, N);
}

Test(net, tx_descriptor_outside_ram_fails_device)
{
	uint16_t i = d.q[TXQ].free_head;

	vdrv_set_desc(&d, TXQ, i, 0x7000000000ull, 100, 0, 0);
	vdrv_publish(&d, TXQ, i);
	vdrv_reg_write(&d, VIRTIO_MMIO_QUEUE_NOTIFY, TXQ);
	for (int k = 0; k < T_WAIT / 5 && !vdrv_needs_reset(&d); k++)
		usleep(5000);
	cr_assert(vdrv_needs_reset(&d));
}

TestSuite(net_backlog, .timeout = 60);

/* A guest that posts no rx buffers cannot make the worker hold more than the backlog. */
Test(net_backlog, frames_wait_in_a_bounded_backlog)
{
	enum { SENT = 600 };
	uint16_t port;
	int probe, fd;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct frame f;
	unsigned got = 0;
	struct virtio_net_stats s;

	up(0);
	probe = host_socket(SOCK_DGRAM, &port);
	close(probe);
	cr_assert_eq(virtio_net_add_hostfwd(dev, true, NULL, port, 7000), 0);
	send_arp_request(VIRTIO_NET_GATEWAY_ADDR); /* slirp learns our MAC */
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	sa.sin_port = htons(port);
	for (int i = 0; i < SENT; i++) {
		cr_assert_eq(sendto(fd, "x", 1, 0, (struct sockaddr *)&sa, sizeof(sa)), 1);
		if (i % 64 == 63)
			usleep(20000); /* let slirp keep up with its socket buffer */
	}
	for (int i = 0; i < T_WAIT / 10; i++) {
		s = nstats();
		if (s.rx_dropped + 256 >= SENT)
			break;
		usleep(10000);
	}
	cr_assert_gt(s.rx_dropped, 0, "nothing dropped: the backlog is not bounded");
	post_rx(VDRV_QSIZE);
	while (recv_frame(&f, 300))
		got++;
	cr_log_info("%u frames delivered, %llu dropped", got, (unsigned long long)nstats().rx_dropped);
	cr_assert_leq(got, 256 + 1, "more frames were held than the backlog allows");
	cr_assert_geq(got + nstats().rx_dropped, SENT);
	close(fd);
	teardown();
}

Test(net, control_command)
{
	char reply[512], req[128];
	uint16_t port;
	int probe = host_socket(SOCK_STREAM, &port);

	close(probe);
	virtio_net_control(dev, "", reply, sizeof(reply));
	cr_assert_eq(strncmp(reply, "ok tx_frames=", 13), 0, "%s", reply);
	snprintf(req, sizeof(req), "hostfwd add tcp 127.0.0.1:%u 80", port);
	virtio_net_control(dev, req, reply, sizeof(reply));
	cr_assert_str_eq(reply, "ok");
	snprintf(req, sizeof(req), "hostfwd rm tcp 127.0.0.1:%u", port);
	virtio_net_control(dev, req, reply, sizeof(reply));
	cr_assert_str_eq(reply, "ok");
	static const char *bad[] = { "hostfwd add sctp 1:2 3", "hostfwd add tcp 0 80", "hostfwd add tcp 70000 80",
				     "hostfwd add tcp 8080 0", "hostfwd frob tcp 8080", "bogus" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		virtio_net_control(dev, bad[i], reply, sizeof(reply));
		cr_assert_eq(strncmp(reply, "error", 5), 0, "'%s' accepted: %s", bad[i], reply);
	}
}
