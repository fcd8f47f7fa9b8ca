/*
 * test_arena.c - the arena's mapping (page kinds, alignment) and its ring bookkeeping:
 * reservations in order, oldest-first release, wrapping, and never handing out bytes
 * that a live reservation holds.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "sysmem.h"
#include "modelstream.h"

TestSuite(arena, .timeout = 60);

Test(arena, maps_usable_writable_memory)
{
	ms__arena a;
	const char *mode = getenv("MS_TEST_HUGEPAGES");

	cr_assert_eq(ms__arena_map(&a, 5u << 20, MS_ARENA_PAGES_AUTO), 0);
	cr_assert_geq(a.size, 5u << 20);
	memset(a.base, 0xab, a.size);
	if (a.pages != MS__PAGES_SMALL)
		cr_assert_eq((uintptr_t)a.base % (2u << 20), 0, "huge pages start on 2 MiB");
	if (mode != NULL && strcmp(mode, "reserved") == 0)
		cr_assert_eq(a.pages, MS__PAGES_RESERVED_HUGE);
	if (mode != NULL && strcmp(mode, "none") == 0)
		cr_assert_neq(a.pages, MS__PAGES_RESERVED_HUGE);
	ms__arena_unmap(&a);
	cr_assert_null(a.base);
	ms__arena_unmap(&a); /* twice is harmless */
}

Test(arena, page_kinds_can_be_forced)
{
	ms__arena a;
	const char *mode = getenv("MS_TEST_HUGEPAGES");
	int reserved_available = mode != NULL && strcmp(mode, "reserved") == 0;

	cr_assert_eq(ms__arena_map(&a, 4u << 20, MS_ARENA_PAGES_SMALL), 0);
	cr_assert_eq(a.pages, MS__PAGES_SMALL);
	memset(a.base, 1, a.size);
	ms__arena_unmap(&a);
	cr_assert_eq(ms__arena_map(&a, 4u << 20, MS_ARENA_PAGES_TRANSPARENT), 0);
	cr_assert_neq(a.pages, MS__PAGES_RESERVED_HUGE);
	ms__arena_unmap(&a);
	if (reserved_available) {
		cr_assert_eq(ms__arena_map(&a, 4u << 20, MS_ARENA_PAGES_RESERVED), 0);
		cr_assert_eq(a.pages, MS__PAGES_RESERVED_HUGE);
		memset(a.base, 1, a.size);
		ms__arena_unmap(&a);
	} else if (mode != NULL && strcmp(mode, "none") == 0) {
		cr_assert_eq(ms__arena_map(&a, 4u << 20, MS_ARENA_PAGES_RESERVED), MS_ENOMEM);
		cr_assert_null(a.base);
	}
}

Test(arena, more_than_the_memory_left_is_a_clear_error)
{
	ms__arena a;
	uint64_t available = ms__memory_available();

	if (available == 0 || available > SIZE_MAX / 4)
		cr_skip_test("memory left is unknown here");
	cr_assert_eq(ms__arena_map(&a, (size_t)available * 2, MS_ARENA_PAGES_TRANSPARENT),
	             MS_ELIMIT);
	cr_assert_null(a.base);
	cr_assert(strstr(ms_error_last()->message, "memory limit") != NULL, "%s",
	          ms_error_last()->message);
}

Test(arena, tiny_and_zero_sizes)
{
	ms__arena a;

	cr_assert_eq(ms__arena_map(&a, 0, MS_ARENA_PAGES_AUTO), 0);
	cr_assert_geq(a.size, 1);
	ms__arena_unmap(&a);
	cr_assert_eq(ms__arena_map(&a, 100, MS_ARENA_PAGES_AUTO), 0);
	cr_assert_geq(a.size, 100);
	ms__arena_unmap(&a);
}

Test(arena, absurd_size_fails_cleanly)
{
	ms__arena a;

	cr_assert_eq(ms__arena_map(&a, SIZE_MAX - 10, MS_ARENA_PAGES_AUTO), MS_ENOMEM);
	cr_assert_null(a.base);
}

