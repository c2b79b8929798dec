/*
 * virtio-vsock against a synthetic guest driver (vsock_guest.c) and real
 * host unix sockets: the hybrid CONNECT protocol, both connection
 * directions, credit flow control, shutdown/RST, transport reset, the
 * bounds, and hostile packets.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "stream_check.h"
#include "vsock_guest.h"

#define T_WAIT 5000 /* ms: hang guard, never a performance bound */

static struct vguest g;

static void setup(void) { vg_setup(&g, NULL, true, VG_RX_BUFS); }
static void teardown(void) { vg_teardown(&g); }

TestSuite(vsock, .init = setup, .fini = teardown, .timeout = 120);

/* Receives packets until one with op arrives (others are counted and skipped). */
static bool recv_op(struct vg_pkt *p, uint16_t op)
{
	while (vg_recv(&g, p, T_WAIT))
		if (p->h.op == op)
			return true;
	return false;
}

/* Host client + guest listener handshake; returns the host fd, *c the guest's view. */
static int establish(uint32_t port, struct vg_conn **c)
{
	struct vg_pkt p;
	char line[32], want[32];
	int fd = vg_host_connect(&g, port);

	cr_assert(recv_op(&p, VG_OP_REQUEST), "no REQUEST reached the guest");
	cr_assert_eq(p.h.dst_port, port);
	*c = vg_conn_add(&g, p.h.src_port, p.h.dst_port);
	(*c)->peer_buf_alloc = p.h.buf_alloc;
	(*c)->peer_fwd_cnt = p.h.fwd_cnt;
	vg_send(&g, port, p.h.src_port, VG_OP_RESPONSE, 0, NULL, 0);
	cr_assert_gt(vg_read_line(fd, line, sizeof(line), T_WAIT), 0);
	snprintf(want, sizeof(want), "OK %u\n", p.h.src_port);
	cr_assert_str_eq(line, want);
	return fd;
}

static struct virtio_vsock_stats stats(void)
{
	struct virtio_vsock_stats s;

	virtio_vsock_get_stats(g.dev, &s);
	return s;
}

/* Polls a condition on the device's stats (the device runs on another thread). */
static bool wait_conns(uint32_t n)
{
	for (int i = 0; i < T_WAIT / 5; i++) {
		if (stats().conns == n)
			return true;
		usleep(5000);
	}
	return false;
}

Test(vsock, config_space_holds_guest_cid)
{
	uint64_t cid = 0;

	cr_assert_eq(vdrv_reg_read(&g.drv, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_VSOCK);
	virtio_mmio_read(g.dev, VIRTIO_MMIO_CONFIG, &cid, 8);
	cr_assert_eq(cid, 3);
}

Test(vsock, host_connect_then_bytes_both_ways)
{
	struct vg_conn *c;
	struct vg_pkt p;
	char buf[8] = { 0 };
	int fd = establish(1234, &c);

	cr_assert_geq(c->host_port, 1u << 30, "host ports are allocated from 2^30");
	cr_assert_eq(write(fd, "hello", 5), 5);
	cr_assert(recv_op(&p, VG_OP_RW));
	cr_assert_eq(p.h.len, 5);
	cr_assert_eq(memcmp(p.data, "hello", 5), 0);
	vg_send(&g, c->guest_port, c->host_port, VG_OP_RW, 0, "world", 5);
	cr_assert(vg_read_full(fd, buf, 5, T_WAIT));
	cr_assert_str_eq(buf, "world");
	close(fd);
}

Test(vsock, refused_by_guest_closes_host_client)
{
	struct vg_pkt p;
	int fd = vg_host_connect(&g, 80);

	cr_assert(recv_op(&p, VG_OP_REQUEST));
	vg_send(&g, p.h.dst_port, p.h.src_port, VG_OP_RST, 0, NULL, 0);
	cr_assert(vg_host_eof(fd, T_WAIT));
	cr_assert(wait_conns(0));
	close(fd);
}

Test(vsock, garbage_connect_lines_are_closed_without_reaching_guest)
{
	static const char *bad[] = {
		"CONNEKT 1\n", "CONNECT \n", "CONNECT 4294967296\n", "CONNECT -1\n",
		"CONNECT 01\n", "CONNECT 1 2\n", "connect 1\n", "CONNECT 12345678901234567890\n",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vg_pkt p;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g.uds);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		cr_assert_eq(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
		cr_assert(vg_host_eof(fd, T_WAIT), "line %u (%s) was not refused", i, bad[i]);
		close(fd);
	}
	cr_assert_not(vg_recv(&g, &p, 200), "a bad CONNECT line reached the guest (op %u)", p.h.op);
	cr_assert(wait_conns(0));
}

Test(vsock, bytes_pipelined_after_connect_line_are_delivered)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vg_pkt p;
	char line[32];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g.uds);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(write(fd, "CONNECT 7\nabc", 13), 13);
	cr_assert(recv_op(&p, VG_OP_REQUEST));
	cr_assert_eq(p.h.dst_port, 7);
	vg_conn_add(&g, p.h.src_port, 7);
	vg_send(&g, 7, p.h.src_port, VG_OP_RESPONSE, 0, NULL, 0);
	cr_assert_gt(vg_read_line(fd, line, sizeof(line), T_WAIT), 0);
	cr_assert(recv_op(&p, VG_OP_RW));
	cr_assert_eq(p.h.len, 3);
	cr_assert_eq(memcmp(p.data, "abc", 3), 0);
	close(fd);
}

