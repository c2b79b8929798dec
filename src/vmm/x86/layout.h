/*
 * Guest-physical layout of an x86_64 supermachine VM.
 *
 *   0x0000_0500  GDT (boot)
 *   0x0000_7000  boot_params (zero page)
 *   0x0000_8ff0  boot stack top (grows down, below the page tables)
 *   0x0000_9000  PML4, then PDPT, then four page directories (identity map
 *                of the first 4 GiB with 2 MiB pages)
 *   0x0002_0000  kernel command line
 *   0x0009_fc00  MP floating pointer + MP config table (last KiB of base
 *                memory, where Linux looks for it); reserved in the e820
 *   0x0010_0000  kernel (bzImage protected-mode part) / ELF load addresses
 *   ...          initrd, at the top of RAM below the MMIO hole
 *   0xc000_0000  start of the 32-bit MMIO hole (nothing of RAM above here
 *                until 4 GiB): virtio-mmio windows, IOAPIC, LAPIC
 */
#ifndef SM_VMM_X86_LAYOUT_H
#define SM_VMM_X86_LAYOUT_H

#define X86_GDT_ADDR 0x500ULL
#define X86_ZERO_PAGE_ADDR 0x7000ULL
#define X86_BOOT_STACK_ADDR 0x8ff0ULL
#define X86_PML4_ADDR 0x9000ULL
#define X86_PDPT_ADDR 0xa000ULL
#define X86_PD_ADDR 0xb000ULL /* 4 pages: 0xb000..0xefff */
#define X86_CMDLINE_ADDR 0x20000ULL
#define X86_CMDLINE_MAX 2048 /* COMMAND_LINE_SIZE on x86, NUL included */
#define X86_MPTABLE_ADDR 0x9fc00ULL
#define X86_EBDA_END 0xa0000ULL
#define X86_HIMEM_START 0x100000ULL

#define X86_MMIO_HOLE_START 0xc0000000ULL
#define X86_MMIO_HOLE_END 0x100000000ULL

/* Where virtio-mmio windows go, one 4 KiB page each. */
#define X86_VIRTIO_MMIO_BASE 0xd0000000ULL

#define X86_IOAPIC_ADDR 0xfec00000ULL
#define X86_LAPIC_ADDR 0xfee00000ULL

/* KVM's private pages for VMX (TSS, identity map); inside the hole. */
#define X86_KVM_TSS_ADDR 0xfffbd000ULL
#define X86_KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

/* IOAPIC pins: 0-15 legacy ISA, device GSIs from 5 up to 23. */
#define X86_IOAPIC_PINS 24
#define X86_SERIAL_PORT 0x3f8
#define X86_SERIAL_IRQ 4
#define X86_VIRTIO_GSI_FIRST 5

/* GDT selectors the 64-bit boot protocol asks for. */
#define X86_BOOT_CS 0x10
#define X86_BOOT_DS 0x18
#define X86_BOOT_TSS 0x20

#endif
