/*
 * virtio-mmio (version 2) transport and the interface between it and each
 * device model.
 *
 * Threads: register accesses (virtio_mmio_read/write) arrive on vCPU
 * threads and run under dev->lock. Queue notifications arrive through an
 * ioeventfd on the event loop thread and call ops->queue_notify without the
 * lock held; a device takes dev->lock itself around state it shares with
 * register accesses. Interrupts leave through dev->irq_fd (an eventfd bound
 * to the device's GSI with KVM_IRQFD) so no thread ever waits on the guest.
 */
#ifndef SM_DEVICES_VIRTIO_H
#define SM_DEVICES_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/guest_mem.h"
#include "devices/virtio/virtq.h"

#define VIRTIO_MAX_QUEUES 8
#define VIRTIO_MMIO_SIZE 0x1000

/* device IDs (virtio 1.x section 5) */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* feature bits common to every device */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* device status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* InterruptStatus bits */
#define VIRTIO_INT_VRING 1
#define VIRTIO_INT_CONFIG 2

/* virtio-mmio version 2 register offsets (virtio 1.1 section 4.2.2) */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_SHM_SEL 0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW 0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH 0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW 0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH 0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x4d535550 /* "SUPM" */

struct virtio_dev;
struct snap_writer;
struct snap_reader;

/* A model's counters by name, in the order they are reported; the list
 * ends at the first NULL key. */
#define VIRTIO_DEV_STATS_MAX 16
struct virtio_dev_stats {
	struct {
		const char *key;
		uint64_t val;
	} f[VIRTIO_DEV_STATS_MAX];
};

struct virtio_dev_ops {
	const char *name; /* "blk", "vsock", ...: used in log lines */
	uint32_t device_id;
	uint16_t num_queues;
	/* Device-specific feature bits offered (the transport adds VERSION_1,
	 * EVENT_IDX and INDIRECT_DESC). */
	uint64_t (*features)(struct virtio_dev *d);
	/* Device config space: reads/writes within [0, config_size) only; the
	 * transport has already bounds-checked off+len. */
	uint32_t config_size;
	void (*config_read)(struct virtio_dev *d, uint32_t off, void *data, uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len);
	/* The driver set DRIVER_OK: queues are validated and ready. Called under
	 * dev->lock. Return -errno to fail the device. */
	int (*activate)(struct virtio_dev *d);
	/* The driver wrote 0 to Status (or the VMM resets the device): forget all
	 * queue and in-flight state. Called under dev->lock. */
	void (*reset)(struct virtio_dev *d);
	/* The guest kicked queue q (event loop thread, lock not held). */
	void (*queue_notify)(struct virtio_dev *d, uint16_t q);
	/* Snapshot of the device-specific state (the transport saves its own and
	 * the queues first, in the same section). May be NULL if the device has
	 * none; restore reads exactly what save wrote. Both run under dev->lock
	 * with the vCPUs paused and the event loop busy with the snapshot.
	 * restore runs after the transport and queues are loaded and checked;
	 * it must check its own data (snap_reader_fail names the section) and
	 * drop whatever the device held since (a reset in place); -errno fails
	 * the restore. */
	int (*save)(struct virtio_dev *d, struct snap_writer *w);
	int (*restore)(struct virtio_dev *d, struct snap_reader *r);
	/* Version of what save writes: bumped whenever that layout changes. The
	 * transport saves it and refuses a snapshot holding another, so restore
	 * never parses data laid out for a different build of the model. */
	uint32_t state_version;
	/* Frees what the model holds besides its container and the transport
	 * (fds, buffers); virtio_dev_free() calls it. NULL: nothing to free. */
	void (*destroy)(struct virtio_dev *d);
	/* Fills in the model's counters (the control socket's "<device> stats"
	 * reply, vdev_stats_reply()). NULL: none kept. */
	void (*stats)(struct virtio_dev *d, struct virtio_dev_stats *s);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *priv; /* the device model's own state */
	const struct guest_mem *mem;
	pthread_mutex_t lock;

