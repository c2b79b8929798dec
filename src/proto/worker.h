/*
 * The contract between libsupermachine and supermachine-worker, as
 * src/proto/proto.h is the contract between the library and the guest:
 * what a worker is launched with (its command line, built and parsed by
 * the same code), its control socket's commands and replies as typed
 * values, its exit statuses, the files of a snapshot it writes and
 * reads, and the I/O port the guest's /init marks its progress on.
 * Plain C and libc: the library, the worker, the VMM and the guest's
 * /init all include it. docs/vmm.md describes the same in prose.
 */
#ifndef SM_PROTO_WORKER_H
#define SM_PROTO_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- exit statuses (docs/vmm.md). 128+N: ended by host signal N. ---- */
enum worker_status {
	WORKER_EXIT_REBOOT = 0,  /* the guest rebooted (or reset) */
	WORKER_EXIT_ERROR = 1,   /* KVM or the VMM failed */
	WORKER_EXIT_USAGE = 2,   /* bad command line or setup, before any guest code ran */
	WORKER_EXIT_PANIC = 3,   /* the guest kernel panicked */
	WORKER_EXIT_STOP = 4,    /* stopped on request (control socket, console escape) */
	WORKER_EXIT_SANDBOX = 5, /* the worker made a system call its sandbox forbids */
	WORKER_EXIT_SIGNAL_BASE = 128,
};

/* ---- a snapshot directory's files (docs/snapshot-format.md) ---- */
#define WORKER_SNAP_STATE_FILE "state"        /* vCPUs, irqchip, devices: written by the worker */
#define WORKER_SNAP_MEMORY_FILE "memory"      /* a header, then guest RAM (sparse) */
#define WORKER_SNAP_METADATA_FILE "metadata.json" /* written by the library */
#define WORKER_SNAP_MEMORY_HEADER_BYTES 4096u /* RAM starts here in the memory file */

/*
 * ---- boot markers ----
 * /init writes a byte to this I/O port as it starts and once the agent
 * listens; the worker logs the time of each (boot-time on the control
 * socket).
 */
#define WORKER_MARKER_PORT 0x0ff0
#define WORKER_MARKER_INIT 1
#define WORKER_MARKER_AGENT 2

#endif
