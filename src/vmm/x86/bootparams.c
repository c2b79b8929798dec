#include "vmm/x86/bootparams.h"

#include <string.h>

#include "vmm/x86/layout.h"

#define BOOT_FLAG_MAGIC 0xaa55
#define SETUP_HEADER_MAGIC 0x53726448 /* "HdrS" */
#define LOADER_UNDEFINED 0xff
#define SETUP_HEADER_OFFSET 0x1f1

static unsigned e820_add(struct boot_e820_entry *e, unsigned n, unsigned max, uint64_t addr,
			 uint64_t size, uint32_t type)
{
	if (n >= max || size == 0)
		return n;
	e[n].addr = addr;
	e[n].size = size;
	e[n].type = type;
	return n + 1;
}

unsigned x86_e820_fill(const struct guest_mem *m, struct boot_e820_entry *e, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		uint64_t end = r->gpa + r->size;
		if (r->gpa >= X86_HIMEM_START) {
			n = e820_add(e, n, max, r->gpa, r->size, X86_E820_RAM);
			continue;
		}
		/* The region holding low memory: carve out the MP table and the
		 * legacy hole exactly as the guest expects to find them. */
		if (r->gpa < X86_MPTABLE_ADDR) {
			uint64_t top = end < X86_MPTABLE_ADDR ? end : X86_MPTABLE_ADDR;
			n = e820_add(e, n, max, r->gpa, top - r->gpa, X86_E820_RAM);
		}
		if (end > X86_MPTABLE_ADDR)
			n = e820_add(e, n, max, X86_MPTABLE_ADDR,
				     (end < X86_EBDA_END ? end : X86_EBDA_END) - X86_MPTABLE_ADDR,
				     X86_E820_RESERVED);
		if (end > X86_HIMEM_START)
			n = e820_add(e, n, max, X86_HIMEM_START, end - X86_HIMEM_START, X86_E820_RAM);
	}
	return n;
}

void x86_bootparams_fill(struct boot_params *bp, const struct guest_mem *m,
			 const struct x86_boot_setup *s)
{
	struct setup_header *h = &bp->hdr;

	if (s->setup_header) {
		size_t max = sizeof(*bp) - SETUP_HEADER_OFFSET;
		size_t len = s->setup_header_len < max ? s->setup_header_len : max;
		memcpy((uint8_t *)bp + SETUP_HEADER_OFFSET, s->setup_header, len);
		h->code32_start = s->code32_start;
	} else {
		/* An ELF vmlinux has no header of its own: give it the fields a
		 * 2.10+ boot loader would have found in one. */
		h->boot_flag = BOOT_FLAG_MAGIC;
		h->header = SETUP_HEADER_MAGIC;
		h->version = 0x020f;
		h->kernel_alignment = 0x1000000;
		h->cmdline_size = s->cmdline_size ? s->cmdline_size - 1 : 0;
	}
	h->type_of_loader = LOADER_UNDEFINED;
	h->loadflags |= LOADED_HIGH;
	h->cmd_line_ptr = (uint32_t)s->cmdline_gpa;
	bp->ext_cmd_line_ptr = (uint32_t)(s->cmdline_gpa >> 32);
	h->ramdisk_image = (uint32_t)s->initrd_gpa;
	h->ramdisk_size = (uint32_t)s->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(s->initrd_gpa >> 32);
	bp->ext_ramdisk_size = (uint32_t)(s->initrd_size >> 32);
	bp->e820_entries = (uint8_t)x86_e820_fill(m, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
}
