#include "vmm/arch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/vm.h"
#include "vmm/x86/bootparams.h"
#include "vmm/x86/cpu.h"
#include "vmm/x86/cpuid.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/loader.h"
#include "vmm/x86/mptable.h"

uint64_t arch_mem_hole_start(void)
{
	return X86_MMIO_HOLE_START;
}

uint64_t arch_mem_hole_end(void)
{
	return X86_MMIO_HOLE_END;
}

uint64_t arch_virtio_mmio_base(void)
{
	return X86_VIRTIO_MMIO_BASE;
}

uint32_t arch_virtio_gsi_first(void)
{
	return X86_VIRTIO_GSI_FIRST;
}

uint32_t arch_virtio_gsi_last(void)
{
	return X86_IOAPIC_PINS - 1;
}

uint64_t arch_console_port(void)
{
	return X86_SERIAL_PORT;
}

uint32_t arch_console_irq(void)
{
	return X86_SERIAL_IRQ;
}

int arch_vm_setup(struct vm *vm, struct vmm_err *err)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t idmap = X86_KVM_IDENTITY_MAP_ADDR;

	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return vmm_err_set(err, -errno, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_KVM_TSS_ADDR) < 0)
		return vmm_err_set(err, -errno, "KVM_SET_TSS_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return vmm_err_set(err, -errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return vmm_err_set(err, -errno, "KVM_CREATE_PIT2: %s", strerror(errno));
	vm->cpuid = x86_cpuid_supported(vm->kvm_fd);
	if (!vm->cpuid)
		return vmm_err_set(err, -errno, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	if (!x86_cpuid_find(vm->cpuid, 0x40000001, 0))
		vmm_log("KVM offers no paravirt CPUID leaves: the guest will not use kvm-clock");
	return 0;
}

int arch_vcpu_setup(struct vm *vm, struct vcpu *v, struct vmm_err *err)
{
	struct kvm_cpuid2 *c = x86_cpuid_dup(vm->cpuid);
	int rc;

	if (!c)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	rc = x86_cpuid_for_vcpu(c, v->index, vm->nvcpus);
	if (rc < 0) {
		vmm_err_set(err, rc, "vCPU %u: KVM's CPUID lacks leaf 0 or 1", v->index);
		goto out;
	}
	rc = x86_vcpu_init(v->fd, c);
	if (rc < 0)
		vmm_err_set(err, rc, "vCPU %u: setting CPUID/MSRs/LAPIC: %s", v->index, strerror(-rc));
out:
	free(c);
	return rc;
}

static int open_input(const char *what, const char *path, uint64_t *size, struct vmm_err *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return vmm_err_set(err, -errno, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmm_err_set(err, -EINVAL, "%s %s: not a regular file", what, path);
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

int arch_kernel_check(const char *kernel, const char *initrd, uint64_t mem_bytes,
		      struct vmm_err *err)
{
	struct x86_kernel *k = calloc(1, sizeof(*k));
	uint64_t size, low = mem_bytes < X86_MMIO_HOLE_START ? mem_bytes : X86_MMIO_HOLE_START;
	int rc, fd = -1;

	if (!k)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	rc = fd = open_input("kernel", kernel, &size, err);
	if (fd < 0)
		goto out;
	rc = x86_kernel_probe(fd, kernel, k, err);
	if (rc < 0)
		goto out;
	if (k->load_end > low) {
		rc = vmm_err_set(err, -ENOMEM, "kernel %s needs %llu MiB of RAM; the VM has %llu MiB",
				 kernel, (unsigned long long)(k->load_end + (1 << 20) - 1) >> 20,
				 (unsigned long long)mem_bytes >> 20);
		goto out;
	}
	if (initrd) {
		uint64_t gpa;
		close(fd);
		rc = fd = open_input("initrd", initrd, &size, err);
		if (fd < 0)
			goto out;
		if (size == 0) {
			rc = vmm_err_set(err, -EINVAL, "initrd %s: empty file", initrd);
			goto out;
		}
		rc = x86_initrd_place(k, low, size, &gpa, err);
	}
out:
	if (fd >= 0)
		close(fd);
	free(k);
	return rc;
}

static int initrd_load(struct vm *vm, const struct x86_kernel *k, const char *path,
		       struct x86_boot_setup *s, struct vmm_err *err)
{
	uint64_t size;
	int fd = open_input("initrd", path, &size, err);

	if (fd < 0)
		return fd;
	int rc = -EINVAL;
	if (size == 0) {
		vmm_err_set(err, rc, "initrd %s: empty file", path);
		goto out;
	}
	rc = x86_initrd_place(k, guest_mem_low_end(&vm->mem), size, &s->initrd_gpa, err);
	if (rc < 0)
		goto out;
	uint8_t *dst = guest_mem_ptr(&vm->mem, s->initrd_gpa, size);
	for (uint64_t done = 0; done < size;) {
		ssize_t n = pread(fd, dst + done, size - done, (off_t)done);
		if (n <= 0) {
			rc = n < 0 ? -errno : -ENODATA;
			vmm_err_set(err, rc, "initrd %s: %s", path, n < 0 ? strerror(errno) : "short read");
			goto out;
		}
		done += (uint64_t)n;
	}
	s->initrd_size = size;
	rc = 0;
out:
	close(fd);
	return rc;
}

static int firmware_tables_write(struct vm *vm, struct vmm_err *err)
{
	struct kvm_cpuid_entry2 *leaf1 = x86_cpuid_find(vm->cpuid, 1, 0);
	size_t mp_len = x86_mptable_size(vm->nvcpus);
	uint8_t *mp = guest_mem_ptr(&vm->mem, X86_MPTABLE_ADDR, mp_len);

	if (!mp || mp_len > X86_EBDA_END - X86_MPTABLE_ADDR)
		return vmm_err_set(err, -ENOSPC, "MP table for %u vCPUs does not fit", vm->nvcpus);
	int rc = x86_mptable_write(mp, mp_len, X86_MPTABLE_ADDR, vm->nvcpus, leaf1 ? leaf1->eax : 0,
				   leaf1 ? leaf1->edx : 0);
	if (rc < 0)
		return vmm_err_set(err, rc, "writing the MP table: %s", strerror(-rc));
	if (x86_boot_tables_write(&vm->mem) < 0)
		return vmm_err_set(err, -EFAULT, "guest RAM too small for the boot page tables");
	return 0;
}

int arch_boot_load(struct vm *vm, const char *kernel, const char *initrd, struct vmm_err *err)
{
	struct x86_kernel *k = calloc(1, sizeof(*k));
	struct x86_boot_setup s = { .cmdline_gpa = X86_CMDLINE_ADDR };
	uint64_t ksize;
	int rc, fd = -1;

	if (!k)
		return vmm_err_set(err, -ENOMEM, "out of memory");
	rc = fd = open_input("kernel", kernel, &ksize, err);
	if (fd < 0)
		goto out;
	rc = x86_kernel_probe(fd, kernel, k, err);
	if (rc < 0)
		goto out;
	rc = x86_kernel_load(fd, kernel, k, &vm->mem, err);
	if (rc < 0)
		goto out;
	if (initrd) {
		rc = initrd_load(vm, k, initrd, &s, err);
		if (rc < 0)
			goto out;
	}

	if (vm->cmdline_len + 1 > X86_CMDLINE_MAX) {
		rc = vmm_err_set(err, -E2BIG, "kernel command line is %zu bytes; the limit is %d",
				 vm->cmdline_len, X86_CMDLINE_MAX - 1);
		goto out;
	}
	memcpy(guest_mem_ptr(&vm->mem, X86_CMDLINE_ADDR, X86_CMDLINE_MAX), vm->cmdline,
	       vm->cmdline_len + 1);
	s.cmdline_size = (uint32_t)vm->cmdline_len + 1;
	if (k->bzimage) {
		s.setup_header = k->setup_header;
		s.setup_header_len = k->setup_header_len;
		s.code32_start = k->code32_start;
	}
	struct boot_params *bp = guest_mem_ptr(&vm->mem, X86_ZERO_PAGE_ADDR, sizeof(*bp));
	memset(bp, 0, sizeof(*bp));
	x86_bootparams_fill(bp, &vm->mem, &s);

	rc = firmware_tables_write(vm, err);
	if (rc < 0)
		goto out;
	rc = x86_vcpu_boot_regs(vm->vcpus[0].fd, k->entry);
	if (rc < 0)
		vmm_err_set(err, rc, "setting boot vCPU registers: %s", strerror(-rc));
out:
	if (fd >= 0)
		close(fd);
	free(k);
	return rc;
}
