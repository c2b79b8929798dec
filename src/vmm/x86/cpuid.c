#include "vmm/x86/cpuid.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/x86/mptable.h"

#define CPUID_START_ENTRIES 128
#define CPUID_MAX_ENTRIES 4096
/* Room x86_cpuid_for_vcpu may need beyond what KVM gave: leaf 0xB/0x1F levels. */
#define CPUID_SPARE_ENTRIES 8

#define LEAF1_ECX_HYPERVISOR (1u << 31)
#define LEAF1_EDX_HTT (1u << 28)
#define TOPO_LEVEL_SMT 1
#define TOPO_LEVEL_CORE 2

static size_t cpuid_bytes(uint32_t nent)
{
	return sizeof(struct kvm_cpuid2) + nent * sizeof(struct kvm_cpuid_entry2);
}

struct kvm_cpuid2 *x86_cpuid_supported(int kvm_fd)
{
	for (uint32_t nent = CPUID_START_ENTRIES; nent <= CPUID_MAX_ENTRIES; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, cpuid_bytes(nent));
		if (!c)
			return NULL;
		c->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		int e = errno;
		free(c);
		if (e != E2BIG) {
			errno = e;
			return NULL;
		}
	}
	errno = E2BIG;
	return NULL;
}

struct kvm_cpuid2 *x86_cpuid_dup(const struct kvm_cpuid2 *base)
{
	struct kvm_cpuid2 *c = calloc(1, cpuid_bytes(base->nent + CPUID_SPARE_ENTRIES));

	if (!c)
		return NULL;
	memcpy(c, base, cpuid_bytes(base->nent));
	return c;
}

struct kvm_cpuid_entry2 *x86_cpuid_find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != function)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != index)
			continue;
		return e;
	}
	return NULL;
}

static bool cpuid_vendor_is(struct kvm_cpuid2 *c, const char *vendor)
{
	struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, 0, 0);
	char v[12];

	if (!e)
		return false;
	memcpy(v, &e->ebx, 4);
	memcpy(v + 4, &e->edx, 4);
	memcpy(v + 8, &e->ecx, 4);
	return memcmp(v, vendor, 12) == 0;
}

/* Bits needed to number n things (the x2APIC ID shift of a topology level). */
static uint32_t order_base_2(unsigned n)
{
	uint32_t bits = 0;

	while ((1u << bits) < n)
		bits++;
	return bits;
}

static void cpuid_remove(struct kvm_cpuid2 *c, uint32_t function)
{
	uint32_t out = 0;

	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function != function)
			c->entries[out++] = c->entries[i];
	c->nent = out;
}

/*
 * Leaves 0xB and 0x1F enumerate the levels of the x2APIC ID: SMT (one
 * thread per core, shift 0), core (nvcpus cores), then an invalid level
 * that ends the list.
 */
static void cpuid_set_ext_topology(struct kvm_cpuid2 *c, uint32_t leaf, unsigned index,
				   unsigned nvcpus)
{
	struct kvm_cpuid_entry2 levels[3] = {
		{ .eax = 0, .ebx = 1, .ecx = (TOPO_LEVEL_SMT << 8) | 0 },
		{ .eax = order_base_2(nvcpus), .ebx = nvcpus, .ecx = (TOPO_LEVEL_CORE << 8) | 1 },
		{ .eax = 0, .ebx = 0, .ecx = 2 },
	};

	cpuid_remove(c, leaf);
	for (uint32_t i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
		*e = levels[i];
		e->function = leaf;
		e->index = i;
		e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
		e->edx = index;
	}
}

/* Intel leaf 4: cores per package, and which caches the cores share. */
static void cpuid_set_cache_topology(struct kvm_cpuid2 *c, unsigned nvcpus)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != 4 || (e->eax & 0x1f) == 0)
			continue;
		uint32_t level = (e->eax >> 5) & 7;
		uint32_t sharing = level >= 3 ? nvcpus - 1 : 0;
		e->eax &= 0x3fff;
		e->eax |= (sharing & 0xfff) << 14;
		e->eax |= ((nvcpus - 1) & 0x3f) << 26;
	}
}

/* AMD: core count in 0x80000008 and the per-core IDs in 0x8000001E. */
static void cpuid_set_amd_topology(struct kvm_cpuid2 *c, unsigned index, unsigned nvcpus)
{
	struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, 0x80000008, 0);

	if (e) {
		e->ecx &= ~0xf0ffu;
		e->ecx |= (nvcpus - 1) & 0xff;
		e->ecx |= order_base_2(nvcpus) << 12;
	}
	e = x86_cpuid_find(c, 0x8000001e, 0);
	if (e) {
		e->eax = index;
		e->ebx = index & 0xff; /* core ID; threads per core - 1 = 0 */
		e->ecx = 0;            /* node 0, one node */
		e->edx = 0;
	}
}

