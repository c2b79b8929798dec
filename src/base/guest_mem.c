#include "base/guest_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void guest_mem_add(struct guest_mem *m, uint64_t gpa, uint64_t size, uint64_t off,
			  uint8_t *base)
{
	struct guest_region *r = &m->regions[m->nregions++];

	r->gpa = gpa;
	r->size = size;
	r->file_offset = off;
	r->hva = base + off;
	m->ram_size += size;
}

static int layout_check(uint64_t size, uint64_t hole_start, uint64_t hole_end)
{
	if (size == 0 || size % GUEST_MEM_PAGE || hole_start % GUEST_MEM_PAGE ||
	    hole_end < hole_start || hole_end % GUEST_MEM_PAGE)
		return -EINVAL;
	if (size > UINT64_MAX - hole_end)
		return -EOVERFLOW;
	return 0;
}

/* Region 0 from guest-physical 0, the rest above the hole; file order = guest order. */
static void layout_regions(struct guest_mem *m, uint8_t *base, uint64_t size, uint64_t hole_start,
			   uint64_t hole_end)
{
	uint64_t low = size < hole_start ? size : hole_start;

	guest_mem_add(m, 0, low, 0, base);
	if (size > low)
		guest_mem_add(m, hole_end, size - low, low, base);
}

int guest_mem_alloc(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	int rc = layout_check(size, hole_start, hole_end);
	if (rc < 0)
		return rc;

	int fd = memfd_create("supermachine-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		goto fail;
	/*
	 * MAP_NORESERVE: the guest touches what it uses; an idle 4 GiB VM must
	 * not charge 4 GiB against overcommit.
	 */
	uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (base == MAP_FAILED)
		goto fail;
	/*
	 * 2 MiB pages where the host allows them for shmem (shmem_enabled =
	 * advise): each 4 KiB page first touched is otherwise one nested page
	 * fault exit, thousands per boot. Refused (EINVAL) is fine.
	 */
	madvise(base, size, MADV_HUGEPAGE);
	m->fd = fd;
	layout_regions(m, base, size, hole_start, hole_end);
	return 0;
fail:;
	int e = errno;
	close(fd);
	return -e;
}

int guest_mem_map_file(struct guest_mem *m, int fd, uint64_t offset, uint64_t size,
		       uint64_t hole_start, uint64_t hole_end)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	int rc = layout_check(size, hole_start, hole_end);
	if (rc < 0)
		return rc;
	if (offset % GUEST_MEM_PAGE)
		return -EINVAL;
	/* MAP_NORESERVE: only pages the clone writes become its own memory. */
	uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
			     (off_t)offset);
	if (base == MAP_FAILED)
		return -errno;
	m->fd = fd;
	m->file_backed = true;
	layout_regions(m, base, size, hole_start, hole_end);
	return 0;
}

void guest_mem_free(struct guest_mem *m)
{
	if (m->nregions)
		munmap(m->regions[0].hva - m->regions[0].file_offset, m->ram_size);
	if (m->fd >= 0)
		close(m->fd);
	memset(m, 0, sizeof(*m));
	m->fd = -1;
}

uint64_t guest_mem_low_end(const struct guest_mem *m)
{
	for (unsigned i = 0; i < m->nregions; i++)
		if (m->regions[i].gpa == 0)
			return m->regions[i].size;
	return 0;
}