static int host_listen(uint32_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", g.uds, port);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	cr_assert_eq(listen(fd, 16), 0);
	return fd;
}

Test(vsock, guest_connect_reaches_host_listener)
{
	int lfd = host_listen(5000), fd;
	struct vg_conn *c = vg_conn_add(&g, 5000, 777);
	struct vg_pkt p;
	char buf[8] = { 0 };

	vg_send(&g, 777, 5000, VG_OP_REQUEST, 0, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RESPONSE));
	cr_assert_eq(p.h.src_port, 5000);
	cr_assert_eq(p.h.dst_port, 777);
	c->peer_buf_alloc = p.h.buf_alloc;
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	vg_send(&g, 777, 5000, VG_OP_RW, 0, "ping", 4);
	cr_assert(vg_read_full(fd, buf, 4, T_WAIT));
	cr_assert_str_eq(buf, "ping");
	cr_assert_eq(write(fd, "pong", 4), 4);
	cr_assert(recv_op(&p, VG_OP_RW));
	cr_assert_eq(memcmp(p.data, "pong", 4), 0);
	close(fd);
	close(lfd);
}

Test(vsock, guest_connect_without_listener_is_reset)
{
	struct vg_pkt p;

	vg_send(&g, 778, 5001, VG_OP_REQUEST, 0, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RST));
	cr_assert_eq(p.h.src_port, 5001);
	cr_assert_eq(p.h.dst_port, 778);
	cr_assert_eq(stats().conns, 0);
}

static unsigned conns_open(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < VG_MAX_CONNS; i++)
		n += g.conns[i].used;
	return n;
}

static bool all_accepted(void *arg) { return conns_open() == *(unsigned *)arg; }
static bool echoed(void *arg) { return g.bytes_echoed >= *(uint64_t *)arg; }

