/*
 * The CPUID a vCPU sees: what KVM supports on this host, with the topology
 * rewritten to describe this VM (one package, one core per vCPU, one
 * thread per core, APIC ID = vCPU index) and the hypervisor bit set so the
 * guest finds KVM's paravirt leaves (kvm-clock).
 */
#ifndef SM_VMM_X86_CPUID_H
#define SM_VMM_X86_CPUID_H

#include <linux/kvm.h>
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

/* The entry for (function, index), or NULL. */
struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index);

#endif
