/*
 * arena.c - mapping the buffer arena and handing out its space as a ring.
 *
 * Page size is chosen by trying, not by guessing: MAP_HUGETLB reserves its pages when
 * the mapping is made, so it either succeeds with every page it needs or fails at once
 * (ENOMEM) and we fall back. The transparent-huge-page path over-maps by 2 MiB so the
 * usable part starts on a 2 MiB boundary, where the kernel can use a huge page from the
 * first byte.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "error.h"
#include "sysmem.h"

#define HUGE_PAGE (2UL << 20)

static size_t align_up(size_t v, size_t align)
{
	return (v + align - 1) & ~(align - 1);
}

/* Whether transparent huge pages can be had with madvise (mode "always" or "madvise"). */
static int transparent_huge_pages_enabled(void)
{
	char mode[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (f == NULL)
		return 0;
	if (fgets(mode, sizeof(mode), f) == NULL)
		mode[0] = '\0';
	fclose(f);
	return strstr(mode, "[never]") == NULL && mode[0] != '\0';
}

int ms__arena_map(ms__arena *a, size_t size, int pages)
{
	uint64_t available;
	size_t huge_size;
	void *p;

	memset(a, 0, sizeof(*a));
	if (size == 0)
		size = 1;
	if (size > SIZE_MAX - 2 * HUGE_PAGE)
		return ms__error_set(MS_ENOMEM, "arena of %zu bytes is too large", size);
	huge_size = align_up(size, HUGE_PAGE);

	p = MAP_FAILED;
	if (pages == MS_ARENA_PAGES_AUTO || pages == MS_ARENA_PAGES_RESERVED)
		p = mmap(NULL, huge_size, PROT_READ | PROT_WRITE,
		         MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
	if (p == MAP_FAILED && pages == MS_ARENA_PAGES_RESERVED)
		return ms__error_set(MS_ENOMEM,
		                     "cannot map a %zu-byte arena on reserved huge pages: too few "
		                     "free in vm.nr_hugepages (see /proc/meminfo HugePages_Free)",
		                     huge_size);
	if (p != MAP_FAILED) {
		a->map_base = a->base = p;
		a->map_size = a->size = huge_size;
		a->pages = MS__PAGES_RESERVED_HUGE;
		return 0;
	}
	/* Overcommit would let any size map, and the OOM killer would end the stream later;
	 * reserved huge pages, above, are already held and need no such check. */
	available = ms__memory_available();
	if (available != 0 && size > available)
		return ms__error_set(
		    MS_ELIMIT,
		    "the arena needs %.2f GiB but this process has %.2f GiB of "
		    "memory left (MemAvailable, or its container's limit): set or lower the "
		    "memory limit (--memory-limit, RUNAI_STREAMER_MEMORY_LIMIT) or "
		    "reserve huge pages",
		    (double)size / (1u << 30), (double)available / (1u << 30));
	if (pages != MS_ARENA_PAGES_SMALL && huge_size >= HUGE_PAGE &&
	    transparent_huge_pages_enabled()) {
		size_t map_size = huge_size + HUGE_PAGE;

		p = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		         0);
		if (p != MAP_FAILED) {
			a->map_base = p;
			a->map_size = map_size;
			a->base = (unsigned char *)align_up((uintptr_t)p, HUGE_PAGE);
			a->size = huge_size;
			/* Advice is a hint: if the kernel declines, small pages still work. */
			a->pages = madvise(a->base, a->size, MADV_HUGEPAGE) == 0
			               ? MS__PAGES_TRANSPARENT_HUGE
			               : MS__PAGES_SMALL;
			return 0;
		}
	}
	size = align_up(size, 4096);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return ms__error_errno(errno, "cannot map a %zu-byte buffer arena", size);
	a->map_base = a->base = p;
	a->map_size = a->size = size;
	a->pages = MS__PAGES_SMALL;
	return 0;
}

void ms__arena_unmap(ms__arena *a)
{
	if (a->map_base != NULL)
		munmap(a->map_base, a->map_size);
	memset(a, 0, sizeof(*a));
}

/* Where a reservation would go, or SIZE_MAX if it does not fit; sets *wraps. */
static size_t place(const ms__arena *a, size_t length, size_t align, int *wraps)
{
	size_t start;

	*wraps = 0;
	if (a->live == 0)
		return length <= a->size ? 0 : SIZE_MAX;
	start = align_up(a->head, align);
	if (a->wrapped)
		return start <= a->tail && length <= a->tail - start ? start : SIZE_MAX;
	if (start <= a->size && length <= a->size - start)
		return start;
	*wraps = 1;
	return length <= a->tail ? 0 : SIZE_MAX;
}

int ms__arena_fits(const ms__arena *a, size_t length, size_t align)
{
	int wraps;

	return place(a, length, align, &wraps) != SIZE_MAX;
}

int ms__arena_reserve(ms__arena *a, size_t *out, size_t length, size_t align)
{
	int wraps;
	size_t start = place(a, length, align, &wraps);

	if (start == SIZE_MAX)
		return -1;
	if (a->live == 0)
		a->tail = 0;
	if (wraps) {
		a->wrapped = 1;
		a->wrap_end = a->head;
	}
	a->head = start + length;
	a->live++;
	*out = start;
	return 0;
}

void ms__arena_release_oldest(ms__arena *a, size_t offset, size_t length)
{
	a->tail = offset + length;
	/* The old lap is empty: the live reservations now all lie in [0, head), and the
	 * bytes skipped when wrapping are free again. */
	if (a->wrapped && a->tail == a->wrap_end) {
		a->wrapped = 0;
		a->tail = 0;
	}
	if (--a->live == 0) {
		a->head = a->tail = 0;
		a->wrapped = 0;
	}
}
