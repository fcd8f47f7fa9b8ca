/*
 * sink.h - where the engine's reads land: the one seam between "which bytes, in which
 * order" (the plan and the engine) and "into what memory" (a sink).
 *
 * The engine runs every read of every path; a sink decides where each extent's bytes go
 * and what landing them means:
 *
 *  - host (sink_host.c): the streamer's arena, a ring bounded by the memory limit;
 *  - mapped (sink_mapped.c): no copy at all, the file's own shared mapping, populated;
 *  - cache file (cache/sink_cache.c): the mapped .partial of a node-cache download, with
 *    a byte of resume state written per chunk.
 *
 * The three steps are reserve (a region for an extent, in plan order), fill (one read of
 * it, from a worker) and release (an extent nobody uses any more, oldest first).
 *
 * Thread rules: reserve, fits and release are called with the engine's lock held, from
 * any of its threads; fill is called concurrently from the workers without the lock.
 */
#ifndef MS_SINK_H
#define MS_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "modelstream.h"
#include "plan.h"
#include "sink_mapped.h"
#include "source.h"

/** reserve() found no room now: the worker waits until a release makes some. */
#define MS__SINK_FULL 1

typedef struct ms__sink ms__sink;

typedef struct {
	/**
	 * Finds where extent `x`'s bytes go: *out receives the address at which file offset
	 * x->read_start lands (the rest of the extent follows contiguously). Extents are
	 * reserved in plan order. Returns 0, MS__SINK_FULL, or an MS_E* code.
	 */
	int (*reserve)(ms__sink *k, const ms__extent *x, unsigned char **out);
	/** Optional: false if `x` cannot fit even once everything older is complete, so that
	 * only the caller's releases could make room (the streamer's MS_ELIMIT). */
	bool (*fits)(const ms__sink *k, const ms__extent *x);
	/**
	 * Moves bytes [offset, offset + length) of `src` (file `file` of the plan) to `dst`,
	 * inside the extent's region. Returns 0 or an MS_E* code with the message set.
	 */
	int (*fill)(ms__sink *k, ms__source *src, size_t file, unsigned char *dst, uint64_t offset,
	            uint64_t length);
	/** Optional: the oldest extent still held, `x` at `block`, is no longer used. */
	void (*release)(ms__sink *k, const ms__extent *x, unsigned char *block);
	/** Optional: fills the arena fields of `out`. */
	void (*stats)(const ms__sink *k, ms_stats *out);
	/** Frees the sink and whatever it maps. */
	void (*free)(ms__sink *k);
} ms__sink_ops;

struct ms__sink {
	const ms__sink_ops *ops;
};

/**
 * The host arena: one block of `size` bytes (ring 0: everything at once, never recycled)
 * or a ring of `size` bytes whose extents are recycled oldest first. `pages` is an
 * ms_arena_pages value. Returns 0 or MS_ENOMEM.
 */
int ms__sink_host_new(ms__sink **out, uint64_t size, int ring, uint64_t alignment, int pages);

/** The host sink's memory, for pinning it (the device stage's staging ring). */
void ms__sink_host_memory(const ms__sink *k, void **out_base, size_t *out_size);

/**
 * Zero copy: extent bytes stay in `mappings[file]` (which must outlive the sink), and a
 * read faults its range in. Returns 0 or MS_ENOMEM.
 */
int ms__sink_mapped_new(ms__sink **out, const ms__mapping *mappings);

/**
 * A node-cache download (cache/sink_cache.c): chunk i of `chunk` bytes lands at map + i *
 * chunk, then byte state_offset + i of `state_fd` is set to 1. With `allocate_fd` >= 0 (the
 * mapped file, on tmpfs) each chunk's pages are allocated first, so a full tmpfs fails
 * with MS_ENOSPC naming cache `dir` instead of SIGBUS. Plans come from ms__plan_chunks().
 * Returns 0 or MS_ENOMEM.
 */
int ms__sink_cache_new(ms__sink **out, unsigned char *map, int state_fd, uint64_t chunk,
                       uint64_t state_offset, int allocate_fd, const char *dir);

static inline void ms__sink_free(ms__sink *k)
{
	if (k != NULL)
		k->ops->free(k);
}

#endif