Test(vsock, echo_over_64_concurrent_connections)
{
	enum { N = 64, LEN = 1000 };
	int fd[N];
	unsigned n = N;
	uint64_t total = (uint64_t)N * LEN;
	uint8_t msg[LEN], back[LEN];
	char line[32];

	for (int i = 0; i < N; i++)
		fd[i] = vg_host_connect(&g, 9000);
	vg_echo_serve(&g, 9000, 9000, T_WAIT, all_accepted, &n);
	cr_assert_eq(conns_open(), N);
	for (int i = 0; i < N; i++) {
		cr_assert_gt(vg_read_line(fd[i], line, sizeof(line), T_WAIT), 0);
		cr_assert_eq(strncmp(line, "OK ", 3), 0);
		memset(msg, 'a' + i % 26, LEN);
		msg[0] = (uint8_t)i;
		cr_assert_eq(write(fd[i], msg, LEN), LEN);
	}
	vg_echo_serve(&g, 9000, 9000, T_WAIT, echoed, &total);
	for (int i = 0; i < N; i++) {
		memset(msg, 'a' + i % 26, LEN);
		msg[0] = (uint8_t)i;
		cr_assert(vg_read_full(fd[i], back, LEN, T_WAIT), "connection %d", i);
		cr_assert_eq(memcmp(msg, back, LEN), 0, "connection %d got another's bytes", i);
		close(fd[i]);
	}
	cr_assert_eq(stats().conns_total, N);
}

/* 64 MiB host -> guest -> host through one connection, hashed at both ends. */
Test(vsock, stream_64mib_through_one_connection_hash_matches)
{
	struct stream_check s;
	struct timeval tv = { .tv_sec = 60 };
	struct vg_conn *c;
	int fd = establish(4242, &c);

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	stream_check_start(&s, fd, 64ull << 20);
	vg_echo_serve(&g, 4242, 4242, 30000, stream_check_done, &s);
	cr_assert(stream_check_finish(&s), "%llu of %llu bytes came back, or their sha256 differs",
		  (unsigned long long)s.got, (unsigned long long)s.len);
	cr_assert_leq(stats().buffered, VSOCK_DEFAULT_BUF_ALLOC);
	close(fd);
}

Test(vsock, host_to_guest_never_exceeds_guest_credit)
{
	static uint8_t data[5000];
	struct vg_conn *c;
	struct vg_pkt p;
	uint32_t got = 0;
	int fd;

	g.buf_alloc = 1000;
	fd = establish(31, &c);
	memset(data, 'x', sizeof(data));
	cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	while (got < sizeof(data)) {
		uint32_t window = 0;
		/* Take everything the device sends until it stops: never more than the window. */
		while (vg_recv(&g, &p, 300)) {
			if (p.h.op == VG_OP_RW) {
				window += p.h.len;
				c->rx_bytes += p.h.len;
			}
		}
		cr_assert_gt(window, 0, "device stalled with %u of %zu bytes delivered", got, sizeof(data));
		cr_assert_leq(window, 1000, "device sent %u bytes on a 1000-byte credit", window);
		got += window;
		vg_send(&g, c->guest_port, c->host_port, VG_OP_CREDIT_UPDATE, 0, NULL, 0);
	}
	cr_assert_eq(got, sizeof(data));
	cr_assert_gt(g.pkts_seen[VG_OP_CREDIT_REQUEST], 0, "device never asked for credit when out of it");
	close(fd);
}

Test(vsock, hostile_headers_are_dropped_and_answered)
{
	struct vg_hdr h = { .src_cid = 3, .dst_cid = 2, .src_port = 50, .dst_port = 60, .type = 1,
			    .op = VG_OP_RW, .buf_alloc = 4096 };
	uint8_t junk[16] = { 0 };
	struct vg_pkt p;
	struct vg_conn *c;
	uint64_t dropped;
	int fd;

	/* A chain shorter than a header: dropped, nothing to answer. */
	cr_assert_geq(vdrv_add_outbuf(&g.drv, VG_TXQ, junk, sizeof(junk)), 0);
	vdrv_kick(&g.drv, VG_TXQ);
	/* Header claims more payload than the chain carries: dropped, RST back. */
	h.len = 100;
	vg_send_raw(&g, &h, junk, sizeof(junk));
	cr_assert(recv_op(&p, VG_OP_RST));
	cr_assert_eq(p.h.dst_port, 50);
	dropped = stats().pkts_dropped; /* the queue is in order: both were seen */
	cr_assert_eq(dropped, 2);
	/* Spoofed source CID: dropped silently. */
	h.len = 0;
	h.src_cid = 99;
	h.op = VG_OP_REQUEST;
	vg_send_raw(&g, &h, NULL, 0);
	cr_assert_not(vg_recv(&g, &p, 200), "spoofed CID answered with op %u", p.h.op);
	/* SEQPACKET is not offered: refused. */
	h.src_cid = 3;
	h.type = 2;
	vg_send_raw(&g, &h, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RST));
	/* Unknown op, and RW on no connection: RST. */
	h.type = 1;
	h.op = 99;
	vg_send_raw(&g, &h, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RST));
	h.op = VG_OP_RW;
	h.len = 4;
	vg_send_raw(&g, &h, "abcd", 4);
	cr_assert(recv_op(&p, VG_OP_RST));
	cr_assert_geq(stats().pkts_dropped, 4);
	/* The device is still fine for everyone else. */
	cr_assert_not(vdrv_needs_reset(&g.drv));
	fd = establish(1, &c);
	close(fd);
}

