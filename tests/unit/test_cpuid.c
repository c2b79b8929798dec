/*
 * The CPUID rewrite over a synthetic KVM_GET_SUPPORTED_CPUID answer: the
 * topology leaves must describe nvcpus single-threaded cores in one
 * package, with APIC ID = vCPU index.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/x86/cpuid.h"

static struct kvm_cpuid2 *base;

static void add(uint32_t fn, uint32_t idx, uint32_t flags, uint32_t a, uint32_t b, uint32_t c,
		uint32_t d)
{
	base->entries[base->nent++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = idx, .flags = flags, .eax = a, .ebx = b, .ecx = c, .edx = d,
	};
}

static void host(const char *vendor)
{
	uint32_t v[3];
	memcpy(v, vendor, 12);
	base = calloc(1, sizeof(*base) + 32 * sizeof(struct kvm_cpuid_entry2));
	add(0, 0, 0, 0x1f, v[0], v[2], v[1]);
	/* host: APIC ID 7, 16 logical CPUs */
	add(1, 0, 0, 0x000806f1, 0x07100800, 0x7ed8320b, 0x178bfbff);
	add(4, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0x1c004121, 0, 0, 0);
	add(4, 3, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0x3c07c163, 0, 0, 0);
	add(0xb, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 1, 2, 0x100, 7);
	add(0xb, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 4, 16, 0x201, 7);
	add(0x1f, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 1, 2, 0x100, 7);
	add(0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	add(0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	add(0x80000008, 0, 0, 0x3030, 0, 0x700f, 0);
	add(0x8000001e, 0, 0, 0x0e, 0x0107, 0, 0);
}

static void fini(void) { free(base); }

TestSuite(cpuid, .fini = fini);

static struct kvm_cpuid2 *for_vcpu(unsigned i, unsigned n)
{
	struct kvm_cpuid2 *c = x86_cpuid_dup(base);
	cr_assert_not_null(c);
	cr_assert_eq(x86_cpuid_for_vcpu(c, i, n), 0);
	return c;
}

Test(cpuid, leaf1_apic_id_count_and_hypervisor_bit)
{
	host("GenuineIntel");
	for (unsigned i = 0; i < 4; i++) {
		struct kvm_cpuid2 *c = for_vcpu(i, 4);
		struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, 1, 0);
		cr_assert_eq(e->ebx >> 24, i, "initial APIC ID");
		cr_assert_eq((e->ebx >> 16) & 0xff, 4, "logical processors per package");
		cr_assert_eq(e->ebx & 0xffff, 0x0800, "CLFLUSH line size kept");
		cr_assert(e->ecx & (1u << 31), "hypervisor present");
		cr_assert(e->edx & (1u << 28), "HTT with more than one CPU");
		cr_assert_not_null(x86_cpuid_find(c, 0x40000001, 0), "KVM paravirt leaves kept");
		free(c);
	}
	struct kvm_cpuid2 *c = for_vcpu(0, 1);
	cr_assert_not(x86_cpuid_find(c, 1, 0)->edx & (1u << 28), "no HTT alone");
	free(c);
}

Test(cpuid, leaf_b_describes_cores_not_threads)
{
	host("GenuineIntel");
	struct kvm_cpuid2 *c = for_vcpu(5, 6);
	struct kvm_cpuid_entry2 *smt = x86_cpuid_find(c, 0xb, 0);
	struct kvm_cpuid_entry2 *core = x86_cpuid_find(c, 0xb, 1);
	struct kvm_cpuid_entry2 *end = x86_cpuid_find(c, 0xb, 2);

	cr_assert_not_null(smt);
	cr_assert_not_null(core);
	cr_assert_not_null(end);
	cr_assert_eq(smt->eax & 0x1f, 0, "no SMT bits in the APIC ID");
	cr_assert_eq(smt->ebx & 0xffff, 1, "one thread per core");
	cr_assert_eq((smt->ecx >> 8) & 0xff, 1, "level type SMT");
	cr_assert_eq(core->eax & 0x1f, 3, "6 cores need 3 APIC ID bits");
	cr_assert_eq(core->ebx & 0xffff, 6);
	cr_assert_eq((core->ecx >> 8) & 0xff, 2, "level type core");
	cr_assert_eq((end->ecx >> 8) & 0xff, 0, "invalid level ends the list");
	cr_assert_eq(smt->edx, 5, "x2APIC ID");
	cr_assert_eq(core->edx, 5);
	cr_assert_eq(x86_cpuid_find(c, 0x1f, 1)->ebx & 0xffff, 6, "leaf 0x1F mirrors 0xB");

	/* leaf 4: cores per package, L3 shared by all, L1 per core */
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != 4)
			continue;
		cr_assert_eq(e->eax >> 26, 5, "cores per package - 1");
		uint32_t sharing = (e->eax >> 14) & 0xfff;
		cr_assert_eq(sharing, ((e->eax >> 5) & 7) == 3 ? 5u : 0u);
	}
	free(c);
}

Test(cpuid, amd_core_count_and_ids)
{
	host("AuthenticAMD");
	struct kvm_cpuid2 *c = for_vcpu(2, 3);
	struct kvm_cpuid_entry2 *e8 = x86_cpuid_find(c, 0x80000008, 0);
	struct kvm_cpuid_entry2 *e1e = x86_cpuid_find(c, 0x8000001e, 0);

	cr_assert_eq(e8->ecx & 0xff, 2, "NC = cores - 1");
	cr_assert_eq((e8->ecx >> 12) & 0xf, 2, "ApicIdCoreIdSize");
	cr_assert_eq(e1e->eax, 2, "extended APIC ID");
	cr_assert_eq(e1e->ebx & 0xff, 2, "core ID");
	cr_assert_eq((e1e->ebx >> 8) & 0xff, 0, "one thread per core");
	free(c);
}

Test(cpuid, rejects_bad_indices)
{
	host("GenuineIntel");
	struct kvm_cpuid2 *c = x86_cpuid_dup(base);
	cr_assert_neq(x86_cpuid_for_vcpu(c, 4, 4), 0);
	cr_assert_neq(x86_cpuid_for_vcpu(c, 0, 0), 0);
	cr_assert_neq(x86_cpuid_for_vcpu(c, 0, 33), 0);
	free(c);
}
