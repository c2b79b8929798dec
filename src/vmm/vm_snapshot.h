/*
 * Whole-VM snapshots (docs/snapshot-format.md): capture a running VM into
 * a directory (state + memory) and keep it running; restore a new worker
 * from one; reset a restored worker in place. The sections themselves are
 * written by their owners: arch (VMST, VCPU n), the virtio transport and
 * device models (VIRT n), the UART (UART 0); this file orders them, pauses
 * and resumes the vCPUs, and checks that the machine being restored into
 * is the one that was captured (MCHN 0).
 */
#ifndef SM_VMM_VM_SNAPSHOT_H
#define SM_VMM_VM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/snapshot.h"
#include "devices/serial.h"
#include "vmm/vm.h"

/* MCHN 0: what a restoring worker must rebuild before loading anything. */
struct vm_snap_device {
	uint32_t device_id;
	uint64_t mmio_base;
	uint32_t gsi;
	uint16_t nqueues;
};

struct vm_snap_machine {
	uint8_t id[SNAP_ID_BYTES];
	uint64_t ram_bytes;
	uint32_t nvcpus;
	uint32_t ndevices;
	struct vm_snap_device dev[VM_MAX_VIRTIO];
};

/* One worker's snapshot context: what the control commands work on. */
struct vm_snapshot {
	struct vm *vm;
	struct serial *uart;    /* the console UART, or NULL */
	struct snap_reader *st; /* the state this VM was restored from; NULL after a boot */
	char dir[256];          /* its directory, for messages */
};

/* What a capture did, for the control reply. */
struct vm_snap_result {
	uint64_t state_bytes;
	uint64_t memory_allocated; /* bytes the memory file occupies on disk (holes excluded) */
	uint64_t paused_ns;        /* vCPUs stopped */
	uint64_t total_ns;
};

/*
 * Opens DIR/state (every check of the state file format) and DIR/memory
 * (header, id, size = RAM), and reads MCHN 0. *mem_fd is the memory file
 * for vm_config.mem_fd. Errors name the file and what is wrong.
 */
int vm_snapshot_open(const char *dir, struct snap_reader **r, struct vm_snap_machine *m,
		     int *mem_fd, struct vmm_err *err);

/*
 * Loads a VM created from m (same RAM, vCPUs and devices placed in the
 * same order) from the state file: checks the device list against the
 * VM's, then VM state, every vCPU, every virtio device, the UART, and that
 * no section is left over. first: the VM never ran (a reset passes false).
 * Then every device looks at its queues again. Errors: "DIR/state: section
 * X: what". The VM must not be running (before vm_start, or paused).
 */
int vm_snapshot_load(struct vm_snapshot *s, const struct vm_snap_machine *m, bool first,
		     struct vmm_err *err);

/*
 * Captures the running VM into dir (existing, empty): pauses every vCPU,
 * writes dir/memory then dir/state (each atomically), resumes. Event loop
 * thread only (devices are quiet while it runs).
 */
int vm_snapshot_save(struct vm_snapshot *s, const char *dir, struct vm_snap_result *res,
		     struct vmm_err *err);

/*
 * Resets a restored VM to its snapshot in place: pause, drop every page it
 * copied (MADV_DONTNEED on the private mapping: the next touch reads the
 * memory file again), reload all state from the already-parsed state file,
 * resume. -ENOTSUP on a VM that was not restored.
 */
int vm_snapshot_reset(struct vm_snapshot *s, struct vmm_err *err);

/* Control commands (control_fn; opaque is the struct vm_snapshot):
 * "snapshot DIR" and "reset". */
void vm_snapshot_control_save(void *opaque, const char *args, char *reply, size_t len);
/*
 * "snapshot-fd": as "snapshot DIR" into the directory open as dirfd (the
 * request's descriptor, control_take_fd(); -1 when none came), which is
 * closed. Reached as /proc/self/fd/N, so the durable writes keep their
 * paths and the directory needs no path in a jailed worker's root.
 */
void vm_snapshot_control_save_fd(struct vm_snapshot *s, int dirfd, char *reply, size_t len);
void vm_snapshot_control_reset(void *opaque, const char *args, char *reply, size_t len);

#endif
