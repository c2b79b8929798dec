/*
 * One KVM virtual machine: its RAM, vCPU threads, I/O buses, virtio
 * devices and event loop, and how it ends. The worker's main() drives it:
 *
 *   vm_create -> devices (vm_add_pio/vm_add_mmio/vmm_add_virtio)
 *     -> vm_boot_load -> vm_start -> [sandbox] -> vm_run -> vm_destroy
 */
#ifndef SM_VMM_VM_H
#define SM_VMM_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "base/evloop.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "devices/virtio/virtio.h"
#include "proto/worker.h"

#define VM_MAX_VCPUS 32
#define VM_MIN_MEM_MIB 64
#define VM_MAX_IO_HANDLERS 32
#define VM_MAX_VIRTIO WORKER_MAX_VIRTIO_DEVICES
#define VM_CMDLINE_MAX 2048

/*
 * The guest writes marker bytes to WORKER_MARKER_PORT (src/proto/worker.h).
 * Marker 1 means "/init started": the boot-time figure. Other values are logged.
 */
#define VM_MARKER_INIT WORKER_MARKER_INIT
#define VM_MARKERS_LOGGED 16

/* Why a VM ended; the worker turns each into a distinct exit status. */
enum vm_exit_reason {
	VM_EXIT_RUNNING = 0,
	VM_EXIT_REBOOT,  /* the guest rebooted or reset (triple fault with reboot=t) */
	VM_EXIT_PANIC,   /* the guest kernel panicked (then rebooted, panic=-1) */
	VM_EXIT_STOP,    /* a stop request (control socket, console escape) */
	VM_EXIT_SIGNAL,  /* a host signal to the worker */
	VM_EXIT_ERROR,   /* KVM or the VMM failed while running */
};

struct vm_exit_info {
	enum vm_exit_reason reason;
	int signo;         /* VM_EXIT_SIGNAL */
	char detail[256];  /* one line for the final log line */
};

struct vm_io_handler {
	uint64_t base, len;
	void (*read)(void *opaque, uint64_t off, void *data, uint32_t len);
	void (*write)(void *opaque, uint64_t off, const void *data, uint32_t len);
	void *opaque;
	const char *name;
};

/* Counters of exits to user space (VM exits KVM handles itself are not seen here). */
struct vm_stats {
	uint64_t runs;      /* KVM_RUN calls that returned */
	uint64_t io;        /* KVM_EXIT_IO */
	uint64_t mmio;      /* KVM_EXIT_MMIO */
	uint64_t intr;      /* KVM_RUN interrupted by a signal (kicks) */
	uint64_t other;     /* anything else */
	uint64_t io_unhandled, mmio_unhandled;
};

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
};

struct vm_config {
	uint64_t mem_mib;
	unsigned nvcpus;
	/* A restore: RAM is this snapshot memory file (guest RAM from offset
	 * mem_offset), mapped MAP_PRIVATE; vm_create takes the fd. -1: a memfd. */
	int mem_fd;
	uint64_t mem_offset;
	/* CLOCK_MONOTONIC when the process started: boot times count from here */
	struct timespec t_process;
};

struct vm_virtio_slot;

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd;
	int run_size;
	struct guest_mem mem;
	struct evloop *loop;
	unsigned nvcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, shared by every vCPU's copy */
	struct kvm_msr_list *msr_index; /* KVM_GET_MSR_INDEX_LIST: what a snapshot saves */
	uint32_t xsave_size; /* bytes of a vCPU's XSAVE area (KVM_CAP_XSAVE2, at least 4096) */

	/* Fixed before vm_start; vCPU threads only read them. */
	struct vm_io_handler pio[VM_MAX_IO_HANDLERS], mmio[VM_MAX_IO_HANDLERS];
	unsigned npio, nmmio;
	struct vm_virtio_slot *virtio[VM_MAX_VIRTIO];
	unsigned nvirtio;

	char cmdline[VM_CMDLINE_MAX];
	size_t cmdline_len;

	/* starting and stopping */
	pthread_mutex_t state_lock;
	pthread_cond_t state_cond;
	bool go;       /* vCPU threads may enter the guest */
	bool exiting;  /* first vm_request_exit() seen */
	bool pause_req;    /* vm_pause(): vCPU threads park outside KVM_RUN */
	unsigned npaused;  /* vCPU threads parked now */
	struct vm_exit_info exit;

	/* Set by the console when the guest printed a kernel panic banner. */
	bool guest_panicked;

	/* timing, CLOCK_MONOTONIC ns; 0 = not yet */
	uint64_t t_process_ns;
	uint64_t t_first_run_ns;
	uint64_t cpu_first_run_ns; /* process CPU time (all threads) at the first KVM_RUN */
	uint64_t t_marker_ns;
	unsigned markers_logged;

	struct vm_stats stats;
	bool io_unhandled_logged, mmio_unhandled_logged;
};