int x86_cpuid_for_vcpu(struct kvm_cpuid2 *c, unsigned index, unsigned nvcpus)
{
	if (nvcpus == 0 || nvcpus > X86_MAX_VCPUS || index >= nvcpus)
		return -EINVAL;
	struct kvm_cpuid_entry2 *e = x86_cpuid_find(c, 0, 0);
	if (!e)
		return -EINVAL;
	uint32_t max_basic = e->eax;

	e = x86_cpuid_find(c, 1, 0);
	if (!e)
		return -EINVAL;
	e->ebx &= 0x0000ffffu;
	e->ebx |= (uint32_t)index << 24;
	e->ebx |= (uint32_t)nvcpus << 16;
	e->ecx |= LEAF1_ECX_HYPERVISOR;
	if (nvcpus > 1)
		e->edx |= LEAF1_EDX_HTT;
	else
		e->edx &= ~LEAF1_EDX_HTT;

	cpuid_set_cache_topology(c, nvcpus);
	if (max_basic >= 0xb)
		cpuid_set_ext_topology(c, 0xb, index, nvcpus);
	if (max_basic >= 0x1f)
		cpuid_set_ext_topology(c, 0x1f, index, nvcpus);
	if (cpuid_vendor_is(c, "AuthenticAMD") || cpuid_vendor_is(c, "HygonGenuine"))
		cpuid_set_amd_topology(c, index, nvcpus);
	return 0;
}

/* A feature register a snapshot's CPUID may only use bits of that the host offers. */
struct cpuid_feature_reg {
	uint32_t function, index;
	unsigned reg; /* 0 eax, 1 ebx, 2 ecx, 3 edx */
	uint32_t dynamic; /* bits KVM or we set on our own: not features to check */
};

static const struct cpuid_feature_reg feature_regs[] = {
	/* leaf 1 ecx: OSXSAVE follows CR4, HYPERVISOR is ours */
	{ 1, 0, 2, (1u << 27) | LEAF1_ECX_HYPERVISOR },
	{ 1, 0, 3, LEAF1_EDX_HTT },
	{ 7, 0, 1, 0 },
	{ 7, 0, 2, 1u << 4 }, /* OSPKE follows CR4 */
	{ 7, 0, 3, 0 },
	{ 7, 1, 0, 0 },
	{ 0xd, 1, 0, 0 },
	{ 0x80000001, 0, 2, 0 },
	{ 0x80000001, 0, 3, 0 },
	{ 0x40000001, 0, 0, 0 }, /* KVM paravirt features */
};

static const char *const reg_names[] = { "eax", "ebx", "ecx", "edx" };

static uint32_t cpuid_reg(const struct kvm_cpuid_entry2 *e, unsigned reg)
{
	switch (reg) {
	case 0: return e->eax;
	case 1: return e->ebx;
	case 2: return e->ecx;
	default: return e->edx;
	}
}

static bool cpuid_same_vendor(struct kvm_cpuid2 *want, struct kvm_cpuid2 *have)
{
	struct kvm_cpuid_entry2 *a = x86_cpuid_find(want, 0, 0), *b = x86_cpuid_find(have, 0, 0);

	return a && b && a->ebx == b->ebx && a->ecx == b->ecx && a->edx == b->edx;
}

int x86_cpuid_check(struct kvm_cpuid2 *want, struct kvm_cpuid2 *have, char *why, size_t len)
{
	if (!cpuid_same_vendor(want, have)) {
		snprintf(why, len, "another CPU vendor (leaf 0)");
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
		const struct cpuid_feature_reg *f = &feature_regs[i];
		struct kvm_cpuid_entry2 *w = x86_cpuid_find(want, f->function, f->index);
		if (!w)
			continue;
		struct kvm_cpuid_entry2 *h = x86_cpuid_find(have, f->function, f->index);
		uint32_t missing = cpuid_reg(w, f->reg) & ~f->dynamic & ~(h ? cpuid_reg(h, f->reg) : 0);
		if (missing) {
			snprintf(why, len, "leaf %#x.%u %s bits %#x are not offered here", f->function,
				 f->index, reg_names[f->reg], missing);
			return -EINVAL;
		}
	}
	return 0;
}
