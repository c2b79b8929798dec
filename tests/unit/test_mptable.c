/* MP tables checked against the MultiProcessor Specification 1.4, chapter 4. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vmm/x86/layout.h"
#include "vmm/x86/mptable.h"

#define GPA 0x9fc00

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

static uint32_t le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static void check_table(unsigned n)
{
	uint8_t buf[1024];
	memset(buf, 0xee, sizeof(buf));
	int len = x86_mptable_write(buf, sizeof(buf), GPA, n, 0x000806f1, 0x178bfbff);
	cr_assert_gt(len, 0, "%u vCPUs", n);
	cr_assert_eq((size_t)len, x86_mptable_size(n));
	cr_assert_leq(len, 0x400, "fits the last KiB of base memory");

	/* floating pointer structure */
	cr_assert_eq(memcmp(buf, "_MP_", 4), 0);
	cr_assert_eq(le32(buf + 4), GPA + 16, "PHYSICAL ADDRESS POINTER");
	cr_assert_eq(buf[8], 1, "LENGTH in paragraphs");
	cr_assert_eq(buf[9], 4, "SPEC_REV 1.4");
	cr_assert_eq(sum(buf, 16), 0, "floating pointer checksum");
	cr_assert_eq(buf[11], 0, "MP FEATURE 1: a configuration table is present");

	/* configuration table header */
	const uint8_t *t = buf + 16;
	uint16_t base_len = le16(t + 4);
	cr_assert_eq(memcmp(t, "PCMP", 4), 0);
	cr_assert_eq(base_len, len - 16);
	cr_assert_eq(t[6], 4);
	cr_assert_eq(sum(t, base_len), 0, "configuration table checksum");
	cr_assert_eq(le16(t + 34), n + 1 + 1 + 24 + 2, "ENTRY COUNT");
	cr_assert_eq(le32(t + 36), X86_LAPIC_ADDR, "local APIC address");
	cr_assert_eq(le16(t + 40), 0, "no extended table");

	/* entries, in the order the spec asks: processors, buses, I/O APICs, interrupts */
	const uint8_t *e = t + 44;
	for (unsigned i = 0; i < n; i++, e += 20) {
		cr_assert_eq(e[0], 0, "processor entry");
		cr_assert_eq(e[1], i, "local APIC ID");
		cr_assert_eq(e[3] & 1, 1, "CPU enabled");
		cr_assert_eq((e[3] >> 1) & 1, i == 0, "only CPU 0 is the BSP");
		cr_assert_eq(le32(e + 4), 0x000806f1, "CPU signature");
		cr_assert_eq(le32(e + 8), 0x178bfbff, "feature flags");
	}
	cr_assert_eq(e[0], 1, "bus entry");
	cr_assert_eq(memcmp(e + 2, "ISA   ", 6), 0);
	uint8_t bus = e[1];
	e += 8;
	cr_assert_eq(e[0], 2, "I/O APIC entry");
	uint8_t ioapic = e[1];
	cr_assert_geq(ioapic, n, "I/O APIC ID clashes with a local APIC ID");
	cr_assert_eq(e[3] & 1, 1, "I/O APIC enabled");
	cr_assert_eq(le32(e + 4), X86_IOAPIC_ADDR);
	e += 8;
	for (unsigned pin = 0; pin < 24; pin++, e += 8) {
		cr_assert_eq(e[0], 3, "I/O interrupt assignment");
		cr_assert_eq(e[1], 0, "INT");
		cr_assert_eq(e[4], bus);
		cr_assert_eq(e[5], pin, "source IRQ");
		cr_assert_eq(e[6], ioapic);
		cr_assert_eq(e[7], pin, "INTIN#: KVM routes GSI n to pin n");
	}
	cr_assert_eq(e[0], 4, "local interrupt assignment");
	cr_assert_eq(e[1], 3, "ExtINT");
	cr_assert_eq(e[6], 0xff, "all local APICs");
	cr_assert_eq(e[7], 0, "LINT0");
	e += 8;
	cr_assert_eq(e[0], 4);
	cr_assert_eq(e[1], 1, "NMI");
	cr_assert_eq(e[7], 1, "LINT1");
	e += 8;
	cr_assert_eq(e - buf, len);
	cr_assert_eq(buf[len], 0xee, "nothing written past the table");
}

Test(mptable, one_cpu) { check_table(1); }
Test(mptable, four_cpus) { check_table(4); }
Test(mptable, thirty_two_cpus) { check_table(32); }

Test(mptable, refuses_bad_counts_and_small_buffers)
{
	uint8_t buf[1024];

	cr_assert_eq(x86_mptable_write(buf, sizeof(buf), GPA, 0, 0, 0), -EINVAL);
	cr_assert_eq(x86_mptable_write(buf, sizeof(buf), GPA, 33, 0, 0), -EINVAL);
	cr_assert_eq(x86_mptable_write(buf, x86_mptable_size(4) - 1, GPA, 4, 0, 0), -ENOSPC);
	cr_assert_eq(x86_mptable_write(buf, sizeof(buf), 0xfffffff0, 1, 0, 0), -ENOSPC,
		     "the table must be addressable with 32 bits");
}
