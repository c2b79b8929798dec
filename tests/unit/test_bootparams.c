/*
 * The zero page, the boot page tables and GDT, and the kernel loader,
 * checked byte by byte against the x86 boot protocol
 * (Documentation/x86/boot.rst and zero-page.rst) rather than against our
 * own structs.
 */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/x86/bootparams.h"
#include "vmm/x86/cpu.h"
#include "vmm/x86/layout.h"
#include "vmm/x86/loader.h"

#define MIB (1ULL << 20)

static uint32_t le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t le16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint64_t le64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static struct guest_mem mem;

static void mem_alloc(uint64_t size)
{
	cr_assert_eq(guest_mem_alloc(&mem, size, X86_MMIO_HOLE_START, X86_MMIO_HOLE_END), 0);
}

static void mem_free(void) { guest_mem_free(&mem); }

TestSuite(bootparams, .fini = mem_free);

Test(bootparams, elf_zero_page_fields_at_protocol_offsets)
{
	mem_alloc(64 * MIB);
	uint8_t *zp = calloc(1, 4096);
	struct x86_boot_setup s = {
		.cmdline_gpa = X86_CMDLINE_ADDR,
		.cmdline_size = 12,
		.initrd_gpa = 0x3f00000,
		.initrd_size = 0x12345,
	};
	x86_bootparams_fill((struct boot_params *)zp, &mem, &s);

	cr_assert_eq(sizeof(struct boot_params), 4096);
	cr_assert_eq(le16(zp + 0x1fe), 0xaa55, "boot_flag");
	cr_assert_eq(memcmp(zp + 0x202, "HdrS", 4), 0, "header magic");
	cr_assert_geq(le16(zp + 0x206), 0x020a, "protocol version");
	cr_assert_eq(zp[0x210], 0xff, "type_of_loader: undefined");
	cr_assert(zp[0x211] & 1, "loadflags LOADED_HIGH");
	cr_assert_eq(le32(zp + 0x228), X86_CMDLINE_ADDR, "cmd_line_ptr");
	cr_assert_eq(le32(zp + 0x238), 11, "cmdline_size excludes the NUL");
	cr_assert_eq(le32(zp + 0x218), 0x3f00000, "ramdisk_image");
	cr_assert_eq(le32(zp + 0x21c), 0x12345, "ramdisk_size");
	cr_assert_eq(le32(zp + 0x0c0), 0, "ext_ramdisk_image");
	cr_assert_eq(le32(zp + 0x0c8), 0, "ext_cmd_line_ptr");
	cr_assert_eq(zp[0x1e8], 3, "e820_entries");
	free(zp);
}

Test(bootparams, bzimage_header_is_copied_then_loader_fields_set)
{
	mem_alloc(64 * MIB);
	uint8_t hdr[0x77];
	uint8_t *zp = calloc(1, 4096);
	for (unsigned i = 0; i < sizeof(hdr); i++)
		hdr[i] = (uint8_t)(0x40 + i);
	struct x86_boot_setup s = {
		.cmdline_gpa = X86_CMDLINE_ADDR,
		.cmdline_size = 5,
		.setup_header = hdr,
		.setup_header_len = sizeof(hdr),
		.code32_start = 0x100000,
	};
	x86_bootparams_fill((struct boot_params *)zp, &mem, &s);
	/* untouched header bytes come from the image, e.g. setup_sects and version */
	cr_assert_eq(zp[0x1f1], 0x40);
	cr_assert_eq(le16(zp + 0x206), (uint16_t)((0x40 + 0x15) | (0x40 + 0x16) << 8));
	cr_assert_eq(zp[0x210], 0xff);
	cr_assert_eq(le32(zp + 0x214), 0x100000, "code32_start");
	cr_assert_eq(le32(zp + 0x228), X86_CMDLINE_ADDR);
	/* the kernel's own cmdline_size (its limit) is kept */
	cr_assert_eq(le32(zp + 0x238), le32(hdr + 0x238 - 0x1f1));
	free(zp);
}

static void check_e820(const uint8_t *zp, unsigned i, uint64_t addr, uint64_t size, uint32_t type)
{
	const uint8_t *e = zp + 0x2d0 + 20 * i;

	cr_assert_eq(le64(e), addr, "entry %u addr %#llx", i, (unsigned long long)le64(e));
	cr_assert_eq(le64(e + 8), size, "entry %u size %#llx", i, (unsigned long long)le64(e + 8));
	cr_assert_eq(le32(e + 16), type, "entry %u type", i);
}

