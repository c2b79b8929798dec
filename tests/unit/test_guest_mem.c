/*
 * Guest RAM's backing (src/base/guest_mem.c): which backings a host's THP
 * and hugetlb settings allow, in which order, and what the real
 * allocation on this host gives: a mapping the guest can use, of a
 * backing the host allowed, with the fallback where it allows none.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "base/guest_mem.h"

#define HOLE_START (3ull << 30)
#define HOLE_END (4ull << 30)
#define HUGE (2ull << 20)

static const struct guest_mem_host all = { .shmem_thp = true, .anon_thp = true, .hugetlb_page = HUGE };
static const struct guest_mem_host none = { 0 };

Test(guest_mem, auto_tries_every_allowed_backing_best_first)
{
	enum guest_mem_backing c[4];

	cr_assert_eq(guest_mem_candidates(&all, GUEST_MEM_AUTO, 64 * HUGE, c), 4);
	cr_assert_eq(c[0], GUEST_MEM_SHMEM_THP);
	cr_assert_eq(c[1], GUEST_MEM_HUGETLB);
	cr_assert_eq(c[2], GUEST_MEM_ANON_THP);
	cr_assert_eq(c[3], GUEST_MEM_MEMFD);
}

Test(guest_mem, a_host_without_huge_pages_gets_the_memfd)
{
	enum guest_mem_backing c[4];

	cr_assert_eq(guest_mem_candidates(&none, GUEST_MEM_AUTO, 64 * HUGE, c), 1);
	cr_assert_eq(c[0], GUEST_MEM_MEMFD);
}

Test(guest_mem, hugetlb_only_for_whole_huge_pages)
{
	struct guest_mem_host h = { .hugetlb_page = HUGE };
	enum guest_mem_backing c[4];

	cr_assert_eq(guest_mem_candidates(&h, GUEST_MEM_AUTO, 64 * HUGE + 4096, c), 1);
	cr_assert_eq(c[0], GUEST_MEM_MEMFD);
	cr_assert_eq(guest_mem_candidates(&h, GUEST_MEM_AUTO, 64 * HUGE, c), 2);
	cr_assert_eq(c[0], GUEST_MEM_HUGETLB);
}

Test(guest_mem, an_asked_backing_alone_then_the_fallback)
{
	enum guest_mem_backing c[4];

	cr_assert_eq(guest_mem_candidates(&all, GUEST_MEM_ANON_THP, 64 * HUGE, c), 2);
	cr_assert_eq(c[0], GUEST_MEM_ANON_THP);
	cr_assert_eq(c[1], GUEST_MEM_MEMFD);
	cr_assert_eq(guest_mem_candidates(&all, GUEST_MEM_MEMFD, 64 * HUGE, c), 1);
	cr_assert_eq(guest_mem_candidates(&none, GUEST_MEM_SHMEM_THP, 64 * HUGE, c), 1);
	cr_assert_eq(c[0], GUEST_MEM_MEMFD);
}

Test(guest_mem, names_round_trip_and_a_snapshot_is_not_asked_for)
{
	for (int b = GUEST_MEM_AUTO; b < GUEST_MEM_SNAPSHOT; b++)
		cr_assert_eq(guest_mem_backing_parse(guest_mem_backing_name((enum guest_mem_backing)b)), b);
	cr_assert_eq(guest_mem_backing_parse(NULL), GUEST_MEM_AUTO);
	cr_assert_eq(guest_mem_backing_parse(""), GUEST_MEM_AUTO);
	cr_assert_eq(guest_mem_backing_parse("snapshot"), -1);
	cr_assert_eq(guest_mem_backing_parse("huge"), -1);
	cr_assert_null(guest_mem_backing_name(GUEST_MEM_NBACKINGS));
}

/* The guest's RAM as the VMM uses it: written, read back, split around the hole. */
static void check_usable(const struct guest_mem *m, uint64_t size)
{
	cr_assert_eq(m->ram_size, size);
	uint8_t *p = guest_mem_ptr(m, size - 4096, 4096);
	cr_assert_not_null(p);
	memset(p, 0xa5, 4096);
	cr_assert_eq(((uint8_t *)guest_mem_ptr(m, size - 1, 1))[0], 0xa5);
	cr_assert_eq(m->fd < 0, m->backing == GUEST_MEM_ANON_THP, "only anonymous RAM has no fd");
}

Test(guest_mem, this_hosts_choice_is_one_it_allows)
{
	struct guest_mem_host h;
	enum guest_mem_backing c[4];
	struct guest_mem m;
	uint64_t size = 32 * HUGE;

	guest_mem_host_probe(&h);
	unsigned n = guest_mem_candidates(&h, GUEST_MEM_AUTO, size, c);
	cr_assert_eq(guest_mem_alloc(&m, size, HOLE_START, HOLE_END), 0);
	bool listed = false;
	for (unsigned i = 0; i < n; i++)
		listed |= c[i] == m.backing;
	cr_assert(listed, "backing %s is not among this host's", guest_mem_backing_name(m.backing));
	check_usable(&m, size);
	guest_mem_free(&m);
}

Test(guest_mem, each_asked_backing_maps_or_falls_back_to_the_memfd)
{
	uint64_t size = 32 * HUGE;

	for (int b = GUEST_MEM_SHMEM_THP; b <= GUEST_MEM_MEMFD; b++) {
		struct guest_mem m;
		cr_assert_eq(guest_mem_alloc_backing(&m, (enum guest_mem_backing)b, size, HOLE_START, HOLE_END), 0);
		cr_assert(m.backing == (enum guest_mem_backing)b || m.backing == GUEST_MEM_MEMFD, "asked %s, got %s",
			  guest_mem_backing_name((enum guest_mem_backing)b), guest_mem_backing_name(m.backing));
		check_usable(&m, size);
		guest_mem_free(&m);
	}
}

Test(guest_mem, anonymous_ram_larger_than_the_hole_start_is_split)
{
	struct guest_mem m;

	cr_assert_eq(guest_mem_alloc_backing(&m, GUEST_MEM_ANON_THP, 16 * HUGE, 8 * HUGE, 12 * HUGE), 0);
	cr_assert_eq(m.nregions, 2);
	cr_assert_eq(m.regions[1].gpa, 12 * HUGE);
	cr_assert_null(guest_mem_ptr(&m, 9 * HUGE, 1));
	check_usable(&m, 16 * HUGE);
	guest_mem_free(&m);
}
