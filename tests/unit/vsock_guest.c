#include "vsock_guest.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VG_RAM (48ull << 20)
#define VG_EVENT_BUFS 4

static void vg_post_rx(struct vguest *g, uint64_t gpa, bool split)
{
	struct vdrv_buf b[2] = {
		{ .gpa = gpa, .len = sizeof(struct vg_hdr), .write = true },
		{ .gpa = gpa + sizeof(struct vg_hdr), .len = VG_RX_PAYLOAD, .write = true },
	};
	int head;

	if (!split)
		b[0].len = sizeof(struct vg_hdr) + VG_RX_PAYLOAD;
	head = vdrv_add(&g->drv, VG_RXQ, b, split ? 2 : 1);
	cr_assert_geq(head, 0, "rx ring full");
	g->rx_gpa[head] = gpa;
}

void vg_setup(struct vguest *g, const struct virtio_vsock_limits *lim, bool event_idx, unsigned rx_bufs)
{
	uint32_t st;

	memset(g, 0, sizeof(*g));
	/* Host clients write to sockets the device may have just closed. */
	signal(SIGPIPE, SIG_IGN);
	vdrv_mem_init(&g->drv, VG_RAM, false);
	vdrv_loop_start(&g->drv);
	snprintf(g->dir, sizeof(g->dir), "/tmp/sm-vsock-XXXXXX");
	cr_assert_not_null(mkdtemp(g->dir));
	snprintf(g->uds, sizeof(g->uds), "%s/v.sock", g->dir);
	g->cid = 3;
	g->buf_alloc = 256 * 1024;
	g->dev = virtio_vsock_create(&g->drv.mem, g->drv.loop, g->cid, g->uds, lim);
	cr_assert_not_null(g->dev, "virtio_vsock_create: %s", strerror(errno));
	st = vdrv_attach(&g->drv, g->dev, event_idx ? 1ull << VIRTIO_F_EVENT_IDX : 0, 3);
	cr_assert(st & VIRTIO_STATUS_DRIVER_OK, "status %#x", st);
	memset(g->tx_head_slot, 0xff, sizeof(g->tx_head_slot));
	for (unsigned i = 0; i < VG_TX_SLOTS; i++) {
		g->tx_slot[i] = vdrv_alloc(&g->drv, VG_TX_SLOT);
		g->tx_free[g->ntx_free++] = i;
	}
	/* Half the rx queue, like Linux fills it; alternate one and two descriptors. */
	for (unsigned i = 0; i < rx_bufs; i++)
		vg_post_rx(g, vdrv_alloc(&g->drv, sizeof(struct vg_hdr) + VG_RX_PAYLOAD), i & 1);
	for (unsigned i = 0; i < VG_EVENT_BUFS; i++)
		vdrv_add_inbuf(&g->drv, VG_EVQ, 4);
	vdrv_kick(&g->drv, VG_RXQ);
	vdrv_kick(&g->drv, VG_EVQ);
}

void vg_teardown(struct vguest *g)
{
	struct vdrv_q *tx = &g->drv.q[VG_TXQ];
	char path[sizeof(g->dir) + 256];

	/* Every tx chain comes back, once, under one of our ids (vdrv_used
	 * aborts on a foreign one). */
	while (!vdrv_needs_reset(&g->drv) && tx->nfree < tx->size &&
	       vdrv_wait_used(&g->drv, VG_TXQ, NULL, NULL, 5000) >= 0)
		;
	cr_expect(vdrv_needs_reset(&g->drv) || tx->nfree == tx->size, "tx chains never returned");

	vdrv_loop_stop(&g->drv);
	vdrv_detach(&g->drv);
	virtio_dev_free(g->dev);
	vdrv_fini(&g->drv);
	for (unsigned i = 0; i < VG_MAX_CONNS; i++)
		free(g->conns[i].buf);
	/* The device's socket and whatever "<uds>_PORT" listeners a test made. */
	DIR *dir = opendir(g->dir);
	for (struct dirent *e; dir && (e = readdir(dir));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", g->dir, e->d_name);
		unlink(path);
	}
	if (dir)
		closedir(dir);
	rmdir(g->dir);
}

static void vg_reclaim_tx(struct vguest *g, bool wait)
{
	int head;

	while ((head = wait ? vdrv_wait_used(&g->drv, VG_TXQ, NULL, NULL, 5000)
			    : vdrv_used(&g->drv, VG_TXQ, NULL, NULL)) >= 0) {
		/* Chains a test queued by hand (no slot) are just forgotten. */
		if (g->tx_head_slot[head] >= 0)
			g->tx_free[g->ntx_free++] = (unsigned)g->tx_head_slot[head];
		g->tx_head_slot[head] = -1;
		wait = false;
	}
}

