/*
 * sink_mapped.c - the mapped sink: where bytes land when they are not copied at all.
 *
 * A file that is already in memory (on tmpfs, such as the node cache, or fully in the page
 * cache) need not be read into an arena: mapping it costs page-table entries, not a copy
 * of every byte, and on a tmpfs with huge=within_size the mapping uses 2 MiB pages. The
 * engine's workers still run through the plan in order, but each "read" faults the pages
 * of its range in (MADV_POPULATE_READ), so a reader walking the tensors in file order
 * finds them mapped; delivery order and the engine's bookkeeping are unchanged.
 * The pages are the file's: they are shared with every other reader, count as page cache
 * rather than this process's memory, and are read-only (a write faults).
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "sink.h"
#include "sink_mapped.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

int ms__mapping_open(ms__mapping *m, int fd, uint64_t size, const char *what)
{
	void *p;

	m->base = NULL;
	m->size = 0;
	if (size == 0)
		return 0;
	if (size > SIZE_MAX)
		return ms__error_set(MS_ENOMEM, "%s: too large to map", what);
	p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return ms__error_errno(errno, "%s: cannot map the file for zero-copy delivery",
		                       what);
	/* The reader goes through in order; let the kernel read ahead for the rest. */
	madvise(p, (size_t)size, MADV_SEQUENTIAL);
	m->base = p;
	m->size = (size_t)size;
	return 0;
}

void ms__mapping_close(ms__mapping *m)
{
	if (m->base != NULL)
		munmap((void *)m->base, m->size);
	m->base = NULL;
	m->size = 0;
}

int ms__mapping_populate(const ms__mapping *m, uint64_t offset, uint64_t length, const char *what)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t start, end;

	if (m->base == NULL || offset >= m->size)
		return 0;
	end = offset + length > m->size ? m->size : offset + length;
	start = offset & ~(uint64_t)(page - 1);
	if (madvise((void *)(m->base + start), (size_t)(end - start), MADV_POPULATE_READ) == 0)
		return 0;
	if (errno == EFAULT || errno == EIO || errno == ENOMEM)
		return ms__error_set(MS_EIO,
		                     "%s: cannot read the mapped bytes %llu to %llu (was the file "
		                     "truncated while being read?)",
		                     what, (unsigned long long)offset, (unsigned long long)end);
	/* EINVAL: a kernel before 5.14. Touch a byte of each page instead. */
	for (uint64_t at = start; at < end; at += (uint64_t)page)
		(void)*(volatile const unsigned char *)(m->base + at);
	return 0;
}

/* Pages per sampled window, and the most windows an estimate looks at. */
#define SAMPLE_PAGES   16
#define SAMPLE_WINDOWS 256

double ms__resident_fraction(int fd, uint64_t size, bool estimate)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (size_t)((size + (uint64_t)page - 1) / (uint64_t)page);
	size_t windows = 1, window_pages = pages, counted = 0, resident = 0;
	unsigned char *vec = NULL;
	void *map = MAP_FAILED;
	double fraction = 1.0;

	if (size == 0 || size > SIZE_MAX)
		return 1.0;
	/* An estimate reads SAMPLE_WINDOWS evenly spaced windows instead of every page:
	 * mincore costs some 20 ns a page, 5 ms for each GiB, on every open. */
	if (estimate && pages > (size_t)SAMPLE_PAGES * SAMPLE_WINDOWS) {
		windows = SAMPLE_WINDOWS;
		window_pages = SAMPLE_PAGES;
	}
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	vec = ms__malloc(window_pages);
	if (map == MAP_FAILED || vec == NULL)
		goto done;
	for (size_t w = 0; w < windows; w++) {
		size_t first = windows == 1 ? 0 : w * (pages - window_pages) / (windows - 1);
		size_t bytes = window_pages * (size_t)page;

		if (first * (size_t)page + bytes > (size_t)size)
			bytes = (size_t)size - first * (size_t)page;
		if (mincore((char *)map + first * (size_t)page, bytes, vec) != 0)
			goto done;
		for (size_t i = 0; i < window_pages; i++)
			resident += vec[i] & 1;
		counted += window_pages;
	}
	fraction = (double)resident / (double)counted;
done:
	ms__free(vec);
	if (map != MAP_FAILED)
		munmap(map, (size_t)size);
	return fraction;
}

bool ms__on_tmpfs(int fd)
{
	struct statfs fs;

	return fstatfs(fd, &fs) == 0 && (unsigned long)fs.f_type == TMPFS_MAGIC;
}

/* ---------------------------------------------------------------------------------------- */
/* The sink                                                                                   */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	ms__sink base;
	const ms__mapping *mappings;
} mapped_sink;

static int mapped_reserve(ms__sink *k, const ms__extent *x, unsigned char **out)
{
	const ms__mapping *m = &((mapped_sink *)k)->mappings[x->file_index];

	/* The bytes stay where they are. An empty file has no mapping: any valid address
	 * will do for its empty tensors. */
	*out = m->base != NULL ? (unsigned char *)m->base + x->read_start : (unsigned char *)k;
	return 0;
}

static int mapped_fill(ms__sink *k, ms__source *src, size_t file, unsigned char *dst,
                       uint64_t offset, uint64_t length)
{
	(void)dst;
	return ms__mapping_populate(&((mapped_sink *)k)->mappings[file], offset, length,
	                            src->location);
}

static void mapped_free(ms__sink *k)
{
	ms__free(k);
}

static const ms__sink_ops mapped_ops = {
    .reserve = mapped_reserve,
    .fill = mapped_fill,
    .free = mapped_free,
};

int ms__sink_mapped_new(ms__sink **out, const ms__mapping *mappings)
{
	mapped_sink *m = ms__calloc(1, sizeof(*m));

	*out = NULL;
	if (m == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory creating a mapped sink");
	m->base.ops = &mapped_ops;
	m->mappings = mappings;
	*out = &m->base;
	return 0;
}
