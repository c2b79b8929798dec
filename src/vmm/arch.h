/*
 * What vm.c asks of the architecture. x86_64 implements it in x86/arch.c;
 * an arm64 port adds its own file behind the same names.
 */
#ifndef SM_VMM_ARCH_H
#define SM_VMM_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/log.h"

struct vm;
struct vcpu;

/* Guest RAM is split around [start, end). */
uint64_t arch_mem_hole_start(void);
uint64_t arch_mem_hole_end(void);

/* Where virtio-mmio windows go and which GSIs they get. */
uint64_t arch_virtio_mmio_base(void);
uint32_t arch_virtio_gsi_first(void);
uint32_t arch_virtio_gsi_last(void);

/* The console UART's port range and IRQ. */
uint64_t arch_console_port(void);
uint32_t arch_console_irq(void);

/*
 * Checks, before any VM exists, that the kernel is one we can boot and that
 * it and the initrd (may be NULL) fit in mem_bytes of RAM.
 */
int arch_kernel_check(const char *kernel, const char *initrd, uint64_t mem_bytes,
		      struct vmm_err *err);

/* After KVM_CREATE_VM: interrupt controllers, timers, private pages. */
int arch_vm_setup(struct vm *vm, struct vmm_err *err);
/* After KVM_CREATE_VCPU: CPUID, MSRs, LAPIC. */
int arch_vcpu_setup(struct vm *vm, struct vcpu *v, struct vmm_err *err);
/* Kernel, initrd, command line, firmware tables, boot vCPU registers. */
int arch_boot_load(struct vm *vm, const char *kernel, const char *initrd, struct vmm_err *err);

/*
 * Snapshots (x86/snapshot.c). Setup runs once the vCPUs exist, before the
 * sandbox: it learns which MSRs this host's KVM saves and restores (a
 * restored VM adopts its snapshot's list when vCPU 0 is restored). Save
 * and restore write and read the architecture's own sections (VMST and
 * VCPU n); failures are recorded in the writer or reader, named after the
 * section. `first` is false for a reset in place of a vCPU that already
 * ran (its CPUID and TSC rate stay as they are).
 */
struct snap_writer;
struct snap_reader;
int arch_snapshot_setup(struct vm *vm, struct vmm_err *err);
void arch_vm_save(struct vm *vm, struct snap_writer *w);
int arch_vm_restore(struct vm *vm, struct snap_reader *r);
void arch_vcpu_save(struct vm *vm, struct vcpu *v, struct snap_writer *w);
int arch_vcpu_restore(struct vm *vm, struct vcpu *v, struct snap_reader *r, bool first);
/* The vCPU was (or is) stopped by the host: tell the guest's clock. */
void arch_vcpu_paused(struct vcpu *v);

#endif