Test(bootparams, e820_small_guest)
{
	mem_alloc(64 * MIB);
	uint8_t *zp = calloc(1, 4096);
	struct x86_boot_setup s = { .cmdline_gpa = X86_CMDLINE_ADDR, .cmdline_size = 1 };
	x86_bootparams_fill((struct boot_params *)zp, &mem, &s);
	cr_assert_eq(zp[0x1e8], 3);
	check_e820(zp, 0, 0, 0x9fc00, 1);
	check_e820(zp, 1, 0x9fc00, 0x400, 2);
	check_e820(zp, 2, 0x100000, 64 * MIB - 0x100000, 1);
	free(zp);
}

Test(bootparams, e820_splits_ram_around_the_mmio_hole)
{
	/* 4 GiB + 8 MiB: 3 GiB below the hole, the rest from 4 GiB up. */
	uint64_t size = 4096 * MIB + 8 * MIB;
	mem_alloc(size);
	cr_assert_eq(mem.nregions, 2);
	cr_assert_eq(mem.regions[0].gpa, 0);
	cr_assert_eq(mem.regions[0].size, X86_MMIO_HOLE_START);
	cr_assert_eq(mem.regions[1].gpa, X86_MMIO_HOLE_END);
	cr_assert_eq(mem.regions[1].size, size - X86_MMIO_HOLE_START);
	cr_assert_eq(mem.regions[1].file_offset, X86_MMIO_HOLE_START);
	cr_assert_eq(mem.ram_size, size);
	cr_assert_null(guest_mem_ptr(&mem, X86_MMIO_HOLE_START, 1), "the hole is not RAM");
	cr_assert_null(guest_mem_ptr(&mem, X86_MMIO_HOLE_START - 4, 8), "no range crosses into the hole");
	cr_assert_not_null(guest_mem_ptr(&mem, X86_MMIO_HOLE_END + size - X86_MMIO_HOLE_START - 8, 8));
	cr_assert_null(guest_mem_ptr(&mem, X86_MMIO_HOLE_END + size - X86_MMIO_HOLE_START - 8, 9));

	struct boot_e820_entry e[8];
	unsigned n = x86_e820_fill(&mem, e, 8);
	cr_assert_eq(n, 4);
	cr_assert_eq(e[2].addr, 0x100000);
	cr_assert_eq(e[2].size, X86_MMIO_HOLE_START - 0x100000);
	cr_assert_eq(e[3].addr, 1ULL << 32);
	cr_assert_eq(e[3].size, size - X86_MMIO_HOLE_START);
	cr_assert_eq(e[3].type, 1);
	/* a short table is cut, never overrun */
	cr_assert_eq(x86_e820_fill(&mem, e, 2), 2);
}

