/*
 * The Linux x86 boot protocol's zero page (struct boot_params) and the
 * e820 memory map in it (Documentation/x86/boot.rst, zero-page.rst).
 */
#ifndef SM_VMM_X86_BOOTPARAMS_H
#define SM_VMM_X86_BOOTPARAMS_H

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "base/guest_mem.h"

#define X86_E820_RAM 1
#define X86_E820_RESERVED 2

/*
 * The memory map of a guest with RAM `m`: base memory up to the MP table,
 * the MP table's KiB reserved, then every RAM region from 1 MiB up (the
 * legacy VGA/BIOS range stays out of the map, as on a PC). Returns the
 * number of entries written, at most max.
 */
unsigned x86_e820_fill(const struct guest_mem *m, struct boot_e820_entry *e, unsigned max);

struct x86_boot_setup {
	uint64_t cmdline_gpa;
	uint32_t cmdline_size; /* bytes including the NUL */
	uint64_t initrd_gpa;   /* 0 = no initrd */
	uint64_t initrd_size;
	/* A bzImage's own setup header (bytes from offset 0x1f1), copied in
	 * first so the kernel sees its own fields; NULL for an ELF vmlinux. */
	const uint8_t *setup_header;
	size_t setup_header_len;
	uint32_t code32_start; /* bzImage load address */
};

/* Fills a zeroed boot_params for a 64-bit boot protocol entry. */
void x86_bootparams_fill(struct boot_params *bp, const struct guest_mem *m,
			 const struct x86_boot_setup *s);

#endif
