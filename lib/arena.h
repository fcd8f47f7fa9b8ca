/*
 * arena.h - the buffer that tensors land in: one mapping, used as a ring.
 *
 * The arena is mapped once per streamer and reused, never re-faulted: page faults are
 * the most expensive thing a read can hit on our VMs (about 0.3 GB/s into fresh 4 KiB
 * pages against 10+ GB/s into 2 MiB pages). It prefers reserved huge pages
 * (MAP_HUGETLB), then transparent huge pages (madvise), then small pages.
 *
 * Space is handed out as a ring: reservations in order, released oldest first. In
 * unlimited mode the arena is big enough for everything and is simply never released.
 */
#ifndef MS_ARENA_H
#define MS_ARENA_H

#include <stddef.h>

enum {
	MS__PAGES_SMALL = 0,
	MS__PAGES_TRANSPARENT_HUGE = 1,
	MS__PAGES_RESERVED_HUGE = 2,
};

typedef struct {
	unsigned char *base;
	size_t size;     /* usable bytes */
	size_t map_size; /* bytes mapped, for munmap */
	void *map_base;
	int pages; /* MS__PAGES_* */
	/* The ring. Live reservations lie in [tail, head), or, once `wrapped`, in [tail,
	 * wrap_end) and [0, head). `live` counts them. */
	size_t head;
	size_t tail;
	size_t wrap_end; /* where the old lap ended when the ring wrapped */
	size_t live;
	int wrapped;
} ms__arena;

/**
 * Maps an arena of at least `size` bytes backed by `pages` (an ms_arena_pages value).
 * Returns 0 or MS_ENOMEM with the message set.
 */
int ms__arena_map(ms__arena *a, size_t size, int pages);

/** Unmaps the arena; accepts one that was never mapped (zeroed). */
void ms__arena_unmap(ms__arena *a);

/** True if a reservation of `length` bytes (aligned to `align`) would succeed now. */
int ms__arena_fits(const ms__arena *a, size_t length, size_t align);

/**
 * Reserves `length` (> 0) contiguous bytes at an offset aligned to `align` (a power of
 * two). Returns 0 and the offset in *out, or -1 if the space is not free now.
 */
int ms__arena_reserve(ms__arena *a, size_t *out, size_t length, size_t align);

/** Releases the oldest live reservation, which is [offset, offset + length). */
void ms__arena_release_oldest(ms__arena *a, size_t offset, size_t length);

#endif
