/*
 * The guest half of virtio-vsock for tests: a tiny transport on top of
 * virtio_driver that sends and receives packets the way Linux's
 * virtio_transport does (rx buffers of header + 4 KiB, tx chains of header
 * + payload, credit accounting), with helpers to act as a listener or an
 * echo server.
 */
#ifndef SM_TESTS_VSOCK_GUEST_H
#define SM_TESTS_VSOCK_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/vsock.h"
#include "virtio_driver.h"

#define VG_RXQ 0
#define VG_TXQ 1
#define VG_EVQ 2
#define VG_RX_PAYLOAD 4096
#define VG_TX_SLOT (44 + 65536)
#define VG_TX_SLOTS 64
#define VG_MAX_CONNS 128

enum {
	VG_OP_REQUEST = 1,
	VG_OP_RESPONSE,
	VG_OP_RST,
	VG_OP_SHUTDOWN,
	VG_OP_RW,
	VG_OP_CREDIT_UPDATE,
	VG_OP_CREDIT_REQUEST,
};

struct vg_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

struct vg_pkt {
	struct vg_hdr h;
	uint8_t data[VG_RX_PAYLOAD];
};

/* What the guest knows about one connection. */
struct vg_conn {
	bool used;
	uint32_t host_port, guest_port;
	uint32_t rx_bytes;     /* received from the host (= our fwd_cnt: we consume at once) */
	uint32_t tx_bytes;     /* sent to the host */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	bool peer_shut;
	/* the echoing "application": bytes received, not yet sent back */
	uint8_t *buf;
	uint32_t len;
	uint32_t fwd_sent; /* fwd_cnt last told to the host */
	bool shut_sent;
};

struct vguest {
	struct vdrv drv;
	struct virtio_dev *dev;
	char dir[64];
	char uds[96];
	uint64_t cid;
	uint32_t buf_alloc;    /* what we advertise */
	uint64_t rx_gpa[VDRV_QSIZE];
	uint64_t tx_slot[VG_TX_SLOTS];
	int tx_head_slot[VDRV_QSIZE];
	unsigned tx_free[VG_TX_SLOTS], ntx_free;
	struct vg_conn conns[VG_MAX_CONNS];
	uint64_t bytes_echoed;
	uint32_t pkts_seen[8]; /* by op */
};

/* Memory, loop, a vsock device on a fresh socket path, driver up, rx_bufs
 * rx buffers and 4 event buffers posted. */
void vg_setup(struct vguest *g, const struct virtio_vsock_limits *lim, bool event_idx, unsigned rx_bufs);
#define VG_RX_BUFS (VDRV_QSIZE / 2)
void vg_teardown(struct vguest *g);

/* Sends one packet (payload may be NULL when len == 0). */
void vg_send(struct vguest *g, uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags,
	     const void *payload, uint32_t len);
/* Sends with full control of the header (hostile tests). */
void vg_send_raw(struct vguest *g, const struct vg_hdr *h, const void *payload, uint32_t len);
/* Next packet from the device, within timeout_ms; the rx buffer is reposted. */
bool vg_recv(struct vguest *g, struct vg_pkt *p, int timeout_ms);

struct vg_conn *vg_conn_find(struct vguest *g, uint32_t host_port, uint32_t guest_port);
struct vg_conn *vg_conn_add(struct vguest *g, uint32_t host_port, uint32_t guest_port);

/*
 * Acts as a guest with listeners on ports [lo, hi] that echo every byte
 * back (respecting the host's credit), answers SHUTDOWN with RST, and
 * returns after idle_ms without a packet or once stop() returns true.
 */
void vg_echo_serve(struct vguest *g, uint32_t lo, uint32_t hi, int idle_ms, bool (*stop)(void *), void *arg);

/* A host client: connects to g->uds and sends "CONNECT port\n". Returns fd. */
int vg_host_connect(struct vguest *g, uint32_t port);
/* Reads one line (up to \n) with a timeout; returns its length, 0 on EOF, -1 on error. */
int vg_read_line(int fd, char *buf, int len, int timeout_ms);
/* Reads exactly len bytes or fails (timeout guard). */
bool vg_read_full(int fd, void *buf, size_t len, int timeout_ms);
/* Does the host socket see EOF (or a reset) within timeout_ms? */
bool vg_host_eof(int fd, int timeout_ms);

#endif
