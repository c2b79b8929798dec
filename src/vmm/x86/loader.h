/*
 * Loading a Linux kernel for the 64-bit boot protocol: an uncompressed ELF
 * vmlinux (segments at their physical addresses, entry = e_entry) or a
 * bzImage (protected-mode part at code32_start, entry = code32_start +
 * 0x200, its setup header handed to the kernel in boot_params).
 */
#ifndef SM_VMM_X86_LOADER_H
#define SM_VMM_X86_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/guest_mem.h"
#include "base/log.h"

#define X86_KERNEL_MAX_SEGMENTS 16
#define X86_SETUP_HEADER_MAX 0x80

struct x86_kernel_segment {
	uint64_t paddr, offset, filesz, memsz;
};

struct x86_kernel {
	bool bzimage;
	uint64_t entry;
	uint64_t load_end; /* first byte past what the kernel needs at boot */
	uint64_t initrd_max; /* an initrd must end at or below this address */
	/* ELF */
	unsigned nseg;
	struct x86_kernel_segment seg[X86_KERNEL_MAX_SEGMENTS];
	/* bzImage */
	uint8_t setup_header[X86_SETUP_HEADER_MAX];
	uint32_t setup_header_len;
	uint32_t code32_start;
	uint64_t pm_offset, pm_size;
};

/*
 * Reads and checks the kernel image in fd (named path in messages) without
 * touching guest memory, so a bad kernel or too little RAM is reported
 * before anything runs. Returns 0, or -EINVAL/-errno with err filled.
 */
int x86_kernel_probe(int fd, const char *path, struct x86_kernel *k, struct vmm_err *err);

/* Copies the probed kernel into guest RAM. */
int x86_kernel_load(int fd, const char *path, const struct x86_kernel *k,
		    const struct guest_mem *m, struct vmm_err *err);

/*
 * Where an initrd of `size` bytes goes: page-aligned at the top of low RAM
 * (under k->initrd_max), above the kernel. Returns 0 and *gpa, or -ENOMEM
 * with err saying how much RAM would be needed.
 */
int x86_initrd_place(const struct x86_kernel *k, uint64_t low_ram_end, uint64_t size,
		     uint64_t *gpa, struct vmm_err *err);

#endif