void vg_send_raw(struct vguest *g, const struct vg_hdr *h, const void *payload, uint32_t len)
{
	struct vdrv_buf b[2];
	unsigned slot;
	uint64_t gpa;
	int head;

	vg_reclaim_tx(g, false);
	if (!g->ntx_free)
		vg_reclaim_tx(g, true);
	cr_assert_gt(g->ntx_free, 0, "device does not return tx buffers");
	cr_assert_leq(len, VG_TX_SLOT - sizeof(*h));
	slot = g->tx_free[--g->ntx_free];
	gpa = g->tx_slot[slot];
	memcpy(vdrv_ptr(&g->drv, gpa), h, sizeof(*h));
	if (len)
		memcpy(vdrv_ptr(&g->drv, gpa + sizeof(*h)), payload, len);
	b[0] = (struct vdrv_buf){ .gpa = gpa, .len = sizeof(*h) };
	b[1] = (struct vdrv_buf){ .gpa = gpa + sizeof(*h), .len = len };
	head = vdrv_add(&g->drv, VG_TXQ, b, len ? 2 : 1);
	cr_assert_geq(head, 0);
	g->tx_head_slot[head] = (int)slot;
	vdrv_kick(&g->drv, VG_TXQ);
}

void vg_send(struct vguest *g, uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags,
	     const void *payload, uint32_t len)
{
	struct vg_conn *c = vg_conn_find(g, dst_port, src_port);
	struct vg_hdr h = {
		.src_cid = g->cid,
		.dst_cid = VSOCK_HOST_CID,
		.src_port = src_port,
		.dst_port = dst_port,
		.len = len,
		.type = 1,
		.op = op,
		.flags = flags,
		.buf_alloc = g->buf_alloc,
	};

	if (c) {
		h.fwd_cnt = c->rx_bytes - c->len;
		c->fwd_sent = h.fwd_cnt;
		if (op == VG_OP_RW)
			c->tx_bytes += len;
	}
	vg_send_raw(g, &h, payload, len);
}

bool vg_recv(struct vguest *g, struct vg_pkt *p, int timeout_ms)
{
	uint32_t len;
	int head = vdrv_wait_used(&g->drv, VG_RXQ, &len, NULL, timeout_ms);
	uint64_t gpa;

	if (head < 0)
		return false;
	gpa = g->rx_gpa[head];
	cr_assert_geq(len, sizeof(p->h), "rx packet of %u bytes", len);
	cr_assert_leq(len, sizeof(p->h) + VG_RX_PAYLOAD);
	memcpy(&p->h, vdrv_ptr(&g->drv, gpa), sizeof(p->h));
	cr_assert_eq(p->h.len, len - sizeof(p->h), "header len %u, used len %u", p->h.len, len);
	memcpy(p->data, vdrv_ptr(&g->drv, gpa + sizeof(p->h)), p->h.len);
	cr_assert_eq(p->h.src_cid, VSOCK_HOST_CID);
	cr_assert_eq(p->h.dst_cid, g->cid);
	cr_assert_eq(p->h.type, 1);
	if (p->h.op < 8)
		g->pkts_seen[p->h.op]++;
	vg_post_rx(g, gpa, head & 1);
	vdrv_kick(&g->drv, VG_RXQ);
	return true;
}

struct vg_conn *vg_conn_find(struct vguest *g, uint32_t host_port, uint32_t guest_port)
{
	for (unsigned i = 0; i < VG_MAX_CONNS; i++) {
		struct vg_conn *c = &g->conns[i];
		if (c->used && c->host_port == host_port && c->guest_port == guest_port)
			return c;
	}
	return NULL;
}

struct vg_conn *vg_conn_add(struct vguest *g, uint32_t host_port, uint32_t guest_port)
{
	for (unsigned i = 0; i < VG_MAX_CONNS; i++) {
		struct vg_conn *c = &g->conns[i];
		if (c->used)
			continue;
		free(c->buf);
		memset(c, 0, sizeof(*c));
		c->used = true;
		c->host_port = host_port;
		c->guest_port = guest_port;
		return c;
	}
	cr_assert_fail("too many guest connections");
	return NULL;
}