Test(vsock, chain_outside_guest_memory_fails_device)
{
	struct vdrv_q *q = &g.drv.q[VG_TXQ];
	uint16_t d = q->free_head;

	vdrv_set_desc(&g.drv, VG_TXQ, d, 0xdead00000000ull, 64, 0, 0);
	vdrv_publish(&g.drv, VG_TXQ, d);
	vdrv_reg_write(&g.drv, VIRTIO_MMIO_QUEUE_NOTIFY, VG_TXQ);
	for (int i = 0; i < T_WAIT / 5 && !vdrv_needs_reset(&g.drv); i++)
		usleep(5000);
	cr_assert(vdrv_needs_reset(&g.drv));
}

Test(vsock, host_half_close_then_guest_close)
{
	struct vg_conn *c;
	struct vg_pkt p;
	char buf[4] = { 0 };
	int fd = establish(40, &c);

	shutdown(fd, SHUT_WR);
	cr_assert(recv_op(&p, VG_OP_SHUTDOWN));
	cr_assert_eq(p.h.flags, 2, "host half-close must be SHUTDOWN(SEND) only, got %u", p.h.flags);
	vg_send(&g, c->guest_port, c->host_port, VG_OP_RW, 0, "bye", 3);
	cr_assert(vg_read_full(fd, buf, 3, T_WAIT), "guest bytes after host half-close lost");
	cr_assert_str_eq(buf, "bye");
	vg_send(&g, c->guest_port, c->host_port, VG_OP_SHUTDOWN, 3, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RST));
	cr_assert(vg_host_eof(fd, T_WAIT));
	cr_assert(wait_conns(0));
	close(fd);
}

Test(vsock, host_close_sends_full_shutdown)
{
	struct vg_conn *c;
	struct vg_pkt p;
	int fd = establish(41, &c);

	close(fd);
	cr_assert(recv_op(&p, VG_OP_SHUTDOWN));
	cr_assert_eq(p.h.flags, 3);
	vg_send(&g, c->guest_port, c->host_port, VG_OP_RST, 0, NULL, 0);
	cr_assert(wait_conns(0));
}

Test(vsock, guest_close_is_answered_with_rst_and_host_sees_eof)
{
	struct vg_conn *c;
	struct vg_pkt p;
	char buf[6] = { 0 };
	int fd = establish(42, &c);

	vg_send(&g, c->guest_port, c->host_port, VG_OP_RW, 0, "last", 4);
	vg_send(&g, c->guest_port, c->host_port, VG_OP_SHUTDOWN, 3, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RST));
	cr_assert(vg_read_full(fd, buf, 4, T_WAIT), "bytes before the guest's close lost");
	cr_assert_str_eq(buf, "last");
	cr_assert(vg_host_eof(fd, T_WAIT));
	cr_assert(wait_conns(0));
	close(fd);
}