/* A ring over a fake arena of `size` bytes (no memory needed for the bookkeeping). */
static ms__arena ring(size_t size)
{
	ms__arena a;

	memset(&a, 0, sizeof(a));
	a.size = size;
	return a;
}

Test(arena, ring_in_order_and_wraps)
{
	ms__arena a = ring(100);
	size_t o1, o2, o3, o4;

	cr_assert_eq(ms__arena_reserve(&a, &o1, 40, 1), 0);
	cr_assert_eq(ms__arena_reserve(&a, &o2, 40, 1), 0);
	cr_assert_eq(o1, 0);
	cr_assert_eq(o2, 40);
	cr_assert_eq(ms__arena_reserve(&a, &o3, 40, 1), -1, "only 20 bytes left at the end");
	cr_assert(!ms__arena_fits(&a, 40, 1));
	ms__arena_release_oldest(&a, o1, 40);
	/* The end has 20 bytes, the start 40: the reservation wraps to 0. */
	cr_assert(ms__arena_fits(&a, 40, 1));
	cr_assert_eq(ms__arena_reserve(&a, &o3, 40, 1), 0);
	cr_assert_eq(o3, 0);
	cr_assert_eq(ms__arena_reserve(&a, &o4, 1, 1), -1, "o2 still holds [40, 80)");
	ms__arena_release_oldest(&a, o2, 40);
	/* After the wrap, [40, 100) is free again. */
	cr_assert_eq(ms__arena_reserve(&a, &o4, 60, 1), 0);
	cr_assert_eq(o4, 40);
	ms__arena_release_oldest(&a, o3, 40);
	ms__arena_release_oldest(&a, o4, 60);
	cr_assert_eq(a.live, 0);
	cr_assert_eq(ms__arena_reserve(&a, &o1, 100, 1), 0, "an empty ring takes its full size");
	cr_assert_eq(o1, 0);
}

Test(arena, ring_alignment)
{
	ms__arena a = ring(1 << 16);
	size_t o1, o2;

	cr_assert_eq(ms__arena_reserve(&a, &o1, 10, 4096), 0);
	cr_assert_eq(ms__arena_reserve(&a, &o2, 10, 4096), 0);
	cr_assert_eq(o1 % 4096, 0);
	cr_assert_eq(o2, 4096);
}

Test(arena, larger_than_ring_never_fits)
{
	ms__arena a = ring(100);
	size_t o;

	cr_assert_eq(ms__arena_reserve(&a, &o, 101, 1), -1);
	cr_assert(!ms__arena_fits(&a, 101, 1));
}

/* A randomized model check: live reservations never overlap, whatever the sizes. */
Test(arena, ring_never_overlaps_live_reservations)
{
	enum { SIZE = 1000, MAX_LIVE = 64 };
	ms__arena a = ring(SIZE);
	size_t offsets[MAX_LIVE], lengths[MAX_LIVE];
	size_t head = 0, count = 0;
	unsigned state = 12345;

	for (int step = 0; step < 200000; step++) {
		state = state * 1103515245u + 12345u;
		if (count < MAX_LIVE && (state >> 16) % 3 != 0) {
			size_t len = 1 + (state >> 8) % 300, off;
			size_t slot = (head + count) % MAX_LIVE;

			if (ms__arena_reserve(&a, &off, len, 8) != 0)
				continue;
			cr_assert_leq(off + len, SIZE);
			for (size_t i = 0; i < count; i++) {
				size_t j = (head + i) % MAX_LIVE;

				cr_assert(off + len <= offsets[j] || offsets[j] + lengths[j] <= off,
				          "step %d: [%zu,+%zu) overlaps [%zu,+%zu)", step, off, len,
				          offsets[j], lengths[j]);
			}
			offsets[slot] = off;
			lengths[slot] = len;
			count++;
		} else if (count > 0) {
			ms__arena_release_oldest(&a, offsets[head], lengths[head]);
			head = (head + 1) % MAX_LIVE;
			count--;
		}
	}
}
