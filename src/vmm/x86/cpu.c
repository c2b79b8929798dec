#include "vmm/x86/cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/x86/layout.h"

#define CR0_PE (1ULL << 0)
#define CR0_ET (1ULL << 4)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_PRESENT (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)

#define GDT_CODE64 0xa09b /* present, DPL0, code, exec/read, accessed; L=1, G=1 */
#define GDT_DATA 0xc093   /* present, DPL0, data, read/write, accessed; D=1, G=1 */
#define GDT_TSS 0x808b    /* present, 64-bit busy TSS; G=1 */
#define GDT_ENTRIES 5

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define MISC_ENABLE_FAST_STRING 1ULL
#define MTRR_ENABLE (1ULL << 11)
#define MTRR_TYPE_WB 6ULL

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 4u
#define APIC_MODE_EXTINT 7u

uint64_t x86_gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (uint64_t)(limit & 0xffffu) | ((uint64_t)(limit & 0xf0000u) << 32) |
	       ((uint64_t)(flags & 0xf0ffu) << 40);
}

int x86_boot_tables_write(const struct guest_mem *m)
{
	uint64_t *gdt = guest_mem_ptr(m, X86_GDT_ADDR, GDT_ENTRIES * 8);
	uint64_t *pml4 = guest_mem_ptr(m, X86_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(m, X86_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(m, X86_PD_ADDR, 4 * 4096);

	if (!gdt || !pml4 || !pdpt || !pd)
		return -EFAULT;
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[X86_BOOT_CS / 8] = x86_gdt_entry(GDT_CODE64, 0, 0xfffff);
	gdt[X86_BOOT_DS / 8] = x86_gdt_entry(GDT_DATA, 0, 0xfffff);
	gdt[X86_BOOT_TSS / 8] = x86_gdt_entry(GDT_TSS, 0, 0xfffff);

	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = X86_PDPT_ADDR | PTE_PRESENT | PTE_RW;
	for (uint64_t g = 0; g < 4; g++) {
		pdpt[g] = (X86_PD_ADDR + g * 4096) | PTE_PRESENT | PTE_RW;
		for (uint64_t i = 0; i < 512; i++)
			pd[g * 512 + i] = ((g << 30) + (i << 21)) | PTE_PRESENT | PTE_RW | PTE_PS;
	}
	return 0;
}

static int vcpu_set_msrs(int fd)
{
	static const struct {
		uint32_t index;
		uint64_t data;
	} boot_msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 },
		{ MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 },
		{ MSR_CSTAR, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
		{ MSR_SYSCALL_MASK, 0 },
		{ MSR_LSTAR, 0 },
		{ MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
		/* Without this the guest sees all memory as uncached: slow. */
		{ MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WB },
	};
	const unsigned n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + n * sizeof(struct kvm_msr_entry));

	if (!msrs)
		return -ENOMEM;
	msrs->nmsrs = n;
	for (unsigned i = 0; i < n; i++) {
		msrs->entries[i].index = boot_msrs[i].index;
		msrs->entries[i].data = boot_msrs[i].data;
	}
	int rc = ioctl(fd, KVM_SET_MSRS, msrs);
	free(msrs);
	if (rc < 0)
		return -errno;
	return rc == (int)n ? 0 : -EINVAL;
}

static uint32_t lvt_mode(uint32_t lvt, uint32_t mode)
{
	return (lvt & ~0x700u) | (mode << 8);
}

static int vcpu_set_lint(int fd)
{
	struct kvm_lapic_state lapic;
	uint32_t v;

	if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	memcpy(&v, &lapic.regs[APIC_LVT0], 4);
	v = lvt_mode(v, APIC_MODE_EXTINT);
	memcpy(&lapic.regs[APIC_LVT0], &v, 4);
	memcpy(&v, &lapic.regs[APIC_LVT1], 4);
	v = lvt_mode(v, APIC_MODE_NMI);
	memcpy(&lapic.regs[APIC_LVT1], &v, 4);
	if (ioctl(fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

int x86_vcpu_init(int vcpu_fd, const struct kvm_cpuid2 *cpuid)
{
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0)
		return -errno;
	int rc = vcpu_set_msrs(vcpu_fd);
	if (rc < 0)
		return rc;
	return vcpu_set_lint(vcpu_fd);
}

static struct kvm_segment boot_segment(uint16_t selector, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = selector,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = code ? 0 : 1,
		.s = 1,
		.l = code ? 1 : 0,
		.g = 1,
	};
}

int x86_vcpu_boot_regs(int vcpu_fd, uint64_t entry)
{
	struct kvm_sregs sregs;
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	struct kvm_regs regs = {
		.rflags = 0x2,
		.rip = entry,
		.rsp = X86_BOOT_STACK_ADDR,
		.rbp = X86_BOOT_STACK_ADDR,
		.rsi = X86_ZERO_PAGE_ADDR,
	};

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs = boot_segment(X86_BOOT_CS, 0xb, true);
	sregs.ds = boot_segment(X86_BOOT_DS, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = boot_segment(X86_BOOT_TSS, 0xb, false);
	sregs.tr.s = 0;
	sregs.tr.db = 0;
	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = GDT_ENTRIES * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
	sregs.cr3 = X86_PML4_ADDR;
	sregs.cr4 = CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}