/* The guest closes while the host peer lags: every byte still reaches it. */
Test(vsock, guest_close_with_slow_host_drains_buffered_bytes)
{
	static uint8_t chunk[4096];
	int lfd = host_listen(6100), fd;
	struct vg_conn *c = vg_conn_add(&g, 6100, 901);
	uint64_t sent = 0, got = 0;
	struct vg_pkt p;
	int idle = 0;

	vg_send(&g, 901, 6100, VG_OP_REQUEST, 0, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RESPONSE));
	c->peer_buf_alloc = p.h.buf_alloc;
	fd = accept(lfd, NULL, NULL);
	/* Fill the host socket and the device's buffer while the host sleeps. */
	while (idle < 300) {
		uint32_t credit = c->peer_buf_alloc - (c->tx_bytes - c->peer_fwd_cnt);
		if (credit) {
			uint32_t n = credit < sizeof(chunk) ? credit : sizeof(chunk);
			memset(chunk, (int)(sent / sizeof(chunk)), n);
			vg_send(&g, 901, 6100, VG_OP_RW, 0, chunk, n);
			sent += n;
			continue;
		}
		if (vg_recv(&g, &p, 50)) {
			c->peer_fwd_cnt = p.h.fwd_cnt;
			idle = 0;
		} else {
			idle += 50;
		}
	}
	cr_assert_gt(stats().buffered, 0, "nothing was buffered: the test did not fill the host socket");
	vg_send(&g, 901, 6100, VG_OP_SHUTDOWN, 3, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RST), "the guest is kept waiting for the host to drain");
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	cr_assert_eq(got, sent, "host got %llu of %llu bytes", (unsigned long long)got,
		     (unsigned long long)sent);
	cr_assert(wait_conns(0));
	close(fd);
	close(lfd);
}

Test(vsock, transport_reset_drops_connections_keeps_listener)
{
	struct vg_conn *c;
	struct vg_pkt p;
	uint32_t len, id;
	uint64_t gpa;
	int fd[3];

	for (int i = 0; i < 3; i++)
		fd[i] = establish(100 + (uint32_t)i, &c);
	virtio_vsock_transport_reset(g.dev);
	for (int i = 0; i < 3; i++) {
		cr_assert(vg_host_eof(fd[i], T_WAIT), "connection %d survived the reset", i);
		close(fd[i]);
	}
	cr_assert_geq(vdrv_wait_used(&g.drv, VG_EVQ, &len, &gpa, T_WAIT), 0, "no event reached the guest");
	cr_assert_eq(len, 4);
	memcpy(&id, vdrv_ptr(&g.drv, gpa), 4);
	cr_assert_eq(id, 0, "event id %u is not TRANSPORT_RESET", id);
	cr_assert_eq(stats().conns, 0);
	/*
	 * A client that connects before the guest has handled the event is
	 * held: Linux would drop the connection along with the old ones.
	 */
	fd[0] = vg_host_connect(&g, 100);
	cr_assert_not(vg_recv(&g, &p, 300), "a REQUEST went out before the guest handled the reset (op %u)",
		      p.h.op);
	/* Handled: Linux hands the event buffer back and kicks. The client gets through. */
	vdrv_add_inbuf(&g.drv, VG_EVQ, 4);
	vdrv_kick(&g.drv, VG_EVQ);
	cr_assert(recv_op(&p, VG_OP_REQUEST), "the held client never reached the guest");
	close(fd[0]);
}

Test(vsock, transport_reset_event_waits_for_a_buffer)
{
	uint32_t len;
	uint64_t gpa;

	/* setup posted 4 event buffers: the 5th reset has none. */
	for (int i = 0; i < 5; i++)
		virtio_vsock_transport_reset(g.dev);
	for (int i = 0; i < 4; i++)
		cr_assert_geq(vdrv_wait_used(&g.drv, VG_EVQ, &len, &gpa, T_WAIT), 0);
	cr_assert_lt(vdrv_wait_used(&g.drv, VG_EVQ, &len, &gpa, 200), 0);
	vdrv_add_inbuf(&g.drv, VG_EVQ, 4);
	vdrv_kick(&g.drv, VG_EVQ);
	cr_assert_geq(vdrv_wait_used(&g.drv, VG_EVQ, &len, &gpa, T_WAIT), 0, "pending event never delivered");
}