	/* placement, fixed at creation */
	uint64_t mmio_base;
	uint32_t gsi;
	int irq_fd; /* eventfd wired to gsi with KVM_IRQFD; -1 in unit tests */

	/* transport registers */
	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel;
	uint64_t drv_features; /* acked by the driver */
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint32_t config_generation;
	struct virtq vq[VIRTIO_MAX_QUEUES];

	bool failed_logged;
	FILE *log; /* where warnings go (the worker's log); NULL = stderr */

	/* Added by the transport. Each queue's ioeventfd (owned by the VMM; -1
	 * when none): a QueueNotify that reaches the transport instead of KVM
	 * (another access width) is forwarded there, so queue_notify always
	 * runs on the event loop thread. */
	int notify_fd[VIRTIO_MAX_QUEUES];
	bool bad_access_logged;
};

/*
 * Sets up the transport state for a device model; does not register
 * anything with KVM. dev->lock is recursive, so a device may call the
 * helpers below (notify_used, config_changed, fail) with it held or not.
 * The VMM fills in mmio_base, gsi, irq_fd and notify_fd when it places the
 * device (vmm_attach_virtio) and owns those fds.
 */
void virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
		     const struct guest_mem *mem, uint64_t mmio_base, uint32_t gsi, int irq_fd);
void virtio_dev_destroy(struct virtio_dev *d);
/*
 * Frees a device model made with vdev_alloc() (every device under
 * src/devices/virtio/): the transport, then ops->destroy, then the
 * container. NULL is a no-op.
 */
void virtio_dev_free(struct virtio_dev *d);

/* Register accesses at offset off (0 <= off < VIRTIO_MMIO_SIZE) from a vCPU. */
void virtio_mmio_read(struct virtio_dev *d, uint64_t off, void *data, uint32_t len);
void virtio_mmio_write(struct virtio_dev *d, uint64_t off, const void *data, uint32_t len);

/* Is the driver done with setup (DRIVER_OK and not failed)? */
bool virtio_dev_live(const struct virtio_dev *d);

/* After pushing used buffers to queue q: interrupt the guest if it wants one. */
void virtio_dev_notify_used(struct virtio_dev *d, uint16_t q);
/*
 * Runs queue_notify(q) again later on the event loop, as if the guest had
 * kicked: a device that stops after a budget of chains calls this so one
 * busy queue cannot starve the loop's other fds.
 */
void virtio_dev_requeue(struct virtio_dev *d, uint16_t q);

/* The device config changed: bump the generation and interrupt. */
void virtio_dev_config_changed(struct virtio_dev *d);

/*
 * The guest broke the protocol: set DEVICE_NEEDS_RESET, interrupt the
 * driver, log the reason once, and stop processing until reset. Never
 * aborts the worker.
 */
__attribute__((format(printf, 2, 3)))
void virtio_dev_fail(struct virtio_dev *d, const char *fmt, ...);

/*
 * Snapshot (docs/snapshot-format.md, VIRT sections): the transport
 * registers, every queue's ring addresses and indexes, then ops->save's
 * data, into the writer's open section. restore reads the same from the
 * reader's current section, checks every value against this device and
 * guest RAM (the file is hostile), and replaces the device's state;
 * -EINVAL with the reason recorded in the reader. restored() runs once the
 * whole VM is loaded: queues are looked at again (a kick in flight at the
 * capture is not lost) and a pending interrupt is raised again.
 */
void virtio_dev_save(struct virtio_dev *d, struct snap_writer *w);
int virtio_dev_restore(struct virtio_dev *d, struct snap_reader *r);
void virtio_dev_restored(struct virtio_dev *d);

/* The kernel command line fragment that declares this device. */
int virtio_dev_cmdline(const struct virtio_dev *d, char *buf, size_t len);

#endif