/* Opens /dev/kvm, creates the VM (irqchip, PIT, RAM) and its vCPUs. cfg->mem_fd
 * must be -1 for a fresh boot. */
int vm_create(struct vm **out, const struct vm_config *cfg, struct vmm_err *err);
void vm_destroy(struct vm *vm);

/* Register a port range or an MMIO range (before vm_start). */
int vm_add_pio(struct vm *vm, const struct vm_io_handler *h);
int vm_add_mmio(struct vm *vm, const struct vm_io_handler *h);

/*
 * Places a virtio device that its model created (virtio_dev_init with any
 * placement): a 4 KiB window in the MMIO hole, the next GSI with an irqfd,
 * one ioeventfd per queue on QueueNotify (serviced on the event loop), and
 * its virtio_mmio.device= fragment on the kernel command line. The model
 * keeps owning d and must outlive vm_run(); the VMM owns the fds. Before
 * vm_boot_load. Returns 0, -ENOSPC (no window/GSI left) or -errno.
 */
int vmm_attach_virtio(struct vm *vm, struct virtio_dev *d);

/* The same for a model without its own container: the VMM allocates and frees
 * the virtio_dev; priv stays the caller's. *out (may be NULL) gets it. */
int vmm_add_virtio(struct vm *vm, const struct virtio_dev_ops *ops, void *priv,
		   struct virtio_dev **out);

/* Appends " s" to the kernel command line. -E2BIG when it would not fit. */
int vm_cmdline_append(struct vm *vm, const char *s);

/* Loads kernel (and initrd) and prepares the boot vCPU. Errors fill err. */
int vm_boot_load(struct vm *vm, const char *kernel, const char *initrd, struct vmm_err *err);

/*
 * Starts the vCPU threads, held at a gate until vm_run(): the worker locks
 * itself down in between, so no thread is created after the sandbox.
 * A thread the scheduler starts late makes glibc's start-up calls
 * (set_robust_list, rseq) under the sandbox, which allows them.
 */
int vm_start(struct vm *vm);

/* Opens the gate and runs the event loop on this thread until the VM ends. */
struct vm_exit_info vm_run(struct vm *vm);

/* Ends the VM if it is running and waits for every vCPU thread. */
void vm_join(struct vm *vm);

/*
 * Ends the VM (any thread, async-signal-unsafe). The first reason wins; the
 * event loop returns and every vCPU leaves KVM_RUN.
 */
__attribute__((format(printf, 3, 4)))
void vm_request_exit(struct vm *vm, enum vm_exit_reason reason, const char *fmt, ...);
void vm_request_exit_signal(struct vm *vm, int signo);
/* Has the VM been asked to end? */
bool vm_exiting(struct vm *vm);

/*
 * Parks every vCPU thread outside KVM_RUN at a clean stop point (any I/O
 * or MMIO exit completed, so no half-done instruction is left in KVM) and
 * waits until all are parked. Event loop thread only, while vm_run() runs.
 * -ECANCELED if the VM ends meanwhile. vm_resume() lets them run again.
 */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);

/* The i-th placed virtio device (placement order), or NULL past the last. */
struct virtio_dev *vm_virtio_dev(struct vm *vm, unsigned i);

/* Raises or lowers a legacy IRQ line (KVM_IRQ_LINE). */
int vm_irq_line(struct vm *vm, uint32_t irq, bool level);

/* CLOCK_MONOTONIC in ns. */
uint64_t vm_now_ns(void);

/* A consistent copy of the counters. */
void vm_stats_read(struct vm *vm, struct vm_stats *s);
/* "exits=N io=N mmio=N ..." (control socket and the final log line). */
int vm_stats_format(const struct vm_stats *s, char *buf, size_t len);

const char *vm_exit_reason_name(enum vm_exit_reason r);

#endif
