#include "vmm/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/x86/layout.h"

#define MIB (1024 * 1024)
#define BZ_SETUP_HEADER_OFFSET 0x1f1
#define BZ_BOOT_FLAG_OFFSET 0x1fe
#define BZ_HEADER_OFFSET 0x202
#define BZ_VERSION_OFFSET 0x206
#define BZ_CODE32_START_OFFSET 0x214
#define BZ_INITRD_ADDR_MAX_OFFSET 0x22c
#define BZ_KERNEL_ALIGNMENT_OFFSET 0x230
#define BZ_RELOCATABLE_OFFSET 0x234
#define BZ_XLOADFLAGS_OFFSET 0x236
#define BZ_PREF_ADDRESS_OFFSET 0x258
#define BZ_INIT_SIZE_OFFSET 0x260
#define BZ_MIN_VERSION 0x020c /* 2.12: xloadflags, so XLF_KERNEL_64 can be checked */
#define BZ_XLF_KERNEL_64 1
#define BZ_STARTUP_64_OFFSET 0x200
#define BZ_HEAD_BYTES 0x280

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t align_down(uint64_t v, uint64_t a)
{
	return v & ~(a - 1);
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static int elf_probe_segment(const Elf64_Phdr *ph, uint64_t file_size, const char *path,
			     struct x86_kernel *k, struct vmm_err *err)
{
	if (k->nseg == X86_KERNEL_MAX_SEGMENTS)
		return vmm_err_set(err, -EINVAL, "kernel %s: more than %d ELF load segments", path,
				   X86_KERNEL_MAX_SEGMENTS);
	if (ph->p_filesz > ph->p_memsz || ph->p_offset > file_size ||
	    ph->p_filesz > file_size - ph->p_offset)
		return vmm_err_set(err, -EINVAL, "kernel %s: ELF segment at %#llx lies outside the file",
				   path, (unsigned long long)ph->p_paddr);
	if (ph->p_paddr < X86_HIMEM_START || ph->p_memsz > X86_MMIO_HOLE_START ||
	    ph->p_paddr > X86_MMIO_HOLE_START - ph->p_memsz)
		return vmm_err_set(err, -EINVAL,
				   "kernel %s: ELF segment [%#llx, +%#llx) is not between 1 MiB and 3 GiB",
				   path, (unsigned long long)ph->p_paddr,
				   (unsigned long long)ph->p_memsz);
	k->seg[k->nseg++] = (struct x86_kernel_segment){
		.paddr = ph->p_paddr,
		.offset = ph->p_offset,
		.filesz = ph->p_filesz,
		.memsz = ph->p_memsz,
	};
	if (ph->p_paddr + ph->p_memsz > k->load_end)
		k->load_end = ph->p_paddr + ph->p_memsz;
	return 0;
}

static int elf_probe(int fd, uint64_t file_size, const uint8_t *head, const char *path,
		     struct x86_kernel *k, struct vmm_err *err)
{
	Elf64_Ehdr eh;

	memcpy(&eh, head, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64 || eh.e_type != ET_EXEC)
		return vmm_err_set(err, -EINVAL, "kernel %s: ELF but not an x86_64 executable vmlinux",
				   path);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64 ||
	    eh.e_phoff > file_size || eh.e_phnum * sizeof(Elf64_Phdr) > file_size - eh.e_phoff)
		return vmm_err_set(err, -EINVAL, "kernel %s: ELF program headers are malformed", path);

	Elf64_Phdr ph[64];
	int rc = read_full(fd, ph, eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff);
	if (rc < 0)
		return vmm_err_set(err, rc, "kernel %s: reading ELF program headers: %s", path,
				   strerror(-rc));
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
			continue;
		rc = elf_probe_segment(&ph[i], file_size, path, k, err);
		if (rc < 0)
			return rc;
	}
	if (k->nseg == 0)
		return vmm_err_set(err, -EINVAL, "kernel %s: ELF has no load segments", path);
	bool entry_loaded = false;
	for (unsigned i = 0; i < k->nseg; i++)
		if (eh.e_entry >= k->seg[i].paddr && eh.e_entry - k->seg[i].paddr < k->seg[i].filesz)
			entry_loaded = true;
	if (!entry_loaded)
		return vmm_err_set(err, -EINVAL,
				   "kernel %s: ELF entry %#llx is not in a loaded segment (a vmlinux "
				   "has a physical entry address)",
				   path, (unsigned long long)eh.e_entry);
	k->entry = eh.e_entry;
	k->initrd_max = X86_MMIO_HOLE_START;
	return 0;
}

static int bzimage_probe(uint64_t file_size, const uint8_t *head, const char *path,
			 struct x86_kernel *k, struct vmm_err *err)
{
	uint16_t version = get_le16(head + BZ_VERSION_OFFSET);
	uint8_t setup_sects = head[BZ_SETUP_HEADER_OFFSET];

	if (version < BZ_MIN_VERSION)
		return vmm_err_set(err, -EINVAL,
				   "kernel %s: bzImage boot protocol %u.%02u is older than 2.12", path,
				   version >> 8, version & 0xff);
	if (!(get_le16(head + BZ_XLOADFLAGS_OFFSET) & BZ_XLF_KERNEL_64))
		return vmm_err_set(err, -EINVAL, "kernel %s: bzImage has no 64-bit entry point", path);
	if (setup_sects == 0)
		setup_sects = 4;
	k->bzimage = true;
	k->pm_offset = (uint64_t)(setup_sects + 1) * 512;
	if (k->pm_offset >= file_size)
		return vmm_err_set(err, -EINVAL, "kernel %s: bzImage is truncated", path);
	k->pm_size = file_size - k->pm_offset;