Test(vsock, driver_reset_closes_host_connections)
{
	struct vg_conn *c;
	int fd = establish(43, &c);

	vdrv_reg_write(&g.drv, VIRTIO_MMIO_STATUS, 0);
	cr_assert(vg_host_eof(fd, T_WAIT));
	cr_assert_eq(stats().conns, 0);
	close(fd);
}

Test(vsock, control_command)
{
	char reply[512];
	struct vg_conn *c;
	int fd = establish(44, &c);

	virtio_vsock_control(g.dev, "stats", reply, sizeof(reply));
	cr_assert_eq(strncmp(reply, "ok conns=1 ", 11), 0, "%s", reply);
	virtio_vsock_control(g.dev, "reset", reply, sizeof(reply));
	cr_assert_str_eq(reply, "ok");
	cr_assert(vg_host_eof(fd, T_WAIT));
	virtio_vsock_control(g.dev, "frob", reply, sizeof(reply));
	cr_assert_eq(strncmp(reply, "error", 5), 0);
	close(fd);
}

/* ---- with other limits ---------------------------------------------------------- */

TestSuite(vsock_limits, .timeout = 120);

Test(vsock_limits, guest_beyond_credit_is_reset_and_buffering_stays_bounded)
{
	struct virtio_vsock_limits lim = { .buf_alloc = 4096 };
	static uint8_t chunk[4096];
	struct vg_conn *c;
	struct vg_pkt p;
	int lfd, fd, idle = 0;

	vg_setup(&g, &lim, true, VG_RX_BUFS);
	lfd = host_listen(6000);
	c = vg_conn_add(&g, 6000, 900);
	vg_send(&g, 900, 6000, VG_OP_REQUEST, 0, NULL, 0);
	cr_assert(recv_op(&p, VG_OP_RESPONSE));
	cr_assert_eq(p.h.buf_alloc, 4096);
	c->peer_buf_alloc = p.h.buf_alloc;
	fd = accept(lfd, NULL, NULL); /* never read: the host peer is stuck */
	/* A well-behaved guest sends while it has credit, until none comes back. */
	while (idle < 500) {
		uint32_t credit = c->peer_buf_alloc - (c->tx_bytes - c->peer_fwd_cnt);
		if (credit) {
			vg_send(&g, 900, 6000, VG_OP_RW, 0, chunk, credit < sizeof(chunk) ? credit : sizeof(chunk));
			continue;
		}
		if (vg_recv(&g, &p, 50)) {
			c->peer_fwd_cnt = p.h.fwd_cnt;
			c->peer_buf_alloc = p.h.buf_alloc;
			idle = 0;
		} else {
			idle += 50;
		}
	}
	cr_assert_gt(c->tx_bytes, 4096, "the host socket took nothing");
	cr_assert_leq(stats().buffered, 4096, "device holds more than the credit it gave");
	/* Now one byte beyond the credit. */
	vg_send(&g, 900, 6000, VG_OP_RW, 0, chunk, 1);
	cr_assert(recv_op(&p, VG_OP_RST));
	cr_assert_eq(stats().credit_violations, 1);
	cr_assert(wait_conns(0));
	close(fd);
	close(lfd);
	vg_teardown(&g);
}

Test(vsock_limits, silent_client_and_unanswered_request_time_out)
{
	struct virtio_vsock_limits lim = { .timeout_ms = 200 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vg_pkt p;
	int quiet, unanswered;

	vg_setup(&g, &lim, false, VG_RX_BUFS);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g.uds);
	quiet = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(connect(quiet, (struct sockaddr *)&sa, sizeof(sa)), 0);
	unanswered = vg_host_connect(&g, 55);
	cr_assert(recv_op(&p, VG_OP_REQUEST));
	cr_assert(vg_host_eof(quiet, T_WAIT), "a client that never sends CONNECT is kept");
	cr_assert(vg_host_eof(unanswered, T_WAIT), "a REQUEST the guest never answers is kept");
	cr_assert(recv_op(&p, VG_OP_RST), "the guest is not told the request was abandoned");
	cr_assert(wait_conns(0));
	close(quiet);
	close(unanswered);
	vg_teardown(&g);
}

