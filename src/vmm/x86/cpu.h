/*
 * The state a vCPU starts in for the 64-bit boot protocol: long mode with
 * an identity map of the first 4 GiB, a flat GDT with the selectors the
 * protocol names, interrupts off, %rsi = the zero page; plus the MSRs and
 * LAPIC LINT wiring a Linux guest expects from firmware.
 */
#ifndef SM_VMM_X86_CPU_H
#define SM_VMM_X86_CPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/guest_mem.h"

/* Writes the boot GDT and identity page tables into guest RAM. -EFAULT if RAM is too small. */
int x86_boot_tables_write(const struct guest_mem *m);

/* CPUID, MSRs and LAPIC LINT pins: every vCPU. */
int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *cpuid);

/* Registers for the boot vCPU: enter the kernel at `entry` in long mode. */
int x86_vcpu_boot_regs(int vcpu_fd, uint64_t entry);

/* The GDT entry encoding (flags = access byte | flags nibble << 12). */
uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);

#endif
