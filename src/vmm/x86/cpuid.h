/*
 * The CPUID a vCPU sees: what KVM supports on this host, with the topology
 * rewritten to describe this VM (one package, one core per vCPU, one
 * thread per core, APIC ID = vCPU index) and the hypervisor bit set so the
 * guest finds KVM's paravirt leaves (kvm-clock).
 */
#ifndef SM_VMM_X86_CPUID_H
#define SM_VMM_X86_CPUID_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

/* KVM_GET_SUPPORTED_CPUID, grown until it fits; NULL with errno set. */
struct kvm_cpuid2 *x86_cpuid_supported(int kvm_fd);

/* A copy of base, sized for the leaves this file may add; NULL on ENOMEM. */
struct kvm_cpuid2 *x86_cpuid_dup(const struct kvm_cpuid2 *base);

/*
 * Rewrites c (a copy of the supported set, with room from x86_cpuid_dup)
 * for vCPU `index` of `nvcpus`. Returns 0 or -EINVAL.
 */
int x86_cpuid_for_vcpu(struct kvm_cpuid2 *c, unsigned index, unsigned nvcpus);

/*
 * Can this host give a vCPU the CPUID `want` (a snapshot's)? Same vendor,
 * and no feature bit in the feature leaves (1, 7, 0xd.1, 0x80000001, KVM's
 * 0x40000001) that `have` (KVM_GET_SUPPORTED_CPUID) lacks, leaving out the
 * bits that follow CR4 or that x86_cpuid_for_vcpu sets. Returns 0, or
 * -EINVAL with why saying what is missing.
 */
int x86_cpuid_check(struct kvm_cpuid2 *want, struct kvm_cpuid2 *have, char *why, size_t len);

/* The entry for (function, index), or NULL. */
struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index);

#endif
