#include "base/guest_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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

static const char *const backing_names[GUEST_MEM_NBACKINGS] = {
	[GUEST_MEM_AUTO] = "auto",
	[GUEST_MEM_SHMEM_THP] = "shmem-thp",
	[GUEST_MEM_HUGETLB] = "hugetlb",
	[GUEST_MEM_ANON_THP] = "anon-thp",
	[GUEST_MEM_MEMFD] = "memfd",
	[GUEST_MEM_SNAPSHOT] = "snapshot",
};

const char *guest_mem_backing_name(enum guest_mem_backing b)
{
	return (unsigned)b < GUEST_MEM_NBACKINGS ? backing_names[b] : NULL;
}

int guest_mem_backing_parse(const char *s)
{
	if (!s || !*s)
		return GUEST_MEM_AUTO;
	/* a snapshot's backing comes with its file, never by asking */
	for (int b = 0; b < GUEST_MEM_SNAPSHOT; b++)
		if (!strcmp(s, backing_names[b]))
			return b;
	return -1;
}

/* Whether the bracketed choice of a sysfs THP file is one of `yes` ("[madvise]"). */
static bool thp_setting_in(const char *path, const char *const *yes)
{
	char buf[128] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	for (; *yes; yes++) {
		char want[32];
		snprintf(want, sizeof(want), "[%s]", *yes);
		if (strstr(buf, want))
			return true;
	}
	return false;
}

static uint64_t hugetlb_page_bytes(void)
{
	char line[128];
	unsigned long long kib = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return (uint64_t)kib << 10;
}

void guest_mem_host_probe(struct guest_mem_host *h)
{
	static const char *const shmem_yes[] = { "always", "within_size", "advise", "force", NULL };
	static const char *const anon_yes[] = { "always", "madvise", NULL };

	h->shmem_thp = thp_setting_in("/sys/kernel/mm/transparent_hugepage/shmem_enabled", shmem_yes);
	h->anon_thp = thp_setting_in("/sys/kernel/mm/transparent_hugepage/enabled", anon_yes);
	h->hugetlb_page = hugetlb_page_bytes();
}

/* Whether h could give b for size bytes at all (hugetlb: whether pages are reserved is the map's to say). */
static bool backing_possible(const struct guest_mem_host *h, enum guest_mem_backing b, uint64_t size)
{
	switch (b) {
	case GUEST_MEM_SHMEM_THP: return h->shmem_thp;
	case GUEST_MEM_HUGETLB: return h->hugetlb_page && size % h->hugetlb_page == 0;
	case GUEST_MEM_ANON_THP: return h->anon_thp;
	default: return false;
	}
}

unsigned guest_mem_candidates(const struct guest_mem_host *h, enum guest_mem_backing want, uint64_t size,
			      enum guest_mem_backing out[4])
{
	unsigned n = 0;

	for (int b = GUEST_MEM_SHMEM_THP; b < GUEST_MEM_MEMFD; b++)
		if ((want == GUEST_MEM_AUTO || want == (enum guest_mem_backing)b) &&
		    backing_possible(h, (enum guest_mem_backing)b, size))
			out[n++] = (enum guest_mem_backing)b;
	out[n++] = GUEST_MEM_MEMFD;
	return n;
}

/*
 * One backing mapped, or -errno. MAP_NORESERVE: the guest touches what it
 * uses, and an idle 4 GiB VM must not charge 4 GiB against overcommit.
 * hugetlb alone reserves it all at the map: with MAP_NORESERVE a pool run
 * dry would SIGBUS the VMM at a guest's touch; without, the map fails now
 * and the next backing is tried.
 */
static int backing_map(enum guest_mem_backing b, uint64_t size, int *fd_out, uint8_t **base_out)
{
	int flags = b == GUEST_MEM_ANON_THP ? MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
		  : b == GUEST_MEM_HUGETLB  ? MAP_SHARED
					    : MAP_SHARED | MAP_NORESERVE;
	int fd = -1;

	if (b != GUEST_MEM_ANON_THP) {
		fd = memfd_create("supermachine-guest-ram", MFD_CLOEXEC | (b == GUEST_MEM_HUGETLB ? MFD_HUGETLB : 0));
		if (fd < 0)
			return -errno;
		if (ftruncate(fd, (off_t)size) < 0)
			goto fail;
	}
	uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (base == MAP_FAILED)
		goto fail;
	/* the THP backings are THP only once asked; refused, it is the 4 KiB pages it was */
	if (b == GUEST_MEM_SHMEM_THP || b == GUEST_MEM_ANON_THP)
		madvise(base, size, MADV_HUGEPAGE);
	*fd_out = fd;
	*base_out = base;
	return 0;
fail:;
	int e = errno;
	if (fd >= 0)
		close(fd);
	return -e;
}

int guest_mem_alloc_backing(struct guest_mem *m, enum guest_mem_backing want, uint64_t size,
			    uint64_t hole_start, uint64_t hole_end)
{
	enum guest_mem_backing cand[4];
	struct guest_mem_host h;
	uint8_t *base = NULL;
	int fd = -1, rc;

	memset(m, 0, sizeof(*m));
	m->fd = -1;
	rc = layout_check(size, hole_start, hole_end);
	if (rc < 0)
		return rc;
	guest_mem_host_probe(&h);
	unsigned n = guest_mem_candidates(&h, want, size, cand);
	for (unsigned i = 0; i < n; i++) {
		rc = backing_map(cand[i], size, &fd, &base);
		if (rc == 0) {
			m->backing = cand[i];
			break;
		}
	}
	if (rc < 0)
		return rc;
	m->fd = fd;
	layout_regions(m, base, size, hole_start, hole_end);
	return 0;
}

int guest_mem_alloc(struct guest_mem *m, uint64_t size, uint64_t hole_start, uint64_t hole_end)
{
	return guest_mem_alloc_backing(m, GUEST_MEM_AUTO, size, hole_start, hole_end);
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
	m->backing = GUEST_MEM_SNAPSHOT;
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