	/* The header's own length is encoded in the jump at 0x200. */
	uint32_t hlen = BZ_HEADER_OFFSET + head[0x201] - BZ_SETUP_HEADER_OFFSET;
	if (hlen > X86_SETUP_HEADER_MAX)
		hlen = X86_SETUP_HEADER_MAX;
	memcpy(k->setup_header, head + BZ_SETUP_HEADER_OFFSET, hlen);
	k->setup_header_len = hlen;

	k->code32_start = get_le32(head + BZ_CODE32_START_OFFSET);
	if (k->code32_start < X86_HIMEM_START || k->code32_start >= X86_MMIO_HOLE_START ||
	    k->pm_size > X86_MMIO_HOLE_START - k->code32_start)
		return vmm_err_set(err, -EINVAL, "kernel %s: bzImage load address %#x is unusable",
				   path, k->code32_start);
	k->entry = (uint64_t)k->code32_start + BZ_STARTUP_64_OFFSET;

	/* It decompresses itself to its run-time address and needs init_size there. */
	uint64_t align = get_le32(head + BZ_KERNEL_ALIGNMENT_OFFSET);
	uint64_t pref = get_le32(head + BZ_PREF_ADDRESS_OFFSET);
	uint64_t run = pref;
	if (head[BZ_RELOCATABLE_OFFSET] && align && !(align & (align - 1))) {
		uint64_t aligned = align_up(k->code32_start, align);
		run = aligned > pref ? aligned : pref;
	}
	uint64_t init_size = get_le32(head + BZ_INIT_SIZE_OFFSET);
	k->load_end = k->code32_start + k->pm_size;
	if (run + init_size > k->load_end)
		k->load_end = run + init_size;
	k->initrd_max = (uint64_t)get_le32(head + BZ_INITRD_ADDR_MAX_OFFSET) + 1;
	return 0;
}

int x86_kernel_probe(int fd, const char *path, struct x86_kernel *k, struct vmm_err *err)
{
	uint8_t head[BZ_HEAD_BYTES] = { 0 };
	struct stat st;

	memset(k, 0, sizeof(*k));
	if (fstat(fd, &st) < 0)
		return vmm_err_set(err, -errno, "kernel %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return vmm_err_set(err, -EINVAL, "kernel %s: not a regular file", path);
	uint64_t size = (uint64_t)st.st_size;
	size_t want = size < sizeof(head) ? (size_t)size : sizeof(head);
	int rc = read_full(fd, head, want, 0);
	if (rc < 0)
		return vmm_err_set(err, rc, "kernel %s: %s", path, strerror(-rc));

	if (size >= sizeof(Elf64_Ehdr) && memcmp(head, ELFMAG, SELFMAG) == 0)
		return elf_probe(fd, size, head, path, k, err);
	if (size >= BZ_HEAD_BYTES && get_le16(head + BZ_BOOT_FLAG_OFFSET) == 0xaa55 &&
	    memcmp(head + BZ_HEADER_OFFSET, "HdrS", 4) == 0)
		return bzimage_probe(size, head, path, k, err);
	return vmm_err_set(err, -EINVAL, "kernel %s: neither an ELF vmlinux nor a bzImage", path);
}

static int load_range(int fd, const char *path, const struct guest_mem *m, uint64_t gpa,
		      uint64_t off, uint64_t filesz, uint64_t memsz, struct vmm_err *err)
{
	uint8_t *dst = guest_mem_ptr(m, gpa, memsz);

	if (!dst)
		return vmm_err_set(err, -ENOMEM,
				   "kernel %s: [%#llx, +%llu MiB) does not fit in guest RAM (%llu MiB)",
				   path, (unsigned long long)gpa,
				   (unsigned long long)(memsz + MIB - 1) / MIB,
				   (unsigned long long)m->ram_size / MIB);
	int rc = read_full(fd, dst, filesz, off);
	if (rc < 0)
		return vmm_err_set(err, rc, "kernel %s: %s", path, strerror(-rc));
	memset(dst + filesz, 0, memsz - filesz);
	return 0;
}

int x86_kernel_load(int fd, const char *path, const struct x86_kernel *k,
		    const struct guest_mem *m, struct vmm_err *err)
{
	uint64_t low = guest_mem_low_end(m);

	if (k->load_end > low)
		return vmm_err_set(err, -ENOMEM,
				   "kernel %s needs %llu MiB of RAM below 3 GiB; the VM has %llu MiB",
				   path, (unsigned long long)(k->load_end + MIB - 1) / MIB,
				   (unsigned long long)low / MIB);
	if (k->bzimage)
		return load_range(fd, path, m, k->code32_start, k->pm_offset, k->pm_size, k->pm_size,
				  err);
	for (unsigned i = 0; i < k->nseg; i++) {
		const struct x86_kernel_segment *s = &k->seg[i];
		int rc = load_range(fd, path, m, s->paddr, s->offset, s->filesz, s->memsz, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int x86_initrd_place(const struct x86_kernel *k, uint64_t low_ram_end, uint64_t size,
		     uint64_t *gpa, struct vmm_err *err)
{
	uint64_t top = low_ram_end < k->initrd_max ? low_ram_end : k->initrd_max;
	uint64_t bottom = align_up(k->load_end, GUEST_MEM_PAGE);

	top = align_down(top, GUEST_MEM_PAGE);
	if (size == 0 || top < bottom || top - bottom < size) {
		uint64_t need = bottom + align_up(size, GUEST_MEM_PAGE);
		return vmm_err_set(err, -ENOMEM,
				   "kernel and initrd need %llu MiB of RAM below 3 GiB; the VM has %llu MiB",
				   (unsigned long long)(need + MIB - 1) / MIB,
				   (unsigned long long)low_ram_end / MIB);
	}
	*gpa = align_down(top - size, GUEST_MEM_PAGE);
	return 0;
}