Test(bootparams, identity_page_tables_and_gdt)
{
	mem_alloc(64 * MIB);
	cr_assert_eq(x86_boot_tables_write(&mem), 0);
	uint64_t *pml4 = guest_mem_ptr(&mem, X86_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(&mem, X86_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(&mem, X86_PD_ADDR, 4 * 4096);
	uint64_t *gdt = guest_mem_ptr(&mem, X86_GDT_ADDR, 40);

	cr_assert_eq(pml4[0], X86_PDPT_ADDR | 3);
	cr_assert_eq(pml4[1], 0);
	for (int g = 0; g < 4; g++)
		cr_assert_eq(pdpt[g], (X86_PD_ADDR + 4096 * (uint64_t)g) | 3);
	cr_assert_eq(pd[0], 0x83, "2 MiB page at 0, present, writable");
	cr_assert_eq(pd[1], 0x200000 | 0x83);
	cr_assert_eq(pd[4 * 512 - 1], (4 * 1024 - 2) * MIB | 0x83, "last page below 4 GiB");
	/* selectors the 64-bit boot protocol names: __BOOT_CS 0x10, __BOOT_DS 0x18 */
	cr_assert_eq(gdt[0], 0);
	cr_assert_eq(gdt[2], 0x00af9b000000ffffULL, "64-bit code, flat");
	cr_assert_eq(gdt[3], 0x00cf93000000ffffULL, "data, flat 4 GiB");
	cr_assert_eq(gdt[4] & (0xfULL << 40), 0xbULL << 40, "busy TSS");
}

/* ---- the loader, on synthetic images ----------------------------------------- */

static char tmp_path[64];

static int tmp_image(const void *data, size_t len)
{
	strcpy(tmp_path, "/tmp/sm-kernel-XXXXXX");
	int fd = mkstemp(tmp_path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	unlink(tmp_path);
	return fd;
}

struct elf_image {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[2];
	uint8_t code[64];
};

static struct elf_image elf_good(void)
{
	struct elf_image im = { 0 };
	memcpy(im.eh.e_ident, ELFMAG, SELFMAG);
	im.eh.e_ident[EI_CLASS] = ELFCLASS64;
	im.eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im.eh.e_type = ET_EXEC;
	im.eh.e_machine = EM_X86_64;
	im.eh.e_phoff = offsetof(struct elf_image, ph);
	im.eh.e_phentsize = sizeof(Elf64_Phdr);
	im.eh.e_phnum = 2;
	im.eh.e_entry = 0x1000000;
	im.ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = offsetof(struct elf_image, code),
				 .p_paddr = 0x1000000, .p_filesz = 64, .p_memsz = 2 * MIB };
	im.ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE };
	memset(im.code, 0xcc, sizeof(im.code));
	return im;
}

Test(loader, elf_loads_segments_at_physical_addresses)
{
	struct elf_image im = elf_good();
	struct x86_kernel k;
	struct vmm_err err;
	int fd = tmp_image(&im, sizeof(im));

	mem_alloc(64 * MIB);
	cr_assert_eq(x86_kernel_probe(fd, "k", &k, &err), 0, "%s", err.msg);
	cr_assert_not(k.bzimage);
	cr_assert_eq(k.entry, 0x1000000);
	cr_assert_eq(k.load_end, 0x1000000 + 2 * MIB);
	uint8_t *dst = guest_mem_ptr(&mem, 0x1000000, 2 * MIB);
	memset(dst, 0x55, 2 * MIB);
	cr_assert_eq(x86_kernel_load(fd, "k", &k, &mem, &err), 0, "%s", err.msg);
	cr_assert_eq(dst[0], 0xcc);
	cr_assert_eq(dst[63], 0xcc);
	cr_assert_eq(dst[64], 0, "bss is zeroed");
	cr_assert_eq(dst[2 * MIB - 1], 0);
	close(fd);
	mem_free();
}

Test(loader, elf_rejections_say_why)
{
	struct {
		const char *needle;
		struct elf_image im;
	} bad[6];
	for (int i = 0; i < 6; i++)
		bad[i].im = elf_good();
	bad[0].needle = "x86_64";
	bad[0].im.eh.e_machine = EM_AARCH64;
	bad[1].needle = "entry";
	bad[1].im.eh.e_entry = 0x2000000;
	bad[2].needle = "between 1 MiB and 3 GiB";
	bad[2].im.ph[0].p_paddr = 0x8000;
	bad[3].needle = "outside the file";
	bad[3].im.ph[0].p_filesz = 1 << 20;
	bad[4].needle = "program headers";
	bad[4].im.eh.e_phnum = 1000;
	bad[5].needle = "between 1 MiB and 3 GiB";
	bad[5].im.ph[0].p_paddr = 0xfffffffffffff000ULL;
	for (int i = 0; i < 6; i++) {
		struct x86_kernel k;
		struct vmm_err err = { { 0 } };
		int fd = tmp_image(&bad[i].im, sizeof(bad[i].im));
		cr_assert_lt(x86_kernel_probe(fd, "k", &k, &err), 0, "case %d accepted", i);
		cr_assert_not_null(strstr(err.msg, bad[i].needle), "case %d: '%s'", i, err.msg);
		close(fd);
	}
	struct x86_kernel k;
	struct vmm_err err;
	int fd = tmp_image("#!/bin/sh\necho not a kernel\n", 28);
	cr_assert_eq(x86_kernel_probe(fd, "k", &k, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "neither an ELF vmlinux nor a bzImage"));
	close(fd);
}

static void bz_header(uint8_t *im, uint16_t version, uint16_t xlf, uint32_t init_size)
{
	im[0x1f1] = 2; /* setup_sects: protected-mode part at (2+1)*512 */
	im[0x1fe] = 0x55;
	im[0x1ff] = 0xaa;
	im[0x201] = 0x66; /* header length: up to 0x268 */
	memcpy(im + 0x202, "HdrS", 4);
	memcpy(im + 0x206, &version, 2);
	uint32_t code32 = 0x100000, addr_max = 0x7fffffff, align = 0x200000, pref = 0x1000000;
	memcpy(im + 0x214, &code32, 4);
	memcpy(im + 0x22c, &addr_max, 4);
	memcpy(im + 0x230, &align, 4);
	im[0x234] = 1;
	memcpy(im + 0x236, &xlf, 2);
	memcpy(im + 0x258, &pref, 4);
	memcpy(im + 0x260, &init_size, 4);
}

Test(loader, bzimage_64bit_entry_and_footprint)
{
	size_t len = 3 * 512 + 4096;
	uint8_t *im = calloc(1, len);
	struct x86_kernel k;
	struct vmm_err err;

	bz_header(im, 0x020f, 1, 8 * MIB);
	memset(im + 3 * 512, 0x90, 4096);
	int fd = tmp_image(im, len);
	cr_assert_eq(x86_kernel_probe(fd, "bz", &k, &err), 0, "%s", err.msg);
	cr_assert(k.bzimage);
	cr_assert_eq(k.entry, 0x100000 + 0x200, "startup_64 = code32_start + 0x200");
	cr_assert_eq(k.pm_offset, 3 * 512);
	cr_assert_eq(k.pm_size, 4096);
	cr_assert_eq(k.load_end, 0x1000000 + 8 * MIB, "pref_address + init_size");
	cr_assert_eq(k.initrd_max, 0x80000000ULL);
	cr_assert_eq(k.setup_header_len, 0x202 + 0x66 - 0x1f1);
	mem_alloc(64 * MIB);
	cr_assert_eq(x86_kernel_load(fd, "bz", &k, &mem, &err), 0, "%s", err.msg);
	cr_assert_eq(*(uint8_t *)guest_mem_ptr(&mem, 0x100000, 1), 0x90);
	close(fd);

	bz_header(im, 0x020b, 1, 8 * MIB);
	fd = tmp_image(im, len);
	cr_assert_lt(x86_kernel_probe(fd, "bz", &k, &err), 0);
	cr_assert_not_null(strstr(err.msg, "older than 2.12"), "%s", err.msg);
	close(fd);
	bz_header(im, 0x020f, 0, 8 * MIB);
	fd = tmp_image(im, len);
	cr_assert_lt(x86_kernel_probe(fd, "bz", &k, &err), 0);
	cr_assert_not_null(strstr(err.msg, "64-bit"), "%s", err.msg);
	close(fd);
	free(im);
	mem_free();
}

Test(loader, initrd_goes_to_the_top_of_low_ram_or_is_refused)
{
	struct x86_kernel k = { .load_end = 0x1000000 + 20 * MIB, .initrd_max = X86_MMIO_HOLE_START };
	struct vmm_err err = { { 0 } };
	uint64_t gpa = 0;

	cr_assert_eq(x86_initrd_place(&k, 64 * MIB, 10 * MIB + 1, &gpa, &err), 0);
	cr_assert_eq(gpa % 4096, 0);
	cr_assert_leq(gpa + 10 * MIB + 1, 64 * MIB);
	cr_assert_geq(gpa, 64 * MIB - 10 * MIB - 4096);
	cr_assert_eq(x86_initrd_place(&k, 64 * MIB, 40 * MIB, &gpa, &err), -ENOMEM);
	cr_assert_not_null(strstr(err.msg, "need 76 MiB"), "%s", err.msg);
	/* an initrd_addr_max below RAM's end caps the placement */
	k.initrd_max = 48 * MIB;
	cr_assert_eq(x86_initrd_place(&k, 64 * MIB, MIB, &gpa, &err), 0);
	cr_assert_leq(gpa + MIB, 48 * MIB);
}

/* The real guest kernel, when the build has one. */
Test(loader, project_kernel_probes)
{
	const char *dir = getenv("SUPERMACHINE_KERNEL_DIR");
	char path[512];

	if (!dir)
		cr_skip_test("SUPERMACHINE_KERNEL_DIR not set");
	for (int i = 0; i < 2; i++) {
		struct x86_kernel k;
		struct vmm_err err;
		snprintf(path, sizeof(path), "%s/%s", dir, i ? "bzImage" : "vmlinux");
		FILE *f = fopen(path, "r");
		if (!f)
			cr_skip_test("%s missing", path);
		cr_assert_eq(x86_kernel_probe(fileno(f), path, &k, &err), 0, "%s", err.msg);
		cr_assert_eq(k.bzimage, i == 1);
		cr_assert_geq(k.entry, X86_HIMEM_START);
		cr_assert_lt(k.load_end, 64 * MIB, "fits the smallest VM");
		fclose(f);
	}
}
