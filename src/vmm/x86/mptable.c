#include "vmm/x86/mptable.h"

#include <errno.h>
#include <string.h>

#include "vmm/x86/layout.h"

#define MP_SPEC_REV 4 /* 1.4 */
#define MP_APIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11

enum mp_entry_type {
	MP_PROCESSOR = 0,
	MP_BUS = 1,
	MP_IOAPIC = 2,
	MP_INTSRC = 3,
	MP_LINTSRC = 4,
};

enum mp_irq_type {
	MP_INT = 0,
	MP_NMI = 1,
	MP_EXTINT = 3,
};

#define MP_CPU_ENABLED 1
#define MP_CPU_BSP 2
#define MP_IOAPIC_ENABLED 1
#define MP_ISA_BUS 0
#define MP_ALL_LAPICS 0xff

struct mpf {
	char signature[4];
	uint32_t physptr;
	uint8_t length; /* in 16-byte units */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mpc_header {
	char signature[4];
	uint16_t length;
	uint8_t spec_rev;
	uint8_t checksum;
	char oem[8];
	char product[12];
	uint32_t oem_ptr;
	uint16_t oem_size;
	uint16_t count;
	uint32_t lapic_addr;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type;
	uint8_t apic_id;
	uint8_t apic_ver;
	uint8_t flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type;
	uint8_t id;
	char bus_type[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type;
	uint8_t id;
	uint8_t version;
	uint8_t flags;
	uint32_t addr;
} __attribute__((packed));

struct mpc_irq {
	uint8_t type;
	uint8_t irq_type;
	uint16_t flags; /* 0: polarity and trigger conform to the bus (ISA: edge, high) */
	uint8_t src_bus;
	uint8_t src_irq;
	uint8_t dst_apic;
	uint8_t dst_pin;
} __attribute__((packed));

_Static_assert(sizeof(struct mpf) == 16, "MP floating pointer is 16 bytes");
_Static_assert(sizeof(struct mpc_header) == 44, "MP config header is 44 bytes");
_Static_assert(sizeof(struct mpc_cpu) == 20, "processor entry is 20 bytes");
_Static_assert(sizeof(struct mpc_bus) == 8, "bus entry is 8 bytes");
_Static_assert(sizeof(struct mpc_ioapic) == 8, "IOAPIC entry is 8 bytes");
_Static_assert(sizeof(struct mpc_irq) == 8, "interrupt entries are 8 bytes");

static size_t mpc_size(unsigned nvcpus)
{
	return sizeof(struct mpc_header) + nvcpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
	       sizeof(struct mpc_ioapic) + X86_IOAPIC_PINS * sizeof(struct mpc_irq) +
	       2 * sizeof(struct mpc_irq);
}

size_t x86_mptable_size(unsigned nvcpus)
{
	return sizeof(struct mpf) + mpc_size(nvcpus);
}

static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

/* Appends one entry at *pos; the caller sized the buffer beforehand. */
static void mp_put(uint8_t *buf, size_t *pos, const void *entry, size_t len)
{
	memcpy(buf + *pos, entry, len);
	*pos += len;
}

int x86_mptable_write(uint8_t *buf, size_t len, uint64_t gpa, unsigned nvcpus,
		      uint32_t cpu_signature, uint32_t cpu_features)
{
	if (nvcpus == 0 || nvcpus > X86_MAX_VCPUS)
		return -EINVAL;
	size_t total = x86_mptable_size(nvcpus);
	if (len < total || gpa + total > UINT32_MAX)
		return -ENOSPC;
	memset(buf, 0, total);

	uint8_t *mpc = buf + sizeof(struct mpf);
	uint8_t ioapic_id = (uint8_t)nvcpus;
	size_t pos = sizeof(struct mpc_header);
	uint16_t count = 0;

	for (unsigned i = 0; i < nvcpus; i++, count++) {
		struct mpc_cpu c = {
			.type = MP_PROCESSOR,
			.apic_id = (uint8_t)i,
			.apic_ver = MP_APIC_VERSION,
			.flags = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
			.signature = cpu_signature,
			.features = cpu_features,
		};
		mp_put(mpc, &pos, &c, sizeof(c));
	}
	struct mpc_bus bus = { .type = MP_BUS, .id = MP_ISA_BUS, .bus_type = "ISA   " };
	mp_put(mpc, &pos, &bus, sizeof(bus));
	count++;
	struct mpc_ioapic io = {
		.type = MP_IOAPIC,
		.id = ioapic_id,
		.version = MP_IOAPIC_VERSION,
		.flags = MP_IOAPIC_ENABLED,
		.addr = (uint32_t)X86_IOAPIC_ADDR,
	};
	mp_put(mpc, &pos, &io, sizeof(io));
	count++;
	/* KVM's default routing sends GSI n to IOAPIC pin n: say exactly that. */
	for (unsigned pin = 0; pin < X86_IOAPIC_PINS; pin++, count++) {
		struct mpc_irq irq = {
			.type = MP_INTSRC,
			.irq_type = MP_INT,
			.src_bus = MP_ISA_BUS,
			.src_irq = (uint8_t)pin,
			.dst_apic = ioapic_id,
			.dst_pin = (uint8_t)pin,
		};
		mp_put(mpc, &pos, &irq, sizeof(irq));
	}
	struct mpc_irq lint[2] = {
		{ .type = MP_LINTSRC, .irq_type = MP_EXTINT, .src_bus = MP_ISA_BUS,
		  .dst_apic = MP_ALL_LAPICS, .dst_pin = 0 },
		{ .type = MP_LINTSRC, .irq_type = MP_NMI, .src_bus = MP_ISA_BUS,
		  .dst_apic = MP_ALL_LAPICS, .dst_pin = 1 },
	};
	mp_put(mpc, &pos, lint, sizeof(lint));
	count += 2;

	struct mpc_header h = {
		.signature = "PCMP",
		.length = (uint16_t)pos,
		.spec_rev = MP_SPEC_REV,
		.oem = "SUPERMCH",
		.product = "MICROVM     ",
		.count = count,
		.lapic_addr = (uint32_t)X86_LAPIC_ADDR,
	};
	memcpy(mpc, &h, sizeof(h));
	mpc[offsetof(struct mpc_header, checksum)] = mp_checksum(mpc, pos);

	struct mpf f = {
		.signature = "_MP_",
		.physptr = (uint32_t)(gpa + sizeof(struct mpf)),
		.length = 1,
		.spec_rev = MP_SPEC_REV,
	};
	memcpy(buf, &f, sizeof(f));
	buf[offsetof(struct mpf, checksum)] = mp_checksum(buf, sizeof(f));
	return (int)(sizeof(struct mpf) + pos);
}
