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

/*
 * What backs a fresh boot's RAM. Each first touch of a 4 KiB page is one
 * nested page fault (an EPT/NPT violation exit); a 2 MiB page takes one
 * for 512 of them, so a boot makes thousands fewer exits on huge pages.
 * The order is the preference of GUEST_MEM_AUTO.
 */
enum guest_mem_backing {
	GUEST_MEM_AUTO,      /* the first of the others this host allows */
	GUEST_MEM_SHMEM_THP, /* memfd, MADV_HUGEPAGE: shmem_enabled allows THP for it */
	GUEST_MEM_HUGETLB,   /* memfd MFD_HUGETLB, reserved whole at the map: needs reserved hugepages */
	GUEST_MEM_ANON_THP,  /* anonymous private memory, MADV_HUGEPAGE: THP enabled = always or madvise */
	GUEST_MEM_MEMFD,     /* memfd, 4 KiB pages: the fallback every host gives */
	GUEST_MEM_SNAPSHOT,  /* a restore: MAP_PRIVATE of the snapshot's memory file, 4 KiB pages */
	GUEST_MEM_NBACKINGS
};

/* The variable that forces a backing by name ("memfd", "anon-thp", ...; "auto" or unset: choose). */
#define GUEST_MEM_ENV "SUPERMACHINE_GUEST_RAM"

/* What the host offers, from /sys/kernel/mm/transparent_hugepage (guest_mem_host_probe). */
struct guest_mem_host {
	bool shmem_thp; /* shmem_enabled is always, within_size, advise or force */
	bool anon_thp;  /* enabled is always or madvise */
	uint64_t hugetlb_page; /* the default hugetlb page size in bytes; 0 if unknown */
};

struct guest_mem {
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	enum guest_mem_backing backing;
	unsigned nregions;
	uint64_t ram_size; /* total RAM bytes over all regions */
	int fd;            /* memfd (fresh boot) or snapshot memory file; -1 for anonymous RAM or none */
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

/* The backing's name in logs and GUEST_MEM_ENV ("shmem-thp"), or NULL past the enum. */
const char *guest_mem_backing_name(enum guest_mem_backing b);
/* The backing named s (GUEST_MEM_AUTO for NULL, "" or "auto"); -1 for an unknown name. */
int guest_mem_backing_parse(const char *s);
/* This host's THP settings and hugetlb page size; what cannot be read counts as "no". */
void guest_mem_host_probe(struct guest_mem_host *h);
/*
 * The backings to try for `size` bytes on host h, best first, ending with
 * GUEST_MEM_MEMFD: for GUEST_MEM_AUTO every one h allows, otherwise want
 * alone then the fallback. Returns how many it wrote (at most 4).
 */
unsigned guest_mem_candidates(const struct guest_mem_host *h, enum guest_mem_backing want, uint64_t size,
			      enum guest_mem_backing out[4]);

/*
 * Fresh RAM for a boot: `size` bytes of the first backing of
 * guest_mem_candidates() that maps (m->backing says which), laid out from
 * guest-physical 0 and split around [hole_start, hole_end) (the
 * architecture's 32-bit MMIO hole) when larger than hole_start. Region 0
 * starts at 0; file offsets follow guest order; m->fd is -1 for anonymous
 * memory. Returns 0 or -errno.
 */
int guest_mem_alloc(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end);
/* The same with a backing asked for (GUEST_MEM_AUTO: guest_mem_alloc). */
int guest_mem_alloc_backing(struct guest_mem *m, enum guest_mem_backing want, uint64_t size,
			    uint64_t hole_start, uint64_t hole_end);
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
