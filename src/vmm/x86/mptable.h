/*
 * Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI
 * learns its CPUs, its IOAPIC and how ISA interrupts are wired to it.
 */
#ifndef SM_VMM_X86_MPTABLE_H
#define SM_VMM_X86_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define X86_MAX_VCPUS 32

/* Bytes the floating pointer + configuration table take for n vCPUs. */
size_t x86_mptable_size(unsigned nvcpus);

/*
 * Writes the MP floating pointer followed by the configuration table into
 * buf (which the guest sees at guest-physical gpa). One processor entry per
 * vCPU with APIC ID = index, one ISA bus, one IOAPIC (ID nvcpus), every
 * IOAPIC pin wired identity from ISA IRQ n, LINT0 = ExtINT and LINT1 = NMI.
 * cpu_signature and cpu_features are CPUID.1 EAX and EDX.
 * Returns bytes written, or -EINVAL (bad nvcpus) / -ENOSPC (buf too small).
 */
int x86_mptable_write(uint8_t *buf, size_t len, uint64_t gpa, unsigned nvcpus,
		      uint32_t cpu_signature, uint32_t cpu_features);

#endif
