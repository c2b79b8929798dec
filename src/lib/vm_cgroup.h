/*
 * A cgroup v2 leaf per jailed worker (docs/security.md): memory.max and
 * cpu.max, where cgroup v2 is mounted and its memory and cpu controllers
 * are delegated to our own cgroup. Every function takes the hierarchy's
 * root, so the unit tests point it at a tree of the same files in a temp
 * directory. Leaves live in BASE/supermachine/VM-ID, BASE our own cgroup
 * where it may enable controllers for children (the root, or one holding
 * no process), else its parent: the leaves' parent holds no process, so
 * the "no internal processes" rule lets it enable them for its children.
 */
#ifndef SM_LIB_VM_CGROUP_H
#define SM_LIB_VM_CGROUP_H

#include <stddef.h>
#include <stdint.h>

#include <supermachine.h>

#define VM_CGROUP_ROOT "/sys/fs/cgroup"
#define VM_CGROUP_PARENT "supermachine" /* in our own cgroup: the leaves' parent */
/* The VMM's own memory beyond the guest's: threads, device queues, page tables, the exec agent's buffers. */
#define VM_CGROUP_VMM_MIB 64u
#define VM_CGROUP_VSOCK_MIB 16u /* vsock's connection buffers, max_conns of them (docs/devices.md) */
#define VM_CGROUP_FS_MIB 32u    /* each virtio-fs device: its node table and request buffers */
#define VM_CGROUP_CPU_PERIOD_US 100000u

/* What a leaf limits. */
struct vm_cgroup_limits {
	uint64_t memory_mib; /* the guest's RAM */
	unsigned vcpus;
	unsigned nmounts;    /* virtio-fs devices */
};

/* The cgroup of the "0::" line of /proc/self/cgroup's text into own; -1 when there is none (cgroup v1 only). */
int vm_cgroup_self(const char *proc_text, char *own, size_t len);
/*
 * Whether leaves can be made under own in the hierarchy at root, without
 * changing anything: 0 with the leaves' parent directory in parent, or -1
 * with the reason there can be none in why.
 */
int vm_cgroup_probe(const char *root, const char *own, char *parent, size_t plen, char *why, size_t wlen);
/* vm_cgroup_probe(), then the memory and cpu controllers enabled down to parent, made if missing. */
int vm_cgroup_delegate(const char *root, const char *own, char *parent, size_t plen, char *why, size_t wlen);
/* memory.max and cpu.max of a leaf for lim, as the files take them. */
void vm_cgroup_format(const struct vm_cgroup_limits *lim, char *memory_max, size_t mlen, char *cpu_max,
		      size_t clen);
/* parent/id with lim's limits (a stale one of that id replaced); its directory open for CLONE_INTO_CGROUP. */
int vm_cgroup_leaf(const char *parent, const char *id, const struct vm_cgroup_limits *lim, int *fd,
		   sm_error **err);
/* Removes parent's leaves that are no VM's: their id has no directory in runtime_base. */
void vm_cgroup_sweep(const char *parent, const char *runtime_base);

/*
 * This process's leaf for VM id at the real hierarchy: made (sweeping
 * stale ones) and opened into *fd, or *fd = -1 with why logged where
 * the host allows none. -1 with err only for a leaf that failed to be
 * made where leaves can be.
 */
int vm_cgroup_start(const char *id, const struct vm_cgroup_limits *lim, int *fd, sm_error **err);
/* Opens VM id's leaf (a restart), or -1 when it has none. */
int vm_cgroup_open(const char *id);
/* Removes VM id's leaf, once its worker ended (a populated leaf stays: EBUSY). */
void vm_cgroup_remove(const char *id);
/* vm_cgroup_sweep() at the real hierarchy (`system prune`). */
void vm_cgroup_prune(const char *runtime_base);
/* The leaves' parent at the real hierarchy for `check`: 0, or -1 with why. */
int vm_cgroup_host(char *parent, size_t plen, char *why, size_t wlen);

#endif
