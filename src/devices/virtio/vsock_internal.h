/*
 * Internal to the virtio-vsock device (vsock.c, vsock_conn.c, vsock_pkt.c,
 * vsock_mux.c): its wire format, state and the functions the files share.
 * The design (flow control, locking) is described at the top of vsock.c.
 */
#ifndef SM_DEVICES_VIRTIO_VSOCK_INTERNAL_H
#define SM_DEVICES_VIRTIO_VSOCK_INTERNAL_H

#include "devices/virtio/vsock.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/snapshot.h"
#include "devices/virtio/vdev.h"

#define VSOCK_RXQ 0
#define VSOCK_TXQ 1
#define VSOCK_EVQ 2
#define VSOCK_NUM_QUEUES 3

#define VSOCK_TYPE_STREAM 1

enum {
	VSOCK_OP_INVALID,
	VSOCK_OP_REQUEST,
	VSOCK_OP_RESPONSE,
	VSOCK_OP_RST,
	VSOCK_OP_SHUTDOWN,
	VSOCK_OP_RW,
	VSOCK_OP_CREDIT_UPDATE,
	VSOCK_OP_CREDIT_REQUEST,
};

#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2
#define VSOCK_EVENT_TRANSPORT_RESET 0

/* Largest payload we accept in one guest packet (Linux sends <= 64 KiB). */
#define VSOCK_MAX_PKT_PAYLOAD (64u * 1024)
/* Work done per wakeup before yielding the loop thread to other devices. */
#define VSOCK_BUDGET 256
#define VSOCK_HASH_BITS 8
#define VSOCK_RST_RING 256
#define VSOCK_LINE_MAX 32
/* Host-side ports we hand out for host-initiated connections. */
#define VSOCK_LOCAL_PORT_FIRST (1u << 30)

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum vsock_state {
	VSOCK_HANDSHAKE,   /* host client accepted; reading "CONNECT <port>\n" */
	VSOCK_CONNECTING,  /* REQUEST to the guest queued or sent; awaiting RESPONSE */
	VSOCK_ESTABLISHED,
	VSOCK_CLOSING,     /* sent SHUTDOWN(both); awaiting the guest's RST */
	VSOCK_DRAINING,    /* the guest is gone; flushing buffered bytes to the host */
	VSOCK_DEAD,        /* freed at the end of the current batch */
};

/* Control packets a connection owes the guest, in the order they go out. */
enum {
	PEND_REQUEST = 1 << 0,
	PEND_RESPONSE = 1 << 1,
	PEND_CREDIT_UPDATE = 1 << 2,
	PEND_CREDIT_REQUEST = 1 << 3,
	PEND_SHUTDOWN = 1 << 4,
};

/* Kinds of complaint, each logged once per device. */
enum {
	WARN_SHORT_HDR,
	WARN_BAD_LEN,
	WARN_BAD_CID,
	WARN_BAD_TYPE,
	WARN_BAD_OP,
	WARN_CREDIT,
	WARN_PROTO,
	WARN_RST_FULL,
	WARN_CONN_LIMIT,
	WARN_CONNECT_LINE,
	WARN_TIMEOUT,
	WARN_HOST_IO,
	WARN_PATH,
	WARN_NO_FDS,
};

struct vsock_dev;

struct vsock_conn {
	struct vsock_dev *v;
	int fd;
	enum vsock_state state;
	uint32_t host_port, guest_port;
	unsigned pend;
	uint32_t shutdown_flags; /* for PEND_SHUTDOWN */

	/* edge-triggered readiness, cleared when the socket says EAGAIN */
	bool readable, writable;
	bool host_eof;       /* read returned 0: the host sends no more */
	bool host_hup;       /* the host closed both directions */
	bool host_wr_dead;   /* writes fail: drop what the guest sends */
	bool host_wr_shut;   /* we did shutdown(SHUT_WR) */
	bool guest_shut_rcv, guest_shut_send;
	bool credit_requested;
	bool in_rxq;

	/* guest -> host: ring of v->lim.buf_alloc bytes, allocated on first use */
	uint32_t rx_cnt;       /* bytes received from the guest */
	uint32_t fwd_cnt;      /* of those, bytes the host socket took (or we dropped) */
	uint32_t fwd_cnt_sent; /* fwd_cnt as last told to the guest */
	uint8_t *buf;
	uint32_t buf_head;     /* ring offset of the oldest buffered byte */

	/* host -> guest */
	uint32_t tx_cnt;       /* bytes sent to the guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt;

	char line[VSOCK_LINE_MAX];
	unsigned line_len;
	uint64_t deadline_ns;  /* 0: none */

	TAILQ_ENTRY(vsock_conn) all;
	TAILQ_ENTRY(vsock_conn) rxq;
	LIST_ENTRY(vsock_conn) hash;
	bool hashed;
};

struct vsock_rst {
	uint32_t host_port, guest_port;
};