Test(vsock_limits, connections_beyond_the_limit_are_refused)
{
	struct virtio_vsock_limits lim = { .max_conns = 4 };
	int fd[5];

	vg_setup(&g, &lim, true, VG_RX_BUFS);
	for (int i = 0; i < 4; i++)
		fd[i] = vg_host_connect(&g, 70);
	cr_assert(wait_conns(4));
	fd[4] = vg_host_connect(&g, 70);
	cr_assert(vg_host_eof(fd[4], T_WAIT), "fifth connection accepted over a limit of 4");
	cr_assert_eq(stats().conns, 4);
	for (int i = 0; i < 5; i++)
		close(fd[i]);
	vg_teardown(&g);
}

/* Opens descriptors until this process has none left; how many, their numbers in fds. */
static int use_up_fds(int *fds, int max)
{
	int n = 0;

	while (n < max && (fds[n] = dup(0)) >= 0)
		n++;
	cr_assert_eq(errno, EMFILE, "%d descriptors did not exhaust the limit", n);
	return n;
}

Test(vsock_limits, out_of_descriptors_refuses_host_clients_at_once)
{
	int probe = dup(0), fds[128], n, fd;
	struct rlimit rl = { 0 };
	FILE *log = tmpfile();
	char text[512] = "";

	cr_assert(probe >= 0 && log && getrlimit(RLIMIT_NOFILE, &rl) == 0);
	close(probe);
	vg_setup(&g, NULL, true, VG_RX_BUFS);
	g.dev->log = log;
	/* room for the fixture's descriptors and a few more, then none */
	rl.rlim_cur = (rlim_t)probe + 64;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "%s", strerror(errno));
	n = use_up_fds(fds, 128);
	close(fds[--n]); /* one for the client; the device then has none to accept it with */
	fd = vg_host_connect(&g, 72);
	cr_assert(vg_host_eof(fd, T_WAIT), "a client the worker had no descriptor for was left waiting");
	close(fd);
	rewind(log);
	cr_assert(fread(text, 1, sizeof(text) - 1, log) > 0, "no warning in the device's log");
	cr_assert_not_null(strstr(text, "Too many open files: refusing host clients"), "%s", text);
	while (n)
		close(fds[--n]);
	close(establish(73, &(struct vg_conn *){ NULL })); /* and it serves again */
	vg_teardown(&g);
	fclose(log);
}

Test(vsock_limits, rx_buffer_without_room_for_a_header_fails_device)
{
	int fd;

	vg_setup(&g, NULL, true, 0);
	vdrv_add_inbuf(&g.drv, VG_RXQ, 16);
	vdrv_kick(&g.drv, VG_RXQ);
	fd = vg_host_connect(&g, 71); /* the REQUEST needs an rx buffer */
	for (int i = 0; i < T_WAIT / 5 && !vdrv_needs_reset(&g.drv); i++)
		usleep(5000);
	cr_assert(vdrv_needs_reset(&g.drv));
	close(fd);
	vg_teardown(&g);
}

Test(vsock_limits, stale_socket_is_replaced_live_one_is_not)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct virtio_dev *second;
	int fd;

	vg_setup(&g, NULL, true, VG_RX_BUFS);
	/* A live device on that path: a second one must not steal it. */
	second = virtio_vsock_create(&g.drv.mem, g.drv.loop, 3, g.uds, NULL);
	cr_assert_null(second);
	cr_assert_eq(errno, EADDRINUSE);
	close(establish(5, &(struct vg_conn *){ NULL })); /* and the first still serves */
	/* A socket file whose listener is gone: replaced. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.stale", g.uds);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* the file stays, nobody listens */
	second = virtio_vsock_create(&g.drv.mem, g.drv.loop, 3, sa.sun_path, NULL);
	cr_assert_not_null(second, "stale socket not replaced: %s", strerror(errno));
	virtio_dev_free(second);
	vg_teardown(&g);
}
