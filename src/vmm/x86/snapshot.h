/*
 * x86_64 snapshot state (x86/snapshot.c implements arch.h's arch_vm_save,
 * arch_vcpu_restore and friends); the pure helpers are here for tests.
 */
#ifndef SM_VMM_X86_SNAPSHOT_H
#define SM_VMM_X86_SNAPSHOT_H

#include <stdint.h>

/*
 * Orders an MSR index list for KVM_SET_MSRS: MSR_IA32_TSC first and
 * MSR_IA32_TSC_DEADLINE last (the deadline is relative to the TSC that
 * was just set; written before it, KVM would fire or lose the timer),
 * everything else in its original order.
 */
void x86_msr_order(uint32_t *idx, uint32_t n);

#endif