struct vsock_dev {
	struct virtio_dev dev;
	struct evloop *loop;
	uint64_t guest_cid;
	char *uds_path;
	char *connect_prefix;    /* guest connects go to "<connect_prefix>_<port>": uds_path, or through connect_dir */
	int connect_dir;         /* an O_PATH of uds_path's directory (virtio_vsock_connect_via), or -1 */
	struct virtio_vsock_limits lim;
	int listen_fd, epfd, timer_fd, kick_fd;
	int spare_fd;            /* a dup of kick_fd, closed to refuse clients when out of descriptors */
	bool bound;              /* uds_path is ours to unlink */
	uint64_t timer_armed_ns; /* 0: disarmed */

	TAILQ_HEAD(, vsock_conn) conns;
	TAILQ_HEAD(, vsock_conn) rxq;
	TAILQ_HEAD(, vsock_conn) dead;
	LIST_HEAD(, vsock_conn) table[1u << VSOCK_HASH_BITS];
	uint32_t nconns;
	uint32_t next_local_port;

	struct vsock_rst rst[VSOCK_RST_RING];
	unsigned rst_head, rst_count;
	bool event_pending;
	/*
	 * The guest drops every connection it has when it handles a
	 * TRANSPORT_RESET, which can be after a host client connected anew
	 * (right after a restore, say). New REQUESTs wait until the driver
	 * has handed the event buffer back, which Linux does once it has
	 * handled the event: reset_mark is avail->idx when we sent it.
	 */
	bool reset_settling;
	uint16_t reset_mark;

	struct virtq_chain *tx_chain;
	struct virtq_chain *rx_chain;
	bool rx_held;          /* rx_chain popped but not yet used */
	struct iovec *iov;     /* VIRTQ_MAX_CHAIN entries */

	struct vdev_pending pend;
	struct virtio_vsock_stats stats;
};

#define TAG_LISTEN 1u
#define TAG_TIMER 2u
#define TAG_KICK 3u

static inline struct vsock_dev *vsock_of(struct virtio_dev *d) { return d->priv; }

static inline uint64_t vsock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define vsock_warn(v, kind, ...) vdev_warn_once(&(v)->dev, &(v)->pend, kind, __VA_ARGS__)
#define vsock_fail(v, ...) vdev_defer_fail(&(v)->pend, __VA_ARGS__)

static inline bool vsock_failed(const struct vsock_dev *v) { return vdev_failing(&v->pend); }

/* ---- connections, timers and credit (vsock_conn.c) */

struct vsock_conn *vsock_lookup(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port);
void vsock_hash_add(struct vsock_dev *v, struct vsock_conn *c);
void vsock_timer_arm(struct vsock_dev *v, uint64_t when_ns);
void vsock_set_deadline(struct vsock_dev *v, struct vsock_conn *c);
void vsock_queue_rst(struct vsock_dev *v, uint32_t host_port, uint32_t guest_port);
void vsock_rxq_del(struct vsock_dev *v, struct vsock_conn *c);
void vsock_conn_kill(struct vsock_dev *v, struct vsock_conn *c);
void vsock_conn_reset(struct vsock_dev *v, struct vsock_conn *c);
void vsock_free_dead(struct vsock_dev *v);
void vsock_kill_all(struct vsock_dev *v);
struct vsock_conn *vsock_conn_new(struct vsock_dev *v, int fd, enum vsock_state state);
uint32_t vsock_buffered(const struct vsock_conn *c);
uint32_t vsock_peer_credit(const struct vsock_conn *c);
void vsock_take_credit(struct vsock_conn *c, const struct vsock_hdr *h);
bool vsock_can_read_host(const struct vsock_conn *c);
void vsock_conn_sched(struct vsock_dev *v, struct vsock_conn *c);
unsigned vsock_iov(const struct virtq_seg *seg, unsigned nseg, uint64_t off, uint64_t len,
		   struct iovec *iov);
void vsock_host_write_dead(struct vsock_conn *c);
void vsock_flush(struct vsock_dev *v, struct vsock_conn *c);
void vsock_guest_rw(struct vsock_dev *v, struct vsock_conn *c, const struct vsock_hdr *h,
		    const struct virtq_chain *ch);
void vsock_conn_release(struct vsock_dev *v, struct vsock_conn *c);
void vsock_conn_finish(struct vsock_dev *v, struct vsock_conn *c);

/* ---- packets from and to the guest (vsock_pkt.c) */

bool vsock_pop(struct vsock_dev *v, uint16_t qi, struct virtq_chain *ch);
void vsock_push(struct vsock_dev *v, uint16_t qi, uint16_t head, uint32_t written);
void vsock_kick_self(struct vsock_dev *v);
void vsock_tx_process(struct vsock_dev *v);
void vsock_rx_process(struct vsock_dev *v);

/* ---- the host side: listener, handshake, socket events (vsock_mux.c) */

bool vsock_live(struct vsock_dev *v);
void vsock_event_process(struct vsock_dev *v);
void vsock_reset_settle(struct vsock_dev *v);
void vsock_unlock(struct vsock_dev *v);
void vsock_process(struct vsock_dev *v);
void vsock_on_events(void *opaque, uint32_t events);

#endif
