/*
 * sink_mapped.h - zero-copy delivery: tensors are read-only pointers into a shared mapping
 * of the file itself (the page cache, or the pages of a tmpfs node cache), which the
 * engine's workers populate ahead of the reader in plan order.
 */
#ifndef MS_SINK_MAPPED_H
#define MS_SINK_MAPPED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A read-only shared mapping of a whole file. */
typedef struct {
	const unsigned char *base; /* NULL for an empty file */
	size_t size;
} ms__mapping;

/** Maps `size` bytes of `fd` read-only. Returns 0 or MS_ENOMEM/MS_EIO naming `what`. */
int ms__mapping_open(ms__mapping *m, int fd, uint64_t size, const char *what);

/** Unmaps; accepts a zeroed mapping. */
void ms__mapping_close(ms__mapping *m);

/**
 * Faults in [offset, offset + length) of the mapping (MADV_POPULATE_READ, or one touch per
 * page on kernels before 5.14), so that the reader finds the pages there. Returns 0 or
 * MS_EIO naming `what` (a file truncated under the mapping).
 */
int ms__mapping_populate(const ms__mapping *m, uint64_t offset, uint64_t length, const char *what);

/**
 * The fraction (0..1) of the file's pages in the page cache (mincore), 1 if unknown. With
 * `estimate`, from a sample of evenly spaced windows (a fixed cost, whatever the size);
 * without, from every page.
 */
double ms__resident_fraction(int fd, uint64_t size, bool estimate);

/** True if the file is on tmpfs: in memory, whatever mincore says. */
bool ms__on_tmpfs(int fd);

#endif
