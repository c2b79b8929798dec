/*
 * Guest physical memory as the VMM and the devices see it.
 *
 * Every address a guest hands us goes through guest_mem_ptr(), which
 * returns a host pointer only when the whole range lies inside one RAM
 * region. Devices never compute host addresses themselves.
 */
#ifndef SM_BASE_GUEST_MEM_H
#define SM_BASE_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4

struct guest_region {
	uint64_t gpa;  /* first guest-physical address */
	uint64_t size; /* bytes */
	uint8_t *hva;  /* host mapping of gpa */
	uint64_t file_offset; /* offset of gpa's page in the backing file */
};

struct guest_mem {
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	unsigned nregions;
	uint64_t ram_size; /* total RAM bytes over all regions */
	int fd;            /* memfd (fresh boot) or snapshot memory file; -1 if none */
	/* RAM is a MAP_PRIVATE view of a snapshot memory file: pages the guest
	 * wrote are private copies the file does not show. */
	bool file_backed;
};

/*
 * Host pointer for guest range [gpa, gpa + len), or NULL if any byte of it
 * is outside RAM, or the range wraps. len == 0 is checked as len == 1 so a
 * pointer to an empty buffer is still a valid guest address.
 */
static inline void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	if (gpa + len < gpa)
		return NULL;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

static inline bool guest_mem_valid(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	return guest_mem_ptr(m, gpa, len) != NULL;
}

#define GUEST_MEM_PAGE 4096ULL

/*
 * Fresh RAM for a boot: `size` bytes of a memfd mapped MAP_SHARED, laid out
 * from guest-physical 0 and split around [hole_start, hole_end) (the
 * architecture's 32-bit MMIO hole) when larger than hole_start. Region 0
 * starts at 0; file offsets follow guest order. Returns 0 or -errno.
 */
int guest_mem_alloc(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end);
/*
 * RAM for a restore: `size` bytes of the snapshot memory file fd from
 * offset `offset`, mapped MAP_PRIVATE (copy-on-write: nothing is read now,
 * pages fault in on first touch, the page cache is shared by every VM
 * restored from the file), laid out as guest_mem_alloc() lays out a memfd.
 * Takes ownership of fd on success. Returns 0 or -errno.
 */
int guest_mem_map_file(struct guest_mem *m, int fd, uint64_t offset, uint64_t size,
		       uint64_t hole_start, uint64_t hole_end);
void guest_mem_free(struct guest_mem *m);
/* End of the RAM region that starts at guest-physical 0 (0 if none). */
uint64_t guest_mem_low_end(const struct guest_mem *m);

#endif
