/* vCPU threads: KVM_RUN and the exits that come back to user space. */
#ifndef SM_VMM_VCPU_H
#define SM_VMM_VCPU_H

#include "vmm/vm.h"

/* Installs the (empty) handler of the signal that kicks a vCPU out of KVM_RUN. */
int vcpu_signal_setup(void);

int vcpu_thread_start(struct vcpu *v);
void vcpu_thread_join(struct vcpu *v);

/* Makes the vCPU leave KVM_RUN (or not enter it) and look at the VM state. */
void vcpu_kick(struct vcpu *v);

/* Dispatches one I/O or MMIO access to the bus (exposed for tests). */
void vcpu_pio(struct vm *vm, uint16_t port, bool write, void *data, uint32_t len);
void vcpu_mmio(struct vm *vm, uint64_t addr, bool write, void *data, uint32_t len);

#endif
