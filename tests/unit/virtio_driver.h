/*
 * A virtio driver for tests, over synthetic guest memory: it brings a
 * device up through the real virtio-mmio register path (status, features,
 * queue setup), builds descriptor chains in rings the way Linux does,
 * kicks queues through eventfds serviced by a real event loop thread (as
 * the VMM's ioeventfds are), and collects used buffers.
 *
 * The driver side runs on the test's thread, the device on the loop
 * thread, as vCPU and event loop do in the worker.
 */
#ifndef SM_TESTS_VIRTIO_DRIVER_H
#define SM_TESTS_VIRTIO_DRIVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/evloop.h"
#include "devices/virtio/virtio.h"

#define VDRV_QSIZE 512
#define VDRV_RAM_GPA 0x100000ull

struct vdrv_q {
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t avail_idx;   /* next avail->idx we publish */
	uint16_t kicked_idx;  /* avail_idx at our last kick */
	uint16_t last_used;   /* next used entry we consume */
	uint16_t free_head, nfree;
	uint16_t next[VDRV_QSIZE];
	uint16_t chain_len[VDRV_QSIZE];
	bool ready;
};

struct vdrv;

/* What a queue's notify eventfd wakes up on the loop. */
struct vdrv_notify {
	struct vdrv *v;
	uint16_t q;
};

struct vdrv {
	uint8_t *ram;
	uint64_t ram_size;
	int memfd;            /* -1: anonymous memory */
	struct guest_mem mem;
	uint64_t brk;         /* bump allocator, guest-physical */

	struct evloop *loop;
	pthread_t loop_thread;
	bool loop_running;

	struct virtio_dev *dev;
	int irq_fd;
	int notify_fd[VIRTIO_MAX_QUEUES];
	struct vdrv_notify notify[VIRTIO_MAX_QUEUES];
	uint64_t features;    /* negotiated */
	/* Fuzzing: the guest may have scribbled on its own rings (a ballooned
	 * ring page reads back as zeros), so a used id that is not one of our
	 * heads is skipped instead of failing the test. */
	bool lenient;
	struct vdrv_q q[VIRTIO_MAX_QUEUES];
};

struct vdrv_buf {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* Guest RAM of `size` bytes at VDRV_RAM_GPA: anonymous, or a MAP_SHARED memfd. */
void vdrv_mem_init(struct vdrv *v, uint64_t size, bool memfd);
/* Guest RAM mapped MAP_PRIVATE from fd, as a snapshot restore maps its memory file. */
void vdrv_mem_init_private(struct vdrv *v, int fd, uint64_t size);
/* The event loop, running on its own thread. */
void vdrv_loop_start(struct vdrv *v);
void vdrv_loop_stop(struct vdrv *v);
/* Stops the loop if running and frees the memory (destroy the device first). */
void vdrv_fini(struct vdrv *v);

/*
 * Wires dev like the VMM does (irq eventfd, one notify eventfd per queue
 * on the loop; once per device) and brings it up the way a driver does:
 * resets it, negotiates VERSION_1 plus `want` & offered, sets up nqueues
 * queues, DRIVER_OK. Returns the final status register.
 */
uint32_t vdrv_attach(struct vdrv *v, struct virtio_dev *dev, uint64_t want, unsigned nqueues);
/* The same in two steps, for a driver that queues buffers before DRIVER_OK. */
void vdrv_attach_begin(struct vdrv *v, struct virtio_dev *dev, uint64_t want, unsigned nqueues);
uint32_t vdrv_attach_finish(struct vdrv *v);
/* Unhooks the notify fds from the loop (before the device is destroyed). */
void vdrv_detach(struct vdrv *v);

uint32_t vdrv_reg_read(struct vdrv *v, uint64_t off);
void vdrv_reg_write(struct vdrv *v, uint64_t off, uint32_t val);
uint32_t vdrv_status(struct vdrv *v);
bool vdrv_needs_reset(struct vdrv *v);

/* Guest memory: bump allocation (16-byte aligned, or page-aligned) and translation. */
uint64_t vdrv_alloc(struct vdrv *v, uint64_t len);
uint64_t vdrv_alloc_pages(struct vdrv *v, uint64_t len);
/* Forgets every allocation (before re-attaching a reset device). */
void vdrv_free_all(struct vdrv *v);
void *vdrv_ptr(struct vdrv *v, uint64_t gpa);

/* Queues a chain (readable buffers first); returns its head, -1 when the ring is full. */
int vdrv_add(struct vdrv *v, unsigned q, const struct vdrv_buf *b, unsigned n);
/* Adds one device-writable buffer of len bytes; returns its gpa (0 if full). */
uint64_t vdrv_add_inbuf(struct vdrv *v, unsigned q, uint32_t len);
/* Adds one device-readable buffer holding data; returns head or -1. */
int vdrv_add_outbuf(struct vdrv *v, unsigned q, const void *data, uint32_t len);
/* Notifies the device if it asked for it (EVENT_IDX) or always without EVENT_IDX. */
void vdrv_kick(struct vdrv *v, unsigned q);

/* The next used chain: head, *len written, *gpa of its first buffer. -1 if none. */
int vdrv_used(struct vdrv *v, unsigned q, uint32_t *len, uint64_t *gpa);
/* Same, waiting up to timeout_ms for one (a hang guard, not a timing check). */
int vdrv_wait_used(struct vdrv *v, unsigned q, uint32_t *len, uint64_t *gpa, int timeout_ms);
/* Interrupts raised since the last call. */
uint64_t vdrv_irqs(struct vdrv *v);

/* Raw ring access for hostile tests. */
void vdrv_set_desc(struct vdrv *v, unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		   uint16_t next);
void vdrv_publish(struct vdrv *v, unsigned q, uint16_t head);

#endif