static void vg_conn_del(struct vg_conn *c)
{
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

static uint32_t vg_credit(const struct vg_conn *c)
{
	uint32_t in_flight = c->tx_bytes - c->peer_fwd_cnt;

	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Sends what the echo buffer holds as far as the host's credit allows. */
static void vg_echo_flush(struct vguest *g, struct vg_conn *c)
{
	while (c->len && vg_credit(c)) {
		uint32_t n = c->len < vg_credit(c) ? c->len : vg_credit(c);
		if (n > 65536)
			n = 65536;
		vg_send(g, c->guest_port, c->host_port, VG_OP_RW, 0, c->buf, n);
		memmove(c->buf, c->buf + n, c->len - n);
		c->len -= n;
		g->bytes_echoed += n;
	}
	/* Tell the host about freed space before it runs dry (as Linux does). */
	if (c->rx_bytes - c->len - c->fwd_sent >= g->buf_alloc / 4)
		vg_send(g, c->guest_port, c->host_port, VG_OP_CREDIT_UPDATE, 0, NULL, 0);
	if (c->peer_shut && !c->len && !c->shut_sent) {
		c->shut_sent = true;
		vg_send(g, c->guest_port, c->host_port, VG_OP_SHUTDOWN, 3, NULL, 0);
	}
}

static void vg_echo_packet(struct vguest *g, const struct vg_pkt *p, uint32_t lo, uint32_t hi)
{
	const struct vg_hdr *h = &p->h;
	struct vg_conn *c = vg_conn_find(g, h->src_port, h->dst_port);

	if (!c) {
		if (h->op == VG_OP_REQUEST && h->dst_port >= lo && h->dst_port <= hi) {
			c = vg_conn_add(g, h->src_port, h->dst_port);
			c->peer_buf_alloc = h->buf_alloc;
			c->peer_fwd_cnt = h->fwd_cnt;
			vg_send(g, h->dst_port, h->src_port, VG_OP_RESPONSE, 0, NULL, 0);
		} else if (h->op != VG_OP_RST) {
			vg_send(g, h->dst_port, h->src_port, VG_OP_RST, 0, NULL, 0);
		}
		return;
	}
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VG_OP_RW:
		cr_assert_leq(c->len + h->len, g->buf_alloc, "host sent beyond the credit we gave");
		if (!c->buf)
			c->buf = malloc(g->buf_alloc);
		memcpy(c->buf + c->len, p->data, h->len);
		c->len += h->len;
		c->rx_bytes += h->len;
		break;
	case VG_OP_CREDIT_REQUEST:
		vg_send(g, c->guest_port, c->host_port, VG_OP_CREDIT_UPDATE, 0, NULL, 0);
		break;
	case VG_OP_SHUTDOWN:
		c->peer_shut = true;
		break;
	case VG_OP_RST:
		vg_conn_del(c);
		return;
	default:
		break;
	}
	vg_echo_flush(g, c);
}

void vg_echo_serve(struct vguest *g, uint32_t lo, uint32_t hi, int idle_ms, bool (*stop)(void *), void *arg)
{
	struct vg_pkt *p = malloc(sizeof(*p));
	int idle = 0;

	while (idle < idle_ms && !(stop && stop(arg))) {
		if (!vg_recv(g, p, 10)) {
			idle += 10;
			for (unsigned i = 0; i < VG_MAX_CONNS; i++)
				if (g->conns[i].used)
					vg_echo_flush(g, &g->conns[i]);
			continue;
		}
		idle = 0;
		vg_echo_packet(g, p, lo, hi);
	}
	free(p);
}

int vg_host_connect(struct vguest *g, uint32_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[32];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int n;

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g->uds);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", g->uds,
		     strerror(errno));
	n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (write(fd, line, (size_t)n) != n) {
		/* Refused (connection limit) before the device read a byte: the
		 * caller sees EOF on fd. */
	}
	return fd;
}

static bool vg_wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

int vg_read_line(int fd, char *buf, int len, int timeout_ms)
{
	int n = 0;

	while (n < len - 1) {
		if (!vg_wait_readable(fd, timeout_ms))
			return -1;
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return n;
}

bool vg_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	size_t got = 0;

	while (got < len) {
		if (!vg_wait_readable(fd, timeout_ms))
			return false;
		ssize_t r = read(fd, (uint8_t *)buf + got, len - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

bool vg_host_eof(int fd, int timeout_ms)
{
	char c;

	if (!vg_wait_readable(fd, timeout_ms))
		return false;
	ssize_t r = read(fd, &c, 1);
	return r == 0 || (r < 0 && errno == ECONNRESET);
}
